"""The seg_folder source: images and masks paired by stem, and every malformed-folder error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.arrays import load_split
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.params import SegFolderDataset, parse
from tests.conftest import USER_FOLDERS, entry, project_params

IDS = {"background": 0, "cell": 128, "nucleus": 255}


def make_folder(root: Path, n: int = 8, size: tuple[int, int] = (20, 12)) -> Path:
    """n RGB images with 'L' masks of ids 0/128/255: a cell (a block) holding a nucleus (its centre)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = size
        image = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
        mask = np.zeros((h, w), np.uint8)
        r, c = rng.integers(0, h - 6), rng.integers(0, w - 6)
        mask[r : r + 6, c : c + 6] = 128
        mask[r + 2 : r + 4, c + 2 : c + 4] = 255
        image[mask > 0] = 200
        Image.fromarray(image).save(
            root / "images" / f"img{i}.jpg" if i % 2 else root / "images" / f"img{i}.png"
        )
        Image.fromarray(mask, "L").save(root / "masks" / f"img{i}.png")
    return root


def dataset(root: Path, **kw) -> SegFolderDataset:
    return entry("datasets", "seg_folder", path=str(root), classes=IDS, image_size=16, channels=3, **kw)


def test_prepares_class_indices_in_declared_order(tmp_path):
    root = make_folder(tmp_path / "data", n=10)
    manifest = prepare(
        "cells", dataset(root, val_fraction=0.2, test_fraction=0.2), 0, tmp_path / "out", False
    )
    assert manifest["task"] == "segmentation" and manifest["classes"] == ["background", "cell", "nucleus"]
    assert manifest["images"] == {"train": 6, "val": 2, "test": 2}
    x, y = load_split(tmp_path / "out", "train")
    assert x.shape == (6, 16, 16, 3) and y.shape == (6, 16, 16) and y.dtype == np.uint8
    assert set(np.unique(y)) == {0, 1, 2}  # ids 0/128/255 became indices 0/1/2, none blended
    assert (x[y == 1].mean() > 150) and (x[y == 0].mean() < 80)  # masks line up with their images


def test_palette_masks_use_palette_indices(tmp_path):
    root = make_folder(tmp_path / "data", n=4)
    for path in (root / "masks").iterdir():
        ids = np.asarray(Image.open(path))
        palette_mask = Image.fromarray((ids // 127).astype(np.uint8), "P")  # indices 0, 1, 2
        palette_mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        palette_mask.save(path)
    ds = entry(
        "datasets", "seg_folder", path=str(root), classes={"bg": 0, "cell": 1, "nucleus": 2}, background="bg"
    )
    prepare("p", ds, 0, tmp_path / "out", False)
    _, y = load_split(tmp_path / "out", "train")
    assert set(np.unique(y)) == {0, 1, 2}


def _error(tmp_path: Path, root: Path) -> str:
    with pytest.raises(UserError) as info:
        prepare("cells", dataset(root), 0, tmp_path / "out", False)
    assert not (tmp_path / "out").exists()  # nothing written that looks complete
    return str(info.value)


def test_image_without_mask(tmp_path):
    root = make_folder(tmp_path / "data")
    for i in range(7):
        (root / "masks" / f"img{i}.png").unlink()
    msg = _error(tmp_path, root)
    assert msg.startswith("datasets.cells: 7 image(s) without a mask")
    assert "images/img0.png, images/img1.jpg" in msg and "and 2 more" in msg


def test_mask_without_image(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "images" / "img3.jpg").unlink()
    Image.new("L", (20, 12)).save(root / "masks" / "extra.png")
    msg = _error(tmp_path, root)
    assert "2 mask(s) without an image" in msg and "masks/extra.png, masks/img3.png" in msg


def test_size_mismatch(tmp_path):
    root = make_folder(tmp_path / "data")
    Image.new("L", (10, 10)).save(root / "masks" / "img2.png")
    msg = _error(tmp_path, root)
    assert "1 mask(s) differ in size from their image: masks/img2.png (10x10 vs image 20x12)" in msg


def test_undeclared_mask_value(tmp_path):
    root = make_folder(tmp_path / "data")
    for i in (1, 5):
        ids = np.asarray(Image.open(root / "masks" / f"img{i}.png")).copy()
        ids[0, 0] = 7
        Image.fromarray(ids, "L").save(root / "masks" / f"img{i}.png")
    msg = _error(tmp_path, root)
    assert msg.startswith("datasets.cells.classes: 2 mask(s) hold value(s) [7] that are not declared classes")
    assert (
        "0 (background), 128 (cell), 255 (nucleus)" in msg and "masks/img1.png (7), masks/img5.png (7)" in msg
    )


def test_colour_masks_are_refused(tmp_path):
    root = make_folder(tmp_path / "data")
    Image.new("RGB", (20, 12)).save(root / "masks" / "img4.png")
    msg = _error(tmp_path, root)
    assert "1 mask(s) are not single-channel class ids or palette PNGs" in msg and "img4.png (RGB)" in msg


def test_two_files_with_one_stem(tmp_path):
    root = make_folder(tmp_path / "data")
    Image.new("RGB", (20, 12)).save(root / "images" / "img0.jpg")
    assert "1 stem(s) name more than one file" in _error(tmp_path, root)


def test_missing_layout(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    assert "masks: folder not found" in _error(tmp_path, tmp_path / "data")


def test_corrupt_image_is_skipped_and_listed(tmp_path):
    root = make_folder(tmp_path / "data")
    (root / "images" / "img0.png").write_bytes(b"not an image")
    manifest = prepare("cells", dataset(root), 0, tmp_path / "out", False)
    assert manifest["skipped"] == [{"file": "images/img0.png", "reason": "not an image file PIL can read"}]
    assert sum(manifest["images"].values()) == 7


def params_with(dataset_entry: dict, model_entry: dict) -> dict:
    raw = project_params()
    raw["datasets"]["cells"] = dataset_entry
    raw["augment"]["cells"] = raw["augment"]["tracks"]
    # The project's model named as the architecture (unet, cnn) gives every other key.
    raw["models"]["m"] = {**raw["models"][model_entry["architecture"]], "dataset": "cells", **model_entry}
    return raw


def test_params_errors_name_the_key():
    entry = {**USER_FOLDERS["seg_folder"], "path": "x", "classes": {"a": 0, "b": 1}}
    with pytest.raises(UserError, match=r"datasets\.cells.*background 'background' is not one of classes"):
        parse(params_with(entry, {"architecture": "unet"}))
    entry["background"] = "a"
    with pytest.raises(
        UserError, match=r"models\.m\.architecture: 'cnn' does not fit dataset 'cells'.*valid: unet"
    ):
        parse(params_with(entry, {"architecture": "cnn"}))
    with pytest.raises(UserError, match=r"models\.m\.class_weights: 3 weights for 2 classes"):
        parse(params_with(entry, {"architecture": "unet", "class_weights": [1, 2, 3]}))
    with pytest.raises(UserError, match=r"models\.m\.loss\.hinge"):
        parse(params_with(entry, {"architecture": "unet", "loss": {"hinge": 1.0}}))
    shapes = project_params()["datasets"]["shapes"]
    with pytest.raises(UserError, match=r"'unet' does not fit dataset 'cells', which is for classification"):
        parse(params_with(shapes, {"architecture": "unet"}))

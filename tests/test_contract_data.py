"""A user's images are a DVC dependency of their dataset's prepare stage (the dataset's `path`).

Adding, removing or editing an image reruns that dataset's prepare on the next `dvc repro`; touching a
file without changing it, or changing another dataset's images, does not. DVC decides this from the
folder's content hash: the project keeps no hash of its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import only, project_params, tiny

pytestmark = pytest.mark.slow


def write_png(path: Path, value: int, mask: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mask:  # class ids 0/1: a block of the object class
        pixels = np.zeros((12, 12), np.uint8)
        pixels[2 + value % 4 : 8, 3:9] = 1
    else:
        pixels = rng.integers(0, 256, (12, 12, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def classification_folder(root: Path) -> list[Path]:
    for label, cls in enumerate(("cat", "dog")):
        for i in range(6):
            write_png(root / cls / f"{i}.png", 10 * label + i)
    return sorted(root.rglob("*.png"))


def segmentation_folder(root: Path) -> list[Path]:
    for i in range(8):
        write_png(root / "images" / f"f{i}.png", i)
        write_png(root / "masks" / f"f{i}.png", i, mask=True)
    return sorted((root / "images").glob("*.png"))


SOURCES = {
    "folder": (classification_folder, {"channels": 3, "resize": "stretch", "classes": None}),
    "seg_folder": (
        segmentation_folder,
        {
            "channels": 3,
            "resize": "stretch",
            "classes": {"background": 0, "blob": 1},
            "background": "background",
        },
    ),
}


def ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


# Each source and each place once: a folder inside the repository (a path relative to it) and one
# outside (absolute). The four combinations were two minutes of prepare processes showing nothing more:
# where the folder is and what it holds are separate code paths (DVC's dependency, the source's reader).
@pytest.mark.parametrize(("source", "where"), [("folder", "inside"), ("seg_folder", "outside")])
def test_editing_a_users_images_reruns_only_their_prepare(source, where, tmp_path, make_repo, dvc):
    make_images, keys = SOURCES[source]
    params = tiny(only(project_params(), "cnn"))
    images_root = (tmp_path / "repo" / "images") if where == "inside" else (tmp_path / "elsewhere" / "pets")
    path = "images" if where == "inside" else str(images_root)  # relative to the repository, or absolute
    params["datasets"]["pets"] = {
        "source": source,
        "path": path,
        "image_size": 8,
        "val_fraction": 0.25,
        "test_fraction": 0.25,
        **keys,
    }
    params["augment"]["pets"] = {"mode": "offline", "copies": 0, "preview": 2, "transforms": []}
    repo = make_repo(params)
    files = make_images(images_root)
    targets = ["prepare@pets", "prepare@shapes"]

    def repro() -> list[str]:
        return ran(dvc(repo, "repro", *targets).stdout)

    def images_in_manifest() -> int:
        manifest = json.loads((repo / "data/prepared/pets/manifest.json").read_text())
        return sum(manifest["images"].values())

    assert sorted(repro()) == sorted(["check", *targets])  # params.yaml checked first, once
    assert images_in_manifest() == len(files)
    assert repro() == []  # nothing changed

    files[0].touch()  # a new modification time, the same bytes
    assert repro() == []

    extra = files[0].with_name("new.png")
    write_png(extra, 99)
    if source == "seg_folder":
        write_png(images_root / "masks" / "new.png", 99, mask=True)
    assert repro() == ["prepare@pets"]  # added: only this dataset, not the generated one
    assert images_in_manifest() == len(files) + 1

    write_png(files[1], 1234)  # edited in place
    status = dvc(repo, "status", "prepare@pets").stdout
    assert "modified:" in status and (path in status)
    assert repro() == ["prepare@pets"]

    extra.unlink()
    if source == "seg_folder":
        (images_root / "masks" / "new.png").unlink()
    assert repro() == ["prepare@pets"]  # removed
    assert images_in_manifest() == len(files)
    # DVC records the folder's hash itself (a folder outside the repository by its relative path).
    [dep] = [
        d
        for d in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["prepare@pets"]["deps"]
        if (repo / d["path"]).resolve() == images_root.resolve()
    ]
    assert dep["md5"].endswith(".dir") and dep["nfiles"] == len(files) + (
        len(files) if source == "seg_folder" else 0
    )

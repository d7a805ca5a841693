"""The folder source: every common format and mode in, uint8 arrays of the configured shape out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data import folder
from pipeline.data.folder import SkipImage, read_image, scan
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.params import FolderDataset
from tests.conftest import entry

BLUEISH = (10, 100, 200)
BLUEISH_GRAY = 84  # ITU-R 601 luma that PIL uses: (299*10 + 587*100 + 114*200) / 1000 = 84.49
U16 = 40000
U16_AS_8BIT = 156  # 40000 / 65535 * 255 = 155.65


def solid(mode: str, size: tuple[int, int] = (20, 12)) -> tuple[Image.Image, int, tuple[int, int, int]]:
    """A one-colour image in `mode`, with the gray value and the RGB colour it must come out as."""
    if mode == "L":
        return Image.new("L", size, 200), 200, (200, 200, 200)
    if mode == "RGB":
        return Image.new("RGB", size, BLUEISH), BLUEISH_GRAY, BLUEISH
    if mode == "RGBA":
        return Image.new("RGBA", size, (*BLUEISH, 255)), BLUEISH_GRAY, BLUEISH
    if mode == "P":
        img = Image.new("P", size, 1)
        img.putpalette([0, 0, 0, *BLUEISH] + [0] * (3 * 254))
        return img, BLUEISH_GRAY, BLUEISH
    if mode == "I;16":
        img = Image.fromarray(np.full(size[::-1], U16, np.uint16))
        assert img.mode == "I;16"
        return img, U16_AS_8BIT, (U16_AS_8BIT,) * 3
    raise ValueError(mode)


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


# Every mode each format can store; JPEG is lossy, so it gets a tolerance.
FORMATS = {
    "PNG": ["L", "RGB", "RGBA", "P", "I;16"],
    "JPEG": ["L", "RGB"],
    "BMP": ["L", "RGB", "P"],
    "TIFF": ["L", "RGB", "RGBA", "P", "I;16"],
    "WEBP": ["L", "RGB", "RGBA"],
    "GIF": ["L", "P"],
}
CASES = [(fmt, mode) for fmt, modes in FORMATS.items() for mode in modes]


@pytest.mark.parametrize(("fmt", "mode"), CASES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_and_mode_becomes_the_configured_shape(fmt, mode, channels):
    img, gray, rgb = solid(mode)
    data = encode(img, fmt)
    assert Image.open(io.BytesIO(data)).format == fmt
    out = read_image(data, 8, channels, "stretch")
    assert out.dtype == np.uint8 and out.shape == (8, 8, channels)
    expected = np.array([gray] if channels == 1 else rgb)
    tolerance = 3 if fmt == "JPEG" else 0
    assert np.abs(out.reshape(-1, channels).astype(int) - expected).max() <= tolerance, out[0, 0]


def test_alpha_is_composited_onto_black():
    half = Image.new("RGBA", (6, 6), (*BLUEISH, 128))
    np.testing.assert_array_equal(read_image(encode(half, "PNG"), 4, 3, "stretch")[0, 0], [5, 50, 100])
    clear = Image.new("RGBA", (6, 6), (255, 255, 255, 0))
    assert read_image(encode(clear, "PNG"), 4, 3, "stretch").max() == 0


def test_16_bit_range_is_scaled_to_8_bit():
    ramp = Image.fromarray(np.array([[0, 32768, 65535]] * 3, np.uint16))
    out = read_image(encode(ramp, "PNG"), 3, 1, "crop")[..., 0]
    assert out[:, 0].tolist() == [0, 0, 0] and out[:, 2].tolist() == [255, 255, 255]


def test_float_images_of_0_to_1_are_not_black():
    img = Image.fromarray(np.full((6, 6), 0.5, np.float32))
    assert img.mode == "F"
    assert read_image(encode(img, "TIFF"), 4, 1, "stretch").ravel().tolist() == [128] * 16


def test_stretch_squeezes_the_whole_image():
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = (255, 0, 0)
    img[:, 16:] = (0, 0, 255)
    out = read_image(encode(Image.fromarray(img), "PNG"), 8, 3, "stretch")
    assert (out[:, :3] == (255, 0, 0)).all() and (out[:, 5:] == (0, 0, 255)).all()


def test_pad_keeps_the_aspect_and_fills_the_border_with_0():
    wide = Image.new("RGB", (16, 8), (255, 255, 255))
    out = read_image(encode(wide, "PNG"), 8, 3, "pad")
    # 16x8 shrinks to 8x4, centred: rows 0-1 and 6-7 are the border.
    assert (out[[0, 1, 6, 7]] == 0).all()
    assert (out[2:6] == 255).all()
    tall = Image.new("L", (8, 16), 255)
    out = read_image(encode(tall, "PNG"), 8, 1, "pad")[..., 0]
    assert (out[:, [0, 1, 6, 7]] == 0).all() and (out[:, 2:6] == 255).all()


def test_crop_keeps_the_centre():
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :6] = (255, 0, 0)
    img[:, 6:26] = (0, 255, 0)  # the centre square is columns 8-23
    img[:, 26:] = (0, 0, 255)
    out = read_image(encode(Image.fromarray(img), "PNG"), 8, 3, "crop")
    assert (out == (0, 255, 0)).all()


def png_bytes() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise), "PNG")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"just some notes\n", "not an image file PIL can read"),
        (png_bytes()[: len(png_bytes()) // 2], "corrupt image: image file is truncated"),
        (encode(Image.new("RGB", (64, 64), BLUEISH), "JPEG")[:300], "corrupt image:"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "not an image file PIL can read"),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "png-signature-only"],
)
def test_unusable_files_raise_skip_image_with_a_reason(data, reason):
    with pytest.raises(SkipImage) as exc:
        read_image(data, 8, 3, "stretch")
    assert str(exc.value).startswith(reason)


def test_decompression_bombs_are_skipped(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses images over twice this
    with pytest.raises(SkipImage, match=r"corrupt image: .*decompression bomb"):
        read_image(encode(Image.new("L", (64, 64)), "PNG"), 8, 1, "stretch")


# ---------------------------------------------------------------- scanning root/<class>/<image>


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def good_image(value: int) -> bytes:
    return encode(Image.new("RGB", (20, 12), (value, 255 - value, 7)), "PNG")


def test_scan_finds_classes_and_files_in_sorted_order(tmp_path):
    for name in ("b/2.png", "b/1.png", "a/deep/x.png", "a/0.png", "a/.hidden.png", ".git/c.png"):
        write(tmp_path / name, good_image(1))
    classes, items = scan(tmp_path, None)
    assert classes == ["a", "b"]
    assert [(label, p.relative_to(tmp_path).as_posix()) for label, p in items] == [
        (0, "a/0.png"),
        (0, "a/deep/x.png"),
        (1, "b/1.png"),
        (1, "b/2.png"),
    ]
    classes, items = scan(tmp_path, ["b", "a"])  # the order given in params sets the labels
    assert classes == ["b", "a"] and items[0] == (0, tmp_path / "b/1.png")


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match=r"nowhere: image folder not found \(datasets\.\*\.path\)"):
        scan(tmp_path / "nowhere", None)


def test_a_file_is_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="not a folder; expected root/<class>/<image>"):
        scan(write(tmp_path / "x.png", good_image(1)), None)


def test_empty_folder(tmp_path):
    with pytest.raises(UserError, match="no class folders; expected root/<class>/<image>"):
        scan(tmp_path, None)
    write(tmp_path / "loose.png", good_image(1))  # images must be inside class folders
    with pytest.raises(UserError, match="no class folders"):
        scan(tmp_path, None)


def test_one_class_is_not_a_classification(tmp_path):
    write(tmp_path / "cats/1.png", good_image(1))
    with pytest.raises(UserError, match="need at least two different classes"):
        scan(tmp_path, None)
    write(tmp_path / "dogs/1.png", good_image(1))
    with pytest.raises(UserError, match="need at least two different classes"):
        scan(tmp_path, ["cats", "cats"])


def test_class_folder_without_files(tmp_path):
    write(tmp_path / "cats/1.png", good_image(1))
    (tmp_path / "dogs/empty").mkdir(parents=True)
    write(tmp_path / "dogs/.DS_Store", b"x")
    with pytest.raises(UserError, match=r"dogs: class 'dogs' has no files"):
        scan(tmp_path, None)


def test_classes_from_params_must_exist(tmp_path):
    write(tmp_path / "cats/1.png", good_image(1))
    write(tmp_path / "dogs/1.png", good_image(1))
    with pytest.raises(UserError, match=r"no folder for class\(es\) \['cows'\]; found: cats, dogs"):
        scan(tmp_path, ["cats", "cows"])


# ---------------------------------------------------------------- prepare on a messy folder


def messy_folder(root: Path) -> None:
    for i in range(6):
        write(root / f"cats/{i}.png", good_image(10 + i))
        write(root / f"dogs/{i}.jpg", encode(Image.new("L", (9, 30), 200 + i), "JPEG"))
    write(root / "cats/notes.txt", b"not an image")
    write(root / "cats/broken.png", png_bytes()[:200])
    write(root / "dogs/empty.jpg", b"")
    write(root / "dogs/cut.jpg", encode(Image.new("RGB", (64, 64), BLUEISH), "JPEG")[:300])


def test_manifest_names_the_first_skipped_files_and_counts_them_all(tmp_path, monkeypatch):
    """A folder full of bad files must not fill memory with their list: names are capped, the count is not."""
    import pipeline.data.prepare as prepare_module

    monkeypatch.setattr(prepare_module, "SKIPPED_LISTED", 2)
    messy_folder(tmp_path / "images")
    manifest = prepare("pets", folder_dataset(tmp_path / "images"), 0, tmp_path / "out", progress=False)
    assert len(manifest["skipped"]) == 2 and manifest["skipped_count"] == 4
    assert (
        manifest["skipped_listed"]
        == "the first 2 of 4 skipped files in reading order; the rest are only counted"
    )
    assert {s["file"] for s in manifest["skipped"]} < {
        "cats/notes.txt",
        "cats/broken.png",
        "dogs/empty.jpg",
        "dogs/cut.jpg",
    }


def test_scan_keeps_the_order_of_paths_in_nested_folders(tmp_path):
    """Sorted by path components as pathlib sorts, not by the string ('a/b' before 'a-c'), so hashes stay."""
    for rel in ("x/a-c.png", "x/a/b.png", "x/a/.hidden.png", "x/.h/in.png", "y/1.png"):
        write(tmp_path / rel, good_image(1))
    (tmp_path / "y" / "link").symlink_to(tmp_path / "x", target_is_directory=True)  # not followed, as rglob
    _, items = scan(tmp_path, None)
    assert [items.relative(k) for k in range(len(items))] == [
        "x/.h/in.png",
        "x/a/b.png",
        "x/a-c.png",
        "y/1.png",
    ]
    assert items.labels.tolist() == [0, 0, 0, 1]
    assert items[1] == (0, tmp_path / "x/a/b.png") and items[-1] == (1, tmp_path / "y/1.png")


def folder_dataset(root: Path, **kw) -> FolderDataset:
    return entry(
        "datasets", "folder", path=str(root), image_size=8, val_fraction=0.2, test_fraction=0.2, **kw
    )


def test_prepare_skips_bad_files_lists_them_and_prints_the_count(tmp_path, capsys):
    messy_folder(tmp_path / "images")
    out = tmp_path / "prepared"
    manifest = prepare("pets", folder_dataset(tmp_path / "images"), 0, out, progress=False)

    assert manifest["classes"] == ["cats", "dogs"]
    skipped = {s["file"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"cats/notes.txt", "cats/broken.png", "dogs/empty.jpg", "dogs/cut.jpg"}
    assert skipped["cats/notes.txt"] == "not an image file PIL can read"
    assert skipped["dogs/empty.jpg"] == "empty file"
    assert skipped["cats/broken.png"].startswith("corrupt image")
    assert skipped["dogs/cut.jpg"].startswith("corrupt image")
    assert json.loads((out / "manifest.json").read_text())["skipped"] == manifest["skipped"]
    assert "prepare pets: skipped 4 file(s)" in capsys.readouterr().out
    assert manifest["skipped_count"] == 4 and "skipped_listed" not in manifest

    totals = {c: sum(manifest["counts"][s][c] for s in ("train", "val", "test")) for c in ("cats", "dogs")}
    assert totals == {"cats": 6, "dogs": 6}
    assert manifest["shape"] == [8, 8, 3]
    x = np.concatenate([np.load(out / f"{s}_x.npy") for s in ("train", "val", "test")])
    y = np.concatenate([np.load(out / f"{s}_y.npy") for s in ("train", "val", "test")])
    assert x.shape == (12, 8, 8, 3) and x.dtype == np.uint8
    # Dogs are gray JPEGs of 200..205: all three channels equal, within JPEG's error.
    dogs = x[y == 1].astype(int)
    assert (np.abs(dogs - 202).max() <= 6) and (dogs[..., 0] == dogs[..., 2]).all()
    cats = x[y == 0]
    assert (cats[..., 2] == 7).all()


def test_prepare_converts_to_one_channel(tmp_path):
    messy_folder(tmp_path / "images")
    manifest = prepare(
        "pets", folder_dataset(tmp_path / "images", channels=1), 0, tmp_path / "o", progress=False
    )
    assert manifest["shape"] == [8, 8, 1]
    assert np.load(tmp_path / "o" / "train_x.npy").shape[1:] == (8, 8, 1)


def test_source_hash_follows_the_files(tmp_path):
    messy_folder(tmp_path / "images")
    ds = folder_dataset(tmp_path / "images")
    first = prepare("pets", ds, 0, tmp_path / "a", progress=False)["source_hash"]
    assert prepare("pets", ds, 0, tmp_path / "b", progress=False)["source_hash"] == first
    write(tmp_path / "images/cats/0.png", good_image(99))
    assert prepare("pets", ds, 0, tmp_path / "c", progress=False)["source_hash"] != first


def test_class_with_no_usable_image_is_an_error_and_leaves_no_output(tmp_path):
    write(tmp_path / "images/cats/0.png", good_image(1))
    write(tmp_path / "images/cats/1.png", good_image(2))
    write(tmp_path / "images/dogs/a.jpg", b"")
    write(tmp_path / "images/dogs/b.png", b"GIF89a")
    out = tmp_path / "data/prepared/pets"
    with pytest.raises(UserError) as exc:
        prepare("pets", folder_dataset(tmp_path / "images"), 0, out, progress=False)
    assert "datasets.pets: class(es) ['dogs'] have no usable image (2 file(s) skipped" in str(exc.value)
    assert not out.exists()
    assert list((tmp_path / "data/prepared").iterdir()) == []  # not even the scratch folder


def test_folder_source_reads_with_read_image(tmp_path):
    """prepare and predict share one reading path: the source's images are read_image's output."""
    messy_folder(tmp_path / "images")
    from pipeline.data.prepare import folder_source

    ds = folder_dataset(tmp_path / "images", resize="pad")
    source = folder_source(ds)
    k = source.labels.index(1)
    path = tmp_path / "images" / source.describe(k)
    np.testing.assert_array_equal(source.load(k), folder.read_image(path.read_bytes(), 8, 3, "pad"))

"""Augmentation from params: checked against albumentations, seeded, and shape-preserving."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import augment
from pipeline.errors import UserError
from pipeline.params import Augment, Transform
from tests.conftest import entry


def images(n: int, channels: int = 1, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


NOISY = [
    Transform(name="GaussNoise", p=1.0, args={"std_range": [0.05, 0.2]}),
    Transform(name="RandomBrightnessContrast", p=0.5),
]


def run_copies(spec: Augment, x: np.ndarray, seed: int, tmp_path, workers: int = 1, masks=None, chunk=None):
    """The augmented copies (and their masks) that augment_split writes after the originals."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    labels = np.zeros(len(x), int) if masks is None else masks
    aug_x, aug_y = augment.augment_split(
        spec,
        "ds",
        x,
        labels,
        seed,
        out,
        workers=workers,
        progress=False,
        masks=masks is not None,
        chunk=chunk,
    )
    n = len(x)
    return np.asarray(aug_x[n:]), None if masks is None else np.asarray(aug_y[n:])


def test_transform_names_are_albumentations_single_transforms():
    names = augment.transform_names()
    assert {"GaussNoise", "HorizontalFlip", "RandomBrightnessContrast", "Affine"} <= set(names)
    assert not {"OneOf", "Compose", "BasicTransform", "DualTransform", "NoOp"} & set(names)


def test_unknown_transform_gets_the_closest_name():
    with pytest.raises(UserError) as exc:
        augment.build_transform(Transform(name="HorizontalFlp", p=0.5), "augment.ds.transforms[2]")
    msg = str(exc.value)
    assert msg.startswith("augment.ds.transforms[2].name: unknown transform 'HorizontalFlp'; valid: ")
    assert "GaussNoise" in msg and msg.endswith("(closest: HorizontalFlip)")


def test_unknown_argument_names_the_transform_and_the_argument():
    with pytest.raises(UserError) as exc:
        augment.build_transform(
            Transform(name="Affine", p=0.5, args={"rotat": 10}), "augment.ds.transforms[0]"
        )
    msg = str(exc.value)
    assert msg.startswith("augment.ds.transforms[0].args.rotat: Affine takes no argument 'rotat'; valid: ")
    assert msg.endswith("(closest: rotate)")


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        (
            Transform(name="GaussNoise", p=0.5, args={"std_range": [0.5, 0.1]}),
            "augment.ds.transforms[0].args.std_range: invalid for GaussNoise: "
            "First value should be less than the second value",
        ),
        (
            Transform(name="RandomBrightnessContrast", p=0.5, args={"brightness_limit": "bright"}),
            "augment.ds.transforms[0].args.brightness_limit: invalid for RandomBrightnessContrast: ",
        ),
    ],
)
def test_bad_argument_value_names_the_transform_and_the_argument(transform, expected):
    with pytest.raises(UserError) as exc:
        augment.build_transform(transform, "augment.ds.transforms[0]")
    assert str(exc.value).startswith(expected)
    assert "\n" not in str(exc.value) and "errors.pydantic.dev" not in str(exc.value)


def test_same_seed_same_bytes_whatever_the_workers_and_chunking(tmp_path):
    n = 70
    x = images(n)
    spec = entry("augment", "shapes", copies=2, transforms=NOISY)
    one, _ = run_copies(spec, x, 3, tmp_path, workers=1)
    two, _ = run_copies(spec, x, 3, tmp_path, workers=2, chunk=augment.MIN_CHUNK)  # 9 tasks, 2 processes
    odd, _ = run_copies(spec, x, 3, tmp_path, workers=1, chunk=7)
    assert one.shape == (2 * n, 8, 8, 1)
    assert one.tobytes() == two.tobytes() == odd.tobytes()
    other, _ = run_copies(spec, x, 4, tmp_path)
    assert not np.array_equal(one, other)
    assert not np.array_equal(one[:n], one[n:])  # each copy differs


def test_masks_same_bytes_whatever_the_workers(tmp_path):
    x = images(40)
    m = (images(40) > 128).astype(np.uint8)[..., 0]
    spec = entry(
        "augment",
        "shapes",
        copies=1,
        transforms=[Transform(name="Affine", p=1.0, args={"rotate": [-30, 30]})],
    )
    one = run_copies(spec, x, 5, tmp_path, workers=1, masks=m)
    two = run_copies(spec, x, 5, tmp_path, workers=2, masks=m, chunk=augment.MIN_CHUNK)
    assert one[0].tobytes() == two[0].tobytes() and one[1].tobytes() == two[1].tobytes()
    assert not np.array_equal(one[1], m)


@pytest.mark.parametrize("channels", [1, 3])
def test_copies_keep_shape_and_a_flip_is_exactly_a_flip(channels, tmp_path):
    x = images(5, channels)
    spec = entry("augment", "shapes", copies=1, transforms=[Transform(name="HorizontalFlip", p=1.0)])
    out, masks = run_copies(spec, x, 0, tmp_path)
    assert masks is None
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, x[:, :, ::-1])


def test_masks_move_with_their_images(tmp_path):
    x = images(3)
    m = (images(3) > 128).astype(np.uint8)[..., 0]
    spec = entry("augment", "shapes", copies=1, transforms=[Transform(name="VerticalFlip", p=1.0)])
    out, out_m = run_copies(spec, x, 0, tmp_path, masks=m)
    np.testing.assert_array_equal(out, x[:, ::-1])
    np.testing.assert_array_equal(out_m, m[:, ::-1])


def test_augment_split_writes_originals_then_each_copy(tmp_path):
    x, y = images(6), np.arange(6) % 2
    spec = entry("augment", "shapes", copies=3, transforms=NOISY)
    aug_x, aug_y = augment.augment_split(spec, "ds", x, y, seed=1, out_dir=tmp_path, progress=False)
    assert aug_x.shape == (24, 8, 8, 1)
    np.testing.assert_array_equal(aug_x[:6], x)
    np.testing.assert_array_equal(aug_y, np.tile(y, 4))
    np.testing.assert_array_equal(np.load(tmp_path / "train_x.npy"), aug_x)
    np.testing.assert_array_equal(np.load(tmp_path / "train_y.npy"), aug_y)
    assert not np.array_equal(aug_x[6:12], x)


def test_no_copies_writes_the_originals(tmp_path):
    x, y = images(4, 3), np.zeros(4, int)
    aug_x, aug_y = augment.augment_split(
        entry("augment", "shapes", copies=0, transforms=[]), "ds", x, y, 0, tmp_path, progress=False
    )
    np.testing.assert_array_equal(aug_x, x)
    assert aug_y.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "transform",
    [
        Transform(name="RandomCrop", p=1.0, args={"height": 4, "width": 4}),
        Transform(name="ToFloat", p=1.0),
        Transform(name="ToRGB", p=1.0),
    ],
    ids=["crop-changes-size", "float-changes-dtype", "rgb-changes-channels"],
)
def test_transforms_that_change_size_or_dtype_are_user_errors(tmp_path, transform):
    spec = entry("augment", "shapes", copies=1, transforms=[transform])
    with pytest.raises(UserError, match=r"augment\.ds\.transforms: they turn a \(8, 8, 1\) uint8 image into"):
        augment.augment_split(spec, "ds", images(3), np.zeros(3, int), 0, tmp_path, progress=False)

"""Augmentation from params: checked against albumentations, seeded, and shape-preserving."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import augment
from pipeline.errors import UserError
from pipeline.params import Augment, Transform


def images(n: int, channels: int = 1, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


NOISY = [
    Transform(name="GaussNoise", p=1.0, args={"std_range": [0.05, 0.2]}),
    Transform(name="RandomBrightnessContrast", p=0.5),
]


def run_copies(spec: Augment, x: np.ndarray, seed: int, workers: int = 1, masks=None) -> list:
    return list(augment.augmented_copies(spec, "ds", x, seed, masks=masks, workers=workers, progress=False))


def test_transform_names_are_albumentations_single_transforms():
    names = augment.transform_names()
    assert {"GaussNoise", "HorizontalFlip", "RandomBrightnessContrast", "Affine"} <= set(names)
    assert not {"OneOf", "Compose", "BasicTransform", "DualTransform", "NoOp"} & set(names)


def test_unknown_transform_gets_the_closest_name():
    with pytest.raises(UserError) as exc:
        augment.build_transform(Transform(name="HorizontalFlp"), "augment.ds.transforms[2]")
    msg = str(exc.value)
    assert msg.startswith("augment.ds.transforms[2].name: unknown transform 'HorizontalFlp'; valid: ")
    assert "GaussNoise" in msg and msg.endswith("(closest: HorizontalFlip)")


def test_unknown_argument_names_the_transform_and_the_argument():
    with pytest.raises(UserError) as exc:
        augment.build_transform(Transform(name="Affine", args={"rotat": 10}), "augment.ds.transforms[0]")
    msg = str(exc.value)
    assert msg.startswith("augment.ds.transforms[0].args.rotat: Affine takes no argument 'rotat'; valid: ")
    assert msg.endswith("(closest: rotate)")


@pytest.mark.parametrize(
    ("transform", "expected"),
    [
        (
            Transform(name="GaussNoise", args={"std_range": [0.5, 0.1]}),
            "augment.ds.transforms[0].args.std_range: invalid for GaussNoise: "
            "First value should be less than the second value",
        ),
        (
            Transform(name="RandomBrightnessContrast", args={"brightness_limit": "bright"}),
            "augment.ds.transforms[0].args.brightness_limit: invalid for RandomBrightnessContrast: ",
        ),
    ],
)
def test_bad_argument_value_names_the_transform_and_the_argument(transform, expected):
    with pytest.raises(UserError) as exc:
        augment.build_transform(transform, "augment.ds.transforms[0]")
    assert str(exc.value).startswith(expected)
    assert "\n" not in str(exc.value) and "errors.pydantic.dev" not in str(exc.value)


def test_same_seed_same_copies_whatever_the_number_of_workers():
    x = images(augment.CHUNK + 40)  # two chunks per copy, so two processes share the work
    spec = Augment(copies=2, transforms=NOISY)
    one = run_copies(spec, x, seed=3, workers=1)
    two = run_copies(spec, x, seed=3, workers=2)
    assert len(one) == len(two) == 4
    for (a, _), (b, _) in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    other = run_copies(spec, x, seed=4)
    assert not np.array_equal(one[0][0], other[0][0])
    assert not np.array_equal(one[0][0], one[2][0][: len(one[0][0])])  # each copy differs


@pytest.mark.parametrize("channels", [1, 3])
def test_copies_keep_shape_and_a_flip_is_exactly_a_flip(channels):
    x = images(5, channels)
    spec = Augment(copies=1, transforms=[Transform(name="HorizontalFlip", p=1.0)])
    [(out, masks)] = run_copies(spec, x, seed=0)
    assert masks is None
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, x[:, :, ::-1])


def test_masks_move_with_their_images():
    x = images(3)
    m = (images(3) > 128).astype(np.uint8)
    spec = Augment(copies=1, transforms=[Transform(name="VerticalFlip", p=1.0)])
    [(out, out_m)] = run_copies(spec, x, seed=0, masks=m)
    np.testing.assert_array_equal(out, x[:, ::-1])
    np.testing.assert_array_equal(out_m, m[:, ::-1])


def test_augment_split_writes_originals_then_each_copy(tmp_path):
    x, y = images(6), np.arange(6) % 2
    spec = Augment(copies=3, transforms=NOISY)
    aug_x, aug_y = augment.augment_split(spec, "ds", x, y, seed=1, out_dir=tmp_path, progress=False)
    assert aug_x.shape == (24, 8, 8, 1)
    np.testing.assert_array_equal(aug_x[:6], x)
    np.testing.assert_array_equal(aug_y, np.tile(y, 4))
    np.testing.assert_array_equal(np.load(tmp_path / "train_x.npy"), aug_x)
    np.testing.assert_array_equal(np.load(tmp_path / "train_y.npy"), aug_y)
    assert not np.array_equal(aug_x[6:12], x)


def test_no_copies_writes_the_originals(tmp_path):
    x, y = images(4, 3), np.zeros(4, int)
    aug_x, aug_y = augment.augment_split(Augment(copies=0), "ds", x, y, 0, tmp_path, progress=False)
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
    spec = Augment(copies=1, transforms=[transform])
    with pytest.raises(UserError, match=r"augment\.ds\.transforms: they turn a \(8, 8, 1\) uint8 image into"):
        augment.augment_split(spec, "ds", images(3), np.zeros(3, int), 0, tmp_path, progress=False)

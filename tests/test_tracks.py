"""The tracks source (CCD frames with particle tracks), its prepared arrays, and mask-aware augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from pipeline.data import augment, tracks
from pipeline.data.arrays import load_split
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.params import TracksDataset, Transform, parse
from tests.conftest import entry, project_params

EIGHT = np.ones((3, 3), bool)


def dataset(**kw) -> TracksDataset:
    return entry("datasets", "tracks32_clean" if kw.get("render") == "clean" else "tracks", **kw)


def test_frames_depend_only_on_seed_and_index():
    ds = dataset(image_size=32)
    a_image, a_mask = tracks.render(7, 3, ds)
    tracks.render(7, 4, ds)  # drawing another frame in between changes nothing
    b_image, b_mask = tracks.render(7, 3, ds)
    assert np.array_equal(a_image, b_image) and np.array_equal(a_mask, b_mask)
    assert a_image.dtype == np.uint8 and a_mask.dtype == np.uint8 and a_image.shape == (32, 32)
    assert not np.array_equal(a_image, tracks.render(8, 3, ds)[0])
    assert not np.array_equal(a_image, tracks.render(7, 5, ds)[0])


def test_every_planned_track_is_one_component_of_its_class():
    ds = dataset()
    for index in range(40):
        _, mask = tracks.render(1, index, ds)
        assert set(np.unique(mask)) <= {0, 1, 2, 3}
        found = tuple(ndimage.label(mask == c, EIGHT)[1] for c in (tracks.MUON, tracks.ALPHA, tracks.BETA))
        assert found == tracks.plan(1, index, ds), f"frame {index}"


def test_track_kinds_look_as_physics_says():
    """Alphas brightest, muons medium, betas faint but well above the noise; hot pixels are background."""
    ds = dataset()
    images, masks = zip(*(tracks.render(2, i, ds) for i in range(60)), strict=True)
    images, masks = np.stack(images).astype(float), np.stack(masks)
    # The brightest pixel of each track, typical per kind (an alpha's rim is faint, its core is not).
    peak = {
        c: np.median(
            [
                ndimage.maximum(im, *ndimage.label(m == c, EIGHT))
                for im, m in zip(images, masks, strict=True)
                if (m == c).any()
            ]
        )
        for c in (1, 2, 3)
    }
    assert peak[tracks.ALPHA] > 200 > peak[tracks.MUON] > 2 * peak[tracks.BETA]
    beta = np.median(images[masks == tracks.BETA])
    noise = images[masks == 0]
    assert beta - np.median(noise) > 5 * ds.read_noise
    assert abs(np.median(noise) - ds.bias - ds.dark_current) < 1.5
    assert (noise > 100).sum() >= 60 * ds.hot_pixels * 0.9  # hot pixels, labelled background
    # Shapes: alphas compact and wide, betas and muons one pixel thin, muons long.
    sizes = {
        c: [np.bincount(lab.ravel())[1:] for lab in (ndimage.label(m == c, EIGHT)[0] for m in masks)]
        for c in (1, 2, 3)
    }
    mean_size = {c: np.concatenate(v).mean() for c, v in sizes.items()}
    assert mean_size[tracks.MUON] > ds.image_size / 3
    assert 10 < mean_size[tracks.ALPHA] < 80
    assert ds.beta_length[0] <= mean_size[tracks.BETA] <= ds.beta_length[1] + 1


def test_track_counts_and_intensities_come_from_params():
    ds = dataset(muons=(0, 0), alphas=(0, 0), betas=(3, 3), beta_intensity=60, hot_pixels=0, read_noise=1.0)
    image, mask = tracks.render(0, 0, ds)
    assert set(np.unique(mask)) == {0, 3}
    assert ndimage.label(mask == 3, EIGHT)[1] == 3
    assert 45 < np.median(image[mask == 3]) - ds.bias < 75
    assert image[mask == 0].max() < ds.bias + 10  # no hot pixels, little noise


def test_ranges_are_checked():
    raw = project_params()
    raw["datasets"]["t"] = {**raw["datasets"]["tracks"], "betas": [3, 1]}
    raw["augment"]["t"] = raw["augment"]["tracks"]
    with pytest.raises(UserError, match=r"datasets\.t.*betas \[min, max\] needs min <= max"):
        parse(raw)


def test_prepare_writes_masks_as_labels(tmp_path):
    ds = dataset(frames=40, image_size=32, beta_length=(4, 8), val_fraction=0.25, test_fraction=0.25)
    manifest = prepare("tracks", ds, 3, tmp_path / "out", progress=False)
    assert manifest["task"] == "segmentation"
    assert manifest["classes"] == ["background", "muon", "alpha", "beta"]
    assert manifest["background"] == "background"
    assert manifest["images"] == {"train": 20, "val": 10, "test": 10}
    x, y = load_split(tmp_path / "out", "test")
    assert x.shape == (10, 32, 32, 1) and y.shape == (10, 32, 32) and y.dtype == np.uint8
    assert manifest["counts"]["test"]["beta"] == int((y == 3).sum())  # pixels per class
    # Stratified by 'has a beta': each split holds its share of the beta-free frames.
    no_beta = sum(tracks.plan(3, k, ds)[2] == 0 for k in range(40))
    assert no_beta >= 4  # enough for the check to mean something
    for split in ("val", "test"):
        _, masks = load_split(tmp_path / "out", split)
        assert sum(not (m == 3).any() for m in masks) == round(no_beta * 0.25)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["task"] == "segmentation" and on_disk["shape"] == [32, 32, 1]


def _patterned(n: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Images with off-centre bright blocks and masks equal to their threshold, so any geometric
    transform applied to one but not the other breaks the equality."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 100, (n, size, size, 1)).astype(np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 6, 2)
        images[i, r : r + 6, c : c + 3] = 220
        images[i, 1, 2 + i % 5] = 240
    return images, (images[..., 0] > 128).astype(np.uint8)


def test_augmentation_moves_masks_with_images(tmp_path):
    images, masks = _patterned(12)
    spec = entry(
        "augment",
        "tracks",
        copies=2,
        transforms=[
            Transform(name="HorizontalFlip", p=1.0),
            Transform(name="RandomRotate90", p=1.0),
            Transform(name="Transpose", p=0.5),
        ],
    )
    x, y = augment.augment_split(spec, "t", images, masks, 5, tmp_path, progress=False, masks=True)
    assert x.shape == (36, 24, 24, 1) and y.shape == (36, 24, 24) and y.dtype == np.uint8
    assert np.array_equal(y[:12], masks)  # originals first
    assert not np.array_equal(x[12:24], images)  # the copies really were transformed
    assert np.array_equal(y, (np.asarray(x)[..., 0] > 128).astype(np.uint8))  # and the masks with them
    assert np.array_equal(np.load(tmp_path / "train_y.npy"), y)


def test_interpolating_transforms_keep_mask_values(tmp_path):
    """Rotation by an arbitrary angle blends image pixels but must not blend class ids."""
    images, masks = _patterned(8)
    masks = masks * 3  # ids 0 and 3: linear blending would create 1s and 2s
    spec = entry(
        "augment", "tracks", copies=1, transforms=[Transform(name="Rotate", p=1.0, args={"limit": [20, 40]})]
    )
    x, y = augment.augment_split(spec, "t", images, masks, 5, tmp_path, progress=False, masks=True)
    assert set(np.unique(y[8:])) <= {0, 3}
    agree = (y[8:] == 3) == (np.asarray(x[8:])[..., 0] > 128)
    assert agree.mean() > 0.97


def test_transforms_draw_independently(tmp_path):
    """Two transforms with the same p must not always fire together (albumentations seeds each alike)."""
    images = np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1).repeat(200, axis=0)
    spec = entry(
        "augment",
        "tracks",
        copies=1,
        transforms=[Transform(name="HorizontalFlip", p=0.5), Transform(name="VerticalFlip", p=0.5)],
    )
    x, _ = augment.augment_split(spec, "t", images, np.zeros(200, int), 3, tmp_path, progress=False)
    out = x[200:]
    seen = {
        (
            np.array_equal(o, images[0, :, ::-1]),
            np.array_equal(o, images[0, ::-1, :]),
            np.array_equal(o, images[0]),
        )
        for o in out
    }
    assert (True, False, False) in seen and (False, True, False) in seen  # one flip without the other
    assert (False, False, True) in seen  # and neither


def test_clean_render_has_no_sensor_effects_and_other_tracks():
    """The CycleGAN's clean domain: background exactly 0, and never the ccd frame's tracks (unpaired)."""
    ccd, clean = dataset(image_size=32), dataset(image_size=32, render="clean")
    same_masks = 0
    for index in range(10):
        image, mask = tracks.render(3, index, clean)
        assert not image[mask == 0].any()  # no bias, dark current, read noise or hot pixels
        ccd_image, ccd_mask = tracks.render(3, index, ccd)
        assert ccd_image[ccd_mask == 0].mean() > 5  # the ccd frame's pedestal and noise
        same_masks += np.array_equal(mask, ccd_mask)
    assert same_masks <= 1  # (two empty frames would match by chance)

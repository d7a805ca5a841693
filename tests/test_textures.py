"""The textures source: tiles that share no pixel (so no split shares one), lit within the stated
ranges, reproducible from the seed, and params.yaml's check of how many tiles a photo has."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import textures
from pipeline.data.prepare import prepare, textures_source
from pipeline.errors import UserError
from pipeline.params import TEXTURE_PHOTOS, parse
from tests.conftest import entry, project_params


def test_the_stated_photo_sizes_are_the_shipped_ones():
    # params.yaml's check counts tiles from these sizes without reading the photos.
    for name, shape in TEXTURE_PHOTOS.items():
        assert textures.photo(name).shape == shape, name


def test_every_image_is_its_own_tile_of_its_class_photo():
    ds = entry("datasets", "textures", per_class=60, image_size=32)
    plan = textures.plan(list(ds.classes), ds.per_class, ds.image_size, seed=3)
    assert len(plan) == 60 * len(ds.classes)
    for label in range(len(ds.classes)):
        corners = [corner for lab, corner in plan if lab == label]
        assert len(set(corners)) == 60  # drawn without replacement: no tile twice
        assert all(r % 32 == 0 and c % 32 == 0 for r, c in corners)  # on the grid: tiles never overlap
    assert plan != textures.plan(list(ds.classes), ds.per_class, ds.image_size, seed=4)


def test_a_tile_is_its_photo_turned_mirrored_and_lit_within_the_ranges():
    brick = textures.photo("brick")
    tile = brick[64:96, 32:64].astype(np.float64)
    for seed in range(20):
        out = textures.render("brick", (64, 32), 32, seed, brightness=40.0, contrast=0.4).astype(np.float64)
        shift = out.mean() - tile.mean()
        assert abs(shift) <= 40.0 + 1.0  # clipping only pulls towards the range
        scale = out.std() / tile.std()
        assert 0.6 - 0.05 <= scale <= 1.4 + 0.05
        # Undo the lighting: one of the eight turns and mirrors of the tile comes back.
        normalised = (out - out.mean()) / out.std()
        views = [np.rot90(t, k) for t in (tile, tile[:, ::-1]) for k in range(4)]
        best = max(np.corrcoef(normalised.ravel(), v.ravel())[0, 1] for v in views)
        assert best > 0.97
    unlit = textures.render("brick", (64, 32), 32, 0, brightness=0.0, contrast=0.0)
    assert sorted(unlit.ravel().tolist()) == sorted(brick[64:96, 32:64].ravel().tolist())


def test_the_source_reproduces_byte_for_byte_from_the_seed(tmp_path):
    ds = entry("datasets", "textures", per_class=10, image_size=16)
    a, b, other = (textures_source(ds, s) for s in (7, 7, 8))
    assert a.labels == b.labels and a.hasher.hexdigest() == b.hasher.hexdigest()
    assert all(np.array_equal(a.load(k), b.load(k)) for k in range(len(a.labels)))
    assert a.hasher.hexdigest() != other.hasher.hexdigest()
    manifest = prepare("textures", ds, 7, tmp_path / "t", progress=False)
    assert manifest["classes"] == list(ds.classes)
    assert sum(manifest["images"].values()) == 10 * len(ds.classes)
    x = np.load(tmp_path / "t" / "train_x.npy")
    assert x.shape[1:] == (16, 16, 1) and x.dtype == np.uint8


def test_more_tiles_than_a_photo_has_is_one_line_naming_the_key():
    raw = project_params()
    raw["datasets"]["textures"].update(per_class=300, image_size=32)
    with pytest.raises(UserError) as exc:
        parse(raw)
    assert str(exc.value) == (
        "params.yaml: datasets.textures.per_class: 300: the brick photo has 256 tiles of 32 px; "
        "valid: 4..256 (or a smaller image_size)"
    )
    raw["datasets"]["textures"].update(classes=["brick", "carpet"], per_class=10)
    with pytest.raises(UserError) as exc:
        parse(raw)
    assert "datasets.textures.classes" in str(exc.value) and "\n" not in str(exc.value)

"""Online augmentation: fresh views each epoch, seeded by (seed, epoch, view, image), masks included."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data import augment
from pipeline.params import Transform
from pipeline.training import ArrayBatches
from tests.conftest import entry

NOISY = [
    Transform(name="GaussNoise", p=1.0, args={"std_range": [0.05, 0.2]}),
    Transform(name="RandomBrightnessContrast", p=0.5),
]
GEOMETRIC = [
    Transform(name="HorizontalFlip", p=0.5),
    Transform(name="RandomRotate90", p=0.5),
    Transform(name="Affine", p=1.0, args={"translate_px": [-3, 3], "border_mode": 0}),
]


def recipe(tmp_path, spec, n=40, size=12, masks=False):
    """An augment stage's online output for a random training split; returns its folder."""
    rng = np.random.default_rng(1)
    data, out = tmp_path / "prepared", tmp_path / "augmented"
    data.mkdir()
    out.mkdir()
    x = rng.integers(0, 100, (n, size, size, 1), dtype=np.uint8)
    y = rng.integers(0, 3, n)
    if masks:  # a bright square per image and its mask: where the square goes, the mask must go too
        y = np.zeros((n, size, size), np.uint8)
        for i in range(n):
            r, c = rng.integers(0, size - 4, 2)
            x[i, r : r + 4, c : c + 3] = 250
            y[i, r : r + 4, c : c + 3] = 1
    np.save(data / "train_x.npy", x)
    np.save(data / "train_y.npy", y)
    augment.write_online(spec, "ds", 7, data, out, masks)
    return out


def epochs_of(batches: ArrayBatches, epochs: int) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Every batch of `epochs` epochs, as a training loop reads them."""
    seen = []
    for _ in range(epochs):
        batches.on_epoch_begin()
        seen.append([batches[i] for i in range(len(batches))])
        batches.on_epoch_end()
    return seen


def same(a, b) -> bool:
    return all(
        np.array_equal(xa, xb) and np.array_equal(ya, yb)
        for ea, eb in zip(a, b, strict=True)
        for (xa, ya), (xb, yb) in zip(ea, eb, strict=True)
    )


def test_online_writes_the_split_as_prepared_and_no_copies(tmp_path):
    spec = entry("augment", "shapes", mode="online", copies=2, transforms=NOISY)
    out = recipe(tmp_path, spec)
    for name in ("train_x.npy", "train_y.npy"):
        assert (out / name).read_bytes() == (tmp_path / "prepared" / name).read_bytes()
    assert json.loads((out / augment.ONLINE_FILE).read_text())["augment"]["copies"] == 2
    online = augment.online_for(out, workers=1)
    assert online.rows == 3 * 40  # each epoch: the originals and two fresh views of each


def test_online_batches_are_byte_identical_whatever_the_workers_and_fresh_each_epoch(tmp_path):
    spec = entry("augment", "shapes", mode="online", copies=1, transforms=NOISY)
    out = recipe(tmp_path, spec)
    x = np.load(out / "train_x.npy")
    runs = []
    for workers in (1, 2, 2):  # a rerun, and processes that draw batches ahead
        online = augment.online_for(out, workers)
        runs.append(epochs_of(ArrayBatches(*_split(out), 8, True, 7, 3, augment=online), 2))
        online.close()
    assert same(runs[0], runs[1]) and same(runs[1], runs[2])
    # Every row once per epoch: the originals as they are, the views drawn afresh each epoch.
    views = []
    for epoch in runs[0]:
        xs = np.concatenate([b[0] for b in epoch])
        originals = [row for row in xs if any(np.array_equal(row, o) for o in x)]
        assert len(xs) == 80 and len(originals) == 40
        views.append(sorted(row.tobytes() for row in xs if not any(np.array_equal(row, o) for o in x)))
    assert len(views[0]) == 40 and set(views[0]).isdisjoint(views[1])


def test_resumed_training_sees_the_batches_it_would_have_seen(tmp_path):
    spec = entry("augment", "shapes", mode="online", copies=1, transforms=NOISY)
    out = recipe(tmp_path, spec)
    straight = epochs_of(ArrayBatches(*_split(out), 8, True, 7, 3, augment=augment.online_for(out, 1)), 3)
    # A training killed after epoch 1 goes on at epoch 2 (train_model: train_data.start_at(state + 1)).
    resumed = ArrayBatches(*_split(out), 8, True, 7, 3, augment=augment.online_for(out, 2))
    resumed.start_at(2)
    assert same(straight[2:], epochs_of(resumed, 1))
    assert not same(straight[1:2], straight[2:])


def test_the_end_of_an_epoch_draws_the_next_epochs_first_views_ahead(tmp_path):
    """Workers draw the next epoch's first batches while this one ends, so its first step finds them."""
    spec = entry("augment", "shapes", mode="online", copies=1, transforms=NOISY)
    out = recipe(tmp_path, spec)
    online = augment.online_for(out, 2)
    batches = ArrayBatches(*_split(out), 8, True, 7, 3, augment=online)
    try:
        batches.on_epoch_begin()  # epoch 0
        batches[len(batches) - 1]
        first = np.sort(batches.order_of(1)[:8])
        assert (1, first.tobytes()) in online._pending
        future, j = online._pending[1, first.tobytes()]
        batches.on_epoch_end()
        batches.on_epoch_begin()  # epoch 1: its first batch is the one drawn ahead
        assert np.array_equal(batches[0][0], future.result()[j][0])
    finally:
        online.close()


def test_labels_follow_their_images(tmp_path):
    spec = entry("augment", "shapes", mode="online", copies=2, transforms=NOISY)
    out = recipe(tmp_path, spec)
    x, y = _split(out)
    batches = ArrayBatches(x, y, 16, True, 7, 3, augment=augment.online_for(out, 1))
    for i in range(len(batches)):
        rows = batches._batch_rows(i)
        images, labels = batches[i]
        assert np.array_equal(labels.argmax(axis=1), y[rows % len(x)])
        plain = rows < len(x)
        assert np.array_equal(images[plain], x[rows[plain]])


@pytest.mark.parametrize("workers", [1, 2])
def test_masks_move_with_their_images(tmp_path, workers):
    spec = entry("augment", "tracks", mode="online", copies=3, transforms=GEOMETRIC)
    out = recipe(tmp_path, spec, masks=True)
    online = augment.online_for(out, workers)
    batches = ArrayBatches(*_split(out), 16, True, 7, 2, sparse=True, augment=online)
    moved = 0
    for epoch in epochs_of(batches, 2):
        for images, masks in epoch:
            assert np.array_equal(masks == 1, images[..., 0] > 200)
            moved += int(np.sum(masks))
    online.close()
    assert moved > 0


# The online pipeline's byte-identical rerun (two workers): tests/test_e2e_classification.py's forced rerun.


def _split(folder):
    return np.load(folder / "train_x.npy", mmap_mode="r"), np.load(folder / "train_y.npy")

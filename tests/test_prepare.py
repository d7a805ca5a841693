"""prepare: stratified splits, shapes datasets on disk, streaming, and no output after a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data.arrays import SPLITS
from pipeline.data.prepare import prepare, read_rows
from pipeline.data.split import stratified_split
from pipeline.params import ShapesDataset
from tests.conftest import ROOT, entry, only, project_params, tiny


def test_split_proportions_per_class():
    labels = [0] * 100 + [1] * 40 + [2] * 7
    parts = stratified_split(labels, val_fraction=0.2, test_fraction=0.1, seed=0)
    by_split = {s: Counter(np.asarray(labels)[idx].tolist()) for s, idx in parts.items()}
    assert by_split["test"] == {0: 10, 1: 4, 2: 1}  # round(n * 0.1)
    assert by_split["val"] == {0: 20, 1: 8, 2: 1}  # round(n * 0.2)
    assert by_split["train"] == {0: 70, 1: 28, 2: 5}
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything.tolist()) == list(range(len(labels)))  # disjoint and complete


def test_split_is_seeded_and_interleaves_classes():
    labels = [0] * 50 + [1] * 50
    a = stratified_split(labels, 0.2, 0.2, seed=1)
    b = stratified_split(labels, 0.2, 0.2, seed=1)
    c = stratified_split(labels, 0.2, 0.2, seed=2)
    for s in SPLITS:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["train"], c["train"])
    train_labels = np.asarray(labels)[a["train"]]
    assert (train_labels[:30] == 0).any() and (train_labels[:30] == 1).any()


def shapes_ds(**kw) -> ShapesDataset:
    base = {"source": "shapes", "classes": ["angle", "line", "ring"], "per_class": 10, "image_size": 16}
    return entry("datasets", "shapes", **{**base, **kw})


def test_prepare_shapes_writes_arrays_and_manifest(tmp_path):
    out = tmp_path / "shapes"
    manifest = prepare("shapes", shapes_ds(val_fraction=0.2, test_fraction=0.2), 5, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        # x, y, and for the shapes source where each figure is drawn (Grad-CAM's pointing measure)
        ["manifest.json"] + [f"{s}_{a}.npy" for s in SPLITS for a in ("x", "y", "figure")]
    )
    assert manifest["classes"] == ["angle", "line", "ring"]
    assert manifest["shape"] == [16, 16, 1] and manifest["skipped"] == []
    assert manifest["counts"] == {
        "train": {"angle": 6, "line": 6, "ring": 6},
        "val": {"angle": 2, "line": 2, "ring": 2},
        "test": {"angle": 2, "line": 2, "ring": 2},
    }
    for s in SPLITS:
        x, y = np.load(out / f"{s}_x.npy"), np.load(out / f"{s}_y.npy")
        assert x.dtype == np.uint8 and x.shape == (len(y), 16, 16, 1)
        assert Counter(y.tolist()) == {i: n for i, n in enumerate(manifest["counts"][s].values())}


def test_prepare_is_reproducible_and_the_hash_follows_the_params(tmp_path):
    ds = shapes_ds()
    first = prepare("s", ds, 5, tmp_path / "a", progress=False)
    second = prepare("s", ds, 5, tmp_path / "b", progress=False)
    assert first["source_hash"] == second["source_hash"]
    for name in ("train_x.npy", "test_y.npy", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert prepare("s", ds, 6, tmp_path / "c", progress=False)["source_hash"] != first["source_hash"]
    other = shapes_ds(noise=0.1)
    assert prepare("s", other, 5, tmp_path / "d", progress=False)["source_hash"] != first["source_hash"]


def test_binary_task_is_balanced(tmp_path):
    ds = shapes_ds(classes=["angle", "line", "cross", "ring", "noise"], positive="angle", per_class=12)
    manifest = prepare("avr", ds, 0, tmp_path / "avr", progress=False)
    assert manifest["classes"] == ["not_angle", "angle"]  # label 1 is the positive class
    totals = Counter()
    for s in SPLITS:
        totals.update(manifest["counts"][s])
    assert totals == {"angle": 12, "not_angle": 12}  # 4 other classes share 12: 3 each


def peak_bytes(ds: ShapesDataset, out: Path) -> int:
    tracemalloc.start()
    prepare("s", ds, 0, out, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_prepare_streams_memory_does_not_grow_with_the_image_count(tmp_path):
    image_bytes = 64 * 64
    peak_bytes(shapes_ds(per_class=4, image_size=64), tmp_path / "warm-up")  # one-time imports and caches
    small = peak_bytes(shapes_ds(per_class=20, image_size=64), tmp_path / "small")
    large = peak_bytes(shapes_ds(per_class=140, image_size=64), tmp_path / "large")
    # Holding the 360 extra images would add 1.5 MB; only bookkeeping per image may grow.
    assert large - small < 360 * image_bytes / 4, (small, large)


def test_failed_prepare_stage_leaves_no_output(tmp_path):
    """The real stage on a folder whose 'dogs' are all unusable: exit 2, one line, no output folder."""
    for i in range(3):
        (tmp_path / "images/cats").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"images/cats/{i}.pgm").write_bytes(b"P5 2 2 255\n" + bytes([i, 50, 100, 200]))
        (tmp_path / "images/dogs").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"images/dogs/{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    params = only(tiny(project_params()), "mlp")
    params["datasets"] = {"pets": entry("datasets", "folder", path="images", image_size=8).model_dump()}
    params["augment"] = {"pets": entry("augment", "shapes", copies=0, transforms=[]).model_dump()}
    params["models"] = {"m": entry("models", "mlp", dataset="pets").model_dump()}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.stages.prepare", "pets", "--out", "data/prepared/pets"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [proc.stderr.strip().splitlines()[-1]]  # one message, after the progress bar
    assert errors[0].startswith(
        "error: datasets.pets: class(es) ['dogs'] have no usable image (3 file(s) skipped, "
        "e.g. dogs/0.jpg: corrupt image"
    )
    assert list((tmp_path / "data/prepared").iterdir()) == []


@pytest.mark.parametrize("policy", ["stretch", "pad", "crop"])
def test_prepare_folder_under_each_resize_policy(tmp_path, policy):
    from PIL import Image

    for cls, value in (("a", 60), ("b", 250)):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (12, 6), value).save(tmp_path / "img" / cls / f"{i}.png")
    ds = entry("datasets", "folder", path=str(tmp_path / "img"), image_size=12, channels=1, resize=policy)
    prepare("f", ds, 0, tmp_path / "out", progress=False)
    x = np.concatenate([np.load(tmp_path / "out" / f"{s}_x.npy") for s in SPLITS])
    y = np.concatenate([np.load(tmp_path / "out" / f"{s}_y.npy") for s in SPLITS])
    if policy == "pad":  # 12x6 keeps its aspect: rows 0-2 and 9-11 are black
        assert (x[:, [0, 1, 2, 9, 10, 11]] == 0).all()
        assert set(np.unique(x[y == 1][:, 3:9])) == {250}
    else:
        assert set(np.unique(x[y == 0])) == {60} and set(np.unique(x[y == 1])) == {250}


def test_read_rows_gives_the_rows_asked_for_in_their_order(tmp_path):
    x = np.arange(7 * 3 * 2, dtype=np.uint8).reshape(7, 3, 2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "masks.npy", (x > 20).astype(np.int64))  # another dtype
    for name, array in (("x.npy", x), ("masks.npy", (x > 20).astype(np.int64))):
        rows = np.stack(list(read_rows(tmp_path / name, [5, 0, 6, 0])))
        assert rows.dtype == array.dtype and np.array_equal(rows, array[[5, 0, 6, 0]])

"""The predict command on tiny trained models: CSV columns, the folder source's reading, user errors."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from pipeline import training
from pipeline.data.arrays import load_split
from pipeline.data.folder import read_image
from pipeline.data.prepare import prepare
from pipeline.errors import UserError
from pipeline.models.registry import build
from pipeline.params import ShapesDataset
from pipeline.tools import predict as P
from tests.conftest import ROOT, entry


def train_tiny(folder: Path, ds: ShapesDataset, architecture: str, **hyper) -> Path:
    """Prepare a tiny shapes dataset into folder/prepared and fit one epoch; returns the model file."""
    manifest = prepare("tiny", ds, 0, folder / "prepared", progress=False)
    x, y = load_split(folder / "prepared", "train")
    n = len(manifest["classes"])
    keras.utils.set_random_seed(0)
    model = build(architecture, tuple(manifest["shape"]), n, **hyper)
    p = entry("models", "cnn", dataset="tiny", lr=0.01)
    training.compile_model(model, p, n, 1, jit=False)
    model.fit(training.ArrayBatches(x, y, 16, True, 0, n), epochs=1, verbose=0)
    training.save_model(model, folder / "model.keras")
    return folder / "model.keras"


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("multi")
    ds = entry(
        "datasets",
        "shapes",
        classes=["angle", "line", "ring"],
        per_class=8,
        image_size=16,
        test_fraction=0.25,
    )
    train_tiny(folder, ds, "cnn", filters=[4])
    # The test split as PNG files in a folder, with a subfolder, a non-image and a hidden file.
    x, _ = load_split(folder / "prepared", "test")
    for i, img in enumerate(x):
        sub = folder / "images" / ("b" if i % 2 else "a")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(img)[..., 0]).save(sub / f"{i:02d}.png")
    (folder / "images" / "README.txt").write_text("not an image, and not one that is looked for")
    (folder / "images" / ".cache").mkdir()
    (folder / "images" / ".cache" / "x.png").write_bytes(b"hidden")
    return folder


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("binary")
    ds = entry("datasets", "angle_vs_rest", per_class=8, image_size=16)
    train_tiny(folder, ds, "filter_net", kernel_size=3)
    return folder


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_has_file_prediction_and_a_probability_per_class(multi, tmp_path):
    out = tmp_path / "preds.csv"
    n = P.predict(multi / "model.keras", multi / "prepared", [multi / "images"], out, progress=False)
    rows = read_csv(out)
    assert n == len(rows) == 6
    assert list(rows[0]) == ["file", "predicted", "p_angle", "p_line", "p_ring"]
    files = [Path(r["file"]) for r in rows]
    assert files == sorted((multi / "images").rglob("[0-9]*.png"))  # sorted, no README, no hidden

    model = keras.saving.load_model(multi / "model.keras")
    x = np.stack([read_image(f.read_bytes(), 16, 1, "stretch") for f in files])
    expected = training.predict_proba(model, x)
    got = np.array([[float(r[f"p_{c}"]) for c in ("angle", "line", "ring")] for r in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert [r["predicted"] for r in rows] == [["angle", "line", "ring"][i] for i in expected.argmax(axis=1)]


def test_images_are_fitted_to_the_model_input_by_the_resize_policy(multi, tmp_path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = (255, 255, 255)
    path = tmp_path / "wide.jpg"
    Image.fromarray(wide).save(path, quality=95)
    model = keras.saving.load_model(multi / "model.keras")
    for policy in ("stretch", "pad", "crop"):
        out = tmp_path / f"{policy}.csv"
        P.predict(multi / "model.keras", multi / "prepared", [path], out, resize=policy, progress=False)
        expected = training.predict_proba(model, read_image(path.read_bytes(), 16, 1, policy)[None])[0]
        got = [float(read_csv(out)[0][f"p_{c}"]) for c in ("angle", "line", "ring")]
        np.testing.assert_allclose(got, expected, atol=2e-6)


def test_binary_model_gets_both_class_columns(binary, tmp_path):
    img = tmp_path / "one.png"
    Image.new("L", (16, 16), 30).save(img)
    out = tmp_path / "p.csv"
    P.predict(binary / "model.keras", binary / "prepared", [img], out, progress=False)
    [row] = read_csv(out)
    assert list(row) == ["file", "predicted", "p_not_angle", "p_angle"]
    assert float(row["p_not_angle"]) + float(row["p_angle"]) == pytest.approx(1.0, abs=1e-5)


def test_stdout_when_no_out_file(multi, capsys):
    P.predict(multi / "model.keras", multi / "prepared", [multi / "images" / "a"], None, progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file,predicted,p_angle,p_line,p_ring" and len(lines) == 4


def expect_error(match: str, *args, **kw) -> None:
    with pytest.raises(UserError, match=match) as exc:
        P.predict(*args, progress=False, **kw)
    assert "\n" not in str(exc.value)


def test_user_errors_leave_no_csv(multi, binary, tmp_path):
    out = tmp_path / "preds.csv"
    model, classes, images = multi / "model.keras", multi / "prepared", [multi / "images"]
    expect_error(r"nope\.keras: model file not found", tmp_path / "nope.keras", classes, images, out)
    (tmp_path / "fake.keras").write_bytes(b"PK not a zip")
    expect_error(r"fake\.keras: not a Keras model file", tmp_path / "fake.keras", classes, images, out)
    (tmp_path / "empty").mkdir()
    expect_error(r"empty: no images found", model, classes, [tmp_path / "empty"], out)
    expect_error(r"ghost\.png: no such file or folder", model, classes, [tmp_path / "ghost.png"], out)
    expect_error(r"manifest\.json: missing", model, tmp_path / "empty", images, out)
    expect_error(r"3 classes, but .*model\.keras predicts 2", binary / "model.keras", classes, images, out)

    bad = tmp_path / "bad"
    bad.mkdir()
    Image.new("L", (16, 16)).save(bad / "a.png")
    (bad / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    expect_error(r"b\.png: cannot use this image: corrupt image", model, classes, [bad], out)
    expect_error(
        r"README\.txt: cannot use this image", model, classes, [multi / "images" / "README.txt"], out
    )
    assert not out.exists() and not (tmp_path / "preds.csv.partial").exists()


def run_predict(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tools.predict", *args],
        cwd=ROOT,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_with_a_missing_model_exits_with_one_line(tmp_path):
    proc = run_predict("--model", str(tmp_path / "m.keras"), "--classes-from", str(tmp_path), str(ROOT))
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'm.keras'}: model file not found (dvc repro trains")


@pytest.mark.slow
def test_command_writes_the_csv(multi, tmp_path):
    out = tmp_path / "cli.csv"
    proc = run_predict(
        "--model", str(multi / "model.keras"), "--classes-from", str(multi / "prepared"), "--out", str(out),
        str(multi / "images" / "b"), str(multi / "images" / "a" / "00.png"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"predict: 4 image(s) -> {out}" in proc.stdout
    files = [r["file"] for r in read_csv(out)]
    assert files == [str(multi / "images" / "b" / f"{i:02d}.png") for i in (1, 3, 5)] + [
        str(multi / "images" / "a" / "00.png")
    ]

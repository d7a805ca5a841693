"""End to end on one tiny classification pipeline: `dvc repro` in a temporary git repository, read
back through DVC, MLflow and Chromium; then what a user does next: rerun, edit, force, push (a queued
sweep is tests/test_compare_loop.py's, mistakes in params.yaml tests/test_early_errors.py's).

The repository is tests/tiny_classification.py's, reproduced once for the three files (each `dvc repro`
of it means minutes of processes importing TensorFlow); every test leaves it as it found it, apart from
git commits.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from pipeline.data import augment
from tests.chromium import CHROMIUM, render_in_chromium
from tests.conftest import run
from tests.tiny_classification import DATASETS, MODELS

pytestmark = pytest.mark.slow


def per_key(stages) -> set[str]:
    """The foreach stages (name@key) among `stages`; the others (lecture, report) gather every model."""
    return {s for s in stages if "@" in s}


def weights(keras_file: Path) -> str:
    """Hash of the weights inside a .keras zip (its config and metadata may differ between savers)."""
    with zipfile.ZipFile(keras_file) as z:
        return hashlib.md5(z.read("model.weights.h5")).hexdigest()


def test_repro_runs_every_stage_and_writes_every_output(reproduced):
    repo = reproduced.repo
    stages = {
        *(f"{s}@{d}" for s in ("prepare", "augment") for d in DATASETS),
        *(f"{s}@{m}" for s in ("train", "evaluate") for m in MODELS),
    }
    ran = set(re.findall(r"Running stage '([^']+)'", reproduced.stdout))
    assert per_key(ran) == stages and {"import_weights", "lecture", "metrics", "report"} <= ran
    # Every output the lock file records exists, and the ones the issue names among them.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == ran
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert all((repo / path).exists() for path in outs), [p for p in outs if not (repo / p).exists()]
    expected = {
        "data/prepared/shapes",
        "data/augmented/shapes",
        "reports/datasets/shapes/augment_preview.png",
    }
    for m in MODELS:
        expected |= {
            f"data/models/{m}",
            f"reports/models/{m}/training_curves.png",
            f"reports/models/{m}/metrics.json",
        }
        expected |= {
            f"reports/models/{m}/{f}" for f in ("history.csv", "confusion.json", "confusion.png", "roc.png")
        }
    assert expected <= outs
    assert (repo / "data/models/cnn/model.keras").is_file()
    # Online augmentation: the split as prepared and the recipe the train stage draws from, no copies.
    prepared, augmented = repo / "data/prepared/shapes", repo / "data/augmented/shapes"
    assert (augmented / "train_x.npy").read_bytes() == (prepared / "train_x.npy").read_bytes()
    assert (augmented / augment.ONLINE_FILE).is_file()
    assert not list(repo.glob("data/**/*.partial")), "scratch folders must not outlive a stage"

    # The one DVC metrics file holds every model's metrics.json under its name (the metrics stage).
    shown = json.loads(reproduced.dvc("metrics", "show", "--json"))
    [files] = [rev["data"] for rev in shown.values()]  # one revision: the workspace
    assert list(files) == ["reports/metrics.json"]
    gathered = files["reports/metrics.json"]["data"]
    assert sorted(gathered) == sorted(MODELS)
    for m in MODELS:
        reported = json.loads((repo / f"reports/models/{m}/metrics.json").read_text())
        assert gathered[m] == reported and 0.0 <= reported["accuracy"] <= 1.0


def test_second_repro_runs_nothing(reproduced):
    # Bytecode Python writes beside the code (its bytes hold the source's mtime, so they differ per
    # clone) is no part of any stage's code dependency.
    cache = reproduced.repo / "pipeline" / "params" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "common.cpython-311.pyc").write_bytes(b"written by an interpreter")
    again = reproduced.dvc("repro")
    assert "Running stage" not in again
    assert "Data and pipelines are up to date." in again


def test_every_model_is_one_mlflow_run_holding_its_model(reproduced):
    repo, params = reproduced.repo, reproduced.params
    client = reproduced.client()
    experiment = client.get_experiment_by_name(params["tracking"]["experiment"])
    assert experiment.artifact_location == (repo / "mlartifacts").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(MODELS)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    for m, r in runs.items():
        dataset = params["models"][m]["dataset"]
        manifest = json.loads((repo / f"data/prepared/{dataset}/manifest.json").read_text())
        metrics = json.loads((repo / f"reports/models/{m}/metrics.json").read_text())
        history = client.get_metric_history(r.info.run_id, "val_loss")
        assert [h.step for h in history] == list(range(params["models"][m]["epochs"]))  # one per epoch
        assert {"loss", "accuracy", "val_accuracy"} <= set(r.data.metrics)
        assert r.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])  # evaluate, same run
        assert r.data.params["model.lr"] == str(params["models"][m]["lr"])
        assert r.data.params["dataset.per_class"] == "12"
        assert r.data.tags["git_commit"] == head and r.data.tags["dataset_hash"] == manifest["source_hash"]
        # The model is an MLflow logged model of this run; its weights are the ones DVC tracks.
        logged_model = client.get_logged_model(r.data.tags["convpipe.model_uri"].removeprefix("models:/"))
        assert logged_model.source_run_id == r.info.run_id
        logged_file = Path(urlparse(logged_model.artifact_location).path) / "data" / "model.keras"
        assert weights(logged_file) == weights(repo / f"data/models/{m}/model.keras")
        logged = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"metrics.json", "confusion.png", "history.csv", "pipeline"} <= logged
        assert {a.path for a in client.list_artifacts(r.info.run_id, "pipeline")} == {
            "pipeline/params.yaml",
            "pipeline/dvc.lock",
        }


def test_report_page_shows_every_model_and_renders(reproduced, tmp_path):
    from pipeline.tracking import file_md5

    repo = reproduced.repo
    text = (repo / "reports" / "index.html").read_text(encoding="utf-8")
    for name in MODELS:
        # How to find the model's MLflow run: its saved model's hash, stable across stores and clones.
        md5 = file_md5(repo / f"data/models/{name}/model.keras")
        assert re.search(rf'id="model-{name}".*?{md5}', text, re.S), f"no MLflow run filter: {name}"
    assert 'id="lecture"' in text and "feature_maps_1.png" in text and "filters.png" in text
    assert "confusion.png" in text and "training_curves.png" in text and "augment_preview.png" in text
    if CHROMIUM:
        images, loaded, broken = render_in_chromium(repo / "reports" / "index.html", tmp_path)
        assert images == len(re.findall(r"<img ", text)) >= 10
        assert (loaded, broken) == (images, [])
    # A declared output of the report stage (DVC keeps it out of git).
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["report"]
    assert [o["path"] for o in lock["outs"]] == ["reports/index.html"]
    assert "index.html" not in run(["git", "status", "--porcelain"], repo).stdout


def test_plain_repro_brings_a_lost_report_page_back_identical(reproduced):
    """As in a fresh clone: the page is missing, so plain `dvc repro` renders it, to the locked hash."""
    repo = reproduced.repo
    page = repo / "reports" / "index.html"
    before = page.read_bytes()
    page.unlink()
    # A fresh clone has no copy of the page in its DVC cache either (with one, DVC checks it out
    # instead of rendering it: "Stage 'report' is cached").
    [out] = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["report"]["outs"]
    (repo / ".dvc" / "cache" / "files" / "md5" / out["md5"][:2] / out["md5"][2:]).unlink()
    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)
    again = reproduced.dvc("repro")
    assert re.findall(r"Running stage '([^']+)'", again) == ["report"]
    assert page.read_bytes() == before
    assert "Data and pipelines are up to date." in reproduced.dvc("status")


def test_editing_one_model_makes_only_it_stale(reproduced):
    repo = reproduced.repo
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["models"]["mlp"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        stale = json.loads(reproduced.dvc("status", "--json"))
        assert per_key(stale) == {"train@mlp", "evaluate@mlp"}
    finally:
        run(["git", "checkout", "params.yaml"], repo)
    assert json.loads(reproduced.dvc("status", "--json")) == {}


def test_forced_rerun_reproduces_every_output_byte_for_byte(reproduced):
    """Every stage again: the same bytes, the online augmentation's draws by two workers included."""
    lock = reproduced.repo / "dvc.lock"
    first = lock.read_text()
    reproduced.dvc("repro", "-f")
    # dvc.lock holds the hash of every output: models, metrics, plots and data alike.
    assert "data/models/cnn" in first
    assert lock.read_text() == first


def test_remote_carries_outputs_to_a_fresh_clone(reproduced, tmp_path):
    repo = reproduced.repo
    reproduced.dvc("remote", "add", "-d", "store", str(tmp_path / "store"))
    reproduced.commit("pipeline run")
    reproduced.dvc("push")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/models/cnn/model.keras").exists()
    reproduced.dvc("pull", repo=clone)
    assert "up to date" in reproduced.dvc("status", repo=clone)
    for m in MODELS:
        model = f"data/models/{m}/model.keras"
        assert (clone / model).read_bytes() == (repo / model).read_bytes()
    ours = json.loads(reproduced.dvc("metrics", "show", "--json"))
    theirs = json.loads(reproduced.dvc("metrics", "show", "--json", repo=clone))
    assert next(iter(ours.values())) == next(iter(theirs.values()))

"""End to end: `dvc repro` brings the imported offline weights (restored from the test session's run
cache: the import itself runs in test_e2e_classification and test_jax_pipeline; what it wrote is
checked here), then trains the pretrained transfer model on the faces, tracked in MLflow with its two
phases in one run; the lecture's learning curve (the transfer model's frozen backbone against the cnn
from scratch) is drawn and logged. (The scratch model's path differs only in freezing, which
tests/test_transfer.py covers; tracing its full backward pass would double this test's minutes.)"""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import only, project_params, tiny


def faces_only(params: dict) -> dict:
    """The project's faces dataset and its pretrained transfer model, shrunk to seconds, and the cnn
    (the learning curve's scratch network)."""
    pretrained = [k for k, v in params["models"].items() if v.get("weights") == "imagenet"]
    p = only(tiny(params), *pretrained, "cnn")
    p["augment"]["faces"]["copies"] = 1
    for name in pretrained:
        p["models"][name].update(fine_tune_layers=2)  # tiny() already set input_size 32, one epoch per phase
    return p


@pytest.mark.slow
def test_repro_imports_weights_and_trains_a_transfer_model(make_repo, dvc):
    params = faces_only(project_params())
    assert sorted(m["architecture"] for m in params["models"].values()) == ["cnn", "transfer"]
    assert params["lecture"]["learning_curve"]["pretrained"] == "transfer"
    repo = make_repo(params)
    dvc(repo, "repro")

    report = json.loads((repo / "data/weights/efficientnet_lite0.json").read_text())
    assert report["photo_check"]["chelsea"]["top5"][0] in range(281, 286)
    assert report["photo_check"]["coffee"]["top5"][0] in (967, 968)
    assert (repo / "data/weights/efficientnet_lite0.weights.h5").stat().st_size > 10_000_000

    manifest = json.loads((repo / "data/prepared/faces/manifest.json").read_text())
    assert manifest["classes"] == ["not_face", "face"]
    assert sum(sum(c.values()) for c in manifest["counts"].values()) == 200
    assert manifest["shape"] == [25, 25, 1]

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {*params["models"], "learning_curve"}
    run = runs["transfer"]
    history = client.get_metric_history(run.info.run_id, "phase")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [1.0, 2.0]
    assert 0.0 <= run.data.metrics["test_accuracy"] <= 1.0
    assert run.data.tags["phase2_first_epoch"] == "2"
    assert json.loads((repo / "reports/models/transfer/metrics.json").read_text())["test_images"] == 50

    curve = json.loads((repo / "reports/lecture/learning_curve.json").read_text())
    assert curve["models"] == {"pretrained": "transfer", "scratch": "cnn"} and curve["dataset"] == "shapes"
    assert set(curve["accuracy"]["pretrained"]) == set(curve["accuracy"]["scratch"]) == {"2", "4"}
    assert curve["training_images"] == {"2": 10, "4": 20}  # five classes
    assert (repo / "reports/lecture/learning_curve.png").is_file()
    logged = client.get_metric_history(runs["learning_curve"].info.run_id, "pretrained_test_accuracy")
    assert sorted(m.step for m in logged) == [
        2,
        4,
    ]  # the step is the images per class: the UI charts the curve
    assert {a.path for a in client.list_artifacts(runs["learning_curve"].info.run_id)} >= {
        "learning_curve.json",
        "learning_curve.png",
    }

    # Nothing left to do: the weights import is cached like every other stage.
    status = dvc(repo, "status").stdout
    assert "changed" not in status

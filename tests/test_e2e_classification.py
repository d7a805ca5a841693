"""End to end: dvc repro in a temporary git repository, read back through DVC and the MLflow client."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import only, project_params, run, tiny

MODELS = ("mlp", "cnn")  # two models on one dataset: enough to see that editing one reruns it alone


def e2e_params() -> dict:
    return only(tiny(project_params()), *MODELS)


def per_key(stages) -> set[str]:
    """The foreach stages (name@key) among `stages`; the others (lecture, report) gather every model."""
    return {s for s in stages if "@" in s}


def weights(keras_file: Path) -> str:
    """Hash of the weights inside a .keras zip (its config and metadata may differ between savers)."""
    with zipfile.ZipFile(keras_file) as z:
        return hashlib.md5(z.read("model.weights.h5")).hexdigest()


@pytest.mark.slow
def test_repro_tracks_every_model_and_reruns_only_what_changed(make_repo, dvc):
    params = e2e_params()
    repo = make_repo(params)
    repro = dvc(repo, "repro")
    stages = {
        "prepare@shapes",
        "augment@shapes",
        *(f"{s}@{m}" for s in ("train", "evaluate") for m in MODELS),
    }
    ran = set(re.findall(r"Running stage '([^']+)'", repro.stdout))
    assert per_key(ran) == stages

    # Every output the lock file records exists, and the ones the issue names among them.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert per_key(lock["stages"]) == stages and set(lock["stages"]) == ran
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert all((repo / path).exists() for path in outs), [p for p in outs if not (repo / p).exists()]
    expected = {"data/prepared/shapes", "data/augmented/shapes", "reports/shapes/augment_preview.png"}
    for m in MODELS:
        expected |= {f"data/models/{m}", f"reports/{m}/training_curves.png", f"reports/{m}/metrics.json"}
        expected |= {
            f"reports/{m}/{f}" for f in ("history.csv", "confusion.json", "confusion.png", "roc.png")
        }
    assert expected <= outs
    assert (repo / "data/models/cnn/model.keras").is_file()
    assert not list(repo.glob("data/**/*.partial")), "scratch folders must not outlive a stage"

    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    [files] = [rev["data"] for rev in shown.values()]  # one revision: the workspace
    accuracy = {}
    for m in MODELS:
        reported = json.loads((repo / f"reports/{m}/metrics.json").read_text())
        accuracy[m] = files[f"reports/{m}/metrics.json"]["data"]["accuracy"]
        assert accuracy[m] == reported["accuracy"] and 0.0 <= accuracy[m] <= 1.0

    again = dvc(repo, "repro")
    assert "Running stage" not in again.stdout
    assert "Data and pipelines are up to date." in again.stdout

    # One MLflow run per model, at the repository root, with everything in that one run.
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["tracking"]["experiment"])
    assert experiment.artifact_location == (repo / "mlartifacts").as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(MODELS)
    head = run(["git", "rev-parse", "HEAD"], repo).stdout.strip()
    manifest = json.loads((repo / "data/prepared/shapes/manifest.json").read_text())
    for m, r in runs.items():
        history = client.get_metric_history(r.info.run_id, "val_loss")
        assert [h.step for h in history] == [0]  # one per epoch
        assert {"loss", "accuracy", "val_accuracy"} <= set(r.data.metrics)
        assert r.data.metrics["test_accuracy"] == pytest.approx(accuracy[m])  # evaluate, same run
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

    # Editing one model's params makes only that model's stages stale.
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["models"]["mlp"]["lr"] = 0.002
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    stale = json.loads(dvc(repo, "status", "--json").stdout)
    assert per_key(stale) == {"train@mlp", "evaluate@mlp"}
    run(["git", "checkout", "params.yaml"], repo)
    assert json.loads(dvc(repo, "status", "--json").stdout) == {}

    # An experiment lands in the same store, as one more run named by DVC.
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "baseline"], repo)
    exp = dvc(repo, "exp", "run", "-S", "models.cnn.epochs=2")
    assert per_key(re.findall(r"Running stage '([^']+)'", exp.stdout)) == {"train@cnn", "evaluate@cnn"}
    exp_name = re.search(r"Ran experiment\(s\): (\S+)", exp.stdout).group(1)
    after = client.search_runs([experiment.experiment_id])
    assert len(after) == len(MODELS) + 1
    [new] = [r for r in after if r.info.run_id not in {x.info.run_id for x in runs.values()}]
    assert new.info.run_name == "cnn" and new.data.tags["dvc_exp_name"] == exp_name
    assert len(client.get_metric_history(new.info.run_id, "val_loss")) == 2
    assert "test_accuracy" in new.data.metrics
    assert not any("dvc_exp_name" in r.data.tags for r in runs.values())

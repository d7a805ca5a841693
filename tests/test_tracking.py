"""MLflow tracking against a real SQLite store in a temporary folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.params import Tracking
from tests.conftest import ROOT, entry


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    """One SQLite store for the module: creating one takes seconds."""
    return tmp_path_factory.mktemp("repo")


@pytest.fixture
def store(store_root, clean_env):
    """A Tracking section naming the store explicitly; artifacts stay beside it."""
    clean_env.chdir(store_root)
    clean_env.setenv("DVC_ROOT", str(store_root))
    yield Tracking(uri=f"sqlite:///{store_root / 'mlflow.db'}", experiment="tests")
    mlflow.set_tracking_uri(None)


def test_flatten():
    flat = tracking.flatten(
        "model", {"lr": 0.001, "filters": [16, 32], "opt": {"name": "adam", "beta": None}}
    )
    assert flat == {
        "model.lr": "0.001",
        "model.filters": "[16, 32]",
        "model.opt.name": "adam",
        "model.opt.beta": "None",
    }
    assert tracking.flatten("", {"a": 1}) == {"a": "1"}


def test_tracking_uri_precedence(clean_env, tmp_path):
    assert tracking.repo_root() == ROOT  # the code's repository, not the current folder
    clean_env.chdir(tmp_path)
    assert tracking.tracking_uri(entry("tracking")) == f"sqlite:///{ROOT / 'mlflow.db'}"
    clean_env.setenv("DVC_ROOT", str(tmp_path / "repo"))  # DVC names the repository of the run
    assert tracking.tracking_uri(entry("tracking")) == f"sqlite:///{tmp_path / 'repo' / 'mlflow.db'}"
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri(entry("tracking")) == "http://127.0.0.1:5999"
    assert tracking.tracking_uri(entry("tracking", uri="sqlite:///x.db")) == "sqlite:///x.db"


def test_default_store_and_artifacts_sit_at_the_repository_root(clean_env, store_root, tmp_path):
    root, elsewhere = store_root, tmp_path
    clean_env.setenv("DVC_ROOT", str(root))
    clean_env.chdir(elsewhere)
    try:
        experiment_id = tracking.use_experiment(entry("tracking", experiment="e"))
        assert (root / "mlflow.db").is_file() and not list(elsewhere.iterdir())
        location = MlflowClient().get_experiment(experiment_id).artifact_location
        assert location == (root / "mlartifacts").as_uri()
        # found, not re-created
        assert tracking.use_experiment(entry("tracking", experiment="e")) == experiment_id
    finally:
        mlflow.set_tracking_uri(None)


def test_training_run_epoch_metrics_and_finding_the_run_by_model_hash(store, tmp_path):
    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"weights")
    logger = tracking.EpochLogger()
    with tracking.training_run(store, "cnn", {"model.lr": "0.01", "seed": "3"}, {"model": "cnn"}) as run:
        for epoch, loss in enumerate([0.9, 0.5, 0.7]):
            logger.log(epoch, {"loss": loss, "val_loss": loss + 0.1, "accuracy": 1 - loss})
        logger.wait()  # the requests ran on the logger's thread
        tracking.set_tags({tracking.MODEL_HASH_TAG: tracking.file_md5(model_file)})
        tracking.log_artifacts(run.info.run_id, [model_file, tmp_path / "missing.png"], "model")
    run_id = run.info.run_id

    client = MlflowClient()
    stored = client.get_run(run_id)
    assert stored.info.run_name == "cnn" and stored.info.status == "FINISHED"
    assert stored.data.params == {"model.lr": "0.01", "seed": "3"}
    history = client.get_metric_history(run_id, "val_loss")
    assert [(m.step, round(m.value, 6)) for m in history] == [(0, 1.0), (1, 0.6), (2, 0.8)]
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/model.keras"]

    assert tracking.find_training_run(store, "cnn", model_file) == run_id
    assert tracking.find_training_run(store, "mlp", model_file) is None  # another model's name
    model_file.write_bytes(b"other weights")
    assert tracking.find_training_run(store, "cnn", model_file) is None

    tracking.log_metrics(run_id, {"test_accuracy": 0.75})  # evaluate adds to the finished run
    assert client.get_run(run_id).data.metrics["test_accuracy"] == 0.75


def test_epoch_logger_raises_what_its_thread_met_and_stores_in_order(store):
    logger = tracking.EpochLogger(logged_through=0)
    with tracking.training_run(store, "cnn", {}, {}) as run:
        for epoch in range(5):
            logger.log(epoch, {"loss": 1.0 / (epoch + 1)})
        logger.wait()
        client = MlflowClient()
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
        client.delete_run(run.info.run_id)
        logger.log(5, {"loss": 0.1})  # the store refuses a deleted run, on the logger's thread
        with pytest.raises(mlflow.exceptions.MlflowException):
            logger.wait()
        client.restore_run(run.info.run_id)


def test_new_run_when_the_training_run_is_gone(store):
    run_id = tracking.new_run(store, "cnn", {"model": "cnn", "note": "training run not found"})
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "training run not found"
    assert "git_commit" in run.data.tags


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_provenance_tags(tmp_path, clean_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    (repo / "a.txt").write_text("1")
    git(repo, "add", "a.txt")
    git(repo, "commit", "-q", "-m", "one")
    tags = tracking.provenance_tags(repo)
    assert tags == {"git_commit": git(repo, "rev-parse", "HEAD"), "git_dirty": "false"}
    (repo / "a.txt").write_text("2")
    (repo / "untracked.txt").write_text("not counted")
    clean_env.setenv("DVC_EXP_NAME", "brisk-fawn")
    tags = tracking.provenance_tags(repo)
    assert tags["git_dirty"] == "true" and tags["dvc_exp_name"] == "brisk-fawn"
    (tmp_path / "plain").mkdir()
    assert tracking.provenance_tags(tmp_path / "plain")["git_commit"] == "unknown"

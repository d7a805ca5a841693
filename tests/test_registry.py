"""evaluate's model registry: every model a new version; `champion` moves only to a better one."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pipeline import tracking
from pipeline.params import Tracking
from tests.conftest import entry


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the default store then lives in tmp_path
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield entry("tracking", experiment="registry-test")
    mlflow.set_tracking_uri(None)


def _trained_run(cfg: Tracking, accuracy: float) -> str:
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="predictions")])
    with tracking.training_run(cfg, "cnn", {"model.lr": "0.1"}, {"model": "cnn"}) as run:
        tracking.log_model(model)
    tracking.log_metrics(run.info.run_id, {"test_accuracy": accuracy})
    return run.info.run_id


def test_champion_alias_moves_only_when_the_metric_improves(store):
    first = _trained_run(store, 0.80)
    assert tracking.register_model(store, first, "cnn", "test_accuracy", 0.80) == (1, 1)
    better = _trained_run(store, 0.90)
    assert tracking.register_model(store, better, "cnn", "test_accuracy", 0.90) == (2, 2)
    worse = _trained_run(store, 0.50)
    assert tracking.register_model(store, worse, "cnn", "test_accuracy", 0.50) == (3, 2)

    client = MlflowClient()
    champion = client.get_model_version_by_alias("registry-test-cnn", "champion")
    assert int(champion.version) == 2 and champion.run_id == better
    versions = client.search_model_versions("name = 'registry-test-cnn'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3]
    assert (tracking.repo_root() / "mlflow.db").is_file(), "the default store is at the repository root"


def test_a_run_without_a_logged_model_is_not_registered(store):
    tracking.use_experiment(store)
    run = tracking.new_run(store, "cnn", {"model": "cnn"})
    assert tracking.register_model(store, run, "cnn", "test_accuracy", 1.0) is None

"""A training stage logs to a real `mlflow server` on 127.0.0.1; the run and artifacts read back over HTTP."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import BIN, only, project_params, stage_env, tiny


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` with an SQLite backend and a local artifact root; yields its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "server-artifacts"),
        ],
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start")
            time.sleep(0.5)
        yield url, tmp_path / "server-artifacts"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_train_stage_logs_to_tracking_server(make_repo, dvc, mlflow_server):
    url, artifact_root = mlflow_server
    p = tiny(project_params())
    p = only(p, "cnn")
    p["tracking"]["uri"] = url
    repo = make_repo(p)
    dvc(repo, "repro", "evaluate@cnn")  # the lecture and report stages log nothing

    assert not (repo / "mlflow.db").exists(), "with tracking.uri set nothing goes to the local store"
    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("convpipe")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.model = 'cnn'")
    assert run.data.params["model.architecture"] == "cnn"
    assert "test_accuracy" in run.data.metrics, "evaluate logs into the same run over HTTP"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"training_curves.png", "metrics.json", "confusion.png"} <= names
    local = client.download_artifacts(run.info.run_id, "metrics.json", str(repo / "downloaded"))
    with open(local) as f:
        assert '"accuracy"' in f.read()
    assert any(artifact_root.rglob("training_curves.png")), "the server stored the artifacts it was sent"
    version = client.get_model_version_by_alias("convpipe-cnn", "champion")
    assert version.run_id == run.info.run_id

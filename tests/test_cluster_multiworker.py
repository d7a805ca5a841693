"""One model trained by two worker processes (runtime.distribute: multi_worker, TF_CONFIG on 127.0.0.1):
the chief runs `dvc repro`, the other worker the train stage's own command; only the chief logs and
saves, and the test accuracy is that of the single-process training with the same params."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.runtime import is_chief
from tests.conftest import BIN, entry, only, project_params, stage_env, tiny


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tf_config(ports: list[int], index: int) -> str:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


@pytest.mark.cluster
@pytest.mark.xfail(
    run=False,  # it fails only after 5 minutes on 2 cores; run it with --runxfail
    reason="Keras 3.15 on TensorFlow 2.21: model.fit under MultiWorkerMirroredStrategy fails before its "
    "first step, 'Attempt to convert a value (PerReplica...) to a Tensor' (a bare fit of a PyDataset does "
    "too, uint8 or float32 batches); see reports/cluster_notes.md",
)
def test_two_workers_train_one_model(make_repo, dvc):
    p = tiny(only(project_params(), "cnn"))
    p["datasets"]["shapes"]["per_class"] = 60  # 45 test images: accuracy in steps of 0.022
    p["models"]["cnn"].update(epochs=6, filters=[8, 16])
    repo = make_repo(p)
    dvc(repo, "repro", "evaluate@cnn")  # single process: the reference
    single = json.loads((repo / "reports/models/cnn/metrics.json").read_text())["accuracy"]

    p["runtime"]["distribute"] = "multi_worker"
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    train_cmd = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["train"]["do"]["cmd"]
    train_cmd = train_cmd.replace("${key}", "cnn").replace("${item.dataset}", "shapes")
    ports = [free_port(), free_port()]
    worker = subprocess.Popen(
        shlex.split(train_cmd),
        cwd=repo,
        env=stage_env(TF_CONFIG=tf_config(ports, 1)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        chief = dvc(repo, "repro", "evaluate@cnn", TF_CONFIG=tf_config(ports, 0)).stdout
        worker_out, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, worker_out[-3000:]
    multi = json.loads((repo / "reports/models/cnn/metrics.json").read_text())["accuracy"]
    assert "evaluate cnn: test accuracy" in chief
    assert abs(multi - single) <= 0.02, (single, multi)

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("convpipe")
    runs = client.search_runs([exp.experiment_id], "tags.model = 'cnn'")
    assert sorted(r.data.params["runtime.distribute"] for r in runs) == ["multi_worker", "none"]
    assert list((repo / "data/models/cnn").iterdir()) == [repo / "data/models/cnn/model.keras"]
    assert not list(repo.glob("**/convpipe-worker-*")) and BIN.is_dir()


@pytest.mark.parametrize(
    ("config", "chief"),
    [
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_writes(monkeypatch, config, chief):
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert is_chief(entry("runtime", distribute="multi_worker")) is chief
    assert is_chief(entry("runtime", distribute="none"))  # TF_CONFIG alone makes no worker

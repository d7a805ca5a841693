"""A training killed mid-way (SIGKILL) resumes at its last completed epoch on the next `dvc repro`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import BIN, only, project_params, stage_env, tiny

EPOCHS = 6


def _one_cnn(params: dict) -> dict:
    p = tiny(params)
    p = only(p, "cnn")
    # Enough images that an epoch lasts long enough to be interrupted.
    p["datasets"]["shapes"].update(per_class=150, image_size=32)
    p["models"]["cnn"].update(epochs=EPOCHS, batch_size=8)
    return p


@pytest.mark.slow
def test_killed_training_resumes_in_the_same_run(make_repo, dvc):
    repo = make_repo(_one_cnn(project_params()))
    dvc(repo, "repro", "augment@shapes")
    state_file = repo / "data/checkpoints/cnn/state.json"
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "train@cnn"],
        cwd=repo,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes dvc and the stage together
    )
    deadline = time.monotonic() + 300
    killed_after = None
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file():
            try:
                epoch = json.loads(state_file.read_text())["epoch"]
            except (json.JSONDecodeError, KeyError):
                epoch = -1  # caught between write and rename is impossible, but stay safe
            if epoch >= 1:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_after = epoch
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_after is not None, "training finished or timed out before it could be killed"
    assert killed_after < EPOCHS - 1, "killed too late to test a resume"
    assert not (repo / "data/models/cnn/model.keras").exists(), "a killed training left a model behind"

    out = dvc(repo, "repro", "evaluate@cnn").stdout  # the summary stages are not what is tested
    assert "resuming after epoch" in out
    assert (repo / "data/models/cnn/model.keras").is_file()
    assert not state_file.exists(), "checkpoints are removed once the training completed"

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("convpipe")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.model = 'cnn'")
    assert len(runs) == 1, "the resumed training must continue its run, not start another"
    run = runs[0]
    for metric in ("loss", "val_loss"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, metric))
        assert steps == list(range(EPOCHS)), f"{metric} steps have a gap or a repeat: {steps}"
    assert "test_accuracy" in run.data.metrics
    assert run.info.status == "FINISHED"

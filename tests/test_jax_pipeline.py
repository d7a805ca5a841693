"""A tiny end-to-end pipeline on `runtime.backend: jax`: the stage kinds (import_weights, prepare,
augment, train and evaluate of a classifier and of the U-Net, lecture, report, cyclegan_train/
evaluate) run under `dvc repro` in a temporary repository, jit-compiled (`jit_compile: auto`).

The GANs' stages run one family here, the CycleGAN (whose stages no other test runs end to end); the
DCGAN's stages are the same stage code (pipeline/tasks/gan.py) with another task module, run end to
end on TensorFlow in tests/test_gans.py, and its networks and step train on JAX in
tests/test_jax_gans.py (both families here cost 1.5 minutes more of the suite)."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.tools import sandbox
from tests.conftest import BIN, JAX_CPU, only, project_params, run, tiny

pytestmark = pytest.mark.slow

# One of each task (filter_net's train and evaluate are the cnn's code path, with another network).
MODELS = ("cnn", "unet", "cyclegan")


def test_every_stage_kind_runs_on_jax(tmp_path):
    params = only(tiny(project_params()), *MODELS)
    params["runtime"]["backend"] = "jax"
    assert params["runtime"]["jit_compile"] == "auto"
    params["lecture"].update(feature_images=2, feature_channels=4)
    repo = sandbox.make_repo(tmp_path / "repo", params, run_cache=False)  # import_weights too on JAX
    out = run([str(BIN / "dvc"), "repro"], repo, **JAX_CPU).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    kinds = {s.partition("@")[0] for s in ran}
    assert {"prepare", "augment", "train", "evaluate", "lecture", "report"} <= kinds
    assert {"import_weights", "cyclegan_train", "cyclegan_evaluate"} <= kinds
    assert {f"{k}@{m}" for m in ("cnn", "unet") for k in ("train", "evaluate")} <= ran
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert all((repo / p).exists() for p in outs), [p for p in outs if not (repo / p).exists()]
    for model, key in (("cnn", "accuracy"), ("unet", "mean_iou")):
        value = json.loads((repo / f"reports/models/{model}/metrics.json").read_text())[key]
        assert 0.0 <= value <= 1.0
    metrics = json.loads((repo / "reports/models/cyclegan/metrics.json").read_text())
    assert metrics and all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert "evaluate cyclegan: " in out and "evaluate cnn: test accuracy" in out
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("convpipe").experiment_id])
    assert {r.info.run_name for r in runs} >= set(MODELS)
    assert all(r.data.params["runtime.backend"] == "jax" for r in runs)
    [cnn] = [r for r in runs if r.info.run_name == "cnn"]
    assert "test_accuracy" in cnn.data.metrics

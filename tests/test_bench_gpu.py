"""The GPU benchmark (pipeline.bench.gpu) at smoke size on the CPU: Keras on JAX with tensorflow,
mlflow and dvc unimportable (as on the GPU machines); every model gets a row (mixed precision), two
deterministic runs agree, and importing its training path imports none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.bench.gpu import FORBIDDEN, MODELS, TRAINING_PATH
from tests.conftest import JAX_CPU, stage_env


def test_training_path_imports_no_tensorflow_mlflow_or_dvc():
    code = (
        "import importlib, json, sys\n"
        f"for m in {TRAINING_PATH!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted({m.partition('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=stage_env(KERAS_BACKEND="jax"), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "keras" in loaded and "jax" in loaded
    assert not loaded & set(FORBIDDEN)


@pytest.mark.slow
def test_gpu_benchmark_runs_at_smoke_size_without_tensorflow(tmp_path):
    out = tmp_path / "benchmarks_gpu.md"
    command = [sys.executable, "-m", "pipeline.bench.gpu", "--smoke", "--out", str(out)]
    proc = subprocess.run(
        # mixed_float16 only, half the compiles: its rows build and train all four networks (the
        # transfer model too) through the same benchmark code; float32 on JAX is what the JAX
        # pipeline test trains the cnn, the U-Net and the CycleGAN in (tests/test_jax_pipeline.py),
        # and tests/test_jax_gans.py both GANs' steps.
        [*command, "--precision", "mixed_float16"],
        env=stage_env(KERAS_BACKEND="jax", **JAX_CPU),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "img/s" not in line]
    assert {(r.split("|")[1].strip(), r.split("|")[2].strip()) for r in rows} == {
        (m, "mixed_float16") for m in MODELS
    }
    assert "two deterministic runs (cnn, stage path): same weights" in text
    assert "imported tensorflow / mlflow / dvc: none" in text
    assert "device: cpu" in text and "GFLOP/s" in text

"""The GPU benchmark (pipeline.bench.gpu) at smoke size on the CPU: Keras on JAX with tensorflow,
mlflow and dvc unimportable (as on the GPU machines); every model and precision gets a row, two
deterministic runs agree, and importing its training path imports none of them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.bench.gpu import FORBIDDEN, MODELS, TRAINING_PATH
from tests.conftest import stage_env


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
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.bench.gpu", "--smoke", "--out", str(out)],
        env=stage_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "img/s" not in line]
    assert {(r.split("|")[1].strip(), r.split("|")[2].strip()) for r in rows} == {
        (m, p) for m in MODELS for p in ("float32", "mixed_float16")
    }
    assert "two deterministic runs (cnn, stage path): same weights" in text
    assert "imported tensorflow / mlflow / dvc: none" in text
    assert "device: cpu" in text and "GFLOP/s" in text

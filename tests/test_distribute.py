"""Scaling out: mirrored training over two devices, a GPU smoke test (JAX end to end: test_jax_pipeline)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, stage_env

MIRRORED = textwrap.dedent(
    """
    import json, os
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np
    import tensorflow as tf
    # Two logical CPU devices stand in for two GPUs; must be set before TensorFlow starts.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pipeline import runtime, training
    from pipeline.models.registry import build
    from tests.conftest import entry

    rt = entry("runtime", distribute="mirrored", verbose=0)
    runtime.setup(rt, seed=3)
    p = entry("models", "cnn", dataset="d", filters=[4, 8], epochs=2, batch_size=8)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (32, 16, 16, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 32)
    data = training.ArrayBatches(x, y, p.batch_size, True, 3, 3)
    with runtime.distribution(rt):
        model = build("cnn", (16, 16, 1), 3, filters=[4, 8])
        training.compile_model(model, p, 3, len(data), jit=False)
    history = model.fit(data, epochs=2, verbose=0).history
    proba = training.predict_proba(model, x)
    print(json.dumps({
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "epochs": len(history["loss"]),
        "loss_finite": bool(np.isfinite(history["loss"]).all()),
        "proba_shape": list(proba.shape),
        "proba_sums": bool(np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)),
    }))
    """
)


@pytest.mark.slow
def test_mirrored_training_over_two_logical_devices():
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED],
        cwd=ROOT,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "replicas": 2,
        "epochs": 2,
        "loss_finite": True,
        "proba_shape": [32, 3],
        "proba_sums": True,
    }


def _gpu_visible() -> bool:
    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    proc = subprocess.run([sys.executable, "-c", code], env=stage_env(), capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip().splitlines()[-1:] != ["0"]


@pytest.mark.gpu
def test_gpu_mixed_precision_smoke():
    if not _gpu_visible():
        pytest.skip("no GPU visible to TensorFlow on this machine")
    code = textwrap.dedent(
        """
        import numpy as np
        from pipeline import runtime, training
        from pipeline.models.registry import build
        from tests.conftest import entry
        keras = runtime.setup(entry("runtime", device="gpu", mixed_precision=True, verbose=0), seed=0)
        p = entry("models", "cnn", dataset="d", epochs=1, batch_size=16)
        x = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 1), dtype=np.uint8)
        y = np.arange(64) % 5
        data = training.ArrayBatches(x, y, 16, True, 0, 5)
        model = build("cnn", (32, 32, 1), 5)
        training.compile_model(model, p, 5, len(data), jit=False)
        assert model.get_layer("block0_conv").compute_dtype == "float16"
        assert model.get_layer("predictions").compute_dtype == "float32"
        h = model.fit(data, epochs=1, verbose=0).history
        assert np.isfinite(h["loss"][0])
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=stage_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]

"""Process set-up shared by every stage: backend, device, seeds and determinism.

`setup()` must run before anything imports Keras: the backend is read once, at import.
"""

from __future__ import annotations

import os
import types

from pipeline.params import Runtime


def setup(runtime: Runtime, seed: int) -> types.ModuleType:
    """Configure the process from `runtime` and return the imported keras module."""
    os.environ["KERAS_BACKEND"] = runtime.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if runtime.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    if runtime.deterministic:
        # Deterministic GPU kernels and reductions (TensorFlow and XLA read these at start-up).
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        os.environ.setdefault("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    import keras

    if keras.backend.backend() != runtime.backend:
        raise RuntimeError(
            f"Keras was imported with backend {keras.backend.backend()!r} before runtime.backend "
            f"{runtime.backend!r} could be set"
        )
    if runtime.device == "gpu" and not gpu_available():
        from pipeline.errors import UserError

        raise UserError("runtime.device: 'gpu' but no GPU is visible to the backend; valid: auto, cpu, gpu")
    keras.utils.set_random_seed(seed)
    if runtime.deterministic and runtime.backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    if runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return keras


def gpu_available() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False

"""Process set-up shared by every stage: backend, device, seeds and determinism.

`setup()` must run before anything imports Keras: the backend is read once, at import.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types

from pipeline.noise import stderr_filtered
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
    if runtime.backend == "tensorflow" and "keras" not in sys.modules:
        # `import tensorflow` imports JAX where it is installed (tf.lite's optional JAX converter,
        # which no stage uses): about 1 s of CPU of every stage process's start-up (2-core AMD EPYC).
        # None in sys.modules makes `import jax` raise ImportError, which tf.lite catches. Only in a
        # process Keras is not imported in yet (a stage's own): one holding JAX already keeps it.
        # Not the other way round: Keras on JAX uses TensorFlow where installed (import_weights'
        # EfficientNet-Lite0 prediction failed without it).
        sys.modules.setdefault("jax", None)
    with stderr_filtered():  # TensorFlow's start-up messages (a stage's whole run is filtered too)
        import keras

        if runtime.backend == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the platforms start here, with their messages
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
    if runtime.backend == "tensorflow":
        untuned_batch_reading()
    if runtime.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    return keras


def untuned_batch_reading() -> None:
    """Keras reads a PyDataset on TensorFlow through `tf.data` with `prefetch(AUTOTUNE)`, whose
    autotuning held back the first batch of about one epoch in ten by some 1.2 s (cnn on 2 cores:
    0 of 120 epochs with it off). Our batches are ready at once (a memory-mapped slice, or drawn
    ahead by the online augmentation's workers), so there is nothing to tune: autotuning is off on
    the datasets Keras builds from them (fit, evaluate and predict alike). Keras has no switch for
    it, hence the wrapper around its adapter; the batches and their order stay the same."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters import py_dataset_adapter

    adapter = py_dataset_adapter.PyDatasetAdapter
    if getattr(adapter.get_tf_dataset, "untuned", False):
        return
    build = adapter.get_tf_dataset

    def get_tf_dataset(self):
        options = tf.data.Options()
        options.autotune.enabled = False
        return build(self).with_options(options)

    get_tf_dataset.untuned = True
    adapter.get_tf_dataset = get_tf_dataset


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


def distribution(runtime: Runtime) -> contextlib.AbstractContextManager:
    """The scope to build and compile models in, for `runtime.distribute`.

    mirrored: one process, every local GPU (or every logical CPU device when there is no GPU);
    multi_worker: one process per machine, the cluster described by TF_CONFIG. On JAX both become
    Keras's data-parallel distribution over the local devices.
    """
    import keras

    if runtime.distribute == "none":
        return contextlib.nullcontext()
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return contextlib.nullcontext()
    import tensorflow as tf

    if runtime.distribute == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            from pipeline.errors import UserError

            raise UserError("runtime.distribute: 'multi_worker' needs TF_CONFIG describing the cluster")
        return tf.distribute.MultiWorkerMirroredStrategy().scope()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices]).scope()


def is_chief(runtime: Runtime) -> bool:
    """Whether this process writes the training's model, reports and MLflow run: yes, but in a
    multi_worker training for every worker other than the chief (TF_CONFIG's task of type chief, or
    worker 0 of a cluster that names no chief)."""
    if runtime.distribute != "multi_worker" or "TF_CONFIG" not in os.environ:
        return True
    import json

    config = json.loads(os.environ["TF_CONFIG"])
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0

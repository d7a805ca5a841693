"""Benchmark 6: the same cnn, same fit path, on the TensorFlow and on the JAX backend.

Benchmark 1 already measures the TensorFlow figure (the train stage path, same images and model)
when it ran in this invocation; only the backends it did not measure are trained here. Both run
with params.yaml's runtime.jit_compile (auto: JAX compiles the step with XLA; TensorFlow on a CPU
runs its graph without XLA). Images/s is the median over the epochs after the first (which compiles).
With jit_compile false, JAX ran op by op: 0.16x TensorFlow on the Xeon.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.bench.common import Config, Row, child_json, measured, median


def run(cfg: Config, work: Path) -> list[Row]:
    rows = []
    figures = {}
    for backend in ("tensorflow", "jax"):
        if backend == "tensorflow" and "tensorflow_pipeline_images_per_s" in measured:
            figures[backend] = measured["tensorflow_pipeline_images_per_s"]
            note = "train stage path (benchmark 1's figure)"
        else:
            epochs = cfg.epochs
            res = child_json(
                [
                    sys.executable,
                    "-m",
                    "pipeline.bench.train_worker",
                    "--backend",
                    backend,
                    "--work",
                    str(work / f"backend-{backend}"),
                    "--images",
                    str(cfg.train_images),
                    "--size",
                    str(cfg.image_size),
                    "--epochs",
                    str(epochs),
                    "--modes",
                    "pipeline",
                ],
                KERAS_BACKEND=backend,
            )
            figures[backend] = median(res["pipeline"])
            note = f"train stage path, {epochs} epochs"
        rows.append(Row("6 backends", backend, figures[backend], "img/s", note=note))
    rows.append(Row("6 backends", "jax / tensorflow", figures["jax"] / figures["tensorflow"], "x", ">= 0.8"))
    return rows

"""Benchmark 6: the same cnn, same fit path, on the TensorFlow and on the JAX backend."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.bench.common import Config, Row, child_json, median


def run(cfg: Config, work: Path) -> list[Row]:
    rows = []
    figures = {}
    for backend in ("tensorflow", "jax"):
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
                str(cfg.epochs),
                "--modes",
                "pipeline",
            ],
            KERAS_BACKEND=backend,
        )
        figures[backend] = median(res["pipeline"])
        rows.append(Row("6 backends", backend, figures[backend], "img/s", note="train stage path"))
    rows.append(Row("6 backends", "jax / tensorflow", figures["jax"] / figures["tensorflow"], "x"))
    return rows

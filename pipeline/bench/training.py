"""Benchmarks 1 and 5: the train stage's fit path against a bare model.fit; MLflow's share of an epoch."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.bench.common import Config, Row, child_json, measured, median


def run(cfg: Config, work: Path) -> list[Row]:
    res = child_json(
        [
            sys.executable,
            "-m",
            "pipeline.bench.train_worker",
            "--work",
            str(work / "train"),
            "--images",
            str(cfg.train_images),
            "--size",
            str(cfg.image_size),
            "--epochs",
            str(cfg.epochs),
            "--repeats",
            str(cfg.repeats),
        ]
    )
    pipe, bare = median(res["pipeline"]), median(res["bare"])
    measured["tensorflow_pipeline_images_per_s"] = pipe
    setting = f"cnn, {cfg.train_images} images {cfg.image_size}x{cfg.image_size}, {cfg.epochs} epochs"
    log_share = median(res["log_seconds_per_epoch"]) / median(res["pipeline_epoch_seconds"]) * 100
    return [
        Row("1 training", "train stage path", pipe, "img/s", note=setting),
        Row("1 training", "bare model.fit", bare, "img/s", note=setting),
        Row("1 training", "ratio stage / bare", pipe / bare, "x", ">= 0.95"),
        Row(
            "5 MLflow logging",
            "logging per epoch",
            median(res["log_seconds_per_epoch"]) * 1000,
            "ms",
            note="EpochLogger.seconds: the training loop handing metrics to MLflow's async queue and waiting "
            "for it before each checkpoint, sqlite store",
        ),
        Row("5 MLflow logging", "share of epoch time", log_share, "%", "< 1"),
    ]

"""Benchmark 7: the train stage's throughput with online augmentation against offline copies."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.bench.common import Config, Row, child_json, median


def run(cfg: Config, work: Path) -> list[Row]:
    originals = cfg.train_images // 2  # the same rows per epoch as benchmark 1: originals + 1 view each
    res = child_json(
        [
            sys.executable,
            "-m",
            "pipeline.bench.online_worker",
            "--work",
            str(work),
            "--images",
            str(originals),
            "--size",
            str(cfg.image_size),
            "--epochs",
            str(cfg.epochs),
            "--repeats",
            str(cfg.repeats),
        ]
    )
    offline, online = median(res["offline"]), median(res["online"])
    setting = (
        f"cnn, {originals} images {cfg.image_size}x{cfg.image_size} + 1 view each (augment.shapes), "
        f"{cfg.epochs} epochs, online in {res['workers']} worker processes"
    )
    return [
        Row("7 online augment", "offline (copies on disk)", offline, "img/s", note=setting),
        Row("7 online augment", "online (drawn each epoch)", online, "img/s", note=setting),
        Row("7 online augment", "ratio online / offline", online / offline, "x", ">= 0.9"),
    ]

"""Benchmark 4: augmentation images/s with one worker process and with every core."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from pipeline.bench.common import ROOT, Config, Row, median


def run(cfg: Config, work: Path) -> list[Row]:
    from pipeline import augment
    from pipeline import params as params_module

    params = params_module.load(ROOT / "params.yaml")
    spec = params.augment_for("shapes").model_copy(update={"copies": 1})
    rng = np.random.default_rng(params.seed)
    size = cfg.augment_size
    images = rng.integers(0, 256, (cfg.augment_images, size, size, 3), dtype=np.uint8)
    cores = os.cpu_count() or 1
    rates: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(cfg.repeats):
        for workers in rates:
            start = time.perf_counter()
            for _chunk in augment.augmented_copies(
                spec, "shapes", images, params.seed, workers=workers, progress=False
            ):
                pass
            rates[workers].append(len(images) / (time.perf_counter() - start))
    one, all_ = median(rates[1]), median(rates[cores])
    note = f"{len(images)} images {size}x{size} RGB, augment.shapes transforms"
    return [
        Row("4 augment", "1 worker", one, "img/s", note=note),
        Row("4 augment", f"{cores} workers", all_, "img/s", note=note),
        Row("4 augment", "speed-up", all_ / one, "x", ">= 1.7" if cores == 2 else ""),
    ]

"""Benchmark 4: augmentation images/s with one worker process and with every core.

It runs what the augment stage runs: augment_split from a memory-mapped training split into a folder.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.bench.common import ROOT, Config, Row, median


def run(cfg: Config, work: Path) -> list[Row]:
    from pipeline import params as params_module
    from pipeline.data import augment

    params = params_module.load(ROOT / "params.yaml")
    spec = params.augment_for("shapes").model_copy(update={"copies": 1})
    rng = np.random.default_rng(params.seed)
    size = cfg.augment_size
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "train_x.npy", rng.integers(0, 256, (cfg.augment_images, size, size, 3), dtype=np.uint8))
    images = np.load(work / "train_x.npy", mmap_mode="r")  # as the stage reads a prepared split
    labels = np.zeros(len(images), np.int64)
    cores = os.cpu_count() or 1
    rates: dict[int, list[float]] = {1: [], cores: []}
    cpu: dict[int, list[float]] = {1: [], cores: []}  # CPU seconds per image, pool workers included
    for _ in range(cfg.repeats):
        for workers in rates:
            out = work / f"out-{workers}"
            out.mkdir()
            cpu_start, start = _cpu_seconds(), time.perf_counter()
            augment.augment_split(spec, "shapes", images, labels, params.seed, out, workers, progress=False)
            rates[workers].append(len(images) / (time.perf_counter() - start))
            cpu[workers].append((_cpu_seconds() - cpu_start) / len(images))
            shutil.rmtree(out)
    one, all_ = median(rates[1]), median(rates[cores])
    note = f"{len(images)} images {size}x{size} RGB, augment.shapes transforms, 1 copy"
    return [
        Row("4 augment", "1 worker", one, "img/s", note=note),
        Row("4 augment", f"{cores} workers", all_, "img/s", note=note),
        Row("4 augment", "speed-up", all_ / one, "x", ">= 1.7" if cores == 2 else ""),
        # Informational: near 1 means the workers split the work without overhead, so a speed-up
        # short of the core count comes from cores that other processes hold (see the load average).
        Row("4 augment", f"CPU per image, {cores} workers / 1", median(cpu[cores]) / median(cpu[1]), "x"),
    ]


def _cpu_seconds() -> float:
    """User and system time of this process and of its waited-for children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system

"""Benchmark 3: prepare on a generated folder of RGB PNGs at two sizes; images/s and peak memory.

The PNGs are generated once into a cache under /tmp (in parallel) and reused by later runs. The
smaller set is a subset of the larger one by class folders: both roots link to the same folders.
"""

from __future__ import annotations

import os
import sys
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from pipeline.bench.common import Config, Row, child_json

CLASSES_PER_SET = 10  # the small set has 10 class folders, the large one 20


def _write_folder(task: tuple[Path, int, int, int]) -> None:
    from PIL import Image, ImageDraw

    folder, count, size, seed = task
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(count):
        # A colour gradient with a filled ellipse: compresses like a photo-ish PNG, unlike noise.
        base = np.stack(
            [
                ramp[None, :].repeat(size, 0),
                ramp[:, None].repeat(size, 1),
                rng.uniform(0, 255) * np.ones((size, size), np.float32),
            ],
            axis=-1,
        )
        img = Image.fromarray(base.astype(np.uint8), "RGB")
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        ImageDraw.Draw(img).ellipse(
            (x0, y0, x0 + w, y0 + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
        img.save(folder / f"{i:06d}.png")


def png_cache(total: int, size: int) -> Path:
    """/tmp/...: 2 * CLASSES_PER_SET class folders of total // (2 * CLASSES_PER_SET) PNGs each."""
    per_class = total // (2 * CLASSES_PER_SET)
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / f"convpipe-bench-png-{size}px-{per_class}x20"
    done = cache / ".complete"
    if not done.is_file():
        tasks = [(cache / "pool" / f"c{k:02d}", per_class, size, k) for k in range(2 * CLASSES_PER_SET)]
        with Pool(os.cpu_count()) as pool:
            pool.map(_write_folder, tasks)
        done.touch()
    return cache


def subset_root(cache: Path, classes: int) -> Path:
    """A root/<class> folder whose classes link to the first `classes` folders of the pool."""
    root = cache / f"root{classes}"
    root.mkdir(exist_ok=True)
    for k in range(classes):
        link = root / f"c{k:02d}"
        if not link.exists():
            link.symlink_to(cache / "pool" / f"c{k:02d}", target_is_directory=True)
    return root


def run(cfg: Config, work: Path) -> list[Row]:
    small, large = cfg.png_sizes
    cache = png_cache(large, cfg.png_size)
    rows = []
    peaks = []
    for n, classes in ((small, CLASSES_PER_SET), (large, 2 * CLASSES_PER_SET)):
        root = subset_root(cache, classes)
        res = child_json(
            [
                sys.executable,
                "-m",
                "pipeline.bench.prepare_worker",
                "--root",
                str(root),
                "--size",
                str(cfg.png_size),
                "--out",
                str(work / f"prepared-{n}"),
            ]
        )
        peaks.append(res["peak_bytes"])
        label = f"{res['images']} PNGs {cfg.png_size}x{cfg.png_size} RGB"
        rows.append(
            Row("3 prepare", f"{n} images: throughput", res["images"] / res["seconds"], "img/s", note=label)
        )
        rows.append(Row("3 prepare", f"{n} images: peak memory", res["peak_bytes"] / 2**20, "MiB", "<= 1024"))
    growth = (peaks[1] / peaks[0] - 1) * 100
    rows.append(Row("3 prepare", "peak memory growth, 2x images", growth, "%", "<= 10"))
    return rows

"""history.csv: one row per epoch, one column per metric (a DVC plot, read back by the evaluate stages)."""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.errors import UserError


def write_history(history: dict[str, list[float]], path: Path) -> None:
    keys = sorted(history)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]])):
            w.writerow([i + 1, *(f"{history[k][i]:.6g}" for k in keys)])


def read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise UserError(f"{path}: missing; run the train stage that writes it first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [float(r[k]) for r in rows] for k in rows[0] if k != "epoch"}

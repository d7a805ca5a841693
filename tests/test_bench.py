"""The benchmarks' smoke mode runs end to end and reports every figure (never judged on timing)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, stage_env

EXPECTED = [
    ("1 training", "train stage path"),
    ("1 training", "bare model.fit"),
    ("1 training", "ratio stage / bare"),
    ("5 MLflow logging", "logging per epoch"),
    ("5 MLflow logging", "share of epoch time"),
    ("2 dvc repro", "train+evaluate via dvc repro"),
    ("2 dvc repro", "bare script, same work"),
    ("2 dvc repro", "overhead"),
    ("2 dvc repro", "no-op dvc repro, whole pipeline"),
    ("3 prepare", "200 images: throughput"),
    ("3 prepare", "200 images: peak memory"),
    ("3 prepare", "400 images: throughput"),
    ("3 prepare", "400 images: peak memory"),
    ("3 prepare", "peak memory growth, 2x images"),
    ("4 augment", "1 worker"),
    ("4 augment", "2 workers"),
    ("4 augment", "speed-up"),
    ("6 backends", "tensorflow"),
    ("6 backends", "jax"),
    ("6 backends", "jax / tensorflow"),
    ("7 online augment", "offline (copies on disk)"),
    ("7 online augment", "online (drawn each epoch)"),
    ("7 online augment", "ratio online / offline"),
]
NUMBER = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?$")


@pytest.mark.slow
def test_smoke_benchmarks_report_every_figure(tmp_path):
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=stage_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[0][:1].isdigit():
            rows[(cells[0], cells[1])] = cells
    for key in EXPECTED:
        assert key in rows, f"missing row {key} in\n{text}"
        assert NUMBER.match(rows[key][2]), f"{key}: not a number: {rows[key][2]!r}"
        assert rows[key][5] in ("met", "MISSED", "info")
        assert NUMBER.match(rows[key][6]) and float(rows[key][6]) > 0  # the machine's GFLOP/s beside it
    # The machine section names the CPU and the versions the figures depend on.
    for field in ("cpu", "cores", "memory", "keras", "tensorflow", "jax", "dvc", "mlflow", "albumentations"):
        assert f"- {field}:" in text

"""Run every benchmark, print the table and write reports/benchmarks.md.

python -m pipeline.bench            # full sizes (under 10 minutes on a quiet 2-core CPU)
python -m pipeline.bench --smoke    # tiny sizes, seconds: checks the code, not the figures
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.bench import augment, backends, dvc_overhead, online, prepare, training
from pipeline.bench.common import ROOT, Config, Row, gflops, machine

BENCHMARKS = {
    "training": training,
    "dvc": dvc_overhead,
    "prepare": prepare,
    "augment": augment,
    "backends": backends,
    "online": online,
}


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | measure | value | unit | target | status | GFLOP/s | setting |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r.value:.3g}" if abs(r.value) < 100 else f"{r.value:.0f}"
        cells = f"{r.bench} | {r.measure} | {value} | {r.unit} | {r.target} | {r.status} | {r.gflops:.0f}"
        lines.append(f"| {cells} | {r.note} |")
    return "\n".join(lines)


def report(rows: list[Row], info: dict[str, str], cfg: Config, seconds: float, load_end: float) -> str:
    mode = "smoke (tiny sizes: the figures mean nothing)" if cfg.smoke else "full"
    machine_lines = "\n".join(f"- {k}: {v}" for k, v in info.items())
    return (
        f"# Benchmarks\n\nWritten by `python -m pipeline.bench` ({mode}) on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {seconds:.0f} s. Each ratio compares two measurements "
        f"of this same run; figures are medians over {cfg.repeats} repeat(s) (images/s of a fit: median "
        "over its epochs after the first). Peak memory is the child process's own VmHWM (wait4 rusage). "
        "GFLOP/s: a numpy float32 1024x1024 matmul (best of 5) right after each benchmark, so figures "
        "of different machines (and loads) can be compared.\n\n"
        f"{table(rows)}\n\n## Machine\n\n{machine_lines}\n- load average (1 min) at end: {load_end:.2f}\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check the code runs")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks.md")
    ap.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run these benchmarks only")
    args = ap.parse_args()
    cfg = Config.make(args.smoke)
    info = machine()
    start = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="convpipe-bench-") as tmp:
        for name in args.only or BENCHMARKS:
            t0 = time.perf_counter()
            new = BENCHMARKS[name].run(cfg, Path(tmp) / name)
            took, load = time.perf_counter() - t0, os.getloadavg()[0]
            speed = gflops()  # right after it: the machine's speed (and load) the figures were made at
            for row in new:
                row.gflops = speed
            print(f"bench {name}: {took:.0f} s, load average {load:.2f}, {speed:.0f} GFLOP/s", flush=True)
            info[f"bench {name}"] = f"{took:.0f} s, load average (1 min) {load:.2f} at its end"
            rows += new
    text = report(rows, info, cfg, time.perf_counter() - start, os.getloadavg()[0])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(table(rows))
    print(f"written to {args.out}")
    if any(math.isnan(r.value) for r in rows):
        raise SystemExit("some figures are not numbers")


if __name__ == "__main__":
    main()

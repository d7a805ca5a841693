"""Run a `sweeps:` entry of params.yaml on a Ray cluster; print the `dvc exp run` of the best trial.

    python -m pipeline.tools.sweep <name>                       # a local Ray cluster on this machine
    python -m pipeline.tools.sweep <name> --address HOST:6379   # an existing cluster (`ray start --head`)
    python -m pipeline.tools.sweep <name> --queue               # also queue the winner (dvc queue start)

Not a DVC stage: a search's trials are MLflow child runs of the sweep's run; its result is the one
DVC experiment that reproduces the best trial.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import run_cli


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name", help="key of the sweeps entry in params.yaml")
    ap.add_argument("--address", help="Ray cluster address HOST:PORT (default: start a local cluster)")
    ap.add_argument("--queue", action="store_true", help="queue the best trial's DVC experiment")
    ap.add_argument("--storage", type=Path, help="Ray Tune's storage folder (default: ~/ray_results)")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from pipeline import sweep

    summary = sweep.run_sweep(Path.cwd(), args.name, args.address, args.queue, args.storage)
    sweep.print_summary(summary)


if __name__ == "__main__":
    run_cli(main)

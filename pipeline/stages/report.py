"""DVC stage `report`: reports/index.html, every model's metrics and figures in one page, opened from disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reports", type=Path, required=True, help="folder of every stage's figures and metrics")
    ap.add_argument(
        "--models", type=Path, required=True, help="folder of the trained models (to find their runs)"
    )
    ap.add_argument(
        "--prepared", type=Path, required=True, help="folder of the prepared datasets (manifests)"
    )
    ap.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    args = ap.parse_args()
    params = load_checked()
    if not args.reports.is_dir():
        raise UserError(f"{args.reports}: no reports folder; run the pipeline first (dvc repro)")
    from pipeline.report import write_report

    sections = write_report(params, args.reports, args.models, args.prepared, args.out)
    figures = sum(len(s.figures) for s in sections)
    print(f"report: {len(sections)} sections, {figures} figures in {args.out} (open it in a browser)")


if __name__ == "__main__":
    run_cli(main)

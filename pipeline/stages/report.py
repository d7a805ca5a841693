"""DVC stage `report`: reports/index.html, every dataset's, model's and GAN's metrics and figures and
the lecture's in one page, opened from disk; the same bytes in every clone of a commit."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    for name, help_ in (
        ("reports", "folder of datasets/, models/ and lecture/"),
        ("models", "trained models and GANs (the md5 of each finds its MLflow run)"),
        ("prepared", "prepared datasets (their manifests)"),
        ("out", "the HTML file to write"),
    ):
        ap.add_argument(f"--{name}", type=Path, required=True, help=help_)
    args = ap.parse_args()
    params = load_checked(augmentations=False)
    if not args.reports.is_dir():
        raise UserError(f"{args.reports}: no reports folder; run the pipeline first (dvc repro)")
    from pipeline.report import write_report

    sections = write_report(params, args.reports, args.models, args.prepared, args.out)
    figures = sum(len(s.figures) for s in sections)
    print(f"report: {len(sections)} sections, {figures} figures in {args.out} (open it in a browser)")


if __name__ == "__main__":
    run_cli(main)

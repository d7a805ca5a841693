"""DVC stage `check`: read and check the whole of params.yaml before any other stage runs.

Every stage depends on this stage's output, so DVC runs it first: a mistake in params.yaml (a model
naming a dataset that does not exist, an unknown key, a transform albumentations does not have)
ends `dvc repro` and `dvc exp run` with the project's one line, before DVC looks for the files the
mistake points at. The output never changes, so a stage downstream reruns only for its own params.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked

CHECKED = "params.yaml: checked\n"  # the output's whole content, the same whatever params hold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="file written once params.yaml is checked")
    args = ap.parse_args()
    load_checked()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.is_file() or args.out.read_text() != CHECKED:
        args.out.write_text(CHECKED)
    print("params.yaml: checked")


if __name__ == "__main__":
    run_cli(main)

"""DVC stage `metrics`: reports/metrics.json, every model's and GAN's headline metrics under its name.

It is the pipeline's one DVC metrics file, so `dvc exp show` names a column `cnn.accuracy` and
`--sort-by cnn.accuracy` finds it. With a metrics file per model, DVC prefixed every column whose
name several files share with the file's path (`reports/models/cnn/metrics.json:accuracy`: two of
them filled a 160-column terminal) and `--sort-by accuracy` was ambiguous. Each model's own
metrics.json, which its evaluate stage writes, stays beside its other reports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked


def gather(names: list[str], models: Path) -> dict[str, dict]:
    """{name: that model's metrics.json} of every name; a missing file is an error naming it."""
    gathered = {}
    for name in names:
        path = models / name / "metrics.json"
        if not path.is_file():
            raise UserError(f"{path}: missing; the evaluate stage of '{name}' writes it (dvc repro)")
        gathered[name] = json.loads(path.read_text())
    return gathered


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=Path, required=True, help="folder of each model's reports (<name>/)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = ap.parse_args()
    params = load_checked(augmentations=False)
    from pipeline.data.arrays import write_json

    gathered = gather([*params.models, *params.dcgans, *params.cyclegans], args.models)
    write_json(args.out, gathered)
    print(f"metrics: the headline metrics of {len(gathered)} models in {args.out} (dvc exp show's columns)")


if __name__ == "__main__":
    run_cli(main)

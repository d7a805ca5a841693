"""DVC stage `train`: build a model by name, fit it (resuming a killed training), save it, log the run."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    ap = parser(__doc__, "models")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset folder (val split)")
    ap.add_argument("--train", type=Path, required=True, help="augmented training split folder")
    ap.add_argument("--out", type=Path, required=True, help="output folder for model.keras")
    ap.add_argument("--reports", type=Path, required=True, help="folder for history.csv and curves")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder for resumable progress")
    ap.add_argument("--weights", type=Path, help="folder of imported ImageNet weights (import_weights stage)")
    args = ap.parse_args()
    params = load_checked()
    params.model(args.name)
    start(params)

    from pipeline import training

    line = training.train_model(
        params, args.name, args.data, args.train, args.out, args.reports, args.checkpoints, args.weights
    )
    print(line)


if __name__ == "__main__":
    run_cli(main)

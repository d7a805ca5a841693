"""DVC stage `lecture`: the lecture's figures in one folder (hand-made vs learned filter, feature maps)."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, start


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prepared", type=Path, required=True, help="folder of the prepared datasets")
    ap.add_argument("--models", type=Path, required=True, help="folder of the trained models")
    ap.add_argument("--out", type=Path, required=True, help="output folder for the figures")
    args = ap.parse_args()
    params = load_checked()
    start(params)
    from pipeline import filters
    from pipeline.data.arrays import atomic_dir, write_json

    lecture = params.lecture
    with atomic_dir(args.out) as tmp:
        if lecture.filter_model is not None:
            name = lecture.filter_model
            data, model_file = args.prepared / params.model(name).dataset, _model_file(args.models, name)
            try:
                summary = filters.filter_report(data, model_file, tmp, name)
            except filters.NotOneChannel as exc:
                raise UserError(f"lecture.filter_model: {name}: {exc}") from None
            write_json(tmp / "filters.json", summary)
            print(
                f"lecture: max(conv2D) separates {summary['positive']} with ROC AUC "
                f"{summary['hand_made_auc']:.3f} (hand-made filter), {summary['learned_auc']:.3f} ({name})"
            )
    print(f"lecture: figures in {args.out}")


def _model_file(models: Path, name: str) -> Path:
    path = models / name / "model.keras"
    if not path.is_file():
        raise UserError(f"{path}: missing; run the train stage for models.{name} first (dvc repro)")
    return path


if __name__ == "__main__":
    run_cli(main)

"""DVC stage `lecture`: the lecture's figures in one folder (hand-made vs learned filter, feature maps,
learned symmetries)."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, start


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prepared", type=Path, required=True, help="folder of the prepared datasets")
    ap.add_argument("--models", type=Path, required=True, help="folder of the trained models")
    ap.add_argument("--weights", type=Path, required=True, help="folder of the imported ImageNet weights")
    ap.add_argument("--out", type=Path, required=True, help="output folder for the figures")
    args = ap.parse_args()
    params = load_checked(augmentations=False)
    keras = start(params)
    from pipeline.data.arrays import atomic_dir, load_split, read_manifest, write_json
    from pipeline.lecture import feature_maps, filters

    lecture = params.lecture
    if lecture.learning_curve is not None:
        from pipeline import tracking

        tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
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
        if lecture.feature_model is not None:
            name = lecture.feature_model
            data = args.prepared / params.model(name).dataset
            model = keras.saving.load_model(_model_file(args.models, name))
            x, y = load_split(data, "test")
            paths = feature_maps.feature_map_figures(
                model,
                x,
                y,
                read_manifest(data)["classes"],
                tmp,
                lecture.feature_images,
                lecture.feature_channels,
            )
            print(
                f"lecture: feature maps of {name}'s blocks {', '.join(feature_maps.block_outputs(model))} "
                f"for {len(paths)} test images"
            )
        if lecture.translation is not None or lecture.rotation is not None:
            from pipeline.lecture import symmetries
            from pipeline.training import predict_proba

            def test_of(name: str) -> tuple:
                model = keras.saving.load_model(_model_file(args.models, name))
                x, y = load_split(args.prepared / params.model(name).dataset, "test")
                return (lambda images: predict_proba(model, images)), x, y, params.model(name).shifts

            s = symmetries.experiments(lecture.translation, lecture.rotation, test_of, tmp)
            for part, what in (("translation", "drop_ratio"), ("rotation", "gain")):
                if s[part] is not None:
                    print(f"lecture: learned {part}: {what} {s[part][what]:.3f} (target {s[part]['target']})")
        if lecture.learning_curve is not None:
            from pipeline.lecture import learning_curve

            print(learning_curve.run(params, lecture.learning_curve, args.prepared, args.weights, tmp))
    print(f"lecture: figures in {args.out}")


def _model_file(models: Path, name: str) -> Path:
    path = models / name / "model.keras"
    if not path.is_file():
        raise UserError(f"{path}: missing; run the train stage for models.{name} first (dvc repro)")
    return path


if __name__ == "__main__":
    run_cli(main)

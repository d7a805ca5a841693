"""DVC stage `evaluate`: score the saved model on the test split; log into its training run."""

from __future__ import annotations

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start

# both tasks write these
REPORTS = (
    "metrics.json",
    "details.json",
    "confusion.png",
    "roc.png",
    "roc.json",
    "shift.png",
    "overlays.png",
    "gradcam/gradcam.png",  # 2D classifiers only (the folder is there for every model, else README.txt)
)


def main() -> None:
    args = parser(__doc__, "models", "data", "model", "reports").parse_args()
    params = load_checked(augmentations=False)
    p = params.model(args.name)
    from pipeline import tracking

    tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
    keras = start(params)

    from pipeline.data.arrays import load_split, read_manifest

    manifest = read_manifest(args.data)
    segmentation = manifest.get("task") == "segmentation"
    model_file = args.model / "model.keras"
    if not model_file.is_file():
        raise UserError(f"{model_file}: missing; run the train stage for models.{args.name} first")
    if segmentation:
        from pipeline.tasks import segmentation as task  # also registers the loss load_model reads back
    else:
        from pipeline.tasks import classification as task
    model = keras.saving.load_model(model_file)
    x, y = load_split(args.data, "test")
    if len(x) == 0:
        raise UserError(f"datasets.{p.dataset}: the test split is empty; raise test_fraction or add images")
    (args.reports / "gradcam").mkdir(parents=True, exist_ok=True)  # a declared output of every model
    if segmentation:
        flat, line = task.evaluate_model(args.name, p, model, x, y, manifest, args.reports)
    else:
        from pipeline.tasks.gradcam import load_figures

        figures = load_figures(args.data, "test")  # where each figure is drawn, if the source knows
        flat, line = task.evaluate_model(
            args.name, p, model, x, y, manifest["classes"], args.reports, figures
        )
    gradcam = args.reports / "gradcam"
    if not any(gradcam.iterdir()):  # an empty declared output makes DVC warn at every repro; say why
        (gradcam / "README.txt").write_text(
            f"No class-activation maps for models.{args.name}: Grad-CAM is drawn for classifiers of 2D "
            "images only (this model segments, or reads sequences or videos).\n"
        )
    champion = "test_mean_iou" if segmentation else "test_accuracy"
    reports = [args.reports / n for n in REPORTS]
    run_id = tracking.log_evaluation(params.tracking, args.name, model_file, flat, reports, champion)
    print(f"{line}; MLflow run {run_id}")


if __name__ == "__main__":
    run_cli(main)

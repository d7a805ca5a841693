"""DVC stage `dcgan_evaluate`: FID (EfficientNet-Lite0 features) of the trained DCGAN's samples on the
test split, the classifier's verdict on them and their diversity, into metrics.json and the GAN's run."""

from __future__ import annotations

from pipeline.errors import UserError, run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    args = parser(__doc__, "dcgans", "data", "model", "classifier", "reports", "weights").parse_args()
    params = load_checked(augmentations=False)
    p = params.gan(args.name)
    from pipeline import tracking

    tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
    keras = start(params)

    from pipeline.history import read_history
    from pipeline.tasks import dcgan, gan

    history = read_history(args.reports / "history.csv")
    generator, model_file = gan.load_net(args.model, "generator", "dcgans", args.name)
    if not (args.classifier / "model.keras").is_file():
        raise UserError(
            f"dcgans.{args.name}.classifier: no trained model at {args.classifier}/model.keras; "
            f"run the train stage of models.{p.classifier} first"
        )
    classifier = keras.saving.load_model(args.classifier / "model.keras")
    summary, line = dcgan.evaluate(params, args.name, generator, classifier, args.data, history, args.weights)
    run_id = gan.log_evaluation(params, args.name, model_file, summary, args.reports, dcgan.HEADLINE)
    print(f"evaluate {args.name}: {line}; MLflow run {run_id}")


if __name__ == "__main__":
    run_cli(main)

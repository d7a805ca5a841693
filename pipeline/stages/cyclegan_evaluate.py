"""DVC stage `cyclegan_evaluate`: FID per direction (EfficientNet-Lite0 features) of the trained
CycleGAN's translations of the test split, against doing nothing, and its cycle error, into
metrics.json and the GAN's run."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    args = parser(__doc__, "cyclegans", "data", "target", "model", "reports", "weights").parse_args()
    params = load_checked(augmentations=False)
    params.gan(args.name)
    from pipeline import tracking

    tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
    start(params)

    from pipeline.history import read_history
    from pipeline.tasks import cyclegan, gan

    history = read_history(args.reports / "history.csv")
    g_ab, model_file = gan.load_net(args.model, "g_ab", "cyclegans", args.name)
    g_ba, _ = gan.load_net(args.model, "g_ba", "cyclegans", args.name)
    summary, line = cyclegan.evaluate(
        params, args.name, g_ab, g_ba, args.data, args.target, history, args.weights
    )
    run_id = gan.log_evaluation(params, args.name, model_file, summary, args.reports, cyclegan.HEADLINE)
    print(f"evaluate {args.name}: {line}; MLflow run {run_id}")


if __name__ == "__main__":
    run_cli(main)

"""DVC stage `cyclegan_train`: fit a CycleGAN with FID per direction (EfficientNet-Lite0 features),
the cycle error and a grid of translations every epoch; save its networks; log the run to MLflow."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, require_tensorflow, start


def main() -> None:
    args = parser(__doc__, "cyclegans", "data", "target", "out", "reports", "weights").parse_args()
    params = load_checked()
    params.gan(args.name)
    require_tensorflow(params, "cyclegans", args.name)
    start(params)

    from pipeline.tasks import cyclegan, gan

    setup = cyclegan.setup_training(params, args.name, args.data, args.target, args.weights)
    print(gan.train_gan(params, args.name, setup, args.out, args.reports))


if __name__ == "__main__":
    run_cli(main)

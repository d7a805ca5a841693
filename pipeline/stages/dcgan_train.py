"""DVC stage `dcgan_train`: fit a DCGAN with FID (EfficientNet-Lite0 features) and a fixed-seed
sample grid every epoch; save its networks; log the run to MLflow."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, require_tensorflow, start


def main() -> None:
    args = parser(__doc__, "dcgans", "data", "out", "reports", "weights").parse_args()
    params = load_checked()
    params.gan(args.name)
    require_tensorflow(params, "dcgans", args.name)
    start(params)

    from pipeline.tasks import dcgan, gan

    setup = dcgan.setup_training(params, args.name, args.data, args.weights)
    print(gan.train_gan(params, args.name, setup, args.out, args.reports))


if __name__ == "__main__":
    run_cli(main)

"""DVC stage `dcgan_train`: fit a DCGAN with FID (EfficientNet-Lite0 features) and a fixed-seed
sample grid every epoch; save its networks; log the run to MLflow."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    args = parser(__doc__, "dcgans", "data", "out", "reports", "weights", "checkpoints").parse_args()
    params = load_checked(augmentations=False)
    params.gan(args.name)
    from pipeline import tracking

    tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
    start(params)

    from pipeline.tasks import dcgan, gan

    setup = dcgan.setup_training(params, args.name, args.data, args.weights)
    print(gan.train_gan(params, args.name, setup, args.out, args.reports, args.checkpoints))


if __name__ == "__main__":
    run_cli(main)

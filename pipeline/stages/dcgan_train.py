"""DVC stage `dcgan_train`: fit a DCGAN with FID (EfficientNet-Lite0 features) and a fixed-seed
sample grid every epoch; save its networks; log the run to MLflow."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, require_tensorflow, start


def main() -> None:
    ap = parser(__doc__, "dcgans")
    ap.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    ap.add_argument("--out", type=Path, required=True, help="output folder for the networks (.keras)")
    ap.add_argument("--reports", type=Path, required=True, help="folder for history.csv and figures")
    ap.add_argument("--weights", type=Path, required=True, help="imported EfficientNet-Lite0 weights (FID)")
    args = ap.parse_args()
    params = load_checked()
    params.gan(args.name)
    require_tensorflow(params, "dcgans", args.name)
    start(params)

    from pipeline.tasks import dcgan, gan

    setup = dcgan.setup_training(params, args.name, args.data, args.weights)
    print(gan.train_gan(params, args.name, setup, args.out, args.reports))


if __name__ == "__main__":
    run_cli(main)

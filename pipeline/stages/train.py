"""DVC stage `train`: build a model by name, fit it (resuming a killed training), save it, log the run."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser, start


def main() -> None:
    args = parser(__doc__, "models", "data", "train", "out", "reports", "checkpoints", "weights").parse_args()
    params = load_checked()
    params.model(args.name)
    from pipeline import tracking

    tracking.check_server(params.tracking)  # before any work: one line if the store does not answer
    start(params)

    from pipeline.tasks import model

    line = model.train_model(
        params, args.name, args.data, args.train, args.out, args.reports, args.checkpoints, args.weights
    )
    print(line)


if __name__ == "__main__":
    run_cli(main)

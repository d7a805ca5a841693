"""DVC stage `prepare`: a dataset's source into split uint8 arrays and manifest.json."""

from __future__ import annotations

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, parser


def main() -> None:
    args = parser(__doc__, "datasets", "out").parse_args()
    params = load_checked(augmentations=False)
    from pipeline.data.prepare import prepare

    manifest = prepare(args.name, params.dataset(args.name), params.seed, args.out, progress=True)
    print(f"prepare {args.name}: {manifest['images']} images of shape {manifest['shape']} in {args.out}")


if __name__ == "__main__":
    run_cli(main)

"""Print a model's layers: output shape, parameter count and receptive field.

    python -m pipeline.lecture.layer_table cnn

The model is built from params.yaml, untrained, for the input shape of its dataset: from the
prepared manifest when the dataset has been prepared, else from the dataset's own params.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.params import Params


def input_spec(params: Params, dataset: str, prepared: Path) -> tuple[tuple[int, ...], int, str]:
    """(row shape, number of classes, where it came from) of a dataset."""
    manifest = prepared / "manifest.json"
    if manifest.is_file():
        from pipeline.data.arrays import read_manifest

        m = read_manifest(prepared)
        return tuple(m["shape"]), len(m["classes"]), str(manifest)
    from pipeline.data.prepare import make_source

    source = make_source(params.dataset(dataset), params.seed)
    return tuple(source.row_shape), len(source.classes), f"datasets.{dataset} (not prepared yet)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="key of the models entry in params.yaml")
    ap.add_argument("--data", type=Path, help="prepared dataset folder (default: data/prepared/<dataset>)")
    args = ap.parse_args()
    from pipeline.stages.common import load_checked, start

    params = load_checked(augmentations=False)
    p = params.model(args.name)
    shape, num_classes, origin = input_spec(params, p.dataset, args.data or Path("data/prepared") / p.dataset)
    start(params)
    from pipeline.lecture import conv_arithmetic
    from pipeline.models.registry import build
    from pipeline.params import arch_kwargs

    model = build(p.architecture, shape, num_classes, **arch_kwargs(p))
    title = (
        f"models.{args.name}: {p.architecture} on {p.dataset}, input {'x'.join(map(str, shape))} "
        f"from {origin}, {num_classes} classes"
    )
    print(conv_arithmetic.format_table(conv_arithmetic.layer_shapes(model), title))


if __name__ == "__main__":
    run_cli(main)

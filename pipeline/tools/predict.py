"""Predict with a saved model: images or folders in, a CSV of predicted class and probabilities out.

    python -m pipeline.tools.predict --model data/models/cnn/model.keras \\
        --classes-from data/prepared/shapes \\
        [--out predictions.csv] [--resize stretch|pad|crop] IMAGES_OR_FOLDERS...
    python -m pipeline.tools.predict --model "models:/convpipe-cnn@champion" IMAGES_OR_FOLDERS...

--model is a .keras file or an MLflow model URI (models:/<name>@<alias>, models:/<name>/<version>,
runs:/<run id>/model), fetched from the tracking store that params.yaml's tracking.uri names (else
MLFLOW_TRACKING_URI, else the local mlflow.db; --tracking-uri overrides), with the credentials of
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD. A registered model carries its class names, so
--classes-from is needed only with a file.

Images are read by the folder source's own code (`pipeline.data.folder.read_image`) at the model's
input size and channels, so a picture is seen exactly as training images were. Class names come
from the prepared dataset's manifest.json. The CSV has the columns file, predicted, and p_<class>
for each class; without --out it goes to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
import tempfile
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


MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")


def is_model_uri(model: str | Path) -> bool:
    return str(model).startswith(MODEL_URI_SCHEMES)


def store_uri(explicit: str | None = None) -> str:
    """The tracking store models:/ URIs are looked up in: as the stages' (params.yaml's tracking.uri,
    else MLFLOW_TRACKING_URI, else the local mlflow.db), or `explicit`."""
    if explicit:
        return explicit
    import yaml

    from pipeline.params import Tracking
    from pipeline.tracking import tracking_uri

    uri = None
    with contextlib.suppress(
        OSError, yaml.YAMLError, AttributeError
    ):  # no project here: the environment decides
        uri = ((yaml.safe_load(Path("params.yaml").read_text()) or {}).get("tracking") or {}).get("uri")
    return tracking_uri(Tracking(uri=uri, experiment="convpipe"))


def fetch_model(uri: str, dest: Path, tracking: str | None = None) -> tuple[Path, dict]:
    """The .keras file of the MLflow model at `uri`, downloaded under `dest`, and its metadata
    (classes, dataset, task, resize: what the train stage logged with it)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from pipeline import tracking as T

    store = store_uri(tracking)
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        if store.startswith(("http://", "https://")):
            status, reason = T.probe(store, "-")
            if status is None:
                raise UserError(f"{uri}: cannot reach the MLflow server at {store} ({reason})") from None
            if status == 401:
                raise UserError(
                    f"{uri}: the MLflow server at {store} refused the credentials (401): set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                ) from None
        detail = " ".join(str(exc.message if hasattr(exc, "message") else exc).split())[:200]
        raise UserError(f"{uri}: not found in the tracking store {store}: {detail}") from None
    files = sorted(local.rglob("*.keras"))
    if not (local / "MLmodel").is_file() or not files:
        raise UserError(f"{uri}: not a Keras model logged by convpipe (no MLmodel and .keras file in it)")
    return files[0], dict(Model.load(local / "MLmodel").metadata or {})


def predict(
    model_path: Path | str,
    classes_from: Path | None,
    inputs: Sequence[Path],
    out: Path | None = None,
    resize: str | None = None,
    batch_size: int = BATCH,
    progress: bool = True,
    tracking: str | None = None,
) -> int:
    """Write the CSV to `out` (or stdout); returns the number of images. Nothing is written on an error.

    `model_path`: a .keras file, or an MLflow model URI (looked up in `tracking`, see store_uri)."""
    if is_model_uri(model_path):
        with tempfile.TemporaryDirectory(prefix="convpipe-predict-") as tmp:
            model_file, info = fetch_model(str(model_path), Path(tmp), tracking)
            return _predict(
                model_file, str(model_path), info, classes_from, inputs, out, resize, batch_size, progress
            )
    check_model_file(Path(model_path))
    return _predict(
        Path(model_path), str(model_path), {}, classes_from, inputs, out, resize, batch_size, progress
    )


def _predict(
    model_path: Path,
    shown: str,
    info: dict,
    classes_from: Path | None,
    inputs: Sequence[Path],
    out: Path | None,
    resize: str | None,
    batch_size: int,
    progress: bool,
) -> int:
    files = find_images(inputs)
    if classes_from is not None:
        manifest = read_manifest(classes_from)
        classes = list(manifest["classes"])
        resize = resize or manifest.get("params", {}).get("resize", "stretch")
    elif info.get("classes"):
        classes = list(info["classes"])
        resize = resize or info.get("resize") or "stretch"
    else:
        raise UserError(f"--classes-from: needed for {shown}, which carries no class names")
    if resize not in RESIZE_POLICIES:
        raise UserError(f"--resize {resize}: valid: {', '.join(RESIZE_POLICIES)}")
    model = load_model(model_path)
    size, channels = input_geometry(model, Path(shown))
    units = model.output_shape[-1]
    predicted = 2 if units == 1 else units  # one sigmoid unit stands for two classes
    if predicted != len(classes):
        where = classes_from if classes_from is not None else f"{shown} (its metadata)"
        raise UserError(
            f"{where}: {len(classes)} classes, but {shown} predicts {predicted}; "
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
    ap.add_argument(
        "--model",
        required=True,
        help="saved model (data/models/cnn/model.keras) or MLflow model URI (models:/convpipe-cnn@champion)",
    )
    ap.add_argument(
        "--classes-from",
        type=Path,
        help="prepared dataset folder holding manifest.json (default for a models:/ URI: its class names)",
    )
    ap.add_argument("--tracking-uri", help="tracking store of a models:/ URI (default: as the stages')")
    ap.add_argument("--out", type=Path, help="CSV to write (default: stdout)")
    ap.add_argument(
        "--resize",
        choices=RESIZE_POLICIES,
        help="how images are fitted to the model's input (default: the dataset's resize, else stretch)",
    )
    ap.add_argument("inputs", nargs="+", type=Path, metavar="IMAGES_OR_FOLDERS")
    args = ap.parse_args(argv)
    model = args.model if is_model_uri(args.model) else Path(args.model)
    n = predict(model, args.classes_from, args.inputs, args.out, args.resize, tracking=args.tracking_uri)
    where = args.out if args.out else "stdout"
    print(f"predict: {n} image(s) -> {where}", file=sys.stderr if args.out is None else sys.stdout)


if __name__ == "__main__":
    run_cli(main)

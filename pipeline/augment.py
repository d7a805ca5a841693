"""Albumentations pipelines declared in params.yaml, checked against albumentations itself."""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from tqdm import tqdm

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import
import albumentations as A
from pydantic import ValidationError

from pipeline.errors import UserError, choices_hint
from pipeline.params import Augment, Transform

CHUNK = 256  # images per task: large enough to amortise process hand-off, small enough to stream


def transform_names() -> list[str]:
    """Every single-image transform albumentations offers (not compositions like OneOf)."""
    return sorted(
        name
        for name in dir(A)
        if isinstance(getattr(A, name), type)
        and issubclass(getattr(A, name), A.BasicTransform)
        and not inspect.isabstract(getattr(A, name))
        and name[0].isupper()
        and name not in ("BasicTransform", "DualTransform", "ImageOnlyTransform", "NoOp", "Transform3D")
    )


def build_transform(t: Transform, where: str) -> A.BasicTransform:
    """One albumentations transform; a wrong name or argument raises a UserError naming it."""
    names = transform_names()
    if t.name not in names:
        raise UserError(f"{where}.name: unknown transform '{t.name}'; {choices_hint(t.name, names)}")
    cls = getattr(A, t.name)
    accepted = [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "p", "args", "kwargs")
    ]
    for arg in t.args:
        if arg not in accepted:
            raise UserError(
                f"{where}.args.{arg}: {t.name} takes no argument '{arg}'; {choices_hint(arg, accepted)}"
            )
    try:
        return cls(p=t.p, **t.args)
    except Exception as exc:  # albumentations re-raises its pydantic ValidationError as a ValueError
        cause = exc.__cause__
        if isinstance(cause, ValidationError) and cause.errors():
            # Name the argument and keep pydantic's message, not its multi-line dump.
            err = cause.errors()[0]
            arg = f".{err['loc'][0]}" if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            raise UserError(
                f"{where}.args{arg}: invalid for {t.name}: {msg} (got {err['input']!r})"
            ) from None
        detail = " ".join(str(exc).split())
        raise UserError(f"{where}.args: invalid for {t.name}: {detail}") from None


def build_compose(spec: Augment, dataset: str, seed: int) -> A.Compose:
    transforms = [
        build_transform(t, f"augment.{dataset}.transforms[{i}]") for i, t in enumerate(spec.transforms)
    ]
    compose = A.Compose(transforms, seed=seed)
    # Compose(seed=...) seeds every transform with the same seed (albumentations 2.0.8), so two
    # transforms with the same p would always fire together (HorizontalFlip and VerticalFlip would
    # only ever rotate). One generator shared by all of them draws independently for each.
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return compose


def validate(spec: Augment, dataset: str) -> None:
    """Raise a UserError for any transform albumentations would not accept."""
    build_compose(spec, dataset, seed=0)


def _augment_chunk(task: tuple) -> tuple[np.ndarray, np.ndarray | None]:
    spec, dataset, seed, images, masks = task
    compose = build_compose(spec, dataset, seed)
    out_x = np.empty_like(images)
    out_m = None if masks is None else np.empty_like(masks)
    for i in range(len(images)):
        if masks is None:
            out_x[i] = _keep_channels(_transform(compose, images[i]), images[i], dataset)
        else:
            res = compose(image=images[i], mask=masks[i])
            out_x[i] = _keep_channels(res["image"], images[i], dataset)
            out_m[i] = res["mask"].reshape(masks[i].shape)
    return out_x, out_m


def _transform(compose: A.Compose, sample: np.ndarray) -> np.ndarray:
    """One augmented sample: an image, a sequence (as a one-pixel-wide image) or a video."""
    if sample.ndim == 4:  # frames, h, w, c: one draw of every transform for all the frames
        return np.asarray(compose(images=sample)["images"])
    if sample.ndim == 2:  # length, c
        return compose(image=sample[:, None, :])["image"]
    return compose(image=sample)["image"]


def _keep_channels(result: np.ndarray, original: np.ndarray, dataset: str) -> np.ndarray:
    # Copies join the originals in one uint8 array: a crop, resize or ToFloat would not fit into it
    # (a float in 0..1 would even be cast to 0 without a word).
    if result.size != original.size or result.dtype != original.dtype:
        raise UserError(
            f"augment.{dataset}.transforms: they turn a {original.shape} {original.dtype} image into "
            f"{result.shape} {result.dtype}; augmented copies must keep the size, channels and uint8 "
            f"(scaling happens inside the model)"
        )
    # Some transforms drop a trailing channel axis of 1 on grayscale images.
    return result.reshape(original.shape)


def augmented_copies(
    spec: Augment,
    dataset: str,
    images: np.ndarray,
    seed: int,
    masks: np.ndarray | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield augmented (images, masks) chunks, `spec.copies` passes over `images`, in order.

    Each chunk gets its own seed from (seed, copy, chunk), so results do not depend on `workers`.
    """
    validate(spec, dataset)
    tasks = (
        (
            spec,
            dataset,
            int(np.random.SeedSequence([seed, copy, start]).generate_state(1)[0]),
            np.asarray(images[start : start + CHUNK]),
            None if masks is None else np.asarray(masks[start : start + CHUNK]),
        )
        for copy in range(spec.copies)
        for start in range(0, len(images), CHUNK)
    )
    total = spec.copies * len(images)
    with tqdm(total=total, desc=f"augment {dataset}", unit="img", disable=not progress) as bar:
        if workers <= 1:
            results = map(_augment_chunk, tasks)
            for out in results:
                bar.update(len(out[0]))
                yield out
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for out in pool.map(_augment_chunk, tasks):
                    bar.update(len(out[0]))
                    yield out


def augment_split(
    spec: Augment,
    dataset: str,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    out_dir: Path,
    workers: int = 1,
    progress: bool = True,
    masks: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Write train_x.npy (originals, then each augmented copy) and train_y.npy into out_dir.

    With `masks`, `labels` are per-pixel masks (N, H, W): each copy's masks get the same geometric
    transforms as its images (albumentations' mask target, nearest-neighbour), so they stay aligned.
    """
    from pipeline.data.arrays import NpyWriter

    n = len(images)
    out_dir = Path(out_dir)
    with (
        NpyWriter(out_dir / "train_x.npy", images.shape[1:], n * (1 + spec.copies)) as writer,
        NpyWriter(out_dir / "train_y.npy", labels.shape[1:], n * (1 + spec.copies))
        if masks
        else nullcontext() as mask_writer,
    ):
        for start in range(0, n, CHUNK):
            for row in np.asarray(images[start : start + CHUNK]):
                writer.append(row)
            if masks:
                for row in np.asarray(labels[start : start + CHUNK]):
                    mask_writer.append(row)
        chunks = augmented_copies(
            spec, dataset, images, seed, masks=labels if masks else None, workers=workers, progress=progress
        )
        for chunk, mask_chunk in chunks:
            for row in chunk:
                writer.append(row)
            if masks:
                for row in mask_chunk:
                    mask_writer.append(row)
    if masks:
        return tuple(np.load(out_dir / f"train_{a}.npy", mmap_mode="r") for a in "xy")
    y = np.tile(np.asarray(labels), 1 + spec.copies)
    np.save(out_dir / "train_y.npy", y)
    return np.load(out_dir / "train_x.npy", mmap_mode="r"), y

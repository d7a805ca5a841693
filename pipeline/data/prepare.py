"""Turn a dataset's source into split uint8 arrays plus manifest.json, streaming image by image."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipeline.data import folder, lfw, motion, seg_folder, shapes, spectra, textures, tracks
from pipeline.data.arrays import SPLITS, NpyWriter, atomic_dir, write_json
from pipeline.data.split import stratified_split
from pipeline.errors import UserError
from pipeline.params import (
    MOTION_CLASSES,
    SHAPE_CLASSES,
    SPECTRA_CLASSES,
    Dataset,
    FolderDataset,
    LfwDataset,
    MotionDataset,
    SegFolderDataset,
    ShapesDataset,
    SpectraDataset,
    TexturesDataset,
    TracksDataset,
)

CLASSIFICATION, SEGMENTATION = "classification", "segmentation"
SKIPPED_LISTED = 100  # skipped files named in the manifest; the rest are only counted (memory stays flat)


@dataclass
class Source:
    """What prepare needs of a source: labels up front, and each image on demand.

    For segmentation, `load` gives (image, mask of class indices) and `labels` only stratify the split.
    """

    classes: list[str]
    labels: list[int]
    row_shape: tuple[int, ...]
    load: Callable[[int], Any]  # an image, or (image, mask); may raise folder.SkipImage
    describe: Callable[[int], str]
    hasher: Any = field(default_factory=hashlib.sha256)  # has .hexdigest()
    task: str = CLASSIFICATION
    background: str | None = None  # segmentation: the class that is not an object
    # Where image k's figure is drawn (uint8 mask, H x W), for sources that know: {split}_figure.npy.
    figure: Callable[[int], np.ndarray] | None = None


def shapes_source(ds: ShapesDataset, seed: int) -> Source:
    if ds.positive is None:
        classes = list(ds.classes)
        plan = [(label, kind, i) for label, kind in enumerate(classes) for i in range(ds.per_class)]
    else:
        # Binary task: as many positives as the other classes together, so it stays balanced.
        classes = [f"not_{ds.positive}", ds.positive]
        others = [c for c in ds.classes if c != ds.positive]
        share = max(1, ds.per_class // len(others))
        plan = [(1, ds.positive, i) for i in range(ds.per_class)]
        plan += [(0, kind, i) for kind in others for i in range(share)]

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        _, kind, i = plan[k]
        rng = np.random.default_rng([seed, SHAPE_CLASSES.index(kind), i])
        args = (ds.image_size, ds.noise, ds.min_intensity, ds.max_stroke, ds.placement)
        return shapes.render_with_figure(kind, rng, *args)

    source = Source(
        classes=classes,
        labels=[label for label, _, _ in plan],
        row_shape=(ds.image_size, ds.image_size, 1),
        load=lambda k: draw(k)[0][..., None],
        describe=lambda k: f"{plan[k][1]}#{plan[k][2]}",
        figure=lambda k: draw(k)[1],
    )
    # Generated data is defined by its parameters, the seed and the drawing code's version.
    source.hasher.update(
        json.dumps([ds.model_dump(), seed, shapes.GENERATOR_VERSION], sort_keys=True).encode()
    )
    return source


def generated_source(
    ds: Dataset,
    seed: int,
    all_classes: tuple[str, ...],
    row_shape: tuple[int, ...],
    draw: Callable[[str, np.random.Generator], np.ndarray],
    version: int,
) -> Source:
    """A seeded generator's source: `per_class` rows of each class, each drawn from its own rng."""
    classes = list(ds.classes)
    plan = [(label, kind, i) for label, kind in enumerate(classes) for i in range(ds.per_class)]

    def load(k: int) -> np.ndarray:
        _, kind, i = plan[k]
        return draw(kind, np.random.default_rng([seed, all_classes.index(kind), i])).reshape(row_shape)

    source = Source(
        classes=classes,
        labels=[label for label, _, _ in plan],
        row_shape=row_shape,
        load=load,
        describe=lambda k: f"{plan[k][1]}#{plan[k][2]}",
    )
    source.hasher.update(json.dumps([ds.model_dump(), seed, version], sort_keys=True).encode())
    return source


def spectra_source(ds: SpectraDataset, seed: int) -> Source:
    def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
        return spectra.render(kind, rng, ds.length, ds.counts)

    return generated_source(ds, seed, SPECTRA_CLASSES, (ds.length, 1), draw, spectra.GENERATOR_VERSION)


def motion_source(ds: MotionDataset, seed: int) -> Source:
    """Whole videos (frames, h, w, 1), or with `frame: k` only frame k of the very same videos (h, w, 1)."""

    def draw(kind: str, rng: np.random.Generator) -> np.ndarray:
        video = motion.render(kind, rng, ds.frames, ds.image_size, ds.speed, ds.noise)
        return video if ds.frame is None else video[ds.frame]

    size = (ds.image_size, ds.image_size, 1)
    shape = size if ds.frame is not None else (ds.frames, *size)
    return generated_source(ds, seed, MOTION_CLASSES, shape, draw, motion.GENERATOR_VERSION)


def folder_source(ds: FolderDataset) -> Source:
    root = Path(ds.path)
    classes, items = folder.scan(root, ds.classes)
    hasher = _FolderHasher(len(items))

    def load(k: int) -> np.ndarray:
        path = items[k][1]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise folder.SkipImage(f"unreadable: {exc.strerror}") from None
        hasher.add(k, items.relative(k).encode() + b"\0" + data)
        return folder.read_image(data, ds.image_size, ds.channels, ds.resize)

    return Source(
        classes=classes,
        labels=items.labels.tolist(),
        row_shape=(ds.image_size, ds.image_size, ds.channels),
        load=load,
        describe=items.relative,
        hasher=hasher,
    )


class _FolderHasher:
    """Hash of every file's path and bytes, in index order, whatever order they were read in.

    One 32-byte digest per file in one array (not a dict of bytes objects), so memory stays flat.
    """

    def __init__(self, n: int):
        self.digests = np.zeros((n, 32), np.uint8)
        self.seen = np.zeros(n, bool)

    def add(self, k: int, data: bytes) -> None:
        self.digests[k] = np.frombuffer(hashlib.sha256(data).digest(), np.uint8)
        self.seen[k] = True

    def hexdigest(self) -> str:
        return hashlib.sha256(self.digests[self.seen].tobytes()).hexdigest()


def tracks_source(ds: TracksDataset, seed: int) -> Source:
    """Frames stratified by whether they hold a beta track, the rare class the physics is about."""

    def load(k: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = tracks.render(seed, k, ds)
        return image[..., None], mask

    source = Source(
        classes=list(tracks.CLASSES),
        labels=[int(tracks.plan(seed, k, ds)[2] > 0) for k in range(ds.frames)],
        row_shape=(ds.image_size, ds.image_size, 1),
        load=load,
        describe=lambda k: f"frame#{k}",
        task=SEGMENTATION,
        background=tracks.CLASSES[tracks.BACKGROUND],
    )
    source.hasher.update(
        json.dumps([ds.model_dump(), seed, tracks.GENERATOR_VERSION], sort_keys=True).encode()
    )
    return source


def seg_folder_source(ds: SegFolderDataset, name: str) -> Source:
    """Image and mask pairs, split at random (nothing cheap to stratify by before reading masks)."""
    root = Path(ds.path)
    pairs = seg_folder.scan(root, f"datasets.{name}")
    seg_folder.check(pairs, root, ds.classes, f"datasets.{name}")
    classes = list(ds.classes)
    index_of = np.zeros(256, np.int64)
    for index, mask_id in enumerate(ds.classes.values()):
        index_of[mask_id] = index
    fill = classes.index(ds.background) if ds.background is not None else 0
    hasher = _FolderHasher(len(pairs))

    def load(k: int) -> tuple[np.ndarray, np.ndarray]:
        stem, image_path, mask_path = pairs[k]
        try:
            image_data, mask_data = image_path.read_bytes(), mask_path.read_bytes()
        except OSError as exc:
            raise folder.SkipImage(f"unreadable: {exc.strerror}") from None
        hasher.add(k, stem.encode() + b"\0" + image_data + b"\0" + mask_data)
        image = folder.read_image(image_data, ds.image_size, ds.channels, ds.resize)
        mask = seg_folder.read_mask(mask_data, index_of, ds.image_size, ds.resize, fill)
        return image, mask

    return Source(
        classes=classes,
        labels=[0] * len(pairs),
        row_shape=(ds.image_size, ds.image_size, ds.channels),
        load=load,
        describe=lambda k: pairs[k][1].relative_to(root).as_posix(),
        hasher=hasher,
        task=SEGMENTATION,
        background=ds.background,
    )


def lfw_source(ds: LfwDataset) -> Source:
    images, labels = lfw.load(ds.image_size)
    source = Source(
        classes=list(lfw.CLASSES),
        labels=labels.tolist(),
        row_shape=tuple(images.shape[1:]),
        load=lambda k: images[k],
        describe=lambda k: f"lfw_subset#{k}",
    )
    source.hasher.update(images.tobytes())
    return source


def textures_source(ds: TexturesDataset, seed: int) -> Source:
    """Tiles of each class's photo (pipeline.data.textures), drawn and lit from the seed."""
    size, classes = ds.image_size, list(ds.classes)
    plan = textures.plan(classes, ds.per_class, size, seed)

    def load(k: int) -> np.ndarray:
        label, corner = plan[k]
        return textures.render(classes[label], corner, size, seed, ds.brightness, ds.contrast)[..., None]

    source = Source(
        classes=classes,
        labels=[label for label, _ in plan],
        row_shape=(size, size, 1),
        load=load,
        describe=lambda k: f"{classes[plan[k][0]]} tile at row {plan[k][1][0]}, column {plan[k][1][1]}",
    )
    # Its parameters, the seed, the drawing code's version and the photos scikit-image ships.
    source.hasher.update(
        json.dumps([ds.model_dump(), seed, textures.GENERATOR_VERSION], sort_keys=True).encode()
    )
    for name in classes:
        source.hasher.update(textures.photo(name).tobytes())
    return source


def make_source(ds: Dataset, seed: int, name: str = "") -> Source:
    if isinstance(ds, ShapesDataset):
        return shapes_source(ds, seed)
    if isinstance(ds, LfwDataset):
        return lfw_source(ds)
    if isinstance(ds, TexturesDataset):
        return textures_source(ds, seed)
    if isinstance(ds, TracksDataset):
        return tracks_source(ds, seed)
    if isinstance(ds, SegFolderDataset):
        return seg_folder_source(ds, name)
    if isinstance(ds, SpectraDataset):
        return spectra_source(ds, seed)
    if isinstance(ds, MotionDataset):
        return motion_source(ds, seed)
    return folder_source(ds)


def read_rows(path: Path, indices) -> Iterator[np.ndarray]:
    """Rows `indices` of a .npy file, each read with its own pread. Not through a memory mapping: every
    page read from a mapping counts towards the process's resident memory, so copying a scratch file
    of the whole dataset that way made prepare's peak grow with the dataset (the prepare benchmark:
    1.95 GiB for 40,000 128x128 RGB images); read, the rows pass through the page cache alone."""
    layout = np.load(path, mmap_mode="r")  # numpy's reading of the header; no page of it is touched
    offset, dtype, row_shape = layout.offset, layout.dtype, layout.shape[1:]
    del layout
    size = int(np.prod(row_shape)) * dtype.itemsize
    with open(path, "rb") as f:
        for j in indices:
            yield np.frombuffer(os.pread(f.fileno(), size, offset + int(j) * size), dtype).reshape(row_shape)


def prepare(name: str, ds: Dataset, seed: int, out_dir: Path, progress: bool = True) -> dict:
    """Write {train,val,test}_{x,y}.npy and manifest.json into out_dir; returns the manifest.

    Every file is decoded first, into one scratch array beside the outputs; the split is then drawn
    over the images that decoded, so the stratified fractions hold over what is usable (a class with
    bad files loses them, not a share of its test split), and the usable images are copied into
    their splits. Each image is decoded once and memory stays flat.
    """
    source = make_source(ds, seed, name)
    segmentation = source.task == SEGMENTATION
    skipped: list[dict] = []  # the first SKIPPED_LISTED, in reading order
    skipped_count = 0
    counts: dict[str, dict[str, int]] = {}
    images: dict[str, int] = {}
    total = len(source.labels)
    with atomic_dir(out_dir) as tmp:
        all_x, all_y = tmp / "decoded_x.npy", tmp / "decoded_y.npy"
        usable: list[int] = []
        bar = tqdm(total=total, desc=f"prepare {name}", unit="img", disable=not progress)
        with (
            NpyWriter(all_x, source.row_shape, total) as writer,
            # Masks are the labels of segmentation: {split}_y.npy of shape (N, H, W), uint8.
            NpyWriter(all_y, source.row_shape[:2], total) if segmentation else nullcontext() as mask_writer,
        ):
            for k in range(total):
                bar.update()
                try:
                    row = source.load(k)
                except folder.SkipImage as exc:
                    skipped_count += 1
                    if len(skipped) < SKIPPED_LISTED:
                        skipped.append({"file": source.describe(k), "reason": str(exc)})
                    continue
                if segmentation:
                    writer.append(row[0])
                    mask_writer.append(row[1])
                else:
                    writer.append(row)
                usable.append(k)
        bar.close()
        labels = np.asarray([source.labels[k] for k in usable], dtype=np.int64)
        if segmentation and not usable:
            raise UserError(f"datasets.{name}: no usable image ({skipped_count} file(s) skipped)")
        empty = [c for i, c in enumerate(source.classes) if not (labels == i).any()]
        if empty and not segmentation:
            example = f", e.g. {skipped[0]['file']}: {skipped[0]['reason']}" if skipped else ""
            raise UserError(
                f"datasets.{name}: class(es) {empty} have no usable image "
                f"({skipped_count} file(s) skipped{example})"
            )
        splits = stratified_split(labels, ds.val_fraction, ds.test_fraction, seed)
        for split in SPLITS:
            idx = splits[split]
            pixels = np.zeros(len(source.classes), np.int64)  # segmentation: pixels per class
            with (
                NpyWriter(tmp / f"{split}_x.npy", source.row_shape, len(idx)) as writer,
                NpyWriter(tmp / f"{split}_y.npy", source.row_shape[:2], len(idx))
                if segmentation
                else nullcontext() as mask_writer,
            ):
                masks = read_rows(all_y, idx) if segmentation else None
                for row in read_rows(all_x, idx):
                    writer.append(row)
                    if segmentation:
                        mask = next(masks)
                        mask_writer.append(mask)
                        pixels += np.bincount(mask.ravel(), minlength=len(source.classes))
            images[split] = len(idx)
            if source.figure is not None:  # drawn again: the images stay as they were, byte for byte
                with NpyWriter(tmp / f"{split}_figure.npy", source.row_shape[:2], len(idx)) as figures:
                    for j in idx:
                        figures.append(source.figure(usable[j]))
            if segmentation:
                counts[split] = {c: int(pixels[i]) for i, c in enumerate(source.classes)}
                continue
            kept = labels[idx]
            np.save(tmp / f"{split}_y.npy", kept)
            per_class = Counter(kept.tolist())
            counts[split] = {c: per_class.get(i, 0) for i, c in enumerate(source.classes)}
        all_x.unlink()
        all_y.unlink(missing_ok=True)
        manifest = {
            "name": name,
            "source": ds.source,
            # Train and evaluate branch on this; for segmentation, counts are pixels per class.
            "task": source.task,
            "images": images,
            "classes": source.classes,
            "shape": list(source.row_shape),
            "counts": counts,
            "source_hash": source.hasher.hexdigest(),
            "skipped": sorted(skipped, key=lambda s: s["file"]),
            "skipped_count": skipped_count,
            "params": ds.model_dump(),
            "seed": seed,
        }
        if skipped_count > len(skipped):
            manifest["skipped_listed"] = (
                f"the first {len(skipped)} of {skipped_count} skipped files in reading order; the rest are "
                "only counted"
            )
        if segmentation:
            manifest["background"] = source.background
        write_json(tmp / "manifest.json", manifest)
    if skipped_count:
        print(f"prepare {name}: skipped {skipped_count} file(s); see {out_dir / 'manifest.json'}")
    return manifest

"""Albumentations pipelines declared in params.yaml, checked against albumentations itself."""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
import weakref
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network call at import
import albumentations as A
from pydantic import ValidationError

from pipeline.errors import UserError, choices_hint
from pipeline.params import Augment, Transform

CHUNK = 256  # most images per task and per copied block: small enough to balance and to stream
MIN_CHUNK = 16


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


def _chunk_size(total: int, workers: int) -> int:
    # Only row indices cross process boundaries, so a task costs little: several tasks per worker
    # balance the load, and at least MIN_CHUNK images per task amortise the hand-off.
    return max(MIN_CHUNK, min(CHUNK, -(-total // (workers * 8))))


# Per process: the Compose (built once), the originals memory-mapped from the output file, and that
# file open for writing. A pool worker gets it from _init_worker, a one-worker run in-process.
_state: dict = {}


def _init_worker(spec: Augment, dataset: str, seed: int, n: int, paths: list[Path]) -> None:
    import cv2

    arrays = [np.load(p, mmap_mode="r") for p in paths]
    # One OpenCV thread per process: a pool of workers already occupies the cores (and one worker
    # means one core, as the benchmark compares).
    _state["cv2_threads"] = cv2.getNumThreads()
    cv2.setNumThreads(1)
    _state.update(
        compose=build_compose(spec, dataset, seed),
        dataset=dataset,
        seed=seed,
        n=n,
        arrays=arrays,
        fds=[os.open(p, os.O_WRONLY) for p in paths],
    )


def _close_worker() -> None:
    import cv2

    for fd in _state.get("fds", []):
        os.close(fd)
    if "cv2_threads" in _state:
        cv2.setNumThreads(_state["cv2_threads"])
    _state.clear()


def _fill(rows: tuple[int, int]) -> int:
    """Augment copy rows [lo, hi) (row r is copy r // n of image r % n) and write them into the output."""
    compose, dataset, seed, n = (_state[k] for k in ("compose", "dataset", "seed", "n"))
    x, *y = _state["arrays"]
    lo, hi = rows
    out = [np.empty((hi - lo, *a.shape[1:]), a.dtype) for a in _state["arrays"]]
    for j, r in enumerate(range(lo, hi)):
        copy, i = divmod(r, n)
        # Each image's draws come from (seed, copy, image) alone, so the bytes do not depend on the
        # number of workers or the chunking.
        image_seed = int(_copy_seeds(seed, copy, n)[i])
        mask = np.asarray(y[0][i]) if y else None
        image, mask = _draw(compose, dataset, image_seed, np.asarray(x[i]), mask)
        out[0][j] = image
        if y:
            out[1][j] = mask
    for fd, array, block in zip(_state["fds"], _state["arrays"], out, strict=True):
        _write_rows(fd, array, n + lo, block)
    return hi - lo


def _draw(
    compose: A.Compose, dataset: str, image_seed: int, image: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One augmented image (and its mask, moved alike), its draws from `image_seed` alone."""
    # One generator shared by all transforms: see build_compose.
    compose.set_random_state(np.random.Generator(np.random.PCG64(image_seed)), random.Random(image_seed))
    if mask is None:
        return _keep_channels(_transform(compose, image), image, dataset), None
    res = compose(image=image, mask=mask)
    return _keep_channels(res["image"], image, dataset), res["mask"].reshape(mask.shape)


def _copy_seeds(seed: int, copy: int, n: int) -> np.ndarray:
    """One seed per image of a copy, drawn once per process (a SeedSequence per image costs 40 us)."""
    key = ("seeds", copy)
    if key not in _state:
        _state[key] = np.random.SeedSequence([seed, copy]).generate_state(n, np.uint64)
    return _state[key]


def _write_rows(fd: int, array: np.memmap, first: int, block: np.ndarray) -> None:
    # One write call per block: stores into a shared file mapping would fault (and, on ext4, allocate)
    # page by page, which cost more than the augmentation itself.
    data = memoryview(np.ascontiguousarray(block)).cast("B")
    offset = array.offset + first * block[0].nbytes
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


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
    chunk: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Write train_x.npy (originals, then each augmented copy) and train_y.npy into out_dir.

    With `masks`, `labels` are per-pixel masks (N, H, W): each copy's masks get the same geometric
    transforms as its images (albumentations' mask target, nearest-neighbour), so they stay aligned.
    The output does not depend on `workers` or `chunk` (images per task), byte for byte.
    """
    validate(spec, dataset)
    n = len(images)
    out_dir = Path(out_dir)
    rows = n * (1 + spec.copies)
    x_path, y_path = out_dir / "train_x.npy", out_dir / "train_y.npy"
    # The originals go first into the output; workers read them from there (memory-mapped) and write
    # their copies after them, so only row indices cross process boundaries.
    sources = [(x_path, images)] + ([(y_path, labels)] if masks else [])
    for path, src in sources:
        # The .npy header and a file of the full size (sparse until the rows are written below).
        np.lib.format.open_memmap(
            path, mode="w+", dtype=src.dtype, shape=(rows, *src.shape[1:])
        )._mmap.close()
    paths = [path for path, _ in sources]
    total = spec.copies * n
    size = chunk or _chunk_size(total, workers)
    tasks = [(lo, min(lo + size, total)) for lo in range(0, total, size)]
    init_args = (spec, dataset, seed, n, paths)
    with tqdm(total=total, desc=f"augment {dataset}", unit="img", disable=not progress) as bar:
        _init_worker(*init_args)
        try:
            for start in range(0, n, CHUNK):
                for fd, array, (_, src) in zip(_state["fds"], _state["arrays"], sources, strict=True):
                    _write_rows(fd, array, start, np.asarray(src[start : start + CHUNK]))
            if workers <= 1 or len(tasks) <= 1:
                for task in tasks:
                    bar.update(_fill(task))
        finally:
            _close_worker()
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(
                max_workers=workers, initializer=_init_worker, initargs=init_args
            ) as pool:
                for done in pool.map(_fill, tasks):
                    bar.update(done)
    if masks:
        return tuple(np.load(out_dir / f"train_{a}.npy", mmap_mode="r") for a in "xy")
    y = np.tile(np.asarray(labels), 1 + spec.copies)
    np.save(y_path, y)
    return np.load(x_path, mmap_mode="r"), y


# Online mode: the augment stage writes the training split as prepared and this recipe beside it;
# the train stage draws fresh views every epoch (OnlineAugment). The train stage keeps one input
# folder for both modes, and DVC stores the unchanged split once (same bytes, same cache entry).
ONLINE_FILE = "online.json"


def write_online(spec: Augment, dataset: str, seed: int, data: Path, out_dir: Path, masks: bool) -> None:
    """Online mode's output: data's train_x/train_y byte for byte (no copies) and online.json."""
    validate(spec, dataset)
    for name in ("train_x.npy", "train_y.npy"):
        shutil.copyfile(Path(data) / name, Path(out_dir) / name)
    recipe = {"dataset": dataset, "seed": seed, "masks": masks, "augment": spec.model_dump()}
    (Path(out_dir) / ONLINE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def online_for(train: Path, workers: int) -> OnlineAugment | None:
    """The online augmentation an augment stage's output folder asks for; None when offline."""
    path = Path(train) / ONLINE_FILE
    if not path.is_file():
        return None
    recipe = json.loads(path.read_text())
    spec = Augment.model_validate(recipe["augment"])
    paths = [Path(train) / "train_x.npy"] + ([Path(train) / "train_y.npy"] if recipe["masks"] else [])
    return OnlineAugment(spec, recipe["dataset"], recipe["seed"], paths, workers)


class _Views:
    """Draws training rows of one epoch: row r is view r // n of image r % n (view 0: the original)."""

    def __init__(self, spec: Augment, dataset: str, seed: int, arrays: list[np.ndarray]):
        self.compose = build_compose(spec, dataset, seed)
        self.dataset, self.seed, self.arrays = dataset, seed, arrays
        self._seeds: dict[tuple[int, int], np.ndarray] = {}

    def rows(self, epoch: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x, *m = self.arrays
        n = len(x)
        images = np.asarray(x[rows % n])
        masks = np.asarray(m[0][rows % n]) if m else None
        for j, r in enumerate(rows):
            view, i = divmod(int(r), n)
            if view:
                # (seed, epoch, view, image) alone: not the worker, the batch or what was drawn before.
                image_seed = int(self.seeds(epoch, view, n)[i])
                mask = None if masks is None else masks[j]
                images[j], mask = _draw(self.compose, self.dataset, image_seed, images[j], mask)
                if masks is not None:
                    masks[j] = mask
        return images, masks

    def seeds(self, epoch: int, view: int, n: int) -> np.ndarray:
        if (epoch, view) not in self._seeds:
            # This epoch's and its neighbours' (a task may hold the next epoch's first batches).
            self._seeds = {k: v for k, v in self._seeds.items() if abs(k[0] - epoch) <= 1}
            sequence = np.random.SeedSequence([self.seed, epoch, view])
            self._seeds[epoch, view] = sequence.generate_state(n, np.uint64)
        return self._seeds[epoch, view]


_views: _Views | None = None  # a pool worker's own, made by _init_views


def _init_views(spec: Augment, dataset: str, seed: int, paths: list[Path]) -> None:
    import cv2

    global _views
    cv2.setNumThreads(1)  # the workers and TensorFlow already share the cores
    _views = _Views(spec, dataset, seed, [np.load(p, mmap_mode="r") for p in paths])


def _draw_batches(batches: list[tuple[int, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    return [_views.rows(epoch, rows) for epoch, rows in batches]


class OnlineAugment:
    """Fresh augmented views for the train stage: each epoch reads the n training images and `copies`
    views of each (pipeline.training.ArrayBatches asks for `rows` rows, in its seeded order).

    Every view depends on (seed, epoch, view, image) alone, so a rerun is byte-identical whatever the
    workers, and a resumed training (ArrayBatches.start_at) sees the views it would have seen. With
    workers > 1, processes draw the next batches while the current one trains.
    """

    GROUP = 4  # batches per task: each hand-off wakes a worker and the pool's threads on busy cores

    def __init__(self, spec: Augment, dataset: str, seed: int, paths: list[Path], workers: int):
        arrays = [np.load(p, mmap_mode="r") for p in paths]
        self.masks = len(arrays) > 1
        self.rows = len(arrays[0]) * (1 + spec.copies)
        # Batches asked for ahead (ArrayBatches passes that many upcoming ones): two groups per
        # worker in flight, so a worker descheduled on a busy core delays no step.
        self.ahead = 2 * self.GROUP * workers if workers > 1 else 0
        self._pending: dict[tuple[int, bytes], tuple[Future, int]] = {}
        self._pool = None
        self._local = None
        if workers > 1:
            import multiprocessing

            # forkserver: the workers do not inherit TensorFlow's threads (a fork would); its server
            # imports albumentations once for all of them.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_views,
                initargs=(spec, dataset, seed, paths),
            )
            self._closer = weakref.finalize(self, self._pool.shutdown, wait=True, cancel_futures=True)
        else:
            self._local = _Views(spec, dataset, seed, arrays)

    def _submit(self, batches: list[tuple[int, np.ndarray]]) -> None:
        future = self._pool.submit(_draw_batches, batches)
        for j, (epoch, rows) in enumerate(batches):
            self._pending[epoch, rows.tobytes()] = (future, j)

    def batch(
        self, epoch: int, rows: np.ndarray, next_rows: list[tuple[int, np.ndarray]] = ()
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Images (and masks) of `rows` in `epoch`; `next_rows` are the (epoch, rows) that come next."""
        if self._pool is None:
            return self._local.rows(epoch, rows)
        key = (epoch, rows.tobytes())
        if key not in self._pending:
            self._submit([(epoch, rows)])
        window = list(next_rows[: self.ahead])
        todo = [(e, r) for e, r in window if (e, r.tobytes()) not in self._pending]
        # Whole groups only, but the window's last batches when it is short (the training's end).
        full = len(todo) if len(window) < self.ahead else len(todo) - len(todo) % self.GROUP
        for lo in range(0, full, self.GROUP):
            self._submit(todo[lo : lo + self.GROUP])
        future, j = self._pending.pop(key)
        # Batches of an earlier epoch were asked for ahead and will not be (a resumed or shorter
        # fit): drop them.
        for stale in [k for k in self._pending if k[0] < epoch]:
            self._pending.pop(stale)[0].cancel()
        return future.result()[j]

    def close(self) -> None:
        if self._pool is not None:
            self._closer()


def online_preview(
    spec: Augment, dataset: str, seed: int, x: np.ndarray, y: np.ndarray | None, n: int, epochs: int
) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The first n training images, then view 1 of each as the train stage draws it in each of `epochs`."""
    views = _Views(spec, dataset, seed, [x] if y is None else [x, y])
    first = np.arange(n) + len(x) * min(1, spec.copies)
    return [(np.asarray(x[:n]), None if y is None else np.asarray(y[:n]))] + [
        views.rows(epoch, first) for epoch in range(epochs if spec.copies else 0)
    ]

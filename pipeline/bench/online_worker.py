"""Child process for benchmark 7: the train stage's fit with online augmentation against offline copies.

    python -m pipeline.bench.online_worker --work DIR --images N --size S --epochs E --repeats R

Both modes train the default cnn on the same rows per epoch (N originals and one augmented view of
each, augment.shapes' transforms): offline reads copies the augment stage wrote, online draws them
afresh in runtime.workers processes. Prints one JSON line: images/s per repeat for each mode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline import params as params_module
from pipeline.bench.common import ROOT
from pipeline.bench.epoch_timer import EpochTimer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--images", type=int, required=True, help="original training images")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    params = params_module.load(ROOT / "params.yaml")
    runtime = params.runtime.model_copy(update={"verbose": 0})
    from pipeline import runtime as runtime_module

    keras = runtime_module.setup(runtime, params.seed)
    from pipeline import training
    from pipeline.data import augment
    from pipeline.models.registry import build
    from pipeline.params import arch_kwargs

    p = params.model("cnn").model_copy(update={"epochs": args.epochs})
    classes = 5
    rng = np.random.default_rng(params.seed)
    shape = (args.size, args.size, 1)
    prepared = args.work / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.images), ("val", max(p.batch_size, args.images // 5))):
        np.save(prepared / f"{split}_x.npy", rng.integers(0, 256, (n, *shape), dtype=np.uint8))
        np.save(prepared / f"{split}_y.npy", rng.integers(0, classes, n))
    x, y = np.load(prepared / "train_x.npy", mmap_mode="r"), np.load(prepared / "train_y.npy")
    vx, vy = np.load(prepared / "val_x.npy", mmap_mode="r"), np.load(prepared / "val_y.npy")
    spec = params.augment_for("shapes").model_copy(update={"copies": 1})
    folders = {"offline": args.work / "offline", "online": args.work / "online"}
    for folder in folders.values():
        folder.mkdir()
    augment.augment_split(
        spec, "shapes", x, y, params.seed, folders["offline"], runtime.workers, progress=False
    )
    augment.write_online(
        spec.model_copy(update={"mode": "online"}), "shapes", params.seed, prepared, folders["online"], False
    )

    def fit(mode: str) -> float:
        tx, ty = np.load(folders[mode] / "train_x.npy", mmap_mode="r"), np.load(folders[mode] / "train_y.npy")
        online = augment.online_for(folders[mode], runtime.workers)  # None offline
        train_data = training.ArrayBatches(tx, ty, p.batch_size, True, params.seed, classes, augment=online)
        val_data = training.ArrayBatches(vx, vy, max(p.batch_size, 256), False, params.seed, classes)
        model = build(p.architecture, shape, classes, **arch_kwargs(p))
        training.compile_model(model, p, classes, len(train_data), runtime.jit_compile)
        timer = EpochTimer()
        training.fit(
            model,
            train_data,
            validation_data=val_data,
            epochs=p.epochs,
            callbacks=[timer.callback()],
            verbose=0,
        )
        if online is not None:
            online.close()
        return timer.images_per_second(train_data.rows)

    out: dict[str, list[float]] = {"offline": [], "online": []}
    for _ in range(args.repeats):
        for mode in out:  # alternated, so a burst of load on a shared machine hits both alike
            keras.backend.clear_session()
            keras.utils.set_random_seed(params.seed)
            out[mode].append(fit(mode))
    print(json.dumps({"workers": runtime.workers, **out}))


if __name__ == "__main__":
    main()

"""Child process for benchmarks 1, 5 and 6: the train stage's fit path against a bare model.fit.

    python -m pipeline.bench.train_worker --backend tensorflow --work DIR --images N ...

Prints one JSON line: images/s per repeat for each mode, MLflow logging seconds per epoch.
Images/s of a fit is the median over its epochs after the first (which builds the graph).
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
    ap.add_argument("--backend", default="tensorflow")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--modes", default="pipeline,bare")
    args = ap.parse_args()

    params = params_module.load(ROOT / "params.yaml")
    runtime = params.runtime.model_copy(update={"backend": args.backend, "verbose": 0})
    from pipeline import runtime as runtime_module

    keras = runtime_module.setup(runtime, params.seed)
    from pipeline import tracking, training
    from pipeline.models.registry import build
    from pipeline.params import Tracking, arch_kwargs

    p = params.model("cnn").model_copy(update={"epochs": args.epochs})
    classes = 5
    # Random pixels: throughput does not depend on what the images show.
    rng = np.random.default_rng(params.seed)
    shape = (args.size, args.size, 1)
    n_val = max(p.batch_size, args.images // 9)  # the default split's val share beside 2 copies of train
    args.work.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", args.images), ("val", n_val)):
        np.save(args.work / f"{split}_x.npy", rng.integers(0, 256, (n, *shape), dtype=np.uint8))
        np.save(args.work / f"{split}_y.npy", rng.integers(0, classes, n))
    # The stage reads memory-mapped arrays; the bare script holds them in memory.
    x = np.load(args.work / "train_x.npy", mmap_mode="r")
    vx = np.load(args.work / "val_x.npy", mmap_mode="r")
    y, vy = np.load(args.work / "train_y.npy"), np.load(args.work / "val_y.npy")
    store = Tracking(uri=f"sqlite:///{args.work / 'mlflow.db'}", experiment="bench")

    def pipeline_fit() -> tuple[EpochTimer, float]:
        train_data = training.ArrayBatches(x, y, p.batch_size, True, params.seed, classes)
        val_data = training.ArrayBatches(vx, vy, max(p.batch_size, 256), False, params.seed, classes)
        model = build(p.architecture, shape, classes, **arch_kwargs(p))
        training.compile_model(model, p, classes, len(train_data), runtime.jit_compile)
        timer = EpochTimer()
        checkpoints = training.Checkpoints(args.work / "checkpoints", "bench")
        with tracking.training_run(store, "cnn", {"bench": "1"}, {"model": "cnn"}) as run:
            logger = tracking.EpochLogger()
            best = training.BestAndResume(checkpoints, run.info.run_id, p.early_stopping, flush=logger.wait)
            callbacks = [keras.callbacks.LambdaCallback(on_epoch_end=logger.log), best, timer.callback()]
            training.fit(
                model, train_data, validation_data=val_data, epochs=p.epochs, callbacks=callbacks, verbose=0
            )
            logger.wait()  # as the stage does before saving the model
        checkpoints.clear()
        return timer, logger.seconds / p.epochs

    def bare_fit() -> EpochTimer:
        mx, mvx = np.asarray(x), np.asarray(vx)
        onehot = np.eye(classes, dtype="float32")
        model = build(p.architecture, shape, classes, **arch_kwargs(p))
        model.compile(
            optimizer=keras.optimizers.Adam(p.lr), loss="categorical_crossentropy", metrics=["accuracy"]
        )
        timer = EpochTimer()
        model.fit(
            mx,
            onehot[y],
            batch_size=p.batch_size,
            epochs=p.epochs,
            validation_data=(mvx, onehot[vy]),
            callbacks=[timer.callback()],
            verbose=0,
        )
        return timer

    modes = args.modes.split(",")
    out: dict[str, list[float]] = {m: [] for m in modes}
    out.update(log_seconds_per_epoch=[], pipeline_epoch_seconds=[])
    for _ in range(args.repeats):
        # Alternate the two, so a burst of load on a shared machine hits both alike.
        for mode in modes:
            keras.backend.clear_session()
            keras.utils.set_random_seed(params.seed)
            if mode == "pipeline":
                timer, log_seconds = pipeline_fit()
                out["log_seconds_per_epoch"].append(log_seconds)
                out["pipeline_epoch_seconds"].append(float(np.median(timer.seconds[1:] or timer.seconds)))
            else:
                timer = bare_fit()
            out[mode].append(timer.images_per_second(args.images))
    print(json.dumps({"backend": args.backend, **out}))


if __name__ == "__main__":
    main()

"""Benchmark 2's baseline: what a user's own script would do for the cnn, with no pipeline around it.

Loads the prepared arrays into memory, fits the same model on the same data, saves it, and scores
the test split and its shifted copies; no DVC, no MLflow, no plots. Run from the benchmark repo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline import params as params_module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    params = params_module.load("params.yaml")
    from pipeline import runtime

    keras = runtime.setup(params.runtime, params.seed)  # same backend and determinism as the stage
    from pipeline.metrics import shift_robustness
    from pipeline.models.registry import build
    from pipeline.params import arch_kwargs

    p = params.model("cnn")
    x, y = np.load(args.train / "train_x.npy"), np.load(args.train / "train_y.npy")
    vx, vy = np.load(args.data / "val_x.npy"), np.load(args.data / "val_y.npy")
    tx, ty = np.load(args.data / "test_x.npy"), np.load(args.data / "test_y.npy")
    classes = int(max(y.max(), vy.max(), ty.max())) + 1
    onehot = np.eye(classes, dtype="float32")
    model = build(p.architecture, x.shape[1:], classes, **arch_kwargs(p))
    model.compile(
        optimizer=keras.optimizers.Adam(p.lr), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(
        x, onehot[y], batch_size=p.batch_size, epochs=p.epochs, validation_data=(vx, onehot[vy]), verbose=0
    )
    model.save(args.out)
    shift = shift_robustness(lambda images: model.predict(images, verbose=0), tx, ty, p.shifts)
    print(f"bare cnn: test accuracy {shift[str(min(p.shifts))]:.4f}")


if __name__ == "__main__":
    main()

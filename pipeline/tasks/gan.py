"""What training both GAN families shares: Adam with a decaying rate, and the per-epoch measures
(FID, a sample grid logged to MLflow) that also make up history.csv."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras


def adam(lr: float, beta_1: float, steps: int) -> keras.optimizers.Optimizer:
    """Adam whose learning rate decays to 0 over `steps` (cosine): at a constant rate the samples of
    consecutive epochs swung far apart (FID 9 -> 88 -> 11), so the last epoch's were a lottery."""
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps))
    return keras.optimizers.Adam(learning_rate=schedule, beta_1=beta_1)


# ---------------------------------------------------------------- DCGAN

class EpochMeasures(keras.callbacks.Callback):
    """After each epoch: `measure()` adds its metrics to the epoch's logs (so the MLflow epoch logger
    after this callback logs them too), `grid(path)` draws the fixed-seed samples, which go to MLflow
    as the image `samples` at that step; every epoch's logs are kept for history.csv."""

    def __init__(self, measure: Callable[[], dict[str, float]], grid: Callable[[Path], None], run_id: str):
        super().__init__()
        self.measure, self.grid, self.run_id = measure, grid, run_id
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from pipeline import tracking

        logs = logs if logs is not None else {}
        logs.update(self.measure())
        self.history.append({k: float(v) for k, v in logs.items()})
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "samples.png"
            self.grid(png)
            tracking.log_epoch_image(self.run_id, png, "samples", epoch)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k.startswith(("fid", "cycle_error")))
        print(f"epoch {epoch + 1}: {shown}", flush=True)

    def columns(self) -> dict[str, list[float]]:
        keys = sorted({k for row in self.history for k in row})
        return {k: [row.get(k, math.nan) for row in self.history] for k in keys}


"""Seconds per epoch of a Keras fit, and images/s over the steady epochs: every training benchmark's
clock (light: Keras is imported only when the callback is made, so the GPU benchmark can use it)."""

from __future__ import annotations

import time

import numpy as np


class EpochTimer:
    """Seconds of each epoch, registered last so the other callbacks' work counts."""

    def __init__(self):
        self.seconds: list[float] = []
        self._last = 0.0

    def callback(self):
        import keras

        def begin(logs=None):
            self._last = time.perf_counter()

        def end(epoch, logs=None):
            now = time.perf_counter()
            self.seconds.append(now - self._last)
            self._last = now

        return keras.callbacks.LambdaCallback(on_train_begin=begin, on_epoch_end=end)

    def images_per_second(self, images: int) -> float:
        steady = self.seconds[1:] or self.seconds
        return images / float(np.median(steady))

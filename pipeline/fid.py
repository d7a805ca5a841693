"""FID (EfficientNet-Lite0 features): the Fréchet distance between two image sets' pooled features.

The usual FID uses Inception-v3 features; this one uses the globally averaged last feature map
(1280 channels) of the offline ImageNet EfficientNet-Lite0, so its numbers are comparable between
our runs only, never with published (Inception) FIDs. Grayscale images are repeated into RGB and
resized inside the extractor. Both sets must be scored with the same extractor and, since the
estimate is biased by the sample size, with the same number of images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

METRIC = "fid_lite0"  # its metric name in MLflow and metrics.json
NAME = "FID (EfficientNet-Lite0 features)"  # its name in titles and messages
# The backbone's smallest input. Measured on the shapes test split (375 images, 2-core CPU): random
# halves against each other 0.95..1.35, against noise 15.5, rings against other figures 22 (spread
# across halves ~1% of those distances); at 64 and 96 the spread is as small relative to the
# distances, but extraction takes 4x and 15x as long, too slow to score every epoch.
INPUT_SIZE = 32


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(s1 + s2 - 2 (s1 s2)^(1/2)) of two Gaussians, by symmetric eigendecompositions.

    tr((s1 s2)^(1/2)) equals the sum of the square roots of the eigenvalues of r s2 r with r = s1^(1/2),
    which is symmetric positive semi-definite: no complex matrix square root, no round-off imaginary part.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    r = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    m = r @ s2 @ r
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross, 0.0))


def features_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """frechet_distance of two feature sets' statistics, computed in the (small) sample space.

    With a = centred f1 / sqrt(n1 - 1) and b likewise, s1 = a'a and s2 = b'b, and tr((s1 s2)^(1/2))
    is the sum of the singular values of a b' (n1 x n2): a few hundred samples of 1280 features
    cost an SVD of a few hundred rows instead of eigendecompositions of 1280 x 1280 matrices.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    mu1, mu2 = f1.mean(axis=0), f2.mean(axis=0)
    a = (f1 - mu1) / np.sqrt(len(f1) - 1)
    b = (f2 - mu2) / np.sqrt(len(f2) - 1)
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * cross, 0.0))


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples)."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def feature_extractor(
    input_shape: tuple[int, ...], weights_dir: Path | None = None, input_size: int = INPUT_SIZE
):
    """Keras model: uint8-range images of `input_shape` -> (N, 1280) pooled ImageNet features."""
    import keras
    from keras import layers

    from pipeline.models.transfer import build_backbone

    backbone, _ = build_backbone("efficientnet_lite0", input_size, "imagenet", weights_dir)
    backbone.trainable = False
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = layers.Resizing(input_size, input_size, name="resize")(x)
    x = backbone(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name="fid_lite0_features")


class FidScorer:
    """Scores image sets against fixed reference images, with one extractor built once."""

    def __init__(self, reference: np.ndarray, weights_dir: Path | None = None, batch_size: int = 250):
        self.batch_size = batch_size
        self.extractor = feature_extractor(tuple(reference.shape[1:]), weights_dir)
        self.reference = self.features(reference)

    def features(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        out = [
            np.asarray(self.extractor(images[i : i + self.batch_size], training=False))
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out)

    def __call__(self, images: np.ndarray) -> float:
        """FID of `images` (uint8 range, 0..255) against the reference."""
        return features_distance(self.features(images), self.reference)

"""FID (EfficientNet-Lite0 features): the distance against scipy's matrix square root, its fast
sample-space form, and the extractor on real images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from pipeline import fid


def reference_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The textbook formula with scipy's (complex) matrix square root."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(16, 16))
    a = rng.normal(size=(200, 16)) @ mix
    b = rng.normal(size=(200, 16)) @ (mix * 1.5) + 0.7
    return a, b


def test_frechet_distance_matches_scipy_sqrtm(features):
    a, b = features
    expected = reference_fid(a, b)
    assert expected > 1.0
    assert fid.frechet_distance(*fid.statistics(a), *fid.statistics(b)) == pytest.approx(expected, rel=1e-6)
    # The sample-space form used every epoch gives the same number.
    assert fid.features_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fewer_samples_than_features_still_match():
    """Epoch samples are a few hundred images of 1280 features: singular covariances."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 64)), rng.normal(size=(30, 64)) * 2.0
    expected = reference_fid(a, b)
    assert fid.features_distance(a, b) == pytest.approx(expected, rel=1e-4)


def test_self_is_zero_and_different_distributions_are_not(features):
    a, b = features
    assert fid.features_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fid.frechet_distance(*fid.statistics(a), *fid.statistics(a)) == pytest.approx(0.0, abs=1e-6)
    assert fid.features_distance(a, b) > 100 * max(fid.features_distance(a, a), 1e-6)


def test_extractor_tells_real_images_apart(tmp_path):
    """On the real ImageNet weights: grayscale shapes score near 0 against themselves and clearly
    above that against noise; the features are the 1280 pooled channels of the backbone."""
    from pipeline.models.weights_import import LITE0_WEIGHTS_FILE, import_efficientnet_lite0

    import_efficientnet_lite0().save_weights(tmp_path / LITE0_WEIGHTS_FILE)
    rng = np.random.default_rng(0)
    images = np.zeros((40, 32, 32, 1), np.uint8)
    for i in range(40):  # bright squares of random size and place on black
        r, c, s = rng.integers(2, 16), rng.integers(2, 16), rng.integers(4, 14)
        images[i, r : r + s, c : c + s] = 255
    noise = rng.integers(0, 256, images.shape, dtype=np.uint8)
    scorer = fid.FidScorer(images[:20], tmp_path)
    assert scorer.features(images[:3]).shape == (3, 1280)
    same_kind = scorer(images[20:])
    other_kind = scorer(noise[:20])
    assert scorer(images[:20]) == pytest.approx(0.0, abs=1e-3)
    assert other_kind > 3 * same_kind

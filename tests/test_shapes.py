"""The shapes generator: reproducible images, and only angles carry a '/' diagonal stroke."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import shapes
from pipeline.data.prepare import shapes_source
from pipeline.params import SHAPE_CLASSES, ShapesDataset
from tests.conftest import entry

STROKE = 5  # a '/' run this long is the feature the lecture's filter finds; only angles may have one


def has_slash_run(mask: np.ndarray, length: int = STROKE) -> bool:
    """True if `length` pixels in a row go up and to the right ('/'), checked by plain shifting."""
    n_r, n_c = mask.shape
    hit = np.ones((n_r - length + 1, n_c - length + 1), bool)
    for j in range(length):  # pixel j of a run whose lower-left end is (r, c) sits at (r - j, c + j)
        hit &= mask[length - 1 - j : n_r - j, j : n_c - length + 1 + j]
    return bool(hit.any())


def figure(kind: str, index: int, size: int, max_stroke: int, placement: str = "random") -> np.ndarray:
    """The drawn figure of one sample as a mask: rendered without noise, above the background's range."""
    rng = np.random.default_rng([7, SHAPE_CLASSES.index(kind), index])
    img = shapes.render(
        kind, rng, size, noise=0.0, min_intensity=0.6, max_stroke=max_stroke, placement=placement
    )
    # Background is at most 0.15 of full scale and figures at least 0.6: cut half-way.
    return img > 0.375 * 255


def test_detector_on_hand_drawn_masks():
    mask = np.zeros((8, 8), bool)
    for j in range(5):
        mask[6 - j, 1 + j] = True  # '/'
    assert has_slash_run(mask)
    mask[4, 3] = False
    assert not has_slash_run(mask)
    backslash = np.eye(8, dtype=bool)  # '\'
    assert not has_slash_run(backslash)
    assert has_slash_run(np.fliplr(backslash))


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("max_stroke", [1, 2, 3])
@pytest.mark.parametrize("placement", ["random", "centered"])
def test_only_angles_have_a_slash_stroke(size, max_stroke, placement):
    for kind in SHAPE_CLASSES:
        found = [has_slash_run(figure(kind, i, size, max_stroke, placement)) for i in range(80)]
        if kind == "angle":
            assert all(found), f"an angle without a '/' stroke at size {size}: sample {found.index(False)}"
        else:
            assert not any(found), f"a {kind} with a '/' stroke at size {size}: sample {found.index(True)}"


def test_angles_keep_their_stroke_at_the_smallest_allowed_size():
    smallest = ShapesDataset.model_fields["image_size"].metadata[0].ge
    assert all(has_slash_run(figure("angle", i, smallest, 2)) for i in range(300))


def test_slash_runs_counts_positions_from_the_lower_left_end():
    mask = np.zeros((9, 9), bool)
    for j in range(7):
        mask[7 - j, 1 + j] = True
    pos = shapes.slash_runs(mask)
    assert [pos[7 - j, 1 + j] for j in range(7)] == [1, 2, 3, 4, 5, 6, 7]
    assert pos[~mask].max() == 0


def test_render_is_uint8_of_the_size_and_reproducible():
    a = shapes.render("cross", np.random.default_rng([1, 2, 3]), 24)
    b = shapes.render("cross", np.random.default_rng([1, 2, 3]), 24)
    c = shapes.render("cross", np.random.default_rng([1, 2, 4]), 24)
    assert a.dtype == np.uint8 and a.shape == (24, 24)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_noise_class_is_background_only_and_figures_are_bright():
    for i in range(20):
        assert not figure("noise", i, 16, 2).any()
        for kind in ("angle", "line", "cross", "ring"):
            assert figure(kind, i, 16, 2).sum() >= 5


def test_each_image_depends_only_on_seed_class_and_index():
    small = entry("datasets", "shapes", classes=["ring", "line"], per_class=4, image_size=16)
    large = entry("datasets", "shapes", per_class=9, image_size=16)
    a, b = shapes_source(small, seed=3), shapes_source(large, seed=3)
    ring_in_a = [k for k, label in enumerate(a.labels) if a.classes[label] == "ring"]
    ring_in_b = [k for k, label in enumerate(b.labels) if b.classes[label] == "ring"]
    for ka, kb in zip(ring_in_a, ring_in_b[:4], strict=True):
        np.testing.assert_array_equal(a.load(ka), b.load(kb))
        assert a.describe(ka) == b.describe(kb)
    other_seed = shapes_source(small, seed=4)
    assert not np.array_equal(a.load(ring_in_a[0]), other_seed.load(ring_in_a[0]))
    assert a.load(0).shape == (16, 16, 1) and a.load(0).dtype == np.uint8


def bounding_box_centre(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.min() + rows.max(), cols.min() + cols.max()]) / 2


@pytest.mark.parametrize("kind", ["angle", "line", "cross", "ring"])
def test_centered_placement_centres_each_figure_and_random_spreads_them(kind):
    middle = (32 - 1) / 2
    centred = np.array([bounding_box_centre(figure(kind, i, 32, 2, "centered")) for i in range(60)])
    spread = np.array([bounding_box_centre(figure(kind, i, 32, 2, "random")) for i in range(60)])
    # Within the stroke width and one pixel of rounding of the middle; random ones wander far off.
    assert np.abs(centred - middle).max() <= 2.0
    assert np.abs(spread - middle).max() > 6.0


def test_centered_placement_moves_the_same_figure():
    # The start point is each drawer's last random draw, so one (seed, class, index) draws the same
    # figure under both placements, only translated.
    for kind in ("angle", "line", "cross", "ring"):
        compared = 0
        for i in range(20):
            centred, anywhere = figure(kind, i, 32, 2, "centered"), figure(kind, i, 32, 2, "random")
            if anywhere[[0, -1]].any() or anywhere[:, [0, -1]].any():
                continue  # a thick ring placed at random can lose pixels at the border
            (r0, c0), (r1, c1) = (np.argwhere(m).min(axis=0) for m in (centred, anywhere))
            np.testing.assert_array_equal(np.roll(anywhere, (r0 - r1, c0 - c1), axis=(0, 1)), centred)
            compared += 1
        assert compared >= 15, kind

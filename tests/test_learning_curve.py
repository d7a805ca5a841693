"""The learning curve (lecture.learning_curve): stratified seeded subsets, a network compiled once and
trained afresh at every point, the summary's target, and params.yaml's check of it."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest

from pipeline import params as P
from pipeline.errors import UserError
from pipeline.lecture import learning_curve as lc
from tests.conftest import entry, project_params


def test_subsets_are_stratified_seeded_and_take_all_of_a_small_class():
    y = np.array([0] * 30 + [1] * 30 + [2] * 3)
    idx = lc.subset(y, 4, seed=7)
    assert np.bincount(y[idx]).tolist() == [4, 4, 3]
    assert np.array_equal(idx, lc.subset(y, 4, seed=7))
    assert not np.array_equal(idx, lc.subset(y, 4, seed=8))


def test_a_reused_learner_starts_afresh_at_every_point():
    """Compiled once: a second fit from the same seed gives the same accuracy as the first (weights,
    optimizer step and moments all reset), and it does learn the separable task."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    x = (rng.normal(0, 1, (200, 6)) + 6 * np.eye(3, 6)[y]).astype("float32")
    p = entry("models", "mlp", dataset="d", epochs=40, lr=0.05, schedule="cosine")

    def build():
        inputs = keras.Input((6,))
        return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))

    learner = lc.Learner(build, p, 3, jit="auto")
    assert learner.p.schedule == "constant"  # no step count compiled into the reused step
    first = learner.score(x[:30], y[:30], x[100:], y[100:], seed=1)
    other = learner.score(x[30:60], y[30:60], x[100:], y[100:], seed=2)
    again = learner.score(x[:30], y[:30], x[100:], y[100:], seed=1)
    assert first == again and first > 0.8
    assert 0.0 <= other <= 1.0


def test_summary_states_the_gap_at_eight_or_fewer_and_the_target():
    spec = P.LearningCurve(
        dataset="shapes", pretrained="transfer", scratch="cnn", per_class=[2, 8, 16], seeds=2, epochs=5
    )
    accuracy = {
        "pretrained": {"2": [0.8, 0.82], "8": [0.9, 0.9], "16": [0.95, 0.95]},
        "scratch": {"2": [0.5, 0.52], "8": [0.85, 0.87], "16": [0.96, 0.96]},
    }
    s = lc.summary(spec, "shapes", ["a", "b"], accuracy, {"2": 4, "8": 16, "16": 32}, 10)
    assert s["gap_at_8_or_fewer"] == pytest.approx({"2": 0.30, "8": 0.04})
    assert s["met"] is False  # 8 per class: +0.04 only
    assert s["accuracy"]["pretrained"]["2"]["std"] == pytest.approx(0.01)
    accuracy["scratch"]["8"] = [0.7, 0.7]
    assert lc.summary(spec, "shapes", ["a", "b"], accuracy, {}, 10)["met"] is True


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"pretrained": "cnn"},
            "lecture.learning_curve.pretrained: 'cnn' is not a transfer model with weights",
        ),
        (
            {"scratch": "transfer"},
            "lecture.learning_curve.scratch: 'transfer' is not a 2D classifier without pretrained weights",
        ),
        (
            {"per_class": [8, 2]},
            "lecture.learning_curve.per_class: [8, 2]; valid: distinct counts >= 1, increasing",
        ),
        ({"dataset": "tracks"}, "lecture.learning_curve.dataset: 'tracks' is not a classification dataset"),
        ({"dataset": "shapez"}, "(closest: shapes)"),
    ],
)
def test_params_check_names_the_key(change, message):
    raw = copy.deepcopy(project_params())
    raw["lecture"]["learning_curve"].update(change)
    with pytest.raises(UserError) as err:
        P.parse(raw)
    assert message in str(err.value)

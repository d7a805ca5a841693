"""Learned symmetries: rotation-invariant labels, the turned test images, the experiment's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipeline import params as P
from pipeline.data import shapes
from pipeline.errors import UserError
from pipeline.lecture import symmetries
from pipeline.params.lecture import ROTATION_INVARIANT, RotationExperiment, TranslationExperiment
from tests.conftest import ROOT, only, project_params, tiny


def draw(kind: str, k: int, placement: str = "centered") -> np.ndarray:
    return shapes.render(kind, np.random.default_rng([3, k]), 32, 0.0, 1.0, 1, placement)


def longest_slash(image: np.ndarray) -> int:
    return int(shapes.slash_runs(image > 128).max())


def test_a_turn_makes_the_stroke_that_defines_angle_so_angle_is_not_rotation_invariant():
    assert "angle" not in ROTATION_INVARIANT and set(ROTATION_INVARIANT) <= set(P.SHAPE_CLASSES)
    # A '\\' line (a `line`, no '/' run longer than 4 pixels) turned by 90 degrees is a '/' stroke:
    # in a dataset with `angle`, the turn would give it the feature that defines `angle`.
    lines = [draw("line", k) for k in range(40)]
    backslash = [im for im in lines if int(shapes.slash_runs(np.fliplr(im) > 128).max()) >= 8]
    assert backslash and all(longest_slash(im) <= shapes.LONGEST_OTHER_SLASH for im in backslash)
    assert all(longest_slash(np.rot90(im)) >= 8 for im in backslash)
    # And an angle's '/' arm turned by 90 degrees is a '\\' one: the defining stroke is gone.
    turned = [np.rot90(draw("angle", k)) for k in range(40)]
    assert sum(longest_slash(im) <= shapes.LONGEST_OTHER_SLASH for im in turned) >= 10


@pytest.mark.parametrize("kind", ROTATION_INVARIANT)
def test_a_turned_centred_figure_stays_whole_in_the_frame(kind):
    # Rotation-invariant classes keep their label only if the turn keeps the figure inside the frame.
    for k in range(10):
        image = draw(kind, k)[..., None]
        for angle in (30, 45, 90):
            turned = symmetries.turn_images(image[None], angle)[0]
            assert turned.shape == image.shape
            mass, turned_mass = image.astype(float).sum(), turned.astype(float).sum()
            assert abs(turned_mass - mass) <= 0.1 * mass + 1


def test_turn_images_by_90_degrees_is_a_quarter_turn():
    image = draw("line", 5)[..., None]
    turned = symmetries.turn_images(image[None], 90)[0, ..., 0]
    assert np.array_equal(turned, np.rot90(image[..., 0]))  # counter-clockwise, exactly
    assert symmetries.turn_images(image[None], 0) is not None


def _raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_a_rotation_experiment_on_classes_a_turn_relabels_is_refused():
    raw = _raw()
    for name in ("shapes_upright", "shapes_turned"):
        raw["datasets"][name]["classes"] = ["angle", "line", "ring"]
    with pytest.raises(UserError) as exc:
        P.parse(raw)
    msg = str(exc.value)
    assert (
        "lecture.rotation.plain: datasets.shapes_upright must be a shapes dataset of rotation-invariant"
        in msg
    )
    raw["lecture"]["rotation"] = None  # the experiment off: the same datasets are fine
    P.parse(raw)


def test_the_default_experiments_use_the_same_images_with_and_without_augmentation():
    params = P.load(ROOT / "params.yaml")
    t, r = params.lecture.translation, params.lecture.rotation
    data = {role: params.datasets[params.model(getattr(t, role)).dataset] for role in ("plain", "augmented")}
    assert data["plain"] == data["augmented"]  # shapes_centered and shapes_shift: the same draws and split
    assert data["plain"].placement == "centered"  # only the augmentation moves the figures
    assert params.datasets["shapes_upright"] == params.datasets["shapes_turned"]
    for exp, moves in ((t, "Affine"), (r, "Rotate")):
        names = {
            role: [x.name for x in params.augment_for(params.model(getattr(exp, role)).dataset).transforms]
            for role in ("plain", "augmented")
        }
        assert [n for n in names["augmented"] if n != moves] == names["plain"]  # the one difference
        assert moves in names["augmented"]


def test_experiments_write_the_json_and_the_figure(tmp_path):
    """Hand-made predictors on a bright pixel left (class 0) or right (class 1) of the centre."""
    x = np.zeros((40, 16, 16, 1), np.uint8)
    y = np.arange(40) % 2
    x[y == 0, 4, 5], x[y == 1, 4, 10] = 255, 255

    def right_half(images):  # shifted right by 4, a class-0 pixel (column 9) reads as class 1
        right = images[:, :, 8:, 0].max(axis=(1, 2)) > images[:, :, :8, 0].max(axis=(1, 2))
        return np.stack([~right, right], axis=1).astype(float)

    def test_of(name):
        return right_half, x, y, [0, 2, 4]

    summary = symmetries.experiments(
        TranslationExperiment(plain="dense", augmented="dense_aug", reference="conv"),
        RotationExperiment(plain="dense", augmented="dense_aug", angles=[0, 45, 90]),
        test_of,
        tmp_path,
    )
    written = json.loads((tmp_path / "symmetries.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert (tmp_path / "symmetries.png").stat().st_size > 10_000
    t = written["translation"]
    assert t["largest_shift"] == 4 and set(t["accuracy"]) == {"dense", "dense_aug", "conv"}
    assert t["accuracy"]["dense"] == {"0": 1.0, "2": 1.0, "4": 0.5}  # pipeline.metrics' shift test
    assert t["drop"]["dense"] == 0.5 and t["drop_ratio"] == 1.0 and t["met"] is False
    assert set(written["rotation"]["accuracy"]["dense"]) == {"0", "45", "90"}
    assert written["rotation"]["gain_angle"] == 45.0


@pytest.mark.slow
def test_the_lecture_stage_writes_the_symmetry_experiments(make_repo, dvc):
    # The translation experiment's models only (the rotation's go through the same `test_of` of the
    # stage, and its summary is tested above): each of them is minutes of processes on two cores.
    p = tiny(only(project_params(), "mlp_centered", "mlp_shift", "cnn"))
    assert p["lecture"]["rotation"] is None and p["lecture"]["translation"] is not None
    repo = make_repo(p)
    dvc(repo, "repro", "lecture")
    summary = json.loads((repo / "reports/lecture/symmetries.json").read_text())
    t = summary["translation"]
    assert t["models"] == {"plain": "mlp_centered", "augmented": "mlp_shift", "reference": "cnn"}
    assert set(t["accuracy"]["cnn"]) == {"0", "2"}  # the plain model's shifts, on its test images
    assert summary["rotation"] is None
    assert (repo / "reports/lecture/symmetries.png").is_file()
    assert (repo / "data/augmented/shapes_shift/online.json").is_file()  # trained with online shifts

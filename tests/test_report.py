"""reports/index.html: written from real stage outputs and a real MLflow store, rendered in Chromium."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.chromium import needs_chromium, render_in_chromium
from tests.conftest import project_params, tiny

# ---------------------------------------------------------------- from real outputs


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """A reports folder as the stages write it, trained-model files and their runs in a real MLflow store."""
    from pipeline import params, plots, tracking
    from pipeline.data.arrays import write_json

    monkeypatch.chdir(tmp_path)  # MLflow puts a non-default store's artifacts under the working folder
    raw = tiny(project_params())
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'store.db'}"
    p = params.parse(raw)
    reports, models, prepared = tmp_path / "reports", tmp_path / "models", tmp_path / "prepared"
    run_ids = {}
    rng = np.random.default_rng(0)
    for name in p.models:
        (models / name).mkdir(parents=True)
        model_file = models / name / "model.keras"
        model_file.write_bytes(name.encode() * 100)  # the report only needs its hash, to find the run
        with tracking.training_run(p.tracking, name, {"model_name": name}, {"model": name}) as run:
            tracking.set_tags({tracking.MODEL_HASH_TAG: tracking.file_md5(model_file)})
            run_ids[name] = run.info.run_id
        folder = reports / name
        history = {
            "loss": [1.0, 0.5],
            "val_loss": [1.1, 0.7],
            "accuracy": [0.5, 0.8],
            "val_accuracy": [0.4, 0.7],
        }
        plots.training_curves(history, folder / "training_curves.png", name)
        plots.confusion_matrix([[3, 1], [0, 4]], ["a", "b"], folder / "confusion.png", name)
        write_json(
            folder / "metrics.json",
            {
                "accuracy": 0.875,
                "macro_f1": 0.87,
                "per_class": {
                    "a": {"precision": 1.0, "recall": 0.75},
                    "b": {"precision": 0.8, "recall": 1.0},
                },
                "shift_accuracy": {"0": 0.875, "2": 0.5},
            },
        )
    plots.sample_grid(
        [rng.integers(0, 255, (3, 32, 1))], reports / "spectra" / "augment_preview.png", ["original"]
    )
    plots.sample_grid([rng.integers(0, 255, (2, 4, 8, 8, 1))], reports / "motion" / "augment_preview.png")
    (reports / "lecture").mkdir()
    plots.image_grid([rng.integers(0, 255, (2, 8, 8))], reports / "lecture" / "feature_maps_0.png")
    write_json(
        reports / "lecture" / "filters.json",
        {"positive": "angle", "hand_made_auc": 0.75, "learned_auc": 0.94},
    )
    plots.shift_curve({"0": 1.0, "4": 0.5}, reports / "gan_samples" / "grid.png", "from some other stage")
    return p, reports, models, prepared, run_ids


def test_report_holds_every_model_figure_and_run(outputs, tmp_path):
    from pipeline.report import write_report

    p, reports, models, prepared, run_ids = outputs
    page = reports / "index.html"
    sections = write_report(p, reports, models, prepared, page)

    text = page.read_text(encoding="utf-8")
    anchors = [s.anchor for s in sections]
    assert [a for a in anchors if a.startswith("model-")] == [f"model-{m}" for m in p.models]
    # figures of stages this page does not know
    assert "lecture" in anchors and "other-gan_samples" in anchors
    for name, run_id in run_ids.items():
        assert f'id="model-{name}"' in text
        assert f"/runs/{run_id}" in text  # the MLflow UI link of the run that trained this very model file
    assert "mlflow ui --backend-store-uri sqlite:///" in text
    assert "0.8750" in text and "recall" in text  # metrics.json as tables
    pngs = sorted(reports.rglob("*.png"))
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert len(srcs) == len(pngs) == sum(len(s.figures) for s in sections)
    assert all(src.startswith("data:image/png;base64,") for src in srcs)  # nothing to fetch: opens from disk
    # The model's own figures come first, in reading order.
    first = next(s for s in sections if s.anchor == f"model-{next(iter(p.models))}")
    assert [f.name for f in first.figures] == ["training_curves.png", "confusion.png"]


def test_report_without_a_run_or_metrics_says_so(outputs):
    from pipeline.report import write_report

    p, reports, models, prepared, _ = outputs
    name = next(iter(p.models))
    (models / name / "model.keras").write_bytes(b"retrained, not logged")
    (reports / name / "metrics.json").unlink()
    write_report(p, reports, models, prepared, reports / "index.html")
    text = (reports / "index.html").read_text(encoding="utf-8")
    assert "its training run is not in the MLflow store" in text
    assert "run the evaluate stage" in text


@needs_chromium
def test_every_image_loads_in_chromium(outputs, tmp_path):
    from pipeline.report import write_report

    p, reports, models, prepared, _ = outputs
    write_report(p, reports, models, prepared, reports / "index.html")
    images, loaded, broken = render_in_chromium(reports / "index.html", tmp_path)
    assert images == len(list(reports.rglob("*.png"))) > 5
    assert (loaded, broken) == (images, [])


@needs_chromium
def test_chromium_check_sees_a_broken_image(tmp_path):
    """The check itself: an image that cannot be decoded is reported, not counted as loaded."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><img alt="fine" src="data:image/svg+xml;base64,'
        'PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSI0IiBoZWlnaHQ9IjQiLz4=">'
        '<img alt="bad" src="data:image/png;base64,AAAA"></body></html>'
    )
    assert render_in_chromium(page, tmp_path) == (2, 1, ["bad"])


# The report stage inside a real `dvc repro`: tests/test_e2e_classification.py.

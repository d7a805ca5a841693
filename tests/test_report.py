"""reports/index.html: written from real stage outputs and a real MLflow store, rendered in Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import project_params, tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (Debian: apt-get install -y chromium); cannot render the page",
)

# Marks every image once the page has loaded; --dump-dom prints the DOM after the load event.
_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = (img) => img.complete && img.naturalWidth > 0;
  images.forEach((img) => img.setAttribute("data-loaded", ok(img) ? "yes" : "no"));
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-loaded", images.filter(ok).length);
});
</script>"""


def render_in_chromium(page: Path, tmp_path: Path) -> tuple[int, int, list[str]]:
    """(images, images loaded, alt texts of those that did not) of `page` as Chromium shows it."""
    probe = tmp_path / f"{page.stem}.check.html"  # images are embedded: the copy renders the same
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"), encoding="utf-8"
    )
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root in containers
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert "<body" in dom, f"chromium printed no page: {proc.stderr[-2000:]}"
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-loaded="(\d+)"', dom)
    assert body, "the check script did not run"
    broken = re.findall(r'<img[^>]*alt="([^"]*)"[^>]*data-loaded="no"', dom)
    return int(body.group(1)), int(body.group(2)), broken


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


# ---------------------------------------------------------------- in the pipeline


@pytest.mark.slow
def test_report_stage_in_the_pipeline(make_repo, dvc, tmp_path):
    """dvc repro ends with the report stage; the page shows every model and renders; a rerun skips it."""
    raw = tiny(project_params())
    keep = {"filter_net": raw["models"]["filter_net"], "cnn": raw["models"]["cnn"]}
    keep["cnn"]["dataset"] = "angle_vs_rest"  # one dataset keeps the pipeline short
    raw["models"] = keep
    raw["datasets"] = {"angle_vs_rest": raw["datasets"]["angle_vs_rest"]}
    raw["augment"] = {"angle_vs_rest": raw["augment"]["angle_vs_rest"]}
    raw["dcgans"], raw["cyclegans"] = {}, {}  # their datasets are gone too
    raw["lecture"].update(feature_images=2, feature_channels=4)
    repo = make_repo(raw)

    dvc(repo, "repro")

    page = repo / "reports" / "index.html"
    text = page.read_text(encoding="utf-8")
    for name in keep:
        assert f'id="model-{name}"' in text
        assert re.search(rf'id="model-{name}".*?/runs/[0-9a-f]{{32}}"', text, re.S), (
            f"no MLflow link for {name}"
        )
    assert 'id="lecture"' in text and "feature_maps_1.png" in text and "filters.png" in text
    assert "confusion.png" in text and "training_curves.png" in text and "augment_preview.png" in text
    if CHROMIUM:
        images, loaded, broken = render_in_chromium(page, tmp_path)
        assert images == len(re.findall(r"<img ", text)) >= 10
        assert (loaded, broken) == (images, [])
    # Not an output of any stage, yet nothing left to do, and git is not asked to track it.
    assert "up to date" in dvc(repo, "status").stdout
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    assert "index.html" not in status
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["report"]["deps"]

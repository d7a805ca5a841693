"""reports/index.html: written from real stage outputs, laid out as dvc.yaml declares them, checked for
byte-identical output across clones, git states and MLflow stores, and rendered in Chromium."""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.chromium import needs_chromium, render_in_chromium
from tests.conftest import project_params, tiny

# What the report stage's command passes (dvc.yaml), relative to the repository root it runs in.
REPORTS, MODELS, PREPARED = "reports", "data/models", "data/prepared"
GAN_FILES = {"dcgan": "generator.keras", "cyclegan": "g_ab.keras"}


def _params(store_uri: str | None = None):
    from pipeline import params

    raw = tiny(project_params())
    raw["tracking"]["uri"] = store_uri
    return params.parse(raw)


def write_outputs(root, p) -> None:
    """The files the stages before `report` write, at their dvc.yaml paths under `root`."""
    from pipeline import plots
    from pipeline.data.arrays import write_json

    rng = np.random.default_rng(0)
    reports = root / REPORTS
    for name in p.models:
        (root / MODELS / name).mkdir(parents=True)
        (root / MODELS / name / "model.keras").write_bytes(name.encode() * 100)  # the page needs its md5
        folder = reports / "models" / name
        history = {
            "loss": [1.0, 0.5],
            "val_loss": [1.1, 0.7],
            "accuracy": [0.5, 0.8],
            "val_accuracy": [0.4, 0.7],
        }
        plots.training_curves(history, folder / "training_curves.png", name)
        plots.confusion_matrix([[3, 1], [0, 4]], ["a", "b"], folder / "confusion.png", name)
        write_json(folder / "metrics.json", {"accuracy": 0.875, "macro_f1": 0.87})
        write_json(  # per class and per shift: beside metrics.json, not a DVC metric
            folder / "details.json",
            {
                "per_class": {
                    "a": {"precision": 1.0, "recall": 0.75},
                    "b": {"precision": 0.8, "recall": 1.0},
                },
                "shift_accuracy": {"0": 0.875, "2": 0.5},
            },
        )
    for name, kind in [*((n, "dcgan") for n in p.dcgans), *((n, "cyclegan") for n in p.cyclegans)]:
        (root / MODELS / name).mkdir(parents=True)
        (root / MODELS / name / GAN_FILES[kind]).write_bytes(f"{kind} {name}".encode() * 50)
        folder = reports / "models" / name  # a GAN's reports and networks sit beside the models'
        plots.gan_curves({"fid": [30.0, 20.0]}, folder / "fid.png", name)
        plots.image_grid([rng.integers(0, 255, (2, 8, 8))], folder / "samples.png")
        write_json(folder / "metrics.json", {"fid": 21.5})
    plots.sample_grid(
        [rng.integers(0, 255, (3, 32, 1))],
        reports / "datasets" / "spectra" / "augment_preview.png",
        ["original"],
    )
    plots.sample_grid(
        [rng.integers(0, 255, (2, 4, 8, 8, 1))], reports / "datasets" / "motion" / "augment_preview.png"
    )
    (root / PREPARED / "shapes").mkdir(parents=True)
    write_json(
        root / PREPARED / "shapes" / "manifest.json",
        {
            "classes": ["angle", "line"],
            "counts": {"train": {"angle": 8, "line": 8}, "val": {"angle": 2, "line": 2}},
            "shape": [16, 16, 1],
            "skipped": [{"file": "angle/broken.png", "reason": "not an image"}],
            "skipped_count": 1,
        },
    )
    (reports / "lecture").mkdir()
    plots.image_grid([rng.integers(0, 255, (2, 8, 8))], reports / "lecture" / "feature_maps_0.png")
    write_json(
        reports / "lecture" / "filters.json",
        {"positive": "angle", "hand_made_auc": 0.75, "learned_auc": 0.94},
    )


def log_training_runs(root, p) -> dict[str, str]:
    """Each model's and GAN's run in the MLflow store of `p`, tagged as training tags it; name -> run id."""
    from pipeline import tracking

    files = {n: root / MODELS / n / "model.keras" for n in p.models}
    files |= {n: root / MODELS / n / GAN_FILES["dcgan"] for n in p.dcgans}
    files |= {n: root / MODELS / n / GAN_FILES["cyclegan"] for n in p.cyclegans}
    run_ids = {}
    for name, model_file in files.items():
        with tracking.training_run(p.tracking, name, {"model_name": name}, {"model": name}) as run:
            tracking.set_tags({tracking.MODEL_HASH_TAG: tracking.file_md5(model_file)})
            run_ids[name] = run.info.run_id
    return run_ids


def render(p):
    """The report stage's work, run from the working folder as DVC runs it from the repository root."""
    from pipeline.report import write_report

    page = f"{REPORTS}/index.html"
    return write_report(p, REPORTS, MODELS, PREPARED, page), page


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """The pipeline's outputs in tmp_path (the working folder), their training runs in a real MLflow store."""
    monkeypatch.chdir(tmp_path)  # MLflow puts a non-default store's artifacts under the working folder
    p = _params(f"sqlite:///{tmp_path / 'store.db'}")
    write_outputs(tmp_path, p)
    return p, log_training_runs(tmp_path, p)


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_report_holds_every_section_figure_and_metric(outputs, tmp_path):
    p, _ = outputs
    sections, page = render(p)
    text = (tmp_path / page).read_text(encoding="utf-8")

    anchors = [s.anchor for s in sections]
    assert anchors == [
        *(f"model-{m}" for m in p.models),
        *(f"dataset-{d}" for d in p.datasets),
        *(f"gan-{g}" for g in [*p.dcgans, *p.cyclegans]),
        "lecture",
    ]
    for anchor in anchors:
        assert f'id="{anchor}"' in text
    assert "0.8750" in text and "recall" in text and "21.5000" in text  # metrics.json, details.json as tables
    pngs = sorted((tmp_path / REPORTS).rglob("*.png"))
    srcs = re.findall(r'<img src="([^"]*)"', text)
    assert len(srcs) == len(pngs) == sum(len(s.figures) for s in sections) > 5
    assert all(src.startswith("data:image/png;base64,") for src in srcs)  # nothing to fetch: opens from disk
    # Each section shows its own subfolder's figures; a model's come first, in reading order.
    by_anchor = {s.anchor: s for s in sections}
    first = by_anchor[f"model-{next(iter(p.models))}"]
    assert [f.name for f in first.figures] == ["training_curves.png", "confusion.png"]
    assert [f.name for f in by_anchor["dataset-motion"].figures] == ["augment_preview.png"]
    assert by_anchor["dataset-motion"].figures[0].parent.as_posix() == "reports/datasets/motion"
    assert [f.name for f in by_anchor["gan-dcgan"].figures] == ["fid.png", "samples.png"]
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in text
    assert "rows of shape 16x16x1" in text and f"see {PREPARED}/shapes/manifest.json" in text


def test_report_names_each_run_by_its_model_md5(outputs, tmp_path):
    """A model's (and a GAN's) section holds the filter that finds, in a real store, the run that
    saved that very file; a model without its file has no filter, but a note."""
    import mlflow

    p, run_ids = outputs
    missing = list(p.models)[-1]
    (tmp_path / MODELS / missing / "model.keras").unlink()
    sections, page = render(p)
    text = (tmp_path / page).read_text(encoding="utf-8")

    expected = {n: tmp_path / MODELS / n / "model.keras" for n in p.models if n != missing}
    expected |= {n: tmp_path / MODELS / n / GAN_FILES["dcgan"] for n in p.dcgans}
    expected |= {n: tmp_path / MODELS / n / GAN_FILES["cyclegan"] for n in p.cyclegans}
    by_title = {s.title: s for s in sections}
    for name, model_file in expected.items():
        md5 = _md5(model_file)
        wanted = f"tags.`convpipe.model_md5` = '{md5}'"
        assert f"<code>{wanted}</code>" in text  # as typed in the page source, not only as rendered
        assert by_title[name].model_md5 == md5
        found = mlflow.search_runs(search_all_experiments=True, filter_string=wanted, output_format="list")
        assert [r.info.run_id for r in found] == [run_ids[name]]
    assert by_title[missing].model_md5 == ""
    assert f"no trained model at {MODELS}/{missing}/model.keras" in text
    assert len(re.findall(r"tags\.`convpipe\.model_md5` = '[0-9a-f]{32}'", text)) == len(expected)
    # the run ids themselves differ per store: not on the page
    assert not any(run_id in text for run_id in run_ids.values())


def test_report_without_metrics_says_so(outputs, tmp_path):
    p, _ = outputs
    name = next(iter(p.models))
    (tmp_path / REPORTS / "models" / name / "metrics.json").unlink()
    _, page = render(p)
    text = html.unescape((tmp_path / page).read_text(encoding="utf-8"))
    assert f"no {REPORTS}/models/{name}/metrics.json yet: run the evaluate stage" in text


def _git(repo, *args: str) -> str:
    ident = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *ident, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_same_outputs_give_the_same_bytes_in_any_clone(tmp_path, monkeypatch):
    """dvc.lock holds the page's md5: two clones of the same outputs, one at another path with another
    HEAD, uncommitted changes and a populated MLflow store, the other with no store, give one page."""
    first, second = tmp_path / "first", tmp_path / "elsewhere" / "second"
    p_first = _params(f"sqlite:///{first / 'store.db'}")
    write_outputs(first, p_first)
    (first / REPORTS / "models" / "mlp" / "metrics.json").unlink()  # a note that names a path
    shutil.copytree(first, second)  # the same outputs, byte for byte, as DVC reproduces them

    _git(first, "init", "-q")
    _git(first, "add", REPORTS)
    _git(first, "commit", "-q", "-m", "outputs")
    (first / REPORTS / "models" / "untracked.txt").write_text("dirty")
    _git(first, "add", f"{REPORTS}/models/untracked.txt")  # staged, uncommitted: a dirty work tree
    monkeypatch.chdir(first)
    run_ids = log_training_runs(first, p_first)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{first / 'store.db'}")
    render(p_first)
    page_first = (first / REPORTS / "index.html").read_bytes()

    _git(second, "init", "-q")
    _git(second, "commit", "-q", "--allow-empty", "-m", "another commit")
    monkeypatch.chdir(second)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    render(_params(f"sqlite:///{second / 'no-store.db'}"))  # a store that holds nothing
    page_second = (second / REPORTS / "index.html").read_bytes()

    assert _git(first, "rev-parse", "HEAD") != _git(second, "rev-parse", "HEAD")
    assert page_first == page_second
    text = page_first.decode("utf-8")
    assert f"no {REPORTS}/models/mlp/metrics.json yet" in text
    assert str(tmp_path) not in text  # paths relative to the repository root
    assert not any(run_id in text for run_id in run_ids.values())


@needs_chromium
def test_every_image_loads_in_chromium(outputs, tmp_path):
    p, _ = outputs
    _, page = render(p)
    images, loaded, broken = render_in_chromium(tmp_path / page, tmp_path)
    assert images == len(list((tmp_path / REPORTS).rglob("*.png"))) > 5
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

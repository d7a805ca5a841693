"""reports/index.html: every dataset's, model's and GAN's metrics and figures and the lecture's figures,
in one page. Images are embedded (base64), so the file opens from disk, without a server, and can be
copied or mailed on its own.

The page is a DVC output (its md5 is in dvc.lock), so it holds only what the same commit's pipeline
outputs determine: no git commit, no time, no MLflow run id or store address, no absolute path. A
model's MLflow run is found by the tag its training sets, the md5 of the saved model file.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import tracking
from pipeline.params import Params

# Figures of a model in the order a reader wants them; any other image follows, by name.
FIGURE_ORDER = ("training_curves", "confusion", "roc", "shift")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
# The network file whose md5 a GAN's training tags its run with (the first of its nets, tasks/gan.py).
GAN_MAIN_NET = {"dcgan": "generator.keras", "cyclegan": "g_ab.keras"}
# The default store (tracking.uri null), as run from the repository root.
DEFAULT_STORE_UI = "mlflow ui --backend-store-uri sqlite:///mlflow.db"


@dataclass
class Section:
    """One part of the page: a heading, tables, figures and notes."""

    anchor: str
    title: str
    subtitle: str = ""
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(
        default_factory=list
    )  # caption, header, rows
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json, for the summary table
    model_md5: str = ""  # md5 of the model file, the value of its run's MODEL_HASH_TAG


def shown(path: Path) -> str:
    """A path as the page names it: relative to the working folder (the repository root under DVC)."""
    return Path(os.path.relpath(path)).as_posix()


def run_filter(model_md5: str) -> str:
    """The MLflow search filter (UI search box, search_runs' filter_string) of the run that saved a file."""
    return f"tags.`{tracking.MODEL_HASH_TAG}` = '{model_md5}'"


def figures_in(folder: Path) -> list[Path]:
    """Image files of a folder, the known ones first, then by name."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_TYPES and p.is_file()]

    def rank(p: Path) -> tuple:
        return (FIGURE_ORDER.index(p.stem) if p.stem in FIGURE_ORDER else len(FIGURE_ORDER), p.name)

    return sorted(found, key=rank)


def metric_tables(metrics: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """metrics.json as tables: its numbers; each map of numbers as one row; each map of maps as rows."""
    scalars = [[k, v] for k, v in metrics.items() if _is_number(v) or v is None]
    tables = [("test metrics", ["metric", "value"], scalars)] if scalars else []
    for key, value in metrics.items():
        if not isinstance(value, dict) or not value:
            continue
        if all(_is_number(v) for v in value.values()):
            tables.append((key, list(value), [list(value.values())]))
        elif all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            tables.append(
                (key, ["", *columns], [[k, *(v.get(c) for c in columns)] for k, v in value.items()])
            )
    return tables


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _add_run(section: Section, model_file: Path, what: str) -> None:
    """The md5 of the model file, which finds its training run in MLflow, or a note that it is missing."""
    if model_file.is_file():
        section.model_md5 = tracking.file_md5(model_file)
    else:
        section.notes.append(f"no trained {what} at {shown(model_file)}: run its train stage")


def model_section(params: Params, name: str, reports: Path, models: Path) -> Section:
    p = params.model(name)
    section = Section(f"model-{name}", name, f"{p.architecture} on {p.dataset}")
    hyper = {k: v for k, v in p.model_dump(mode="json").items() if k not in ("dataset", "architecture")}
    _add_params_results(section, hyper, reports / "models" / name, "evaluate")
    _add_run(section, models / name / "model.keras", "model")
    return section


def dataset_section(params: Params, name: str, reports: Path, prepared: Path) -> Section:
    ds = params.dataset(name)
    section = Section(f"dataset-{name}", name, f"dataset, source {ds.source}")
    manifest_file = prepared / name / "manifest.json"
    manifest = _read_json(manifest_file)
    if isinstance(manifest, dict):
        shape = "x".join(str(d) for d in manifest.get("shape", []))
        counts = manifest.get("counts", {})
        rows = [[c, *(counts.get(s, {}).get(c) for s in counts)] for c in manifest.get("classes", [])]
        section.tables.append((f"rows of shape {shape}, per class and split", ["class", *counts], rows))
        if manifest.get("skipped"):
            section.notes.append(
                f"{manifest.get('skipped_count', len(manifest['skipped']))} file(s) skipped; "
                f"see {shown(manifest_file)}"
            )
    section.figures = figures_in(reports / "datasets" / name)
    return section


def gan_section(params: Params, name: str, reports: Path, models: Path) -> Section:
    """A DCGAN or CycleGAN: its params, test metrics (FID on EfficientNet-Lite0 features), curves, samples."""
    gan = params.gan(name)
    kind = "cyclegan" if name in params.cyclegans else "dcgan"
    data = f"{gan.dataset} <-> {gan.target}" if kind == "cyclegan" else gan.dataset
    section = Section(f"gan-{name}", name, f"{kind} on {data}")
    hyper = {k: v for k, v in gan.model_dump(mode="json").items() if k not in ("dataset", "target")}
    # A GAN's networks and reports live beside the models': data/models/<name>, reports/models/<name>.
    _add_params_results(section, hyper, reports / "models" / name, f"{kind}_evaluate")
    _add_run(section, models / name / GAN_MAIN_NET[kind], kind)
    return section


def _add_params_results(section: Section, hyper: dict, folder: Path, evaluate_stage: str) -> None:
    """The entry's params table, its metrics.json and details.json (per class, per shift) as tables
    before it (or a note), its figures."""
    section.tables.append(("params.yaml", ["key", "value"], [[k, _plain(v)] for k, v in hyper.items()]))
    metrics = _read_json(folder / "metrics.json")
    if isinstance(metrics, dict):
        section.metrics = metrics
        details = _read_json(folder / "details.json")
        section.tables[:0] = metric_tables({**metrics, **(details if isinstance(details, dict) else {})})
    else:
        section.notes.append(f"no {shown(folder / 'metrics.json')} yet: run the {evaluate_stage} stage")
    section.figures = figures_in(folder) + figures_in(folder / "gradcam")  # class-activation maps


def lecture_section(reports: Path) -> Section:
    folder = reports / "lecture"
    section = Section(
        "lecture", "The lecture's figures", "filters, feature maps, learned symmetries, the learning curve"
    )
    summary = _read_json(folder / "filters.json")
    if isinstance(summary, dict):
        positive = summary.get("positive", "")
        section.tables.append(
            (
                f"max(conv2D(image, filter)) as a detector of '{positive}' (test split)",
                ["filter", "ROC AUC"],
                [
                    ["hand-made '/' filter", summary.get("hand_made_auc")],
                    ["learned", summary.get("learned_auc")],
                ],
            )
        )
    symmetries = _read_json(folder / "symmetries.json")  # learned symmetries: measure, target, met
    for part, measure in (("translation", "drop_ratio"), ("rotation", "gain")):
        result = symmetries.get(part) if isinstance(symmetries, dict) else None
        if isinstance(result, dict):
            rows = [[k, result.get(k)] for k in (measure, "target", "met")]
            section.tables.append((f"learned symmetries: {part}", ["", ""], rows))
    curve = _read_json(folder / "learning_curve.json")  # the free lunch: pretrained against scratch
    if isinstance(curve, dict) and isinstance(curve.get("accuracy"), dict):
        acc = curve["accuracy"]
        models = curve.get("models", {})
        rows = [
            [
                k,
                *(
                    f"{acc[kind][k]['mean']:.3f} ± {acc[kind][k]['std']:.3f}"
                    for kind in ("pretrained", "scratch")
                ),
            ]
            for k in acc.get("pretrained", {})
            if k in acc.get("scratch", {})
        ]
        header = [
            "per class",
            f"pretrained ({models.get('pretrained')})",
            f"scratch ({models.get('scratch')})",
        ]
        seeds = curve.get("seeds")
        title = f"learning curve on {curve.get('dataset')}: test accuracy, mean ± spread over {seeds} seeds"
        section.tables.append((title, header, rows))
        section.tables.append(
            ("learning curve: target", ["", ""], [["target", curve.get("target")], ["met", curve.get("met")]])
        )
    section.figures = figures_in(folder)
    return section


def collect(params: Params, reports: Path, models: Path, prepared: Path) -> list[Section]:
    """Every model, dataset and GAN of params.yaml, in its order, then the lecture's figures.

    Only the folders params.yaml names are read (reports/models/<model>, ...): they are the stage's
    deps, so a leftover folder of a removed entry, absent from a fresh clone, cannot change the page.
    """
    sections = [model_section(params, name, reports, models) for name in params.models]
    sections += [dataset_section(params, name, reports, prepared) for name in params.datasets]
    sections += [gan_section(params, name, reports, models) for name in [*params.dcgans, *params.cyclegans]]
    if figures_in(reports / "lecture"):
        sections.append(lecture_section(reports))
    return sections


# ---------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-top: 1em; }
.sub { color: #666; font-weight: normal; font-size: 0.8em; }
table { border-collapse: collapse; margin: 0.5em 1.5em 1em 0; display: inline-table; vertical-align: top; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; font-size: 0.9em; }
td:first-child, th:first-child { text-align: left; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #666; }
.note { color: #8a5300; font-size: 0.9em; } nav a { margin-right: 0.8em; }
code { user-select: all; }
"""


def _text(value: str) -> str:
    """Element text, quotes kept as typed: a filter copied from the page source pastes as is."""
    return html.escape(value, quote=False)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape("" if value is None else str(value))


def _table(caption: str, header: list[str], rows: Iterable[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _figure(path: Path, label: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(f"{label}: {path.name}")
    return (
        f'<figure><img src="data:{IMAGE_TYPES[path.suffix.lower()]};base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
    )


def _link(text: str, href: str) -> str:
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>'


def summary_table(params: Params, sections: list[Section]) -> str:
    by_anchor = {s.anchor: s for s in sections}
    rows = []
    for name, p in params.models.items():
        section = by_anchor[f"model-{name}"]
        md5 = section.model_md5
        cells = [
            _link(name, f"#model-{name}"),
            html.escape(p.architecture),
            html.escape(p.dataset),
            *(
                _cell(section.metrics.get(k))
                for k in ("accuracy", "macro_f1", "roc_auc", "shift_drop", "test_images")
            ),
            _link(md5[:8], f"#model-{name}") if md5 else "",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = [
        "model",
        "architecture",
        "dataset",
        "accuracy",
        "macro F1",
        "ROC AUC",
        "shift drop",
        "test rows",
        "model md5 (MLflow)",
    ]
    head = "".join(f"<th>{h}</th>" for h in header)
    return f"<table><caption>models (test split)</caption><tr>{head}</tr>{''.join(rows)}</table>"


def _how_to_find_runs() -> str:
    example = run_filter("<md5>")
    return (
        "<p class=\"note\">Each model's and GAN's MLflow run carries the tag "
        f"<code>{_text(tracking.MODEL_HASH_TAG)}</code>, the md5 of the model file it saved. "
        "Its section shows that run's filter: paste it into the search box of the runs of the "
        "experiment that params.yaml's <code>tracking.experiment</code> names. The default store's UI: "
        f"<code>{_text(DEFAULT_STORE_UI)}</code> in the repository root, then "
        f"<code>{_text(tracking.runs_page(tracking.DEFAULT_UI, '<experiment id>'))}</code>. "
        "From Python: <code>mlflow.search_runs(search_all_experiments=True, "
        f'filter_string="{_text(example)}")</code>.</p>'
    )


def render(params: Params, sections: list[Section]) -> str:
    """The whole page as one HTML string."""
    nav = " ".join(_link(s.title, f"#{s.anchor}") for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>convpipe report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>convpipe report</h1>",
        '<p class="sub">params.yaml and pipeline outputs of the commit whose dvc.lock records this page</p>',
        f"<nav>{nav}</nav>",
        summary_table(params, sections),
        _how_to_find_runs(),
    ]
    for s in sections:
        parts.append(f'<section id="{html.escape(s.anchor)}">')
        parts.append(f'<h2>{html.escape(s.title)} <span class="sub">{html.escape(s.subtitle)}</span></h2>')
        if s.model_md5:
            parts.append(f"<p>MLflow run: <code>{_text(run_filter(s.model_md5))}</code></p>")
        parts.extend(f'<p class="note">{html.escape(n)}</p>' for n in s.notes)
        parts.extend(_table(*t) for t in s.tables)
        if s.figures:
            parts.append('<div class="figures">' + "".join(_figure(f, s.title) for f in s.figures) + "</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(params: Params, reports: Path, models: Path, prepared: Path, out: Path) -> list[Section]:
    """Collect everything and write the page to `out` (replaced in one step, never half-written)."""
    reports, models, prepared, out = Path(reports), Path(models), Path(prepared), Path(out)
    sections = collect(params, reports, models, prepared)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(render(params, sections).encode("utf-8"))  # bytes: no platform newline translation
    tmp.replace(out)
    return sections

"""reports/index.html: every model's metrics, figures and MLflow run, the datasets and the lecture's
figures, in one page. Images are embedded (base64), so the file opens from disk, without a server,
and can be copied or mailed on its own.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.params import Params

# Figures of a model in the order a reader wants them; any other PNG follows, by name.
FIGURE_ORDER = ("training_curves", "confusion", "roc", "shift")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass
class Section:
    """One part of the page: a heading, tables, figures and links."""

    anchor: str
    title: str
    subtitle: str = ""
    tables: list[tuple[str, list[str], list[list[Any]]]] = field(
        default_factory=list
    )  # caption, header, rows
    figures: list[Path] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # text, href
    notes: list[str] = field(default_factory=list)
    serve: str = ""  # the command that serves the MLflow UI its links point to, for a local store


def figures_in(folder: Path) -> list[Path]:
    """Image files of a folder, the known ones first."""
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
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_section(params: Params, name: str, reports: Path, models: Path) -> Section:
    from pipeline import tracking

    p = params.model(name)
    section = Section(f"model-{name}", f"{name}", f"{p.architecture} on {p.dataset}")
    hyper = {k: v for k, v in p.model_dump().items() if k not in ("dataset", "architecture")}
    _add_params_results(section, hyper, reports / name, "evaluate")
    model_file = models / name / "model.keras"
    if not model_file.is_file():
        section.notes.append(f"no trained model at {model_file}")
        return section
    try:
        run_id = tracking.find_training_run(params.tracking, name, model_file)
        page = tracking.run_page(params.tracking, run_id) if run_id else None
    except Exception as exc:  # an unreachable store must not cost the rest of the report
        section.notes.append(f"MLflow store not readable: {' '.join(str(exc).split())[:200]}")
        return section
    if page is None:
        section.notes.append("its training run is not in the MLflow store")
        return section
    section.links.append((f"MLflow run {run_id}", page["ui"]))
    if "artifacts" in page:
        section.links.append(("its artifacts on disk", page["artifacts"]))
    section.serve = page.get("serve", "")
    return section


def dataset_section(params: Params, name: str, reports: Path, prepared: Path) -> Section:
    ds = params.dataset(name)
    section = Section(f"dataset-{name}", name, f"dataset, source {ds.source}")
    manifest = _read_json(prepared / name / "manifest.json")
    if isinstance(manifest, dict):
        shape = "x".join(str(d) for d in manifest.get("shape", []))
        counts = manifest.get("counts", {})
        rows = [[c, *(counts.get(s, {}).get(c) for s in counts)] for c in manifest.get("classes", [])]
        section.tables.append((f"rows of shape {shape}, per class and split", ["class", *counts], rows))
        if manifest.get("skipped"):
            section.notes.append(
                f"{manifest.get('skipped_count', len(manifest['skipped']))} file(s) skipped; "
                f"see {prepared / name / 'manifest.json'}"
            )
    section.figures = figures_in(reports / name)
    return section


def gan_section(params: Params, name: str, reports: Path) -> Section:
    """A DCGAN or CycleGAN: its params, test metrics (FID on EfficientNet-Lite0 features), curves, samples."""
    gan = params.gan(name)
    kind = "cyclegan" if name in params.cyclegans else "dcgan"
    data = f"{gan.dataset} <-> {gan.target}" if kind == "cyclegan" else gan.dataset
    section = Section(f"gan-{name}", name, f"{kind} on {data}")
    hyper = {k: v for k, v in gan.model_dump().items() if k not in ("dataset", "target")}
    _add_params_results(section, hyper, reports / name, f"{kind}_evaluate")
    return section


def _add_params_results(section: Section, hyper: dict, folder: Path, evaluate_stage: str) -> None:
    """The entry's params table, its metrics.json as tables before it (or a note), its figures."""
    section.tables.append(("params.yaml", ["key", "value"], [[k, _plain(v)] for k, v in hyper.items()]))
    metrics = _read_json(folder / "metrics.json")
    if isinstance(metrics, dict):
        section.tables[:0] = metric_tables(metrics)
    else:
        section.notes.append(f"no {folder / 'metrics.json'} yet: run the {evaluate_stage} stage")
    section.figures = figures_in(folder)


def lecture_section(reports: Path) -> Section:
    folder = reports / "lecture"
    section = Section("lecture", "The lecture's figures", "hand-made and learned filters, feature maps")
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
    section.figures = figures_in(folder)
    return section


def collect(params: Params, reports: Path, models: Path, prepared: Path) -> list[Section]:
    """Every model, every dataset, the lecture's figures, then any other folder of figures."""
    sections = [model_section(params, name, reports, models) for name in params.models]
    sections += [dataset_section(params, name, reports, prepared) for name in params.datasets]
    sections += [gan_section(params, name, reports) for name in {**params.dcgans, **params.cyclegans}]
    if figures_in(reports / "lecture"):
        sections.append(lecture_section(reports))
    known = {*params.models, *params.datasets, *params.dcgans, *params.cyclegans, "lecture"}
    others = (
        sorted(p for p in reports.iterdir() if p.is_dir() and p.name not in known) if reports.is_dir() else []
    )
    for folder in others:
        if figures_in(folder):
            sections.append(
                Section(f"other-{folder.name}", folder.name, "other figures", figures=figures_in(folder))
            )
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
"""


def _cell(value: Any) -> str:
    if _is_number(value) and isinstance(value, float):
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


def summary_table(params: Params, sections: list[Section], reports: Path) -> str:
    by_anchor = {s.anchor: s for s in sections}
    rows = []
    for name, p in params.models.items():
        metrics = _read_json(reports / name / "metrics.json") or {}
        links = by_anchor[f"model-{name}"].links
        run = next((_link(t.split()[-1][:8], h) for t, h in links if t.startswith("MLflow")), "")
        cells = [
            _link(name, f"#model-{name}"),
            html.escape(p.architecture),
            html.escape(p.dataset),
            *(
                _cell(metrics.get(k))
                for k in ("accuracy", "macro_f1", "roc_auc", "shift_drop", "test_images")
            ),
            run,
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
        "MLflow run",
    ]
    head = "".join(f"<th>{h}</th>" for h in header)
    return f"<table><caption>models (test split)</caption><tr>{head}</tr>{''.join(rows)}</table>"


def render(params: Params, sections: list[Section], reports: Path, origin: str) -> str:
    """The whole page as one HTML string."""
    nav = " ".join(_link(s.title, f"#{s.anchor}") for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>convpipe report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>convpipe report</h1>",
        f'<p class="sub">{html.escape(origin)}</p>',
        f"<nav>{nav}</nav>",
        summary_table(params, sections, reports),
    ]
    parts.extend(
        f'<p class="note">MLflow links open once its UI serves the store: <code>{html.escape(cmd)}</code></p>'
        for cmd in dict.fromkeys(s.serve for s in sections if s.serve)
    )
    for s in sections:
        parts.append(f'<section id="{html.escape(s.anchor)}">')
        parts.append(f'<h2>{html.escape(s.title)} <span class="sub">{html.escape(s.subtitle)}</span></h2>')
        if s.links:
            parts.append("<p>" + " · ".join(_link(t, h) for t, h in s.links) + "</p>")
        parts.extend(f'<p class="note">{html.escape(n)}</p>' for n in s.notes)
        parts.extend(_table(*t) for t in s.tables)
        if s.figures:
            parts.append('<div class="figures">' + "".join(_figure(f, s.title) for f in s.figures) + "</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(params: Params, reports: Path, models: Path, prepared: Path, out: Path) -> list[Section]:
    """Collect everything and write the page to `out` (replaced in one step, never half-written)."""
    from pipeline import tracking

    reports, models, prepared = Path(reports), Path(models), Path(prepared)
    sections = collect(params, reports, models, prepared)
    tags = tracking.provenance_tags()
    origin = f"params.yaml of commit {tags.get('git_commit', 'unknown')}"
    if tags.get("git_dirty") == "true":
        origin += " (with uncommitted changes)"
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(render(params, sections, reports, origin), encoding="utf-8")
    tmp.replace(out)
    return sections

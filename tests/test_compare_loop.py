"""The experiment loop a user lives, at tiny size: queue a two-point sweep of the cnn's lr, run it
with two jobs at once, compare (`dvc exp show`, `dvc plots diff`, the MLflow UI in Chromium) and
promote the winner (`dvc exp apply` plus a commit; the registry's `champion` alias).

The sweep runs once for this module, in tests/tiny_classification.py's reproduced repository (two
queued `dvc exp run`s, each minutes of TensorFlow start-up on two cores); the tests read it, and the
promote test, last, changes the workspace.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline import tracking
from tests.chromium import CHROMIUM
from tests.conftest import BIN, stage_env
from tests.tiny_classification import CNN_EPOCHS, Reproduced

pytestmark = pytest.mark.slow

SWEEP = {"lr-low": "0.001", "lr-high": "0.01"}  # experiment name: models.cnn.lr


def swept_runs(sweep: Reproduced) -> dict[str, object]:
    """The MLflow run of each swept experiment, by experiment name."""
    client = sweep.client()
    experiment = client.get_experiment_by_name(sweep.params["tracking"]["experiment"])
    found = client.search_runs([experiment.experiment_id], filter_string="tags.model = 'cnn'")
    return {r.data.tags["dvc_exp_name"]: r for r in found if "dvc_exp_name" in r.data.tags}


@pytest.fixture(scope="module")
def sweep(reproduced) -> Reproduced:
    s = reproduced
    assert "Running stage" not in s.dvc("repro")  # the defaults, reproduced
    s.commit("baseline")  # and committed: the baseline the sweep is compared with
    for name, lr in SWEEP.items():
        s.dvc("exp", "run", "--queue", "-n", name, "-S", f"models.cnn.lr={lr}")
    # Two at once into one SQLite store: neither may lose a write ("database is locked").
    s.dvc("exp", "run", "--run-all", "--jobs", "2")
    return s


def test_exp_show_fits_a_terminal_of_160_columns(sweep):
    shown = sweep.dvc("exp", "show", "--only-changed", "--no-pager", COLUMNS="160")
    print(shown)  # the note quotes it
    lines = shown.splitlines()
    [header] = [line for line in lines if "Experiment" in line]
    # Every metric and param column in full; DVC itself collapses the hash columns of changed
    # dependencies after the first to one trailing "…" column (its table's design), nothing else.
    names = header.replace("…", "").split()
    assert names[:4] == ["Experiment", "Created", "State", "Executor"], header
    # Named as reports/metrics.json keys them (the metrics stage): with one metrics file per model, DVC
    # prefixed each with its file's path (reports/models/cnn/metrics.json:accuracy), two filled the line.
    headline = ["cnn.accuracy", "cnn.macro_f1", "cnn.roc_auc", "cnn.shift_drop"]
    assert names[4:9] == [*headline, "models.cnn.lr"], header
    table = json.loads(sweep.dvc("exp", "show", "--only-changed", "--json"))
    for baseline in table:
        for exp in baseline.get("experiments") or []:
            data = exp["revs"][0]["data"]
            metrics = data["metrics"]["reports/metrics.json"]["data"]["cnn"]
            [row] = [line for line in lines if f"[{exp['name']}]" in line]
            cells = row.replace("…", "").split()
            for key in ("accuracy", "macro_f1", "roc_auc", "shift_drop"):
                assert f"{round(metrics[key], 5):g}" in cells, (exp["name"], key, row)
            assert SWEEP[exp["name"]] in cells, row
    assert "accuracy" in shown and "per_class" not in shown and "precision" not in shown
    # The per-class and per-shift figures are beside metrics.json, not DVC metrics.
    metrics = json.loads((sweep.repo / "reports/models/cnn/metrics.json").read_text())
    assert set(metrics) == {"accuracy", "macro_f1", "roc_auc", "shift_drop", "test_images"}


def test_parallel_runs_are_each_logged_completely(sweep):
    runs = swept_runs(sweep)
    assert set(runs) == set(SWEEP), runs.keys()
    client = sweep.client()
    manifest = json.loads((sweep.repo / "data/prepared/shapes/manifest.json").read_text())
    for name, r in runs.items():
        assert r.info.status == "FINISHED", name
        for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, metric))
            assert steps == list(range(CNN_EPOCHS)), (name, metric, steps)
        assert r.data.params["model.lr"] == SWEEP[name]
        assert {"test_accuracy", "test_macro_f1", "test_images", "test_shift_2_accuracy"} <= set(
            r.data.metrics
        )
        assert not [m for m in r.data.metrics if m.startswith("test_test_")]
        [dataset] = r.inputs.dataset_inputs
        assert dataset.dataset.name == "shapes" and dataset.dataset.digest == manifest["source_hash"][:16]
        assert dataset.dataset.source.endswith('pipeline/data/shapes.py"}')
    experiment = client.get_experiment_by_name("convpipe")
    assert experiment.tags[tracking.KIND_TAG] == tracking.KIND


def test_plots_diff_overlays_curves_and_shows_both_confusions(sweep):
    shown = json.loads(sweep.dvc("plots", "diff", *SWEEP, "--json"))
    assert not shown.get("errors"), shown["errors"]
    revs = {}  # plot id -> the revisions its drawn data comes from
    for plot_id, renders in shown["data"].items():
        for render in renders:
            values = render.get("content", {}).get("data", {}).get("values", [])
            revs.setdefault(plot_id, set()).update(v.get("rev") for v in values)
    for name in ("history.csv", "confusion.json", "roc.json"):  # one figure each, both experiments in it
        [plot_id] = [p for p in revs if p.endswith(f"reports/models/cnn/{name}")]
        assert set(SWEEP) <= revs[plot_id], (name, revs[plot_id])
    [roc] = [r for p, rs in shown["data"].items() if p.endswith("models/cnn/roc.json") for r in rs]
    assert roc["content"]["encoding"]["color"]["field"] == "class"  # pipeline/templates/roc.json
    out = sweep.repo / "plots"
    sweep.dvc("plots", "diff", *SWEEP, "-o", str(out))
    assert (out / "index.html").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dump_dom(url: str, profile: Path) -> str:
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install -y chromium)")
def test_mlflow_ui_opens_on_the_runs_and_compares_them(sweep, tmp_path):
    runs = swept_runs(sweep)
    experiment_id = next(iter(runs.values())).info.experiment_id
    port = free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{sweep.repo / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not answer within 2 minutes")
        # The runs page the README and the report point to (MLflow 3 opens on GenAI views otherwise).
        page = dump_dom(tracking.runs_page(base, experiment_id), tmp_path / "profile1")
        for name, r in runs.items():
            assert r.info.run_id in page, f"run {name} not on the experiment's page"
        ids = json.dumps([r.info.run_id for r in runs.values()])
        compare = dump_dom(
            f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment_id])}",
            tmp_path / "profile2",
        )
        assert "model.lr" in compare and all(lr in compare for lr in SWEEP.values())
        assert "test_accuracy" in compare
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_promote_the_winner(sweep):
    """The last step: apply the best experiment, commit it; the champion is the best run's model."""
    table = json.loads(sweep.dvc("exp", "show", "--json"))
    scores = {}
    for baseline in table:
        for exp in baseline.get("experiments") or []:
            data = exp["revs"][0]["data"]
            scores[exp["name"]] = data["metrics"]["reports/metrics.json"]["data"]["cnn"]["accuracy"]
    assert set(scores) == set(SWEEP)
    sorted_show = sweep.dvc("exp", "show", "--only-changed", "--no-pager", "--sort-by", "cnn.accuracy")
    assert all(name in sorted_show for name in SWEEP)
    winner = max(scores, key=scores.get)
    baseline = json.loads((sweep.repo / "reports/models/cnn/metrics.json").read_text())["accuracy"]
    sweep.dvc("exp", "apply", winner)
    sweep.commit(f"promote {winner}")
    assert "up to date" in sweep.dvc("status")
    committed = json.loads((sweep.repo / "reports/models/cnn/metrics.json").read_text())
    assert committed["accuracy"] == scores[winner]
    assert f"lr: {SWEEP[winner]}" in (sweep.repo / "params.yaml").read_text()
    champion = sweep.client().get_model_version_by_alias("convpipe-cnn", "champion")
    champion_run = sweep.client().get_run(champion.run_id)
    # The champion is the best model evaluated so far: the promoted winner, unless the baseline beat
    # every point of the sweep (then nothing was worth promoting).
    assert champion_run.data.metrics["test_accuracy"] == pytest.approx(max(scores[winner], baseline))

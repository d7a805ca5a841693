"""The one place that talks to MLflow.

One run per model: train opens it and logs params, per-epoch metrics and the model; evaluate
finds the same run again by the saved model's hash and adds test metrics and plots.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from pipeline.params import Params, Tracking

MODEL_HASH_TAG = "convpipe.model_md5"


def repo_root() -> Path:
    """The repository whose store runs belong to.

    DVC sets DVC_ROOT for every stage, and points it at the main repository for experiments that
    run in temporary workspaces, so queued runs land in the same store as workspace runs.
    """
    return Path(os.environ.get("DVC_ROOT") or Path(__file__).resolve().parents[1])


def tracking_uri(tracking: Tracking) -> str:
    """tracking.uri, else MLFLOW_TRACKING_URI, else an SQLite file at the repository root."""
    return tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _is_local_default(uri: str) -> bool:
    return uri.startswith("sqlite:///") and uri.endswith("mlflow.db")


def use_experiment(tracking: Tracking) -> str:
    """Point MLflow at the store and experiment; return the experiment id."""
    uri = tracking_uri(tracking)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    # Artifacts beside the default store, not in whatever folder the stage runs from.
    location = (repo_root() / "mlartifacts").as_uri() if _is_local_default(uri) else None
    try:
        return client.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process (a parallel queued experiment) created it first.
        return client.get_experiment_by_name(tracking.experiment).experiment_id


def flatten(prefix: str, data: Any) -> dict[str, str]:
    """{'model.lr': '0.001', 'model.filters': '[16, 32]'}: nested maps joined by dots."""
    if isinstance(data, Mapping):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
        return out
    return {prefix: str(data)}


def provenance_tags(workdir: Path | None = None) -> dict[str, str]:
    """Git commit and dirty flag of the working copy, and the DVC experiment name if any."""
    workdir = Path(workdir or Path.cwd())
    tags = {}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        tags.update({"git_commit": commit, "git_dirty": str(bool(dirty)).lower()})
    except (OSError, subprocess.CalledProcessError):
        tags["git_commit"] = "unknown"
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def training_run(
    tracking: Tracking,
    model_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    resume: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """A run named after the model, with its params and tags logged; `resume` continues that run id."""
    experiment_id = use_experiment(tracking)
    if resume is not None:
        with mlflow.start_run(run_id=resume) as run:
            mlflow.set_tags(tags)
            yield run
        return
    with mlflow.start_run(experiment_id=experiment_id, run_name=model_name, tags=tags) as run:
        mlflow.log_params(params)
        yield run


def start_training_run(
    params: Params,
    name: str,
    entry: Any,
    manifest: dict,
    architecture: str,
    extra: Mapping[str, str],
    resume: str | None = None,
) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
    """The MLflow run of one training (a model's or a GAN's): every param and tag it carries, here only.

    `entry` is the params entry (models.<name>, dcgans.<name>, ...); `extra` adds what the task knows.
    """
    run_params = {
        **flatten("model", entry.model_dump()),
        **flatten("dataset", manifest["params"]),
        **flatten("runtime", params.runtime.model_dump()),
        "seed": str(params.seed),
        "model_name": name,
        **extra,
    }
    tags = {
        **provenance_tags(),
        "model": name,
        "architecture": architecture,
        "dataset": entry.dataset,
        "dataset_hash": manifest["source_hash"],
    }
    return training_run(params.tracking, name, run_params, tags, resume)


def log_evaluation(
    tracking: Tracking,
    name: str,
    model_file: Path,
    metrics: Mapping[str, Any],
    reports: list[Path],
    champion_metric: str | None = None,
) -> str:
    """Test metrics and report files into the run that trained this very model file (a model's or a
    GAN's): the one place an evaluation is logged. Numbers only (None, flags and text are left out).

    With `champion_metric`, the model becomes a new registered version, and the champion if it scores
    higher than the current one. Returns the run id.
    """
    run_id = find_training_run(tracking, name, model_file)
    if run_id is None:
        print(f"evaluate {name}: its training run is not in the tracking store; logging a new run")
        run_id = new_run(tracking, name, {"model": name, "note": "training run not found"})
    numbers = {k: v for k, v in metrics.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
    log_metrics(run_id, numbers)
    log_artifacts(run_id, reports)
    log_artifacts(run_id, [Path("params.yaml"), Path("dvc.lock")], "pipeline")
    if champion_metric is not None and numbers.get(champion_metric) is not None:
        registered = register_model(tracking, run_id, name, champion_metric, numbers[champion_metric])
        if registered:
            new, champion = registered
            print(f"evaluate {name}: registered as version {new}; champion is version {champion}")
    return run_id


def find_training_run(tracking: Tracking, model_name: str, model_file: Path) -> str | None:
    """The id of the run that saved this very model file, if the store still has it."""
    experiment_id = use_experiment(tracking)
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=f"tags.`{MODEL_HASH_TAG}` = '{file_md5(model_file)}' and tags.model = '{model_name}'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


class EpochLogger:
    """Keras callback body: per-epoch metrics into a run, one `log_batch` per epoch.

    MLflow's own asynchronous logging (`synchronous=False`) sends them from its queue thread, so
    training does not wait for the store; `wait()` blocks until every epoch handed over is stored
    and raises what storing raised. BestAndResume calls it between saving an epoch's model and
    writing the state that marks the epoch done, so a resumed training still finds every
    checkpointed epoch in the store.

    `logged_through` is the last step the run already holds (a resumed training may redo an
    epoch whose metrics were logged just before the kill): those steps are not logged twice.
    """

    def __init__(self, step_offset: int = 0, logged_through: int = -1, run_id: str | None = None):
        self.step_offset = step_offset
        self.logged_through = logged_through
        self.run_id = run_id  # None: the run active when the first epoch ends
        self.seconds = 0.0  # time the training spent handing metrics over, reported by the benchmarks
        self._pending: list = []  # mlflow RunOperations, one per epoch

    def log(self, epoch: int, logs: Mapping[str, float]) -> None:
        step = epoch + self.step_offset
        if step <= self.logged_through:
            return
        start = time.perf_counter()
        ts = int(time.time() * 1000)
        batch = [
            mlflow.entities.Metric(k, float(v), ts, step)
            for k, v in logs.items()
            if isinstance(v, int | float) or hasattr(v, "__float__")
        ]
        if self.run_id is None:
            self.run_id = (mlflow.active_run() or mlflow.start_run()).info.run_id
        self._pending.append(MlflowClient().log_batch(self.run_id, metrics=batch, synchronous=False))
        self.seconds += time.perf_counter() - start

    def wait(self) -> None:
        """Block until every epoch handed over is in the store; raise what logging raised."""
        start = time.perf_counter()
        pending, self._pending = self._pending, []
        for operations in pending:
            operations.wait()
        self.seconds += time.perf_counter() - start


def last_step(run_id: str, metric: str) -> int:
    """The highest step of `metric` in the run, or -1."""
    history = MlflowClient().get_metric_history(run_id, metric)
    return max((m.step for m in history), default=-1)


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int | None = None) -> None:
    client = MlflowClient()
    ts = int(time.time() * 1000)
    batch = [mlflow.entities.Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
    client.log_batch(run_id, metrics=batch)


def log_artifacts(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    client = MlflowClient()
    for p in paths:
        if Path(p).exists():
            client.log_artifact(run_id, str(p), artifact_path)


def log_epoch_image(run_id: str, png: Path, key: str, step: int) -> None:
    """A PNG as an MLflow image of `key` at `step` (epoch): the UI steps through them on a slider."""
    from PIL import Image

    with Image.open(png) as image:
        MlflowClient().log_image(run_id, image.convert("RGB"), key=key, step=step)


def set_tags(tags: Mapping[str, str]) -> None:
    mlflow.set_tags(dict(tags))


def new_run(tracking: Tracking, name: str, tags: dict[str, str]) -> str:
    experiment_id = use_experiment(tracking)
    run = MlflowClient().create_run(experiment_id, run_name=name, tags={**provenance_tags(), **tags})
    MlflowClient().set_terminated(run.info.run_id)
    return run.info.run_id


def log_model(model: Any) -> str:
    """The Keras model as an MLflow model of the active run (loadable, registrable); returns its URI."""
    import mlflow.keras

    requirements = [f"keras=={_version('keras')}", f"tensorflow=={_version('tensorflow')}"]
    info = mlflow.keras.log_model(model, name="model", pip_requirements=requirements)
    mlflow.set_tag("convpipe.model_uri", info.model_uri)
    return info.model_uri


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


CHAMPION = "champion"


def register_model(
    tracking: Tracking, run_id: str, model_name: str, metric: str, value: float
) -> tuple[int, int] | None:
    """Register the run's model as a new version; move the `champion` alias if `metric` beats it.

    Returns (new version, champion version), or None when the run holds no logged model.
    """
    client = MlflowClient()
    uri = client.get_run(run_id).data.tags.get("convpipe.model_uri")
    if uri is None:
        return None
    name = f"{tracking.experiment}-{model_name}"
    version = int(mlflow.register_model(uri, name).version)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
        best = client.get_run(champion.run_id).data.metrics.get(metric)
    except mlflow.exceptions.MlflowException:
        champion, best = None, None
    if champion is None or best is None or value > best:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        return version, version
    return version, int(champion.version)


DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def run_page(tracking: Tracking, run_id: str) -> dict[str, str]:
    """Where a person looks at a run: its MLflow UI page, the command that serves a local store's UI,
    and for a local store the run's artifact folder (which opens without any server)."""
    use_experiment(tracking)
    uri = tracking_uri(tracking)
    run = MlflowClient().get_run(run_id)
    served = uri.startswith(("http://", "https://"))
    ui = uri if served else DEFAULT_UI
    page = {"ui": f"{ui.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{run_id}"}
    if not served:
        page["serve"] = f"mlflow ui --backend-store-uri {uri}"
    if run.info.artifact_uri.startswith("file:"):
        page["artifacts"] = run.info.artifact_uri
    return page

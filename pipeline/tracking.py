"""The one place that talks to MLflow.

One run per model: train opens it and logs params, per-epoch metrics and the model; evaluate
finds the same run again by the saved model's hash and adds test metrics and plots.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import numbers
import os
import signal
import socket
import sqlite3
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import sqlalchemy
from mlflow.tracking import MlflowClient

from pipeline.errors import UserError
from pipeline.params import Params, Tracking

MODEL_HASH_TAG = "convpipe.model_md5"
# Which process trains a run: a RUNNING run whose process is gone is marked FAILED by the next training.
HOST_TAG, PID_TAG, STARTED_TAG = "convpipe.host", "convpipe.pid", "convpipe.pid_started"
PROBE_TIMEOUT = 10  # seconds a tracking server has to answer the check made before any work


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


def _served(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def setting(tracking: Tracking) -> str:
    """The setting a message about the tracking store names: tracking.uri, or where null sends it."""
    if tracking.uri:
        return "tracking.uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "tracking.uri (null: MLFLOW_TRACKING_URI)"
    return "tracking.uri (null: the local mlflow.db)"


def _reason(exc: BaseException) -> str:
    """A few words for why a request failed, from an exception whose text may span a page."""
    text = str(exc)
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("timed out", f"no answer within {PROBE_TIMEOUT} s"),
        ("Name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("Temporary failure in name resolution", "unknown host"),
        ("RemoteDisconnected", "connection closed by the server"),
        ("Connection aborted", "connection closed by the server"),
        ("Connection reset", "connection reset"),
        ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    ):
        if needle in text:
            return words
    return type(exc).__name__


def probe(uri: str, experiment: str) -> tuple[int | None, str]:
    """(HTTP status, '') of one quick request to the server about `experiment`, or (None, why not).

    MLflow's own request code, so that the credentials checked are those MLflow sends: the standard
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), TLS settings too.
    """
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/get-by-name",
            "GET",
            max_retries=0,
            backoff_factor=0,
            timeout=PROBE_TIMEOUT,
            raise_on_status=False,
            params={"experiment_name": experiment},
        )
    except Exception as exc:  # refused, timed out, unknown host, TLS: MLflow wraps them all
        return None, _reason(exc)
    return response.status_code, ""


def check_server(tracking: Tracking) -> None:
    """Before a stage does any work: a served tracking store must answer and accept the credentials.

    Raises a one-line UserError naming tracking.uri otherwise; a local store needs no check.
    """
    uri = tracking_uri(tracking)
    if not _served(uri):
        return
    where = setting(tracking)
    status, reason = probe(uri, tracking.experiment)
    if status is None:
        raise UserError(
            f"{where}: cannot reach the MLflow server at {uri} ({reason}); start it, or set tracking.uri "
            "to a running server"
        )
    if status == 401:
        raise UserError(
            f"{where}: the MLflow server at {uri} refused the credentials (401 Unauthorized): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if status == 403:
        raise UserError(_forbidden(tracking, uri))
    if status not in (200, 404):  # 404: no such experiment yet; the first run creates it
        raise UserError(f"{where}: the server at {uri} answered HTTP {status}, not as an MLflow server does")


def _forbidden(tracking: Tracking, uri: str) -> str:
    user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(MLFLOW_TRACKING_USERNAME unset)")
    return (
        f"{setting(tracking)}: user {user} may not log to experiment '{tracking.experiment}' on the "
        f"MLflow server at {uri} (403 Forbidden); ask the experiment's owner for EDIT permission, "
        "or set tracking.experiment to one of yours"
    )


@contextmanager
def server_errors(tracking: Tracking, what: str, then: str) -> Iterator[None]:
    """A tracking server lost (or refusing) in the middle of `what` ends it with one line.

    An MLflow error is checked against the server itself: when the server does not answer, the
    message says so and what happens `then`; a refusal (403) names the missing permission; any other
    error is raised as it was.
    """
    try:
        yield
    except mlflow.exceptions.MlflowException as exc:
        uri = tracking_uri(tracking)
        if not _served(uri):
            raise
        status, reason = probe(uri, tracking.experiment)
        if status is None:
            raise UserError(
                f"{setting(tracking)}: lost the MLflow server at {uri} during {what} ({reason}); {then}"
            ) from None
        if getattr(exc, "error_code", "") == "PERMISSION_DENIED" or status == 403:
            raise UserError(_forbidden(tracking, uri)) from None
        raise


# What the MLflow UI (3.x) reads to open an experiment on its training runs, not on GenAI's overview.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


@sqlalchemy.event.listens_for(sqlalchemy.engine.Engine, "connect")
def _wait_for_sqlite(connection: Any, _record: Any) -> None:
    """Parallel runs (`dvc exp run --run-all --jobs 2`) write one SQLite store: a writer waits for
    the other's transaction (up to 2 min) instead of failing with "database is locked" after 5 s."""
    if isinstance(connection, sqlite3.Connection):
        connection.execute("PRAGMA busy_timeout = 120000")


@contextmanager
def _sqlite_creation_lock(uri: str) -> Iterator[None]:
    """One process at a time opens a local SQLite store: the first creates its tables, which two
    processes at once would both try (`table _alembic_tmp_experiments already exists`)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    folder = Path(uri.removeprefix("sqlite:///").split("?")[0]).parent
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)  # a lock on the folder: no lock file beside the store
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def use_experiment(tracking: Tracking) -> str:
    """Point MLflow at the store and experiment (created marked as model training); return its id."""
    uri = tracking_uri(tracking)
    mlflow.set_tracking_uri(uri)
    with _sqlite_creation_lock(uri):
        client = MlflowClient()
        try:
            exp = client.get_experiment_by_name(tracking.experiment)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "PERMISSION_DENIED":
                raise
            # Refused even to read it: created a moment ago by another process (its creator's grant
            # still to come: wait for it), or not ours to read (the wait ends in the refusal).
            return _created_meanwhile(client, tracking.experiment)
    if exp is not None:
        # Found: read only. The trainings mark its kind (await_write_permission), not every reader:
        # a user who may only read it (evaluating a teammate's model) would be refused the write.
        return exp.experiment_id
    # Artifacts beside the default store, not in whatever folder the stage runs from.
    location = (repo_root() / "mlartifacts").as_uri() if _is_local_default(uri) else None
    try:
        return client.create_experiment(
            tracking.experiment, artifact_location=location, tags={KIND_TAG: KIND}
        )
    except mlflow.exceptions.MlflowException:
        # Another process (a parallel queued experiment, a teammate's training) created it first.
        return _created_meanwhile(client, tracking.experiment)


def await_write_permission(experiment_id: str, seconds: float = 10) -> None:
    """Write to the experiment (its kind tag) before a run starts in it. A server with access control
    grants an experiment's creator its permission a moment after the experiment appears: another
    training of the same user that finds the experiment in that moment was refused (403, seen with
    eight trainings starting at once). So a refusal on an experiment created in the last minute (or
    not readable yet) is retried for `seconds`; any other refusal stands at once (server_errors
    names it). use_experiment waits likewise when even reading the experiment is refused."""
    client = MlflowClient()
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
            return
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "PERMISSION_DENIED" or time.monotonic() > deadline:
                raise
            if not _just_created(client, experiment_id):
                raise
        time.sleep(0.25)


def _just_created(client: MlflowClient, experiment_id: str) -> bool:
    """Whether the experiment is younger than a minute, or its age cannot be read yet."""
    try:
        created = client.get_experiment(experiment_id).creation_time or 0
    except mlflow.exceptions.MlflowException:
        return True
    return time.time() * 1000 - created < 60_000


def _created_meanwhile(client: MlflowClient, name: str, seconds: float = 10) -> str:
    """The id of an experiment another process has just created. A server with access control grants
    the creator's permission a moment after the experiment appears: until then, reading it is refused
    (seen with eight trainings starting at once as one user)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            exp = client.get_experiment_by_name(name)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "PERMISSION_DENIED" or time.monotonic() > deadline:
                raise
            exp = None
        if exp is not None:
            return exp.experiment_id
        if time.monotonic() > deadline:
            raise mlflow.exceptions.MlflowException(f"experiment {name}: neither created nor found")
        time.sleep(0.25)


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


def process_tags() -> dict[str, str]:
    """This process, so that another can tell whether it still runs: host, pid and start time."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: _started(os.getpid())}


def _started(pid: int) -> str:
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def close_dead_runs(experiment_id: str, model_name: str, keep: str | None = None) -> list[str]:
    """Mark FAILED every RUNNING run of `model_name` whose training process died on this host (a
    kill, a time-out, a crash); `keep` is the run about to be resumed. Returns the ids marked.

    A run of another host is left alone: whether its process lives cannot be told from here.
    """
    client = MlflowClient()
    runs = client.search_runs(
        [experiment_id], filter_string=f"attributes.status = 'RUNNING' and tags.model = '{model_name}'"
    )
    closed = []
    for run in runs:
        tags = run.data.tags
        if run.info.run_id == keep or tags.get(HOST_TAG) != socket.gethostname():
            continue
        pid = int(tags.get(PID_TAG) or 0)
        if pid and _started(pid) == tags.get(STARTED_TAG):
            continue  # still training (a queued experiment in another workspace, say)
        client.set_tag(run.info.run_id, "convpipe.failure", "its training process died (killed or timed out)")
        client.set_terminated(run.info.run_id, "FAILED")
        closed.append(run.info.run_id)
        print(
            f"train {model_name}: run {run.info.run_id}, left RUNNING by a process that died: marked FAILED"
        )
    return closed


def _end_run(status: str, quick: bool) -> None:
    """End the active run. `quick`: the server may be gone, so one try and no error; the next
    training of the stage then resumes the run or marks it FAILED."""
    if not quick:
        mlflow.end_run(status)
        return
    saved = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        mlflow.end_run(status)  # takes the run off the stack first, then tells the server
    except Exception:
        pass
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = saved


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a time-out, `kill`) ends the process through Python, so that the run is marked
    FAILED rather than left RUNNING; only where nothing else handles SIGTERM."""
    import threading

    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def training_run(
    tracking: Tracking,
    model_name: str,
    params: dict[str, str],
    tags: dict[str, str],
    resume: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """A run named after the model, with its params and tags logged; `resume` continues that run id.

    RUNNING runs of the model left by dead processes are marked FAILED first. A tracking server lost
    during the training ends it with one line (server_errors); the run is left as it is, for the
    next `dvc repro` to resume from the last checkpointed epoch.
    """
    what = f"the training of {model_name}"
    then = "once it is back, `dvc repro` resumes the training and its run after the last checkpointed epoch"
    with server_errors(tracking, what, then):
        experiment_id = use_experiment(tracking)
        await_write_permission(experiment_id)
        close_dead_runs(experiment_id, model_name, keep=resume)
        tags = {**tags, **process_tags()}
        if resume is not None:
            run = mlflow.start_run(run_id=resume)
            mlflow.set_tags(tags)
        else:
            run = mlflow.start_run(experiment_id=experiment_id, run_name=model_name, tags=tags)
            mlflow.log_params(params)
    try:
        with _sigterm_as_exit(), server_errors(tracking, what, then):
            yield run
    except BaseException as exc:
        _end_run("FAILED", quick=isinstance(exc, UserError | SystemExit | KeyboardInterrupt))
        raise
    with server_errors(tracking, what, then):
        _end_run("FINISHED", quick=False)


def start_training_run(
    params: Params,
    name: str,
    entry: Any,
    manifest: dict,
    architecture: str,
    extra: Mapping[str, str],
    resume: str | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> contextlib.AbstractContextManager[mlflow.ActiveRun]:
    """The MLflow run of one training (a model's or a GAN's): every param and tag it carries, here only.

    `entry` is the params entry (models.<name>, dcgans.<name>, ...); `extra` adds what the task knows,
    `extra_tags` what the caller does (a sweep's trial: mlflow.parentRunId, the sweep's git commit).
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
        **(extra_tags or {}),
    }
    return _with_dataset(training_run(params.tracking, name, run_params, tags, resume), manifest)


@contextmanager
def _with_dataset(run: contextlib.AbstractContextManager, manifest: dict) -> Iterator[mlflow.ActiveRun]:
    """The run, its dataset logged as an MLflow dataset input (the UI's Dataset column)."""
    with run as active:
        log_dataset(manifest)
        yield active


def log_dataset(manifest: dict, context: str = "training") -> None:
    """The prepared dataset as an input of the active run: its name, the first 16 hex digits of its
    manifest's source hash as digest, and its source (`path`: a folder of images, a generator module)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    path = str(manifest["params"].get("path") or manifest["name"])
    with warnings.catch_warnings():  # MLflow registers its local source twice and warns that it has two
        warnings.simplefilter("ignore", UserWarning)
        # Relative paths from the repository root, also for runs in DVC's temporary workspaces.
        source = resolve_dataset_source(path if "://" in path else (repo_root() / path).resolve().as_uri())
    digest = manifest["source_hash"][:16]
    mlflow.log_input(MetaDataset(source, name=manifest["name"], digest=digest), context=context)


def log_evaluation(
    tracking: Tracking,
    name: str,
    model_file: Path,
    metrics: Mapping[str, Any],
    reports: list[Path],
    champion_metric: str | None = None,
) -> str:
    """Test metrics and report files into the run that trained this very model file (a model's or a
    GAN's): the one place an evaluation is logged. Numbers only (None, flags and text are left out);
    a lost tracking server ends it in one line.

    With `champion_metric`, the model becomes a new registered version, and the champion if it scores
    higher than the current one. Returns the run id.
    """
    then = "once it is back, `dvc repro` runs this evaluation again"
    with server_errors(tracking, f"the evaluation of {name}", then):
        run_id = find_training_run(tracking, name, model_file)
        if run_id is None:
            print(f"evaluate {name}: its training run is not in the tracking store; logging a new run")
            run_id = new_run(tracking, name, {"model": name, "note": "training run not found"})
        figures = {
            k: v for k, v in metrics.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)
        }
        log_metrics(run_id, figures)
        log_artifacts(run_id, reports)
        log_artifacts(run_id, [Path("params.yaml"), Path("dvc.lock")], "pipeline")
        if champion_metric is not None and figures.get(champion_metric) is not None:
            registered = register_model(tracking, run_id, name, champion_metric, figures[champion_metric])
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
        self.listeners: list[Callable[[int, Mapping[str, float]], None]] = []  # told of each epoch logged

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
        for listener in self.listeners:
            listener(epoch, logs)

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


def log_params(run_id: str, params: Mapping[str, Any]) -> None:
    MlflowClient().log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])


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
    await_write_permission(experiment_id)
    run = MlflowClient().create_run(experiment_id, run_name=name, tags={**provenance_tags(), **tags})
    MlflowClient().set_terminated(run.info.run_id)
    return run.info.run_id


def log_model(model: Any, input_example: Any = None, metadata: Mapping[str, Any] | None = None) -> str:
    """The Keras model as an MLflow model of the active run (loadable, registrable, servable by
    `mlflow models serve`); returns its URI.

    `input_example`, a few rows of the model's input (uint8 images), is stored with the model and
    gives its signature with the model's outputs for it; `metadata` goes into MLmodel (the class
    names, which `pipeline.tools.predict` reads for a models:/ URI).
    """
    import types

    import mlflow.keras
    import numpy as np
    from mlflow.models import Model, infer_signature

    def save_model(path: str, **kwargs: Any) -> None:
        # MLflow 3.17's keras flavor writes the input example into `path` before it creates it.
        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)

    keras_flavor = types.SimpleNamespace(__name__="mlflow.keras", save_model=save_model)
    example = signature = None
    if input_example is not None:
        example = np.asarray(input_example)
        signature = infer_signature(example, np.asarray(model.predict(example, verbose=0)))
    requirements = [f"keras=={_version('keras')}", f"tensorflow=={_version('tensorflow')}"]
    info = Model.log(
        artifact_path=None,
        name="model",
        flavor=keras_flavor,
        model=model,
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
        metadata=dict(metadata or {}),
    )
    mlflow.set_tag("convpipe.model_uri", info.model_uri)
    return info.model_uri


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


CHAMPION = "champion"


@contextmanager
def _mlflow_messages_off() -> Iterator[None]:
    """MLflow's own messages (eprint and its loggers) off for the block; errors still raise."""
    from mlflow.utils.logging_utils import disable_logging, enable_logging

    disable_logging()
    try:
        yield
    finally:
        enable_logging()


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
    # Without MLflow's "Registered model ... already exists" and "Created version" lines: the
    # evaluate stage prints the version and the champion in its own line.
    with _mlflow_messages_off():
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
# MLflow 3's UI opens an experiment on its GenAI views (traces, judges) unless the page is asked for
# the classic workflow, whatever the experiment's kind tag says; this query shows the runs table.
RUNS_VIEW = "?workflowType=machine_learning"


def runs_page(ui: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs, where a person ticks runs and presses Compare."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs{RUNS_VIEW}"

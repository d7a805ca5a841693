"""Hyperparameter search on a Ray cluster: a `sweeps:` entry run by Ray Tune (Optuna's TPE or random
search, ASHA early stopping), each trial an MLflow child run of the sweep's run.

A trial is one process on some node of the cluster. It trains and evaluates models.<model> with the
values Tune picked, through the train and evaluate stages' own library code (tasks.model.train_model,
tasks.classification / tasks.segmentation evaluate_model), on the very files the train stage reads
(by path: every node must see the repository's data/ folder, e.g. on shared storage). Each epoch's
metrics go to Tune as they are logged; the last epoch's report waits for the test metrics, since
Tune stops a trial the moment it reports its last epoch. The sweep ends with the `dvc exp run -S ...`
that reproduces its best trial as a DVC experiment.

The driver imports neither Keras nor TensorFlow; a trial imports Keras only after runtime.setup.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shlex
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError, choices_hint
from pipeline.params import Params, Sweep

TRIAL_TAG, SWEEP_TAG, NODE_TAG, STOPPED_TAG = (
    "convpipe.trial",
    "convpipe.sweep",
    "convpipe.node",
    "convpipe.stopped",
)
PARENT_TAG = "mlflow.parentRunId"  # what makes a run a child in MLflow's UI


# ---------------------------------------------------------------- the search space and the winner's command


def tune_space(sweep: Sweep, kind: type) -> dict[str, Any]:
    """The sweep's space as Ray Tune domains. Choices travel as JSON text: Optuna's categorical
    values must be scalars, and a choice may be a list (filters: [16, 32])."""
    from ray import tune

    from pipeline.params.sweeps import integer_keys

    integers = integer_keys(kind)
    space = {}
    for key, domain in sweep.space.items():
        if domain.choice is not None:
            space[key] = tune.choice([json.dumps(v) for v in domain.choice])
        elif key in integers:  # Tune's integer ranges leave out their upper end
            low, high = (int(v) for v in (domain.range or domain.log_range))
            space[key] = tune.randint(low, high + 1) if domain.range else tune.lograndint(low, high + 1)
        else:
            low, high = domain.range or domain.log_range
            space[key] = tune.uniform(low, high) if domain.range else tune.loguniform(low, high)
    return space


def decode(sweep: Sweep, config: dict[str, Any]) -> dict[str, Any]:
    """The model keys' values from a Tune config (plain Python numbers, choices decoded)."""
    values = {}
    for key, domain in sweep.space.items():
        value = config[key]
        if domain.choice is not None:
            values[key] = json.loads(value)
        elif isinstance(value, int) or type(value).__name__.startswith("int"):
            values[key] = int(value)
        else:
            values[key] = float(value)
    return values


def override_value(value: Any) -> str:
    """A value as `dvc exp run -S` reads it back exactly: floats by repr (shortest round trip)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def exp_command(sweep: Sweep, values: dict[str, Any], queue: bool = False) -> list[str]:
    """`dvc exp run -S models.<model>.<key>=<value> ...`: the trial's values and the sweep's epochs."""
    cmd = ["dvc", "exp", "run", *(["--queue"] if queue else [])]
    for key, value in {**values, "epochs": sweep.epochs}.items():
        cmd += ["-S", f"models.{sweep.model}.{key}={override_value(value)}"]
    return cmd


def trial_params(raw: dict, sweep: Sweep, values: dict[str, Any], tracking_uri: str) -> dict:
    """params.yaml as the trial runs it: the model's entry with the trial's values and the sweep's
    epochs; the sweep's tracking store; no progress bars (verbose changes no number)."""
    raw = copy.deepcopy(raw)
    raw["models"][sweep.model].update(values, epochs=sweep.epochs)
    raw["tracking"]["uri"] = tracking_uri
    raw["runtime"]["verbose"] = 0
    return raw


# ---------------------------------------------------------------- one trial (runs on a Ray worker)


def run_trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """Train and evaluate one point of the space; report each epoch to Tune.

    `spec`: the params as read (raw), the sweep's name and entry, the data paths of the train
    stage, the tracking URI, the parent run id and the tags every child run carries.
    """
    import ray
    from ray import tune

    from pipeline import params as P
    from pipeline import runtime

    sweep = P.Sweep.model_validate(spec["sweep"])
    values = decode(sweep, config)
    params = P.parse(trial_params(spec["raw"], sweep, values, spec["tracking_uri"]))
    runtime.setup(params.runtime, params.seed)
    import mlflow

    from pipeline.tasks import model as task

    node = ray.get_runtime_context().get_node_id()
    paths = {k: Path(v) if v else None for k, v in spec["paths"].items()}
    for key in ("data", "train"):
        if not paths[key].is_dir():
            raise UserError(
                f"{paths[key]}: not on node {node}; trials read the prepared data by path: put the "
                "repository on storage every node shares (see README: Search on a Ray cluster)"
            )
    trial_id = tune.get_context().get_trial_id()
    tags = {**spec["tags"], PARENT_TAG: spec["parent"], SWEEP_TAG: spec["name"], TRIAL_TAG: trial_id}
    tags[NODE_TAG] = node
    held: dict[str, Any] = {}

    def on_epoch(epoch: int, logs: dict) -> None:
        row = {k: float(v) for k, v in logs.items() if isinstance(v, int | float) or hasattr(v, "__float__")}
        if sweep.metric not in row:
            raise UserError(
                f"sweeps.{spec['name']}.metric: models.{sweep.model} logs no '{sweep.metric}'; "
                f"{choices_hint(sweep.metric, [k for k in row if k.startswith('val_')])}"
            )
        row.update(epoch=epoch + 1, node_id=node, mlflow_run_id=mlflow.active_run().info.run_id)
        if epoch + 1 >= sweep.epochs:
            held.update(row)  # reported with the test metrics, after the evaluation
        else:
            tune.report(row)

    with tempfile.TemporaryDirectory(prefix="convpipe-trial-") as tmp:
        work = Path(tmp)
        task.train_model(
            params,
            sweep.model,
            paths["data"],
            paths["train"],
            work / "model",
            work / "reports",
            work / "checkpoints",
            paths["weights"],
            on_epoch=on_epoch,
            tags=tags,
        )
        scores = evaluate(
            params, sweep.model, paths["data"], work / "model" / "model.keras", work / "reports"
        )
    if held:
        tune.report({**held, **scores})


def evaluate(params: Params, name: str, data: Path, model_file: Path, reports: Path) -> dict[str, float]:
    """What the evaluate stage does for the saved model, logged into its (child) run: test metrics."""
    import keras

    from pipeline import tracking
    from pipeline.data.arrays import load_split, read_manifest

    manifest = read_manifest(data)
    p = params.model(name)
    segmentation = manifest.get("task") == "segmentation"
    if segmentation:
        from pipeline.tasks import segmentation as task  # also registers the loss load_model reads back
    else:
        from pipeline.tasks import classification as task
    model = keras.saving.load_model(model_file)
    x, y = load_split(data, "test")
    if segmentation:
        flat, _ = task.evaluate_model(name, p, model, x, y, manifest, reports)
    else:
        flat, _ = task.evaluate_model(name, p, model, x, y, manifest["classes"], reports)
    trained = ("history.csv", "training_curves.png")  # logged by the training already
    files = sorted(f for f in reports.iterdir() if f.name not in trained)
    tracking.log_evaluation(params.tracking, name, model_file, flat, files)
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float)}


# ---------------------------------------------------------------- the driver


def train_stage_paths(root: Path, model: str) -> tuple[dict[str, str | None], list[str]]:
    """The train stage's --data, --train and --weights folders (absolute) as dvc.yaml writes them for
    models.<model>, and the stages that produce them."""
    from dvc.repo import Repo

    with contextlib.chdir(root), Repo(".") as repo:  # DVC resolves a stage's deps from the cwd
        (stage,) = repo.stage.collect(f"train@{model}")
        args = shlex.split(stage.cmd)
        paths: dict[str, str | None] = {}
        for key in ("data", "train", "weights"):
            flag = f"--{key}"
            paths[key] = str((root / args[args.index(flag) + 1]).resolve()) if flag in args else None
        deps = {d.fs_path for d in stage.deps}
        upstream = [s.addressing for s in repo.index.stages if any(o.fs_path in deps for o in s.outs)]
    return paths, upstream


def sweep_of(params: Params, name: str) -> Sweep:
    if name not in params.sweeps:
        raise UserError(f"sweeps.{name}: no such entry in params.yaml; {choices_hint(name, params.sweeps)}")
    return params.sweeps[name]


def run_sweep(
    root: Path, name: str, address: str | None = None, queue: bool = False, storage: Path | None = None
) -> dict[str, Any]:
    """Run sweeps.<name> on the Ray cluster at `address` (None: a local one); returns the summary that
    the sweep's MLflow run also holds (sweep.json)."""
    from pipeline import params as P
    from pipeline import tracking

    params = P.load(root / "params.yaml")
    sweep = sweep_of(params, name)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    paths, upstream = train_stage_paths(root, sweep.model)
    if upstream:  # the prepared data the train stage would read, brought up to date
        proc = subprocess.run(["dvc", "repro", *upstream], cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"dvc repro {' '.join(upstream)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    uri = tracking.tracking_uri(params.tracking)
    kind = type(params.model(sweep.model))
    run_params = {**tracking.flatten("sweep", sweep.model_dump(mode="json")), "seed": str(params.seed)}
    provenance = tracking.provenance_tags(root)
    architecture = params.model(sweep.model).architecture
    parent_tags = {**provenance, SWEEP_TAG: name, "model": sweep.model, "architecture": architecture}
    with tracking.training_run(params.tracking, f"sweep-{name}", run_params, parent_tags) as parent:
        spec = {
            "raw": raw,
            "name": name,
            "sweep": sweep.model_dump(mode="json"),
            "paths": paths,
            "tracking_uri": uri,
            "parent": parent.info.run_id,
            "tags": {k: v for k, v in provenance.items() if k.startswith("git_")},
        }
        grid = _tune(root, params, sweep, kind, spec, address, storage)
        summary = _summarise(name, sweep, grid, parent.info.run_id)
        if summary["best"] is not None:
            command = exp_command(sweep, summary["best"]["values"], queue)
            summary["command"] = shlex.join(command)
            tracking.log_metrics(parent.info.run_id, {f"best_{sweep.metric}": summary["best"]["score"]})
            tracking.set_tags(
                {"convpipe.best_trial": summary["best"]["trial_id"], "convpipe.command": summary["command"]}
            )
        _close_children(summary)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "sweep.json").write_text(json.dumps(summary, indent=2))
            tracking.log_artifacts(parent.info.run_id, [Path(tmp) / "sweep.json"])
    if summary["best"] is not None and queue:
        proc = subprocess.run(exp_command(sweep, summary["best"]["values"], True), cwd=root, text=True)
        if proc.returncode != 0:
            raise UserError(f"queueing the best trial failed: {summary['command']}")
    return summary


def _tune(root: Path, params: Params, sweep: Sweep, kind: type, spec: dict, address: str | None, storage):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    package = str(Path(__file__).resolve().parent)  # this very code travels to every node
    runtime_env = {"py_modules": [package], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}}
    try:
        local = {} if address else {"include_dashboard": False}  # an existing cluster refuses it
        ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING", **local)
    except ConnectionError as exc:
        raise UserError(
            f"--address {address}: no Ray cluster answers there ({exc})".replace("\n", " ")
        ) from None
    try:
        if sweep.algorithm == "tpe":
            import optuna
            from ray.tune.search.optuna import OptunaSearch

            searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=params.seed))
        else:
            searcher = BasicVariantGenerator(random_state=params.seed)
        if sweep.asha is None:
            scheduler = FIFOScheduler()
        else:
            scheduler = ASHAScheduler(
                time_attr="training_iteration",
                max_t=sweep.epochs,
                grace_period=sweep.asha.grace_period,
                reduction_factor=sweep.asha.reduction_factor,
            )
        trainable = tune.with_resources(tune.with_parameters(run_trial, spec=spec), {"cpu": sweep.trial_cpus})
        tuner = tune.Tuner(
            trainable,
            param_space=tune_space(sweep, kind),
            tune_config=tune.TuneConfig(
                metric=sweep.metric,
                mode=sweep.mode,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=sweep.trials,
                reuse_actors=False,  # a fresh process per trial: runtime.setup before Keras, as in a stage
            ),
            run_config=tune.RunConfig(
                name=f"sweep-{spec['name']}",
                storage_path=str(storage) if storage else None,
                verbose=1,
            ),
        )
        return tuner.fit()
    finally:
        ray.shutdown()


def _summarise(name: str, sweep: Sweep, grid, parent: str) -> dict[str, Any]:
    """Per trial: node, epochs run, status (completed, stopped by ASHA, error), score, test metrics."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        column = [] if history is None or sweep.metric not in history else list(history[sweep.metric])
        epochs = int(metrics.get("training_iteration", 0))
        run = client.get_run(metrics["mlflow_run_id"]) if metrics.get("mlflow_run_id") else None
        test = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")} if run else {}
        # Tune marks a trial it stopped `done` too; one that ended by itself was evaluated (its
        # test metrics are in its run), also when early_stopping ended it before its budget.
        if result.error is not None:
            status = "error"
        elif test:
            status = "completed"
        else:
            status = "stopped"
        pick = max if sweep.mode == "max" else min
        trials.append(
            {
                "trial_id": metrics.get("trial_id") or Path(result.path).name,
                "status": status,
                "node_id": metrics.get("node_id"),
                "epochs": epochs,
                "score": pick(column) if column else None,
                sweep.metric: [float(v) for v in column],
                "values": decode(sweep, result.config),
                "run_id": metrics.get("mlflow_run_id"),
                "test": test,
                "error": str(result.error).strip().splitlines()[-1] if result.error is not None else None,
            }
        )
    done = [t for t in trials if t["status"] == "completed" and t["score"] is not None]
    if not done and trials and all(t["status"] == "error" for t in trials):
        raise UserError(f"sweeps.{name}: every trial failed; the first: {trials[0]['error']}")
    best = None
    if done:
        best = (max if sweep.mode == "max" else min)(done, key=lambda t: t["score"])
    nodes = Counter(t["node_id"] for t in trials if t["node_id"])
    return {
        "sweep": name,
        "model": sweep.model,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "parent_run_id": parent,
        "trials": trials,
        "trials_per_node": dict(nodes),
        "stopped_early": sum(t["status"] == "stopped" for t in trials),
        "best": best,
        "command": None,
    }


def _close_children(summary: dict[str, Any]) -> None:
    """Name each child run after its trial; a trial ASHA stopped is KILLED, with the epoch it reached."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    for t in summary["trials"]:
        if not t["run_id"]:
            continue
        client.set_tag(t["run_id"], "mlflow.runName", f"{summary['model']} {t['trial_id']}")
        if t["status"] == "stopped":
            client.set_tag(t["run_id"], STOPPED_TAG, f"ASHA after epoch {t['epochs']}")
            client.set_terminated(t["run_id"], "KILLED")


def print_summary(summary: dict[str, Any], out=sys.stdout) -> None:
    metric = summary["metric"]
    what = f"{len(summary['trials'])} trials of {summary['model']} ({metric}, {summary['mode']})"
    print(f"sweep {summary['sweep']}: {what}", file=out)
    for t in summary["trials"]:
        score = "-" if t["score"] is None else f"{t['score']:.4f}"
        node = (t["node_id"] or "?")[:8]
        detail = t["error"] if t["status"] == "error" else json.dumps(t["values"])
        status = f"{t['status']:<9} epochs {t['epochs']:>3}"
        print(f"  {t['trial_id']}  node {node}  {status}  {metric} {score}  {detail}", file=out)
    per_node = ", ".join(f"{n[:8]}: {c}" for n, c in summary["trials_per_node"].items())
    print(f"trials per node: {per_node}; stopped early by ASHA: {summary['stopped_early']}", file=out)
    best = summary["best"]
    if best is None:
        print("no trial completed its budget: nothing to reproduce", file=out)
        return
    test = ", ".join(
        f"{k} {v:.4f}" for k, v in best["test"].items() if k in ("test_accuracy", "test_mean_iou")
    )
    print(
        f"best: trial {best['trial_id']}, {metric} {best['score']:.4f}, {test}; MLflow run {best['run_id']}",
        file=out,
    )
    print("reproduce it as a DVC experiment:", file=out)
    print(summary["command"], file=out)

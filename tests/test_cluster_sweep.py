"""A Ray Tune sweep on a real two-node Ray cluster on this machine: trials on both nodes, ASHA's
early stops, MLflow's parent and child runs, and the winner reproduced exactly as a DVC experiment.

The cluster is two `ray start --block` processes bound to loopback addresses, each in its own
process group, stopped by pid (and killed with their parent, whatever happens). Ray turns the
address 127.0.0.1 into the machine's network address (ray._private.services.resolve_ip_for_localhost),
so a head bound to 127.0.0.1 cannot be joined with `ray start --address`: the head binds 127.0.0.2,
the second node 127.0.0.1 (both on the loopback interface). One CPU per node, one per trial: two
trials at a time, one on each node.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import params as P
from pipeline import sweep
from pipeline.errors import UserError
from tests.conftest import BIN, only, project_params, run, stage_env, tiny

SWEEP = {
    "model": "cnn",
    "space": {
        "lr": {"log_range": [0.0001, 0.1]},
        "dropout": {"range": [0.0, 0.5]},
        "filters": {"choice": [[4, 8], [8, 16]]},
    },
    "metric": "val_loss",
    "mode": "min",
    "algorithm": "tpe",
    "trials": 6,
    "epochs": 3,
    "trial_cpus": 1,
    "asha": {"grace_period": 1, "reduction_factor": 2},
}
HEAD_IP = "127.0.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    os.setsid()  # its own process group: the node's daemons are stopped with it
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: pytest killed, node stops


def start_node(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    ports = {
        "node-manager-port": free_port(),
        "object-manager-port": free_port(),
        "metrics-export-port": free_port(),
        "dashboard-agent-listen-port": free_port(),
        "dashboard-agent-grpc-port": free_port(),
        "runtime-env-agent-port": free_port(),
    }
    cmd = [str(BIN / "ray"), "start", "--block", "--num-cpus=1", "--object-store-memory=80000000"]
    cmd += [*args, *(f"--{k}={v}" for k, v in ports.items()), "--disable-usage-stats"]
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )


def stop_node(proc: subprocess.Popen) -> None:
    """SIGTERM to `ray start --block` (it stops its node's processes), then SIGKILL to its group."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def ray_cluster():
    """HOST:PORT of a head and a second node, both on this machine's loopback interface."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths have a limit
    env = stage_env(RAY_USAGE_STATS_ENABLED="0", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    env.pop("PYTHONPATH")  # trials run the code the sweep ships (runtime_env py_modules), the repository's
    port = free_port()
    address = f"{HEAD_IP}:{port}"
    head_args = ["--head", f"--node-ip-address={HEAD_IP}", f"--port={port}", "--include-dashboard=false"]
    head_args += [f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}"]
    nodes = [start_node([*head_args, f"--temp-dir={temp}"], temp / "head.log", env)]
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in (temp / "head.log").read_text():
            assert nodes[0].poll() is None and time.time() < deadline, (temp / "head.log").read_text()[-3000:]
            time.sleep(0.5)
        nodes.append(start_node([f"--address={address}", f"--temp-dir={temp}"], temp / "node.log", env))
        while "Ray runtime started" not in (temp / "node.log").read_text():
            assert nodes[1].poll() is None and time.time() < deadline, (temp / "node.log").read_text()[-3000:]
            time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        subprocess.run(["rm", "-rf", str(temp)], check=False)


@pytest.fixture(scope="module")
def swept(ray_cluster, tmp_path_factory):
    """(repo, summary, stdout) of the sweep run by its command in a fresh repository."""
    from pipeline.tools import sandbox

    p = tiny(only(project_params(), "cnn"))
    p["runtime"]["deterministic"] = True
    p["sweeps"] = {"tiny": SWEEP}
    repo = sandbox.make_repo(tmp_path_factory.mktemp("sweep") / "repo", p)
    storage = tmp_path_factory.mktemp("tune")
    cmd = [str(BIN / "python"), "-m", "pipeline.tools.sweep", "tiny", "--address", ray_cluster]
    proc = run([*cmd, "--storage", str(storage)], repo, RAY_USAGE_STATS_ENABLED="0")
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("convpipe")
    (parent,) = client.search_runs([exp.experiment_id], "attributes.run_name = 'sweep-tiny'")
    folder = Path(
        client.download_artifacts(parent.info.run_id, "sweep.json", str(tmp_path_factory.mktemp("a")))
    )
    return repo, json.loads(folder.read_text()), proc.stdout


@pytest.mark.cluster
def test_trials_run_on_both_nodes(swept):
    _, summary, out = swept
    assert len(summary["trials"]) == SWEEP["trials"]
    assert not [t for t in summary["trials"] if t["status"] == "error"], out
    assert len(summary["trials_per_node"]) == 2, summary["trials_per_node"]
    assert sum(summary["trials_per_node"].values()) == SWEEP["trials"]
    assert "trials per node:" in out


@pytest.mark.cluster
def test_asha_stops_weak_trials_early(swept):
    _, summary, _ = swept
    stopped = [t for t in summary["trials"] if t["status"] == "stopped"]
    assert stopped and summary["stopped_early"] == len(stopped)
    assert all(t["epochs"] < SWEEP["epochs"] and len(t["val_loss"]) == t["epochs"] for t in stopped)
    completed = [t for t in summary["trials"] if t["status"] == "completed"]
    assert completed and all(t["epochs"] == SWEEP["epochs"] for t in completed)


@pytest.mark.cluster
def test_mlflow_holds_the_parent_and_every_child(swept):
    repo, summary, _ = swept
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["convpipe.sweep"] == "tiny" and parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_loss"] == summary["best"]["score"]
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert {r.info.run_id for r in children} == {t["run_id"] for t in summary["trials"]}
    by_id = {r.info.run_id: r for r in children}
    for t in summary["trials"]:
        run_ = by_id[t["run_id"]]
        steps = client.get_metric_history(t["run_id"], "val_loss")
        assert [m.value for m in sorted(steps, key=lambda m: m.step)][: t["epochs"]] == t["val_loss"]
        assert run_.data.params["model.lr"] == str(t["values"]["lr"])
        if t["status"] == "stopped":
            assert run_.info.status == "KILLED" and "ASHA" in run_.data.tags["convpipe.stopped"]
        else:
            assert run_.info.status == "FINISHED" and "test_accuracy" in run_.data.metrics


@pytest.mark.cluster
def test_the_winner_reproduces_as_a_dvc_experiment(swept):
    repo, summary, out = swept
    best = summary["best"]
    command = out.strip().splitlines()[-1]
    assert command == summary["command"] and command.startswith("dvc exp run -S models.cnn.")
    run(["bash", "-c", command], repo)
    metrics = json.loads((repo / "reports/models/cnn/metrics.json").read_text())
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("convpipe")
    (run_,) = client.search_runs([exp.experiment_id], "tags.dvc_exp_name != ''")
    history = sorted(client.get_metric_history(run_.info.run_id, "val_loss"), key=lambda m: m.step)
    trial = client.get_run(best["run_id"])
    # Exactly: the same machine, runtime.deterministic, the same data files and library code.
    assert [m.value for m in history] == best["val_loss"]
    assert metrics["accuracy"] == best["test"]["test_accuracy"]
    assert run_.data.tags["convpipe.model_md5"] == trial.data.tags["convpipe.model_md5"]


# ---------------------------------------------------------------- without a cluster: the declaration


def sweep_error(**changes) -> str:
    raw = project_params()
    raw["sweeps"] = {"s": {**SWEEP, **changes}}
    with pytest.raises(UserError) as exc:
        P.parse(raw)
    assert "\n" not in str(exc.value)
    return str(exc.value)


@pytest.mark.parametrize(
    ("changes", "start"),
    [
        ({"model": "cnx"}, "params.yaml: sweeps.s.model: no model 'cnx'; valid: "),
        (
            {"space": {"hidden": {"choice": [[8]]}}},
            "params.yaml: sweeps.s.space.hidden: not a key of models.cnn",
        ),
        ({"space": {"epochs": {"range": [1, 4]}}}, "params.yaml: sweeps.s.space.epochs: not searchable"),
        (
            {"space": {"dropout": {"range": [0.1, 1.5]}}},
            "params.yaml: sweeps.s.space.dropout: 1.5 is not valid",
        ),
        (
            {"space": {"padding": {"choice": ["same", "full"]}}},
            "params.yaml: sweeps.s.space.padding: 'full' is",
        ),
        (
            {"space": {"kernel_size": {"range": [1.5, 5]}}},
            "params.yaml: sweeps.s.space.kernel_size: kernel_size is an",
        ),
        (
            {"space": {"lr": {"log_range": [0, 1]}}},
            "params.yaml: sweeps.s.space.lr.log_range: a log-range needs",
        ),
        (
            {"space": {"lr": {"range": [0.1, 0.2], "choice": [0.1]}}},
            "params.yaml: sweeps.s.space.lr: give exactly one",
        ),
        ({"metric": "accuracy"}, "params.yaml: sweeps.s.metric: a per-epoch validation metric"),
        ({"algorithm": "grid"}, "params.yaml: sweeps.s.algorithm: got 'grid'; valid: random, tpe"),
    ],
)
def test_a_bad_sweep_ends_in_one_line_naming_the_key(changes, start):
    assert sweep_error(**changes).startswith(start)


def test_the_space_becomes_tune_domains_and_the_command_reads_back():
    from ray import tune

    raw = project_params()
    space = {"kernel_size": {"range": [3, 5]}, "lr": {"log_range": [1e-5, 1e-3]}, **SWEEP["space"]}
    raw["sweeps"] = {"s": {**SWEEP, "space": space}}
    params = P.parse(raw)
    s = params.sweeps["s"]
    domains = sweep.tune_space(s, P.CnnParams)
    assert isinstance(domains["kernel_size"], tune.search.sample.Integer)
    assert domains["kernel_size"].lower == 3 and domains["kernel_size"].upper == 6  # 5 included
    assert domains["filters"].categories == ["[4, 8]", "[8, 16]"]
    values = sweep.decode(
        s, {"kernel_size": 5, "lr": 1.2345678901234567e-05, "dropout": 0.25, "filters": "[8, 16]"}
    )
    cmd = sweep.exp_command(s, values)
    assert (
        cmd[:3] == ["dvc", "exp", "run"]
        and "models.cnn.filters=[8, 16]" in cmd
        and "models.cnn.epochs=3" in cmd
    )
    # What DVC writes back is read as the very values (a float without a dot: as text, then the same float).
    overrides = dict(c.split("=", 1) for c in cmd[3:] if c != "-S")
    for key, text in overrides.items():
        raw["models"]["cnn"][key.split(".")[-1]] = yaml.safe_load(text)
    cnn = P.parse(raw).models["cnn"]
    assert {k: getattr(cnn, k) for k in values} == values and cnn.epochs == SWEEP["epochs"]

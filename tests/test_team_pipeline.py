"""convpipe against a team's servers (pipeline.tools.team: PostgreSQL, SeaweedFS S3, MLflow with basic
auth): a full tiny pipeline, the DVC remote on S3 and a fresh clone, the champion served over HTTP,
a tracking server lost in the middle of a training, and restarts that lose nothing.

Only the configuration differs from a lone user's run: tracking.uri in params.yaml, credentials in
the environment and in .dvc/config.local. The tests of this module share one stack and one
repository, in order."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.tools import sandbox, team
from tests.conftest import BIN, only, project_params, stage_env, tiny
from tests.team_common import acting_as, state_epoch

pytestmark = pytest.mark.team

TRAINER = ("trainer", "trainer-pw-7d20e1")
MODEL = "convpipe-cnn"  # the registered name: <experiment>-<model>
LONG_EPOCHS = 10


@pytest.fixture(scope="module")
def stack():
    with team.Stack.temporary() as s:
        s.add_user(*TRAINER)
        with acting_as(s, *TRAINER):  # this test process is the team member too
            yield s


def env_of(stack: team.Stack, **extra: str) -> dict[str, str]:
    """A team member's environment: the MLflow credentials, nothing of S3 (DVC reads .dvc/config.local)."""
    return stage_env(**stack.client_env(*TRAINER), **extra)


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True, timeout: float = 900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def dvc(repo: Path, env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], repo, env, check)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], repo, stage_env()).stdout


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def client(stack: team.Stack) -> MlflowClient:
    return MlflowClient(stack.tracking_uri)


def test_unreachable_tracking_server_ends_the_stage_before_any_work(make_repo):
    uri = f"http://127.0.0.1:{team.free_port()}"  # nobody listens there
    p = only(tiny(project_params()), "cnn", "dcgan")
    p["tracking"]["uri"] = uri
    repo = make_repo(p)
    train = (
        "pipeline.stages.train cnn --data data/prepared/shapes --train data/augmented/shapes "
        "--out data/models/cnn --reports reports/models/cnn --checkpoints data/checkpoints/cnn "
        "--weights data/weights"
    )
    gan = (
        "pipeline.stages.dcgan_train dcgan --data data/prepared/shapes_centered --out data/models/dcgan "
        "--reports reports/models/dcgan --weights data/weights --checkpoints data/checkpoints/dcgan"
    )
    # tracking.uri set; then null, with MLFLOW_TRACKING_URI: the message says where the URI came from.
    for stage, setting, env in (
        (train, "tracking.uri", stage_env()),
        (gan, "tracking.uri (null: MLFLOW_TRACKING_URI)", stage_env(MLFLOW_TRACKING_URI=uri)),
    ):
        if env.get("MLFLOW_TRACKING_URI"):
            p["tracking"]["uri"] = None
            write_params(repo, p)
        start = time.monotonic()
        proc = run([sys.executable, "-m", *stage.split()], repo, env, False)
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line == (
            f"error: {setting}: cannot reach the MLflow server at {uri} (connection refused); start it, "
            "or set tracking.uri to a running server"
        )
        # Before any work: no data was read (there is none: the message would be about it), nothing written.
        assert not (repo / "data").exists() and not (repo / "reports").exists()
        assert time.monotonic() - start < 60


@pytest.fixture(scope="module")
def pipeline_repo(stack, tmp_path_factory):
    """A repository whose whole tiny pipeline ran against the stack (a weak cnn: a later, better one
    takes the champion alias over), its DVC remote on the stack's S3, everything committed."""
    repo = sandbox.make_repo(tmp_path_factory.mktemp("team") / "repo", _params(stack, weak=True))
    env = env_of(stack)
    dvc(repo, env, "remote", "add", "-d", "team", "s3://dvc/store")
    dvc(repo, env, "remote", "modify", "team", "endpointurl", stack.s3_endpoint)
    _local_keys(repo, env, stack.settings.s3_secret_key, stack)
    dvc(repo, env, "repro")  # the whole pipeline: lecture figures and the report page too
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "trained against the team stack")
    return repo


def _params(stack: team.Stack, weak: bool) -> dict:
    p = only(tiny(project_params()), "cnn")
    p["tracking"]["uri"] = stack.tracking_uri
    # A model that barely moves from its initial weights, then one that learns (with epochs long
    # enough to lose the server during one): the champion moves.
    if weak:
        p["models"]["cnn"].update(lr=1e-7, epochs=2)
    else:
        p["models"]["cnn"].update(epochs=LONG_EPOCHS, batch_size=2, early_stopping=0)
    return p


def _local_keys(repo: Path, env: dict, secret: str, stack: team.Stack) -> None:
    """S3 keys where DVC keeps them out of git: .dvc/config.local."""
    dvc(repo, env, "remote", "modify", "--local", "team", "access_key_id", stack.settings.s3_access_key)
    dvc(repo, env, "remote", "modify", "--local", "team", "secret_access_key", secret)


def _s3_keys(stack: team.Stack, bucket: str) -> list[str]:
    pages = stack.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_pipeline_lands_in_postgres_and_s3_and_a_clone_pulls_it_back(stack, pipeline_repo):
    repo, env = pipeline_repo, env_of(stack)
    mlflow = client(stack)
    exp = mlflow.get_experiment_by_name("convpipe")
    (trained,) = mlflow.search_runs([exp.experiment_id], "tags.model = 'cnn'")
    assert trained.info.status == "FINISHED" and "test_accuracy" in trained.data.metrics
    # The registry: a version per evaluation; the first is the champion.
    champion = mlflow.get_model_version_by_alias(MODEL, "champion")
    assert (champion.version, champion.run_id) == ("1", trained.info.run_id)

    # The runs are rows of the server's PostgreSQL, the alias too.
    with stack.connect_db() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'model' AND t.value = 'cnn' ORDER BY r.start_time"
        )
        assert cur.fetchall() == [(trained.info.run_id, "FINISHED")]
        cur.execute(
            "SELECT key, count(*) FROM metrics WHERE run_uuid = %s GROUP BY key", (trained.info.run_id,)
        )
        counts = dict(cur.fetchall())
        epochs = len((repo / "reports/models/cnn/history.csv").read_text().strip().splitlines()) - 1
        assert counts["loss"] == counts["val_loss"] == epochs and counts["test_accuracy"] == 1
        cur.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = 'champion'", (MODEL,)
        )
        assert cur.fetchone() == (1,)

    # The artifacts are objects of the S3 bucket, listed through the S3 API.
    keys = _s3_keys(stack, "mlflow")
    run_keys = [k for k in keys if f"/{trained.info.run_id}/artifacts/" in k]
    assert {Path(k).name for k in run_keys} >= {
        "training_curves.png",
        "history.csv",
        "metrics.json",
        "confusion.png",
    }
    model_files = {Path(k).name for k in keys if "/models/" in k}
    assert {"MLmodel", "model.keras", "input_example.json"} <= model_files

    # The data: `dvc push` to the same object store, the secret only in .dvc/config.local.
    config = (repo / ".dvc/config").read_text()
    assert stack.settings.s3_secret_key not in config and "access_key_id" not in config
    assert stack.settings.s3_secret_key in (repo / ".dvc/config.local").read_text()
    assert "config.local" not in git(repo, "ls-files", ".dvc")
    dvc(repo, env, "push")
    model_md5 = hashlib.md5((repo / "data/models/cnn/model.keras").read_bytes()).hexdigest()
    assert f"store/files/md5/{model_md5[:2]}/{model_md5[2:]}" in _s3_keys(stack, "dvc")

    # A fresh clone: a wrong secret is refused; the right one pulls everything back.
    clone = repo.parent / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent, stage_env())
    _local_keys(clone, env, "not-the-secret", stack)
    refused = dvc(clone, env, "pull", check=False)
    said = refused.stderr + refused.stdout
    assert refused.returncode != 0 and any(
        w in said for w in ("403", "SignatureDoesNotMatch", "Forbidden")
    ), said
    _local_keys(clone, env, stack.settings.s3_secret_key, stack)
    dvc(clone, env, "pull")
    assert json.loads(dvc(clone, env, "status", "--json").stdout) == {}, "the clone is up to date"
    shown = [json.loads(dvc(r, env, "metrics", "show", "--json").stdout) for r in (repo, clone)]
    assert shown[0] == shown[1]
    # The pulled model scores what it scored: evaluate again in the clone, byte for byte.
    dvc(clone, env, "repro", "--force", "--single-item", "evaluate@cnn")
    metrics = "reports/models/cnn/metrics.json"
    assert (clone / metrics).read_bytes() == (repo / metrics).read_bytes()
    assert sorted(v.version for v in mlflow.search_model_versions(f"name = '{MODEL}'")) == ["1", "2"]
    assert mlflow.get_model_version_by_alias(MODEL, "champion").version == "1", "no better: the alias stays"


def _answers(url: str) -> bool:
    try:
        return team.http_status(url) == 200
    except OSError:  # not listening yet
        return False


def _predictions(stack: team.Stack, port: int, images: np.ndarray) -> np.ndarray:
    body = json.dumps({"inputs": images.tolist()}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as r:
        return np.asarray(json.loads(r.read())["predictions"])


def test_champion_served_over_http_and_predicted_by_uri(stack, pipeline_repo, tmp_path):
    import keras
    from mlflow.models import get_model_info
    from PIL import Image

    repo, env = pipeline_repo, env_of(stack)
    client(stack)
    info = get_model_info(f"models:/{MODEL}@champion")
    manifest = json.loads((repo / "data/prepared/shapes/manifest.json").read_text())
    assert info.metadata["classes"] == manifest["classes"]
    [spec] = info.signature.inputs.to_dict()
    tensor = spec["tensor-spec"]
    assert (tensor["dtype"], list(tensor["shape"])) == ("uint8", [-1, *manifest["shape"]])
    assert info.saved_input_example_info["artifact_path"] == "input_example.json"

    images = np.load(repo / "data/prepared/shapes/test_x.npy")[:6]
    expected = keras.saving.load_model(repo / "data/models/cnn/model.keras").predict(images, verbose=0)
    port = team.free_port()
    log = tmp_path / "serve.log"
    cmd = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    with open(log, "wb") as out:
        server = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _answers(f"http://127.0.0.1:{port}/ping"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        listening = {
            c.laddr.ip
            for p in [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}
        served = _predictions(stack, port, images)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert served.shape == (6, len(manifest["classes"]))
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)  # class probabilities
    np.testing.assert_allclose(served, expected, atol=1e-5)

    # The predict command: the same URI, its class names from the registry; the same numbers as the file.
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(folder / f"{i}.png")
    by_uri = tmp_path / "uri.csv"
    predict = [sys.executable, "-m", "pipeline.tools.predict"]
    run([*predict, "--model", f"models:/{MODEL}@champion", "--out", str(by_uri), str(folder)], repo, env)
    rows = list(csv.DictReader(by_uri.open()))
    classes = manifest["classes"]
    assert list(rows[0]) == ["file", "predicted", *(f"p_{c}" for c in classes)]
    assert [r["file"] for r in rows] == [str(folder / f"{i}.png") for i in range(len(images))]
    probabilities = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # the champion is the model file
    assert [r["predicted"] for r in rows] == [classes[i] for i in expected.argmax(axis=1)]
    proc = run([*predict, "--model", f"models:/{MODEL}@nobody", str(folder)], repo, env, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        f"error: models:/{MODEL}@nobody"
    )


def _snapshot(stack: team.Stack) -> dict:
    """What the store holds: every run's status, params, metric histories and artifacts (metrics.json
    read back), the registry's versions and champion, and the champion model's files."""
    import tempfile

    import mlflow

    mlflow_client = client(stack)
    exp = mlflow_client.get_experiment_by_name("convpipe")
    out: dict = {"runs": {}}
    for r in mlflow_client.search_runs([exp.experiment_id]):
        rid = r.info.run_id
        history = {
            k: sorted((m.step, m.value) for m in mlflow_client.get_metric_history(rid, k))
            for k in r.data.metrics
        }
        artifacts = sorted(a.path for a in mlflow_client.list_artifacts(rid))
        text = None
        if "metrics.json" in artifacts:
            text = Path(mlflow_client.download_artifacts(rid, "metrics.json", tempfile.mkdtemp())).read_text()
        out["runs"][rid] = (r.info.status, r.data.params, history, artifacts, text)
    versions = mlflow_client.search_model_versions(f"name = '{MODEL}'")
    out["versions"] = sorted((v.version, v.run_id, v.source) for v in versions)
    out["champion"] = mlflow_client.get_model_version_by_alias(MODEL, "champion").version
    folder = Path(
        mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion", dst_path=tempfile.mkdtemp())
    )
    out["model"] = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    return out


def test_lost_server_then_restarts_lose_nothing_and_the_training_resumes_its_run(stack, pipeline_repo):
    repo = pipeline_repo
    before = _snapshot(stack)
    write_params(repo, _params(stack, weak=False))
    # Few retries: the stage gives up in seconds (MLflow's defaults wait minutes for a server to return).
    env = env_of(stack, MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    state_file = repo / "data/checkpoints/cnn/state.json"
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "train@cnn"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while state_epoch(state_file) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "ended before the server could be lost"
            )
            time.sleep(0.05)
        stack.kill("mlflow")  # the tracking server crashes in the middle of the training
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert line.startswith(
        f"error: tracking.uri: lost the MLflow server at {stack.tracking_uri} during the training of cnn ("
    ), line
    assert "`dvc repro` resumes the training and its run after the last checkpointed epoch" in line
    lost_after = state_epoch(state_file)
    assert lost_after < LONG_EPOCHS - 1

    # Every server restarted (MLflow last, as after a machine's reboot): nothing lost.
    stack.restart("seaweedfs")
    stack.restart("postgres")
    stack.start_mlflow()
    after = _snapshot(stack)
    assert {k: v for k, v in after["runs"].items() if k in before["runs"]} == before["runs"]
    assert after["versions"] == before["versions"] and after["champion"] == before["champion"]
    assert after["model"] == before["model"]
    (lost,) = set(after["runs"]) - set(before["runs"])
    assert after["runs"][lost][0] == "RUNNING", "a run whose server went away stays for its resume"

    # The server is back: the next `dvc repro` resumes the same run, no gap or repeat in its steps.
    out = dvc(repo, env_of(stack), "repro", "evaluate@cnn").stdout
    assert f"resuming after epoch {lost_after + 1}" in out
    mlflow_client = client(stack)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("convpipe").experiment_id])
    assert len(runs) == len(before["runs"]) + 1, "the resumed training continued its run"
    status = {r.info.run_id: r.info.status for r in runs}
    assert status[lost] == "FINISHED" and "RUNNING" not in status.values()
    for metric in ("loss", "val_loss", "accuracy"):
        steps = sorted(m.step for m in mlflow_client.get_metric_history(lost, metric))
        assert steps == list(range(LONG_EPOCHS)), f"{metric}: a gap or a repeat in {steps}"
    # Evaluated into the same run, registered, better than the weak model: the champion moves to it.
    champion = mlflow_client.get_model_version_by_alias(MODEL, "champion")
    versions = mlflow_client.search_model_versions(f"name = '{MODEL}'")
    assert (champion.run_id, champion.version) == (lost, max((v.version for v in versions), key=int))
    (weak,) = before["runs"]
    accuracy = {r.info.run_id: r.data.metrics["test_accuracy"] for r in runs}
    assert accuracy[lost] > accuracy[weak]

"""`make verify`: each verdict on a reproduction, through real `dvc repro` and `dvc metrics diff`.

A toy pipeline stands in for training: a data stage that reproduces byte for byte, and a "model"
stage whose metric moves by NOISE (an environment variable, not a dependency) as another CPU's
floating point would. The repository holds the project's params.yaml, so its tolerances are judged.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import params as P
from pipeline.errors import UserError
from pipeline.tools import verify
from tests.conftest import BIN, ROOT, run

WRITE_DATA = (
    "from pathlib import Path\nPath('data').mkdir(exist_ok=True)\nPath('data/set.txt').write_text('1 2 3')\n"
)
WRITE_MODEL = """import json, os
from pathlib import Path
out = Path("reports/models/toy")
out.mkdir(parents=True, exist_ok=True)
noise = float(os.environ.get("NOISE", "0"))
(out / "weights.txt").write_text(repr(0.5 + noise))
# As the metrics stage gathers them: every model's headline metrics under its name.
Path("reports/metrics.json").write_text(json.dumps({"toy": {"accuracy": 0.9 + noise, "test_images": 100}}))
"""
DVC_YAML = """stages:
  data:
    cmd: python write_data.py
    deps: [write_data.py]
    outs: [data]
  toy:
    cmd: python write_model.py
    deps: [write_model.py, data]
    params: [seed]
    outs: [reports/models/toy/weights.txt]
    metrics:
      - reports/metrics.json:
          cache: false
"""


def dvc(repo: Path, *args: str, **env: str) -> str:
    return run([str(BIN / "dvc"), *args], repo, **env).stdout


@pytest.fixture
def repo(tmp_path) -> Path:
    """A committed, reproduced toy pipeline with the project's params.yaml."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "write_data.py").write_text(WRITE_DATA)
    (repo / "write_model.py").write_text(WRITE_MODEL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "t@convpipe.invalid"],
        ["git", "config", "user.name", "t"],
        [str(BIN / "dvc"), "init", "-q"],
    ):
        run(cmd, repo)
    dvc(repo, "repro")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "results"], repo)
    return repo


def tolerance() -> P.Verify:
    return P.load(ROOT / "params.yaml").verify


def cli(repo: Path) -> subprocess.CompletedProcess:
    """`make verify`'s command, as a user runs it from the repository root."""
    env = {"PYTHONPATH": str(ROOT), "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(repo)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.tools.verify"], cwd=repo, env=env, capture_output=True, text=True
    )


def test_same_bytes_are_byte_identical(repo):
    dvc(repo, "repro", "-f")
    v = verify.verify(repo, tolerance())
    assert v.verdict == "byte-identical" and v.ok and not v.outside and not v.within
    proc = cli(repo)
    assert proc.returncode == 0 and proc.stdout.startswith("byte-identical"), proc.stdout + proc.stderr


def test_a_metric_moved_within_its_tolerance_is_reproduced(repo):
    dvc(repo, "repro", "-f", NOISE="0.005")  # accuracy 0.9 -> 0.905; tolerance 0.02
    v = verify.verify(repo, tolerance())
    assert v.verdict == "reproduced" and v.ok
    assert v.identical_stages == ["data"] and v.changed_stages == ["toy"]
    assert len(v.within) == 1 and "accuracy" in v.within[0] and not v.outside
    proc = cli(repo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("reproduced") and "byte-identical stages: data" in proc.stdout


def test_a_metric_outside_its_tolerance_is_named(repo):
    dvc(repo, "repro", "-f", NOISE="0.05")  # accuracy 0.9 -> 0.95
    v = verify.verify(repo, tolerance())
    assert v.verdict == "not reproduced" and not v.ok
    [line] = v.outside
    assert line.startswith("reports/metrics.json: toy.accuracy: 0.9 -> 0.95") and "tolerance 0.02" in line
    proc = cli(repo)
    assert proc.returncode == 1
    assert proc.stdout.startswith("not reproduced: 1 metric(s)") and "accuracy: 0.9 -> 0.95" in proc.stdout


def test_a_per_model_tolerance_wins_over_the_metric_name():
    t = P.Verify(tolerance={"accuracy": 0.02, "toy.accuracy": 0.1})
    outside, within = verify.judge({"reports/metrics.json": {"toy.accuracy": {"old": 0.9, "new": 0.95}}}, t)
    assert not outside and len(within) == 1
    outside, _ = verify.judge({"reports/metrics.json": {"cnn.accuracy": {"old": 0.9, "new": 0.95}}}, t)
    assert len(outside) == 1


def test_a_commit_with_a_metrics_file_per_model_is_judged_by_its_keys():
    """A commit before the metrics stage: reports/models/<model>/metrics.json, keys without the model."""
    t = P.Verify(tolerance={"accuracy": 0.02, "toy.accuracy": 0.1})
    assert verify.metric_of("reports/models/toy/metrics.json", "accuracy") == ("toy", "accuracy")
    assert verify.metric_of("reports/metrics.json", "toy.accuracy") == ("toy", "accuracy")
    outside, within = verify.judge(
        {"reports/models/toy/metrics.json": {"accuracy": {"old": 0.9, "new": None}}}, t
    )
    assert outside == ["reports/models/toy/metrics.json: accuracy: 0.9 -> None"] and not within


def test_a_missing_metric_or_tolerance_is_named():
    t = P.Verify(tolerance={"accuracy": 0.02})
    outside, _ = verify.judge({"reports/metrics.json": {"a.accuracy": {"old": 0.9, "new": None}}}, t)
    assert outside == ["reports/metrics.json: a.accuracy: 0.9 -> None"]
    with pytest.raises(UserError, match=r"verify.tolerance: no tolerance for fid .*add `fid: .* or `g.fid: "):
        verify.judge({"reports/metrics.json": {"g.fid": {"old": 1.0, "new": 1.0}}}, t)


def test_a_pipeline_not_reproduced_yet_is_one_error_line(repo):
    (repo / "write_model.py").write_text(WRITE_MODEL + "# edited\n")
    with pytest.raises(UserError, match=r"not up to date \(toy\); run `dvc repro` first"):
        verify.verify(repo, tolerance())
    proc = cli(repo)
    assert proc.returncode == 2 and proc.stderr.startswith("error: the pipeline is not up to date")

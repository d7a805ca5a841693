"""Shared fixtures: a real git + DVC repository holding a copy of the project, with tiny params."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: python, dvc, mlflow


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def tiny(params: dict) -> dict:
    """The project's params shrunk to seconds: few small images, one epoch, no progress bars."""
    p = copy.deepcopy(params)
    p["runtime"]["verbose"] = 0
    p["runtime"]["workers"] = 1
    for ds in p["datasets"].values():
        if ds["source"] == "shapes":
            ds["per_class"] = 12
            ds["image_size"] = 16
        if ds["source"] == "tracks":
            ds["frames"] = 20
            ds["image_size"] = 16
            ds["val_fraction"] = ds["test_fraction"] = 0.2
    for spec in p["augment"].values():
        spec["preview"] = 2
    for model in p["models"].values():
        model["epochs"] = 1
        model["batch_size"] = 16
        model["shifts"] = [0, 2]
    return p


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for pipeline commands: the venv first on PATH, no inherited tracking URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=stage_env(**extra_env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture
def make_repo(tmp_path):
    """make_repo(params) -> path of a fresh git + DVC repository with the project's code and dvc.yaml."""

    def make(params: dict, name: str = "repo") -> Path:
        repo = tmp_path / name
        shutil.copytree(ROOT / "pipeline", repo / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
        for f in ("dvc.yaml", ".gitignore", ".dvcignore"):
            if (ROOT / f).exists():
                shutil.copy(ROOT / f, repo / f)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["git", "init", "-q", "-b", "main"], repo)
        run(["git", "config", "user.email", "test@convpipe.invalid"], repo)
        run(["git", "config", "user.name", "convpipe test"], repo)
        run([str(BIN / "dvc"), "init", "-q"], repo)
        run([str(BIN / "dvc"), "config", "core.autostage", "true"], repo)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-q", "-m", "init"], repo)
        return repo

    return make


@pytest.fixture
def dvc():
    """dvc(repo, *args) runs the venv's dvc in `repo` and fails the test on a non-zero exit."""

    def call(repo: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return run([str(BIN / "dvc"), *args], repo, check=check, **env)

    return call

"""A throwaway git + DVC repository holding a copy of the project: for tests and benchmarks."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: python, dvc, mlflow


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def child_env(**extra: str) -> dict[str, str]:
    """Environment for pipeline commands: the venv first on PATH, quiet TensorFlow, no inherited
    tracking URI or DVC state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def make_repo(dest: Path, params: dict) -> Path:
    """A fresh git + DVC repository at `dest` with the project's code, dvc.yaml and `params`."""
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", ".gitignore", ".dvcignore"):
        if (ROOT / f).exists():
            shutil.copy(ROOT / f, dest / f)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "sandbox@convpipe.invalid"],
        ["git", "config", "user.name", "convpipe sandbox"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "config", "core.autostage", "true"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(cmd, cwd=dest, env=child_env(), check=True, capture_output=True)
    return dest


def only(params: dict, *models: str) -> dict:
    """Params trimmed to `models` (entries of models, dcgans or cyclegans), their datasets and
    augment entries (and the learning curve's dataset while it stays on); lecture figures of dropped
    models are turned off, so the trimmed file stays valid."""
    p = copy.deepcopy(params)
    p["models"] = {m: p["models"][m] for m in models if m in p["models"]}
    used = {spec["dataset"] for spec in p["models"].values()}
    for section in ("dcgans", "cyclegans"):
        p[section] = {m: v for m, v in p.get(section, {}).items() if m in models}
        used |= {v[k] for v in p[section].values() for k in ("dataset", "target") if k in v}
    curve = p.get("lecture", {}).get("learning_curve")
    if curve and {curve["pretrained"], curve["scratch"]} <= set(p["models"]):
        used.add(curve["dataset"])
    elif curve:  # off unless both of its models are kept
        p["lecture"]["learning_curve"] = None
    p["datasets"] = {d: v for d, v in p["datasets"].items() if d in used}
    p["augment"] = {d: v for d, v in p["augment"].items() if d in used}
    for key in ("filter_model", "feature_model"):
        if p.get("lecture", {}).get(key) not in p["models"]:
            p.setdefault("lecture", {})[key] = None
    for key in ("translation", "rotation"):  # experiments comparing models: off unless all are kept
        exp = p.get("lecture", {}).get(key)
        if exp and any(v not in p["models"] for k, v in exp.items() if k != "angles"):
            p["lecture"][key] = None
    if "sweeps" in p:  # searches over dropped models go with them
        p["sweeps"] = {n: s for n, s in p["sweeps"].items() if s["model"] in p["models"]}
    return p

"""A throwaway git + DVC repository holding a copy of the project: for tests and benchmarks."""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: python, dvc, mlflow

# A folder laid out like .dvc/cache that new sandboxes start from, shared by the sandboxes of one test
# session (tests/conftest.py names it). It holds DVC's run cache of the import_weights stage alone:
# every pipeline runs that stage, its result depends on the project's code and nothing else, and it
# costs a Keras start-up and an EfficientNet build (11 s alone, twice that on a loaded machine) in
# every sandbox. `dvc repro` restores it from there ("Stage 'import_weights' is cached - skipping
# run, checking out outputs"), which is DVC's own mechanism, unchanged. Built on first use.
RUN_CACHE_ENV = "CONVPIPE_SANDBOX_RUN_CACHE"


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


def make_repo(dest: Path, params: dict, run_cache: bool = True) -> Path:
    """A fresh git + DVC repository at `dest` with the project's code, dvc.yaml and `params`.

    run_cache: start from the shared run cache of RUN_CACHE_ENV, where that is set (False: tests
    whose subject is that the import_weights stage runs)."""
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
    seed = shared_run_cache() if run_cache else None
    if seed is not None:
        shutil.copytree(seed, dest / ".dvc" / "cache", dirs_exist_ok=True, copy_function=_link_or_copy)
    return dest


def shared_run_cache() -> Path | None:
    """RUN_CACHE_ENV's folder, built by the first sandbox that asks (one at a time across processes:
    the pytest workers); None where it is not set."""
    where = os.environ.get(RUN_CACHE_ENV)
    if not where:
        return None
    seed = Path(where)
    seed.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{seed}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (seed / "runs").is_dir():
            _build_run_cache(seed)
    return seed


def _build_run_cache(seed: Path) -> None:
    build = seed.with_name(seed.name + ".build")
    shutil.rmtree(build, ignore_errors=True)
    repo = make_repo(build / "repo", only(project_params(), "cnn"), run_cache=False)
    cmd = [str(BIN / "dvc"), "repro", "import_weights"]
    proc = subprocess.run(cmd, cwd=repo, env=child_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        raise RuntimeError(f"building the shared run cache failed:\n{tail}")
    cache = repo / ".dvc" / "cache"
    kept = build / "cache"
    shutil.copytree(cache / "files", kept / "files")
    entries = [f for f in (cache / "runs").rglob("*") if f.is_file()]
    for entry in entries:  # the check stage's entry too holds params: only import_weights is shared
        if "pipeline.stages.import_weights" in entry.read_text():
            target = kept / entry.relative_to(cache)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry, target)
    if not (kept / "runs").is_dir():
        raise RuntimeError(f"no run cache entry of import_weights among {entries}")
    kept.rename(seed)
    shutil.rmtree(build, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links where they can be made: DVC never writes into a cache file, and the weights are 19 MB."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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

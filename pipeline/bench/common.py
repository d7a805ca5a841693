"""What every benchmark shares: result rows, medians, child processes with their peak memory."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: python, dvc, mlflow


@dataclass
class Config:
    """Sizes of one run; --smoke shrinks them all so the code is exercised in seconds."""

    smoke: bool
    repeats: int
    train_images: int  # bench 1/5/6: training split size (default cnn: 2500 * 0.7 * 2 copies)
    image_size: int
    epochs: int
    dvc_epochs: int  # bench 2: epochs of the cnn trained by dvc repro and by the bare script
    png_sizes: tuple[int, int]  # bench 3
    png_size: int
    augment_images: int  # bench 4
    augment_size: int

    @classmethod
    def make(cls, smoke: bool) -> Config:
        if smoke:
            return cls(True, 1, 64, 16, 2, 1, (200, 400), 32, 256, 32)
        return cls(False, 3, 3500, 32, 4, 5, (20_000, 40_000), 128, 3000, 128)


@dataclass
class Row:
    bench: str
    measure: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 0.95"; empty when informational
    note: str = ""

    @property
    def status(self) -> str:
        if not self.target:
            return "info"
        op, bound = self.target.split()
        ok = {
            ">=": self.value >= float(bound),
            "<=": self.value <= float(bound),
            "<": self.value < float(bound),
        }
        return "met" if ok[op] else "MISSED"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def child_env(**extra: str) -> dict[str, str]:
    """The venv first on PATH, quiet TensorFlow, no inherited tracking URI or DVC state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


@dataclass
class ChildResult:
    seconds: float
    peak_bytes: int  # the child's own peak resident memory (VmHWM), from wait4's rusage
    stdout: str


def run_child(cmd: list[str], cwd: Path | None = None, **env: str) -> ChildResult:
    """Run a command to completion; its wall time, its own peak memory and its output.

    os.wait4 gives the rusage of this one child, unlike RUSAGE_CHILDREN, which keeps the largest
    peak of every child waited for so far (a training child would mask a prepare child).
    """
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"convpipe-bench-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log, "w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(**env), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    log.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{text[-4000:]}")
    # ru_maxrss is in KiB on Linux.
    return ChildResult(seconds, usage.ru_maxrss * 1024, text)


def child_json(cmd: list[str], **kw) -> dict:
    """Run a worker that prints one JSON line last; return it with the child's peak memory."""
    res = run_child(cmd, **kw)
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no result:\n{res.stdout[-4000:]}")
    return {**json.loads(lines[-1]), "peak_bytes": res.peak_bytes, "wall": res.seconds}


def project_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def make_repo(dest: Path, params: dict) -> Path:
    """A fresh git + DVC repository holding the project's code, dvc.yaml and `params`.

    The same steps as tests/conftest.py's make_repo fixture (which pytest owns); kept minimal.
    """
    shutil.copytree(ROOT / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("dvc.yaml", ".gitignore", ".dvcignore"):
        if (ROOT / f).exists():
            shutil.copy(ROOT / f, dest / f)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.email", "bench@convpipe.invalid"],
        ["git", "config", "user.name", "convpipe bench"],
        [str(BIN / "dvc"), "init", "-q"],
        [str(BIN / "dvc"), "config", "core.autostage", "true"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "init"],
    ):
        run_child(cmd, cwd=dest)
    return dest


def machine() -> dict[str, str]:
    """CPU model, cores, memory, load and the versions of what the figures depend on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("keras", "tensorflow", "jax", "dvc", "mlflow", "albumentations", "numpy", "pillow"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = "not installed"
    return info

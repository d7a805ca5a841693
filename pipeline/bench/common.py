"""What every benchmark shares: result rows, medians, child processes with their peak memory."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.tools.sandbox import BIN, ROOT, child_env, make_repo, project_params  # noqa: F401 - re-exported

# Figures one benchmark measured that a later one in the same invocation may reuse rather than
# measure again (benchmark 6 takes benchmark 1's TensorFlow images/s).
measured: dict[str, float] = {}


@dataclass
class Config:
    """Sizes of one run; --smoke shrinks them all so the code is exercised in seconds."""

    smoke: bool
    repeats: int
    train_images: int  # bench 1/5/6: training split size (default cnn: 2500 * 0.7 * 2 copies)
    image_size: int
    epochs: int
    dvc_epochs: int | None  # bench 2: epochs of the cnn in dvc repro and the bare script; None: its default
    png_sizes: tuple[int, int]  # bench 3
    png_size: int
    augment_images: int  # bench 4: enough that a run lasts seconds, not the pool's start-up (3000 took 0.6 s)
    augment_size: int

    @classmethod
    def make(cls, smoke: bool) -> Config:
        if smoke:
            return cls(True, 1, 64, 16, 2, 1, (200, 400), 32, 256, 32)
        return cls(False, 3, 3500, 32, 4, None, (20_000, 40_000), 128, 12_000, 128)


@dataclass
class Row:
    bench: str
    measure: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 0.95"; empty when informational
    note: str = ""
    gflops: float = float("nan")  # the machine's float32 GFLOP/s when this figure was measured (gflops())

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


def gflops(n: int = 1024, repeats: int = 5) -> float:
    """float32 GFLOP/s of a numpy n x n matmul, best of `repeats`: how fast this machine (its BLAS,
    its vector units, the load on it now) multiplies, so figures of different machines compare."""
    import numpy as np

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


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

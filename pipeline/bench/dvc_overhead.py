"""Benchmark 2: `dvc repro` of one model's train + evaluate against a bare script doing the same work;
and a no-op `dvc repro` of the whole pipeline.

The comparison runs in a fresh git + DVC repository in tmp holding the project's code and dvc.yaml,
with params trimmed to the shapes dataset and the cnn (at their default sizes; tiny with --smoke), so
the first repro stays short. The no-op repro runs on the project itself when its default pipeline
is reproduced (every stage, full-size outputs), else on that repository.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline.bench.common import (
    BIN,
    ROOT,
    Config,
    Row,
    child_env,
    make_repo,
    median,
    project_params,
    run_child,
)
from pipeline.tools.sandbox import only


def bench_params(cfg: Config) -> dict:
    """The project's params with one dataset and one model; the cnn trains its default epochs (what a
    user's `dvc repro` runs) or cfg.dvc_epochs."""
    # One dataset and the cnn alone: every stage is a process importing Keras, seconds each, and the
    # default pipeline's 43 stages would take most of the 10 minutes by themselves.
    p = only(project_params(), "cnn")  # a fresh parse, copied again by only(): edits stay local
    p["runtime"]["verbose"] = 0
    if cfg.dvc_epochs is not None:
        p["models"]["cnn"]["epochs"] = cfg.dvc_epochs
    if cfg.smoke:
        for ds in p["datasets"].values():
            ds["per_class"], ds["image_size"] = 12, 16
        for spec in p["augment"].values():
            spec["preview"] = 2
        for model in p["models"].values():
            model["batch_size"], model["shifts"] = 16, [0, 2]
    return p


def stage_count(repo: Path) -> int:
    out = subprocess.run(
        [str(BIN / "dvc"), "stage", "list", "--name-only"],
        cwd=repo,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(out.split())


def project_is_reproduced() -> bool:
    """Whether `dvc repro` in the project itself would run nothing (a user who ran `make repro`)."""
    proc = subprocess.run(
        [str(BIN / "dvc"), "status", "--json"], cwd=ROOT, env=child_env(), capture_output=True, text=True
    )
    try:
        return proc.returncode == 0 and json.loads(proc.stdout or "null") == {}
    except json.JSONDecodeError:
        return False


def run(cfg: Config, work: Path) -> list[Row]:
    params = bench_params(cfg)
    repo = make_repo(work / "repo", params)
    dvc = str(BIN / "dvc")
    # Smoke: the stages timed here and those before them (the lecture, metrics and report stages are
    # half a minute of processes more, in a test that only checks that every figure comes out).
    targets = ["evaluate@cnn"] if cfg.smoke else []
    first = run_child([dvc, "repro", *targets], cwd=repo).seconds
    staged, bare = [], []
    for _ in range(min(cfg.repeats, 2)):
        staged.append(
            run_child(
                [dvc, "repro", "--force", "--single-item", "train@cnn", "evaluate@cnn"], cwd=repo
            ).seconds
        )
        cmd = [sys.executable, "-m", "pipeline.bench.bare_script", "--data", "data/prepared/shapes"]
        cmd += ["--train", "data/augmented/shapes", "--out", str(work / "bare.keras")]
        bare.append(run_child(cmd, cwd=repo).seconds)
    if not cfg.smoke and project_is_reproduced():
        noop_repo = ROOT
        where = f"the project's default pipeline, {stage_count(ROOT)} stages, full-size outputs"
    else:
        noop_repo = repo
        where = (
            f"the benchmark repository: {stage_count(repo)} stages of the default dvc.yaml (shapes, cnn); "
            f"its first repro took {first:.0f} s. The project's own pipeline was not reproduced here"
        )
        if targets:
            where += f" (smoke: {', '.join(targets)} and the stages before it)"
    noop = [run_child([dvc, "repro", *targets], cwd=noop_repo).seconds for _ in range(cfg.repeats)]
    s, b = median(staged), median(bare)
    setting = f"cnn on shapes, {params['models']['cnn']['epochs']} epochs"
    return [
        Row("2 dvc repro", "train+evaluate via dvc repro", s, "s", note=setting),
        Row("2 dvc repro", "bare script, same work", b, "s", note=setting),
        Row("2 dvc repro", "overhead", (s / b - 1) * 100, "%", "<= 10"),
        Row("2 dvc repro", "no-op dvc repro, whole pipeline", median(noop), "s", "<= 3", note=where),
    ]

"""Benchmark 2: `dvc repro` of one model's train + evaluate against a bare script doing the same work;
and a no-op `dvc repro` of the whole pipeline.

Both run in a fresh git + DVC repository in tmp holding the project's code, dvc.yaml and params.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from pipeline.bench.common import BIN, Config, Row, make_repo, median, project_params, run_child


def bench_params(cfg: Config) -> dict:
    """The project's params; the cnn trains cfg.dvc_epochs epochs, the other models one (first run only)."""
    p = copy.deepcopy(project_params())
    p["runtime"]["verbose"] = 0
    for name, model in p["models"].items():
        model["epochs"] = cfg.dvc_epochs if name == "cnn" else 1
    if cfg.smoke:
        # One dataset and the cnn alone: every stage is a process importing Keras, seconds each.
        p["datasets"] = {"shapes": p["datasets"]["shapes"]}
        p["augment"] = {"shapes": p["augment"]["shapes"]}
        p["models"] = {"cnn": p["models"]["cnn"]}
        p["lecture"]["filter_model"] = None  # its filter_net is not among the models kept
        for ds in p["datasets"].values():
            ds["per_class"], ds["image_size"] = 12, 16
        for spec in p["augment"].values():
            spec["preview"] = 2
        for model in p["models"].values():
            model["batch_size"], model["shifts"] = 16, [0, 2]
    return p


def run(cfg: Config, work: Path) -> list[Row]:
    repo = make_repo(work / "repo", bench_params(cfg))
    dvc = str(BIN / "dvc")
    first = run_child([dvc, "repro"], cwd=repo).seconds
    noop = [run_child([dvc, "repro"], cwd=repo).seconds for _ in range(cfg.repeats)]
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
    s, b = median(staged), median(bare)
    setting = f"cnn on shapes, {cfg.dvc_epochs} epochs"
    return [
        Row("2 dvc repro", "train+evaluate via dvc repro", s, "s", note=setting),
        Row("2 dvc repro", "bare script, same work", b, "s", note=setting),
        Row("2 dvc repro", "overhead", (s / b - 1) * 100, "%", "<= 10"),
        Row(
            "2 dvc repro",
            "no-op dvc repro, whole pipeline",
            median(noop),
            "s",
            "<= 3",
            note=f"{len(bench_params(cfg)['models'])} models; first full repro took {first:.0f} s",
        ),
    ]

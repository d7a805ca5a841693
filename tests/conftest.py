"""Shared fixtures: a real git + DVC repository holding a copy of the project, with tiny params."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline import params as P
from pipeline.tools import sandbox
from pipeline.tools.sandbox import BIN, ROOT, only, project_params  # noqa: F401 - shared with the test modules
from tests import tiny_classification as tiny_classification_repo

stage_env = sandbox.child_env

# JAX on the CPU for the tests that run whole stages on it: XLA's backend at optimisation level 0.
# Their tiny fits are mostly compilation (a U-Net's first fit: 11.6-12.7 s at the default level,
# 8.2-9.0 s at 0, 2-core AMD EPYC); what they check (that every stage runs on JAX, deterministic
# weights) does not depend on how well the code is optimised.
JAX_CPU = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_backend_optimization_level=0"}

SECTIONS = {
    "runtime": P.Runtime,
    "tracking": P.Tracking,
    "lecture": P.Lecture,
    "augment": P.Augment,
    "dcgans": P.DcganParams,
    "cyclegans": P.CycleganParams,
}


# A user's folders have no entry in the project's params.yaml; these state every value for tests.
USER_FOLDERS = {
    "folder": {
        "source": "folder",
        "path": "images",
        "image_size": 32,
        "channels": 3,
        "resize": "stretch",
        "classes": None,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
    },
    "seg_folder": {
        "source": "seg_folder",
        "path": "images",
        "image_size": 32,
        "classes": {"background": 0, "object": 1},
        "background": "background",
        "channels": 3,
        "resize": "stretch",
        "val_fraction": 0.15,
        "test_fraction": 0.15,
    },
}


def entry(section: str, name: str | None = None, **overrides: Any) -> P.Strict:
    """The parsed params of the project's params.yaml entry `section.name`, with `overrides`.

    `name` is None for the sections that are one entry (runtime, tracking, lecture); the datasets
    "folder" and "seg_folder" are USER_FOLDERS. The values a test runs with are then all stated,
    never a default of the schema's.
    """
    raw = project_params()[section]
    if section == "datasets" and name not in raw:
        raw = USER_FOLDERS
    values = {**copy.deepcopy(raw if name is None else raw[name]), **overrides}
    if section == "datasets":
        kind = P.DATASET_SOURCES[values["source"]]
    elif section == "models":
        kind = P.ARCHITECTURES[values["architecture"]]
    else:
        kind = SECTIONS[section]
    return kind.model_validate(values)


def scratch_twin(params: dict) -> dict:
    """The transfer entry from random weights (params.yaml's commented transfer_scratch): the same
    network and budget, nothing frozen, so no fine_tune_layers."""
    twin = {k: v for k, v in copy.deepcopy(params["models"]["transfer"]).items() if k != "fine_tune_layers"}
    return {**twin, "weights": None}


def tiny(params: dict) -> dict:
    """The project's params shrunk to seconds: few small images, one epoch, no progress bars."""
    p = copy.deepcopy(params)
    p["runtime"]["verbose"] = 0
    p["runtime"]["workers"] = 1
    for ds in p["datasets"].values():
        if ds["source"] == "shapes":
            ds["per_class"] = 12
            ds["image_size"] = 16
        elif ds["source"] == "tracks":
            ds["frames"] = 20
            ds["image_size"] = 16
            ds["val_fraction"] = ds["test_fraction"] = 0.2
        elif ds["source"] == "spectra":
            ds["per_class"] = 12
            ds["length"] = 32
        elif ds["source"] == "textures":
            ds["per_class"] = 12
            ds["image_size"] = 16
        elif ds["source"] == "motion":
            ds["per_class"] = 12
            ds["frames"] = 4
            ds["image_size"] = 8
            if ds.get("frame") is not None:
                ds["frame"] = min(ds["frame"], 3)
    for spec in p["augment"].values():
        spec["preview"] = 2
    for model in p["models"].values():
        model["epochs"] = 1
        model["batch_size"] = 16
        model["shifts"] = [0, 2]
        if model["architecture"] == "transfer":  # smallest backbone input, one epoch per phase
            model.update(input_size=32, fine_tune_epochs=min(model.get("fine_tune_epochs", 0), 1))
    curve = p.get("lecture", {}).get("learning_curve")
    if curve:
        curve.update(per_class=[2, 4], seeds=1, epochs=2)
    for gan in p.get("dcgans", {}).values():
        gan.update(epochs=1, batch_size=16, latent_dim=8, generator_filters=[16, 8], grid=2)
        gan.update(discriminator_filters=[8, 16])
    for gan in p.get("cyclegans", {}).values():
        gan.update(epochs=1, batch_size=8, filters=4, residual_blocks=1, discriminator_filters=4, grid=2)
    return p


def run(cmd: list[str], cwd: Path, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=stage_env(**extra_env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session", autouse=True)
def shared_run_cache(tmp_path_factory):
    """One run cache of the import_weights stage for every sandbox of the session, all pytest workers
    (pipeline/tools/sandbox.py says why); built by the first sandbox that needs it, in the session's
    temporary folder (xdist workers' folders sit side by side in it)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ[sandbox.RUN_CACHE_ENV] = str(root / "import-weights-run-cache")


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> tiny_classification_repo.Reproduced:
    """The tiny classification pipeline the files of tiny_classification_repo.FILES read in turn, its
    first `dvc repro` run in a user's environment."""
    path = tmp_path_factory.mktemp("tiny_classification") / "repo"
    return tiny_classification_repo.reproduce(path, tiny(project_params()))


@pytest.fixture
def make_repo(tmp_path):
    """make_repo(params) -> path of a fresh git + DVC repository with the project's code and dvc.yaml
    (run_cache=False: without the session's run cache of import_weights)."""

    def make(params: dict, name: str = "repo", run_cache: bool = True) -> Path:
        return sandbox.make_repo(tmp_path / name, params, run_cache=run_cache)

    return make


@pytest.fixture
def dvc():
    """dvc(repo, *args) runs the venv's dvc in `repo` and fails the test on a non-zero exit."""

    def call(repo: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        return run([str(BIN / "dvc"), *args], repo, check=check, **env)

    return call


# The longest test files first (seconds of one full run on 2 cores, descending; remeasured with
# `--durations`), so that with `--dist loadfile` the workers do not end with one long file running
# alone: longest first is the classic greedy schedule. Files not named keep their order after these.
LONGEST_FIRST = [
    # One unit for pytest-xdist (tests/tiny_classification.py), in the order they read its repository.
    "test_e2e_classification.py",
    "test_compare_loop.py",
    "test_early_errors.py",
    "test_trustworthy_numbers.py",
    "test_jax_pipeline.py",
    "test_team_pipeline.py",
    "test_bench.py",
    "test_cluster_sweep.py",
    "test_gans.py",
    "test_symmetries.py",
    "test_bench_gpu.py",
    "test_transfer.py",
    "test_resume.py",
    "test_team_stack.py",
    "test_contract_data.py",
    "test_jax_gans.py",
    "test_tracking_server.py",
    "test_report.py",
    "test_distribute.py",
    "test_dims.py",
    "test_contract_deps.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep their order


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without it (-p no:xdist)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (make test), with the files reading tests/tiny_classification.py's repository
    as one unit: one worker builds it and runs them in turn. (pytest-xdist's `loadgroup` would do this
    from marks, but under pytest 9 its worker no longer renames the tests it groups: it groups nothing.)
    """
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedRepositoryScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)  # the test's file
            return "tiny_classification" if Path(scope).name in tiny_classification_repo.FILES else scope

    return SharedRepositoryScheduling(config, log)

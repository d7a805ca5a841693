"""One tiny classification pipeline, reproduced once per test session and read in turn by the test
files that follow a user through it: test_e2e_classification (outputs, MLflow, rerun, edit, force,
push), test_compare_loop (a queued sweep, compare, promote) and test_early_errors (what the first
`dvc repro` printed; mistakes in params.yaml). Each of them had a repository of its own: minutes of
stage processes importing TensorFlow for the same few stages.

tests/conftest.py hands the three files (FILES) to one pytest-xdist worker as one unit, in this
order. Each leaves the repository as it found it, apart from what the files after it can live with:
git commits, MLflow runs (the sweep's checks count only runs of its experiments) and experiments (the
early-errors file's one comes after the sweep's checks).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipeline.tools import sandbox
from pipeline.tools.sandbox import BIN, only

FILES = ("test_e2e_classification.py", "test_compare_loop.py", "test_early_errors.py")  # in this order

# Two models on one dataset (editing one must rerun it alone) and the lecture's filter_net on a second
# dataset, so that the lecture and report stages have every figure to draw.
MODELS = ("filter_net", "mlp", "cnn")
DATASETS = ("angle_vs_rest", "shapes")
CNN_EPOCHS = 3  # the sweep's runs must each log this many metric steps


def user_env() -> dict[str, str]:
    """A user's shell: no TF_CPP_MIN_LOG_LEVEL of the test harness (the stages set their own)."""
    env = sandbox.child_env()
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def run_dvc(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`dvc args` in `repo` as a user runs it, whatever its exit status."""
    return subprocess.run(
        [str(BIN / "dvc"), *args], cwd=repo, env={**user_env(), **env}, capture_output=True, text=True
    )


@dataclass
class Reproduced:
    repo: Path
    params: dict
    first: subprocess.CompletedProcess  # the first `dvc repro`, run as a user runs it

    @property
    def stdout(self) -> str:
        return self.first.stdout

    def run_dvc(self, *args: str, repo: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        """`dvc args` in the repository (or `repo`) as a user runs it, whatever its exit status."""
        return run_dvc(repo or self.repo, *args, **env)

    def dvc(self, *args: str, repo: Path | None = None, **env: str) -> str:
        """The standard output of `dvc args`, which must succeed."""
        proc = self.run_dvc(*args, repo=repo, **env)
        if proc.returncode != 0:
            out = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{out}")
        return proc.stdout

    def git(self, *args: str) -> str:
        from tests.conftest import run  # here: conftest imports this module

        return run(["git", *args], self.repo).stdout

    def commit(self, message: str) -> None:
        """Commit the workspace, where anything changed."""
        self.git("add", "-A")
        if self.git("status", "--porcelain").strip():
            self.git("commit", "-q", "-m", message)

    def restore(self) -> None:
        """params.yaml and dvc.yaml as committed (a failed `dvc exp run -S` leaves its edit)."""
        self.git("checkout", "-q", "--", "params.yaml", "dvc.yaml")

    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=f"sqlite:///{self.repo / 'mlflow.db'}")


def reproduce(repo: Path, tiny_params: dict) -> Reproduced:
    """`tiny_params` (the project's, shrunk by tests.conftest.tiny) trimmed to MODELS, in a new git + DVC
    repository at `repo`, reproduced with `dvc repro`."""
    params = only(tiny_params, *MODELS)
    params["models"]["cnn"]["epochs"] = CNN_EPOCHS
    # The cnn's and mlp's shapes augmented online, drawn by two worker processes: the forced rerun
    # (test_e2e_classification) shows those draws reproduce byte for byte.
    params["augment"]["shapes"]["mode"] = "online"
    params["runtime"]["workers"] = 2
    params["lecture"].update(feature_images=2, feature_channels=4)
    # Every stage runs here, import_weights too: not restored from the session's run cache.
    sandbox.make_repo(repo, params, run_cache=False)
    first = run_dvc(repo, "repro")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return Reproduced(repo, params, first)

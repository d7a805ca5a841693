"""What the team tests (tests/test_team_*.py) share: acting as one user of the stack in this process,
and putting MLflow's process-wide state back afterwards, so that no later test talks to a stopped server."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.tools import team

# MLflow keeps the tracking and registry URIs in module globals and copies them to these variables.
MLFLOW_STATE = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)


@contextlib.contextmanager
def acting_as(stack: team.Stack, user: str, password: str) -> Iterator[None]:
    """This process as `user` of the stack: MLflow's URIs and credentials, restored on the way out."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking_service

    saved_env = {k: os.environ.get(k) for k in MLFLOW_STATE}
    saved = tracking_service._tracking_uri, registry._registry_uri
    os.environ.update(stack.client_env(user, password))
    mlflow.set_tracking_uri(stack.tracking_uri)
    mlflow.set_registry_uri(stack.tracking_uri)
    try:
        yield
    finally:
        tracking_service._tracking_uri, registry._registry_uri = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def credentials(stack: team.Stack, user: str, password: str) -> Iterator[None]:
    """Only the MLflow credentials of `user`, for a few calls."""
    with team.temporary_env(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password):
        yield


def state_epoch(state_file: Path) -> int:
    """The last checkpointed epoch of a training (-1: none yet)."""
    try:
        return json.loads(state_file.read_text())["epoch"]
    except (OSError, json.JSONDecodeError, KeyError):
        return -1

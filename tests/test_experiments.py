"""A queued grid of experiments logs into the main store; a DVC remote carries outputs to a clone."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import only, project_params, run, tiny


def _cnn_only() -> dict:
    p = tiny(project_params())
    p = only(p, "cnn")
    return p


def _commit(repo, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


@pytest.mark.slow
def test_queued_grid_logs_into_the_main_store(make_repo, dvc):
    repo = make_repo(_cnn_only())
    dvc(repo, "repro")
    _commit(repo, "baseline")

    dvc(repo, "exp", "run", "--queue", "-S", "models.cnn.lr=0.001,0.01")
    dvc(repo, "exp", "run", "--run-all")

    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    exp_names = {
        e["name"] for baseline in shown for e in (baseline.get("experiments") or []) if e.get("name")
    }
    assert len(exp_names) == 2, shown

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("convpipe")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.model = 'cnn'")
    tagged = {r.data.tags.get("dvc_exp_name"): r for r in runs if r.data.tags.get("dvc_exp_name")}
    assert set(tagged) == exp_names, "every queued experiment logs one run, tagged with its name"
    assert {tagged[n].data.params["model.lr"] for n in exp_names} == {"0.001", "0.01"}
    assert all("test_accuracy" in r.data.metrics for r in tagged.values())


@pytest.mark.slow
def test_remote_carries_outputs_to_a_fresh_clone(make_repo, dvc, tmp_path):
    repo = make_repo(_cnn_only())
    dvc(repo, "repro")
    dvc(repo, "remote", "add", "-d", "store", str(tmp_path / "store"))
    _commit(repo, "pipeline run")
    dvc(repo, "push")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "data/models/cnn/model.keras").exists()
    dvc(clone, "pull")
    status = dvc(clone, "status").stdout
    assert "up to date" in status, status
    assert (clone / "data/models/cnn/model.keras").read_bytes() == (
        repo / "data/models/cnn/model.keras"
    ).read_bytes()
    ours = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    theirs = json.loads(dvc(clone, "metrics", "show", "--json").stdout)
    assert next(iter(ours.values())) == next(iter(theirs.values()))

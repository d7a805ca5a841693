"""Same commit, same machine, same bytes: `dvc repro -f` twice leaves dvc.lock unchanged."""

from __future__ import annotations

import pytest

from tests.conftest import project_params, tiny


@pytest.mark.slow
def test_forced_rerun_reproduces_every_output_byte_for_byte(make_repo, dvc):
    repo = make_repo(tiny(project_params()))
    dvc(repo, "repro")
    first = (repo / "dvc.lock").read_text()
    dvc(repo, "repro", "-f")
    second = (repo / "dvc.lock").read_text()
    # dvc.lock holds the hash of every output: models, metrics, plots and data alike.
    assert "model.keras" in first or "data/models" in first
    assert first == second

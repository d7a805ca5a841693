"""The test session's shared run cache (pipeline/tools/sandbox.py): a new sandbox restores the
import_weights stage through DVC's run cache instead of running it, and gets the same bytes."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from pipeline.tools import sandbox
from tests.conftest import BIN, only, project_params, run, tiny


@pytest.mark.slow
def test_a_sandbox_restores_import_weights_from_the_shared_run_cache(tmp_path):
    seed = sandbox.shared_run_cache()
    assert seed is not None and os.environ[sandbox.RUN_CACHE_ENV] == str(seed)
    entries = [f for f in (seed / "runs").rglob("*") if f.is_file()]
    assert entries and all("pipeline.stages.import_weights" in f.read_text() for f in entries)

    params = only(tiny(project_params()), "cnn")
    seeded = sandbox.make_repo(tmp_path / "seeded", params)
    out = run([str(BIN / "dvc"), "repro", "import_weights"], seeded).stdout
    assert "Running stage 'check'" in out  # params are not shared: only import_weights is
    assert re.search(r"Stage 'import_weights' is cached - skipping run", out), out
    weights = seeded / "data/weights/efficientnet_lite0.weights.h5"
    assert weights.stat().st_size > 10_000_000
    # The bytes the shared cache holds, as DVC's usual copy, not a link into the shared folder.
    md5 = hashlib.md5(weights.read_bytes()).hexdigest()
    assert (seed / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    assert weights.stat().st_nlink == 1

    plain = sandbox.make_repo(tmp_path / "plain", params, run_cache=False)
    assert not (plain / ".dvc/cache/runs").exists()

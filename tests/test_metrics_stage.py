"""The metrics stage: every model's headline metrics in one DVC metrics file, keyed by model."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import UserError
from pipeline.stages.metrics import gather


def test_gather_keys_each_models_metrics_by_its_name(tmp_path):
    for name, metrics in (("cnn", {"accuracy": 0.9}), ("dcgan", {"fid_lite0": 8.5})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "removed_model").mkdir()  # a folder no params entry names any more: not gathered
    (tmp_path / "removed_model" / "metrics.json").write_text("{}")
    assert gather(["cnn", "dcgan"], tmp_path) == {"cnn": {"accuracy": 0.9}, "dcgan": {"fid_lite0": 8.5}}


def test_a_missing_metrics_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"mlp/metrics.json: missing; the evaluate stage of 'mlp' writes it"):
        gather(["mlp"], tmp_path)

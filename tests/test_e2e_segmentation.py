"""A tiny `dvc repro` of the tracks U-Net, read back from DVC and MLflow.

Only the segmentation entries run, to keep the test short; classification's end-to-end tests
check that its models write the same declared evaluate outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import only, project_params, tiny

EVALUATE_OUTS = (
    "metrics.json",
    "details.json",
    "confusion.json",
    "confusion.png",
    "roc.png",
    "roc.json",
    "shift.png",
    "overlays.png",
)


@pytest.mark.slow
def test_segmentation_pipeline_end_to_end(make_repo, dvc):
    params = tiny(project_params())
    params = only(params, "unet")
    repo = make_repo(params)

    dvc(repo, "repro")

    manifest = json.loads((repo / "data/prepared/tracks/manifest.json").read_text())
    assert manifest["task"] == "segmentation"
    masks = np.load(repo / "data/augmented/tracks/train_y.npy")
    frames = np.load(repo / "data/augmented/tracks/train_x.npy")
    assert masks.shape == frames.shape[:3] == (2 * manifest["images"]["train"], 16, 16)
    assert (repo / "reports/datasets/tracks/augment_preview.png").stat().st_size > 0
    # Every output the evaluate stage declares exists, and the pipeline is then up to date.
    for name in EVALUATE_OUTS:
        assert (repo / "reports/models/unet" / name).is_file(), name
    pairs = json.loads((repo / "reports/models/unet/confusion.json").read_text())
    assert pairs and set(pairs[0]) == {"actual", "predicted"}
    assert "up to date" in dvc(repo, "status").stdout

    metrics = json.loads((repo / "reports/models/unet/metrics.json").read_text())
    assert {"mean_iou", "max_count_error"} <= set(metrics) and "per_class" not in metrics  # headline only
    metrics |= json.loads((repo / "reports/models/unet/details.json").read_text())
    assert metrics["task"] == "segmentation" and metrics["test_images"] == manifest["images"]["test"]
    assert set(metrics["per_class"]) == {"background", "muon", "alpha", "beta"}
    assert set(metrics["counts"]) == {"muon", "alpha", "beta"}
    assert (
        sum(sum(row.values()) for row in metrics["pixel_confusion"].values())
        == 16 * 16 * metrics["test_images"]
    )
    shown = dvc(repo, "metrics", "show", "--json").stdout
    assert "mean_iou" in shown

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("convpipe")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.model = 'unet'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["architecture"] == "unet" and run.data.params["model.loss.dice"] == "1.0"
    assert {"val_mean_iou", "val_iou_beta", "test_mean_iou", "test_iou_beta", "test_count_error_muon"} <= set(
        run.data.metrics
    )
    assert (
        len(client.get_metric_history(run.info.run_id, "val_mean_iou")) == params["models"]["unet"]["epochs"]
    )
    assert run.data.metrics["test_mean_iou"] == pytest.approx(metrics["mean_iou"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"overlays.png", "metrics.json", "confusion.png", "training_curves.png"} <= artifacts

"""The `transfer` architecture: freezing in phase 1, only the top K layers in phase 2, one MLflow run."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline import params as params_module
from pipeline import tracking, training
from pipeline.errors import UserError
from pipeline.models import transfer
from pipeline.models.weights_import import LITE0_WEIGHTS_FILE, import_efficientnet_lite0
from pipeline.params import Tracking, TransferParams
from pipeline.tasks import transfer as transfer_training
from tests.conftest import entry, project_params

# tf.data ignores eager mode (see `eager`) and says so at every fit.
pytestmark = pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run_functions")

SIZE, INPUT = 16, 32  # tiny grayscale images, resized to the smallest input the backbone takes


@pytest.fixture(scope="module", autouse=True)
def eager():
    """Tiny fits run eagerly: tracing a 100-layer training step takes 7x longer than running it.

    Which weights change depends on trainable flags, not on graph or eager execution.
    """
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """What the import_weights stage writes: the real imported ImageNet weights."""
    folder = tmp_path_factory.mktemp("weights")
    import_efficientnet_lite0().save_weights(folder / LITE0_WEIGHTS_FILE)
    return folder


def tiny_data(n: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, SIZE, SIZE, 1), dtype=np.uint8)
    y = np.arange(n) % 2
    x[y == 1, 4:12, 4:12] = 255  # something to learn
    return x, y


def make_params(**overrides) -> TransferParams:
    base = {
        "dataset": "faces",
        "architecture": "transfer",
        "input_size": INPUT,
        "epochs": 1,
        "batch_size": 8,
        "lr": 0.01,
        "fine_tune_epochs": 1,
        "fine_tune_layers": 3,
        "fine_tune_lr": 0.01,
    }
    return entry("models", "transfer", **{**base, **overrides})


def snapshot(model: keras.Model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def changed(before: dict, after: dict) -> set[str]:
    return {
        name
        for name in before
        if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
    }


def batches(p: TransferParams):
    x, y = tiny_data()
    return training.ArrayBatches(x, y, p.batch_size, True, 0, 2), training.ArrayBatches(x, y, 16, False, 0, 2)


def run_phase(model, p, phase: int, start: int, store, folder) -> None:
    """Compile for the current trainable set and fit p.epochs epochs, as the train stage does."""
    train, val = batches(p)
    training.compile_model(model, p, 2, len(train), False)
    with tracking.training_run(store, "t", {}, {}) as run:
        logger = tracking.EpochLogger()
        checkpoints = training.Checkpoints(folder / f"phase{phase}", "t")
        best = training.BestAndResume(checkpoints, run.info.run_id, 0, flush=logger.wait)
        transfer_training.fit_phase(model, train, val, logger, best, phase, start, start + p.epochs)


@pytest.fixture
def store(tmp_path) -> Tracking:
    return Tracking(uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")


def test_builder_and_schema_agree():
    from pipeline.models.registry import BUILDERS

    assert set(BUILDERS) == set(params_module.ARCHITECTURES)
    kwargs = params_module.arch_kwargs(make_params())
    assert "fine_tune_epochs" not in kwargs and kwargs["input_size"] == INPUT


def test_grayscale_is_repeated_and_pretrained_backbone_frozen(weights_dir):
    p = make_params()
    model = transfer_training.build(p, (SIZE, SIZE, 1), 2, weights_dir)
    assert model.get_layer("gray_to_rgb").output.shape[-1] == 3
    assert model.get_layer("resize").output.shape[1:3] == (INPUT, INPUT)
    net = transfer.backbone_of(model)
    assert not net.trainable and not net.trainable_weights
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    # The imported weights are in the backbone: its stem equals a fresh import's.
    reference = import_efficientnet_lite0(input_shape=(INPUT, INPUT, 3)).get_layer("conv_stem").get_weights()
    np.testing.assert_array_equal(net.get_layer("conv_stem").get_weights()[0], reference[0])


@pytest.mark.slow
def test_phase1_freezes_the_backbone_and_phase2_changes_only_the_top_k(weights_dir, store, tmp_path):
    p = make_params(fine_tune_layers=3)
    model = transfer_training.build(p, (SIZE, SIZE, 1), 2, weights_dir)
    net = transfer.backbone_of(model)
    before, head_before = snapshot(net), model.get_layer("predictions").get_weights()
    run_phase(model, p, 1, 0, store, tmp_path)
    assert changed(before, snapshot(net)) == set()  # BatchNorm statistics included
    assert not np.array_equal(head_before[0], model.get_layer("predictions").get_weights()[0])

    unfrozen = transfer.unfreeze_top(model, p.fine_tune_layers)
    # The top three layers with weights, BatchNorm excluded.
    assert unfrozen == ["blocks_15_depthwise_conv", "blocks_15_project_conv", "conv_head"]
    before = snapshot(net)
    p2 = p.model_copy(update={"lr": p.fine_tune_lr, "epochs": p.fine_tune_epochs})
    run_phase(model, p2, 2, p.epochs, store, tmp_path)
    assert changed(before, snapshot(net)) == set(unfrozen)


@pytest.mark.slow
def test_two_phases_are_one_run_with_continuous_steps(weights_dir, store, tmp_path):
    p = make_params(epochs=2, fine_tune_epochs=1)
    model = transfer_training.build(p, (SIZE, SIZE, 1), 2, weights_dir)
    train, val = batches(p)
    with tracking.training_run(store, "t", {}, {}) as run:
        logger = tracking.EpochLogger()
        checkpoints = training.Checkpoints(tmp_path / "ckpt", "t")
        best = training.BestAndResume(checkpoints, run.info.run_id, 0, flush=logger.wait)
        history = transfer_training.fit_two_phases(model, p, train, val, 2, logger, best)
    assert history["phase"] == [1.0, 1.0, 2.0]
    client = MlflowClient(tracking.tracking_uri(store))
    phases = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "phase"))
    assert phases == [(0, 1.0), (1, 1.0), (2, 2.0)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1, 2]
    tags = client.get_run(run.info.run_id).data.tags
    assert tags["phase2_first_epoch"] == "3"
    assert int(tags["phase2_trainable_params"]) > int(tags["phase1_trainable_params"])


@pytest.mark.slow
def test_scratch_backbone_trains_everything_in_phase1(store, tmp_path):
    p = make_params(weights=None, fine_tune_epochs=0, fine_tune_layers=None, fine_tune_lr=None)
    model = transfer_training.build(p, (SIZE, SIZE, 1), 2, None)
    net = transfer.backbone_of(model)
    before = snapshot(net)
    run_phase(model, p, 1, 0, store, tmp_path)
    after = snapshot(net)
    assert {"conv_stem", "bn0", "conv_head"} <= changed(before, after)  # BatchNorm trains too


def test_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="import_weights"):
        transfer_training.build(make_params(), (SIZE, SIZE, 1), 2, tmp_path)
    missing = make_params(weights=str(tmp_path / "nope.weights.h5"))
    with pytest.raises(UserError, match=r"nope\.weights\.h5: file not found"):
        transfer_training.build(missing, (SIZE, SIZE, 1), 2, None)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50"])
def test_keras_application_backbones_build_and_save(backbone, tmp_path):
    """weights: null here (imagenet would download); the model predicts and survives save/load."""
    p = make_params(backbone=backbone, weights=None, fine_tune_layers=None)
    model = transfer_training.build(p, (SIZE, SIZE, 3), 3, None)
    x = tiny_data(2)[0].repeat(3, axis=-1)
    out = np.asarray(model.predict_on_batch(x))
    assert out.shape == (2, 3)
    training.save_model(model, tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again.predict_on_batch(x)), out, rtol=1e-4, atol=1e-5)
    if backbone == "resnet50":  # caffe preprocessing: RGB -> BGR minus the mean, as a fixed 1x1 conv
        pre = keras.Model(model.input, model.get_layer("preprocess").output)
        pixel = np.array([[[[10, 20, 30]]]], "float32").repeat(SIZE, 1).repeat(SIZE, 2)
        np.testing.assert_allclose(
            np.asarray(pre.predict_on_batch(pixel))[0, 0, 0],
            [30 - 103.939, 20 - 116.779, 10 - 123.68],
            rtol=1e-4,
        )


def test_bad_transfer_params_are_one_line_naming_the_key():
    raw = project_params()
    raw["models"]["t"] = {**raw["models"]["transfer"], "backbone": "vgg16"}
    with pytest.raises(UserError, match=r"models\.t\.backbone: got 'vgg16'; valid: efficientnet_b0"):
        params_module.parse(raw)
    raw["models"]["t"] = {**raw["models"]["transfer"], "fine_tune_lr": 0}
    with pytest.raises(UserError, match=r"models\.t\.fine_tune_lr"):
        params_module.parse(raw)
    raw["models"]["t"] = {k: v for k, v in raw["models"]["transfer"].items() if k != "weights"}
    with pytest.raises(UserError, match=r"models\.t\.weights: required key is missing"):
        params_module.parse(raw)  # no default: params.yaml states the weights

"""The GANs: network shapes, a training step that moves every network, the label that conditions
the generator, params checks, and a tiny `dvc repro` of both GAN families."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import UserError
from pipeline.models import cyclegan, dcgan
from pipeline.params import parse
from tests.conftest import only, project_params, tiny

SHAPE = (16, 16, 1)


def test_dcgan_networks_shapes():
    g = dcgan.dcgan_generator(SHAPE, 5, latent_dim=8, filters=(16, 8), conditional=True)
    d = dcgan.dcgan_discriminator(SHAPE, 5, filters=(8, 16), conditional=True)
    z, labels = np.zeros((3, 8), "float32"), np.array([[0], [1], [4]], "int32")
    images = np.asarray(g([z, labels]))
    assert images.shape == (3, *SHAPE)
    assert images.min() >= -1.0 and images.max() <= 1.0  # tanh: the model range of to_model_range
    assert np.asarray(d([images, labels])).shape == (3, 1)
    plain = dcgan.dcgan_generator((32, 32, 1), 5, latent_dim=8, filters=(16, 8, 4), conditional=False)
    assert plain.get_layer("bottleneck").output.shape[1:] == (4, 4, 16)  # 32 / 2**3
    assert plain.output.shape[1:] == (32, 32, 1)
    resized = dcgan.dcgan_generator(SHAPE, 5, latent_dim=8, filters=(16, 8), upsampling="upsample")
    assert resized.get_layer("up2_upsample").output.shape[1:] == (16, 16, 16)
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in resized.layers)
    assert np.asarray(resized([z, labels])).shape == (3, *SHAPE)
    with pytest.raises(ValueError, match="divides by 32"):
        dcgan.dcgan_generator(SHAPE, 5, filters=(8, 8, 8, 8, 8))


def test_cyclegan_networks_shapes():
    g = cyclegan.cyclegan_generator((32, 32, 1), filters=4, downsamplings=2, residual_blocks=2)
    d = cyclegan.patchgan_discriminator((32, 32, 1), filters=4, layers_=3)
    x = np.zeros((2, 32, 32, 1), "float32")
    assert np.asarray(g(x)).shape == (2, 32, 32, 1)
    assert g.get_layer("res2_add").output.shape[1:] == (8, 8, 16)  # the bottleneck: 32/4, 4*2*2 filters
    assert np.asarray(d(x)).shape == (2, 4, 4, 1)  # one logit per patch


def test_conditional_label_conditions_the_generator():
    keras.utils.set_random_seed(0)
    g = dcgan.dcgan_generator(SHAPE, 5, latent_dim=8, filters=(16, 8), conditional=True)
    z = np.random.default_rng(0).normal(size=(5, 8)).astype("float32")
    same_z = np.repeat(z[:1], 5, axis=0)
    by_label = np.asarray(g([same_z, np.arange(5).reshape(-1, 1)], training=False))
    # One latent vector, five labels: five different images; the same label twice: the same image.
    # (An untrained generator's outputs sit near tanh(0); float round-off is ~1e-7.)
    spread = [np.abs(by_label[i] - by_label[0]).mean() for i in range(1, 5)]
    assert min(spread) > 1e-5
    again = np.asarray(g([same_z[:1], np.array([[3]])], training=False))
    np.testing.assert_allclose(again[0], by_label[3], atol=1e-6)


def _weights(net):
    return [np.array(w) for w in net.trainable_weights]


def _moved(before, net) -> bool:
    return all(not np.allclose(b, np.array(a)) for b, a in zip(before, net.trainable_weights, strict=True))


def _adam():
    return keras.optimizers.Adam(1e-3, beta_1=0.5)


def test_dcgan_train_step_moves_both_networks():
    keras.utils.set_random_seed(0)
    g = dcgan.dcgan_generator(SHAPE, 2, latent_dim=8, filters=(8, 4), conditional=True)
    d = dcgan.dcgan_discriminator(SHAPE, 2, filters=(4, 8), conditional=True, dropout=0.0)
    model = dcgan.DCGAN(g, d, 8, True, label_smoothing=0.1, instance_noise=0.1, total_steps=2)
    model.compile(g_optimizer=_adam(), d_optimizer=_adam(), jit_compile=False)
    before_g, before_d = _weights(g), _weights(d)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, *SHAPE), dtype=np.uint8)
    y = np.arange(8) % 2
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert set(history) >= {"d_loss", "g_loss", "d_real"}
    assert np.isfinite(history["d_loss"][0]) and np.isfinite(history["g_loss"][0])
    assert _moved(before_g, g) and _moved(before_d, d)


def test_aux_classifier_head_and_ema_generator():
    """AC-GAN: the discriminator's class head has one logit per class and learns real images' classes
    (its loss is reported and falls); the EMA generator follows the generator, is not it, and samples."""
    keras.utils.set_random_seed(0)
    g = dcgan.dcgan_generator(SHAPE, 2, latent_dim=8, filters=(8, 4), conditional=True)
    ema = dcgan.dcgan_generator(SHAPE, 2, latent_dim=8, filters=(8, 4), conditional=True)
    d = dcgan.dcgan_discriminator(
        SHAPE, 2, filters=(4, 8), conditional=True, dropout=0.0, aux_classifier=True
    )
    labels = np.array([[0], [1], [1]], "int32")
    logit, classes = d([np.zeros((3, *SHAPE), "float32"), labels])
    assert logit.shape == (3, 1) and classes.shape == (3, 2)
    model = dcgan.DCGAN(g, d, 8, True, total_steps=8, aux_weight=1.0, ema_generator=ema, ema_decay=0.9)
    assert model.sampler is ema
    np.testing.assert_allclose(_weights(ema)[0], _weights(g)[0])  # starts as a copy
    model.compile(g_optimizer=_adam(), d_optimizer=_adam(), jit_compile=False)
    # Class 0 dark, class 1 bright: a head that learns anything separates them within a few steps.
    y = np.arange(16) % 2
    x = np.where(y[:, None, None, None] == 1, 230, 20).astype(np.uint8) * np.ones((16, *SHAPE), np.uint8)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0).history
    assert history["aux_loss"][-1] < history["aux_loss"][0]
    moved_g, averaged = _weights(g), _weights(ema)
    # The average lags behind the generator it follows.
    assert not np.allclose(moved_g[0], averaged[0])
    assert np.asarray(ema([np.zeros((2, 8), "float32"), labels[:2]])).shape == (2, *SHAPE)
    with pytest.raises(UserError, match=r"dcgans\.dcgan: aux_classifier_weight: .*conditional: true"):
        raw = tiny(project_params())
        raw["dcgans"]["dcgan"].update(conditional=False, aux_classifier_weight=1.0)
        parse(raw)


def test_cyclegan_train_step_moves_all_four_networks():
    keras.utils.set_random_seed(0)
    nets = [cyclegan.cyclegan_generator(SHAPE, 4, 1, 1, name=n) for n in ("g_ab", "g_ba")]
    nets += [cyclegan.patchgan_discriminator(SHAPE, 4, 2, name=n) for n in ("d_a", "d_b")]
    model = cyclegan.CycleGAN(*nets, cycle_weight=10.0, identity_weight=5.0)
    model.compile(g_optimizer=_adam(), d_optimizer=_adam(), jit_compile=False)
    before = [_weights(n) for n in nets]
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, *SHAPE), dtype=np.uint8)
    b = np.zeros((4, *SHAPE), np.uint8)
    history = model.fit(a, b, batch_size=4, epochs=1, verbose=0).history
    assert set(history) >= {"g_loss", "d_loss", "cycle_loss", "identity_loss"}
    for weights, net in zip(before, nets, strict=True):
        assert _moved(weights, net), net.name


def test_params_name_the_bad_gan_key():
    raw = tiny(project_params())
    raw["dcgans"]["dcgan"]["classifier"] = "mlp_typo"
    with pytest.raises(UserError, match=r"dcgans\.dcgan\.classifier: 'mlp_typo' is not a 2D classifier"):
        parse(raw)
    # The default DCGAN draws centred shapes and is judged by the cnn of shapes: same classes, same order.
    assert raw["dcgans"]["dcgan"]["dataset"] != raw["models"]["cnn"]["dataset"]
    raw = tiny(project_params())
    classes = raw["datasets"]["shapes_centered"]["classes"]
    raw["datasets"]["shapes_centered"]["classes"] = classes[1:] + classes[:1]  # label i means another figure
    raw["lecture"]["translation"] = None  # it compares the cnn with mlp_centered: that check would come first
    with pytest.raises(
        UserError,
        match=r"dcgans\.dcgan\.classifier: 'cnn' is not a 2D classifier in models trained on dataset "
        r"'shapes_centered' or on one drawing the same classes; valid: mlp_centered$",
    ):
        parse(raw)
    raw = tiny(project_params())
    raw["cyclegans"]["cyclegan"]["target"] = "spectra"
    with pytest.raises(
        UserError, match=r"cyclegans\.cyclegan\.target: dataset 'spectra' does not hold images"
    ):
        parse(raw)
    raw = tiny(project_params())
    raw["dcgans"]["dcgan"]["latent_size"] = 3
    with pytest.raises(UserError, match=r"dcgans\.dcgan\.latent_size: unknown key; .*latent_dim"):
        parse(raw)
    raw = tiny(project_params())
    raw["dcgans"]["cnn"] = raw["dcgans"]["dcgan"]
    with pytest.raises(UserError, match=r"dcgans\.cnn: the name is taken by models\.cnn"):
        parse(raw)


@pytest.mark.slow
def test_repro_trains_and_measures_the_dcgan(make_repo, dvc):
    """import_weights, shapes, the cnn classifier, then the DCGAN through train and evaluate.

    Only the DCGAN: it is the family with a dependency on another model (its classifier); the
    CycleGAN stages run the same stage modules (each stage is a process importing TensorFlow, and
    both families together took 8 minutes on the loaded 2-core machine). The CycleGAN's step,
    networks and measures are tested above and in test_cycle_measures.
    """
    params = only(tiny(project_params()), "cnn", "dcgan")
    repo = make_repo(params)
    dvc(repo, "repro", "dcgan_evaluate")

    headline = json.loads((repo / "reports/models/dcgan/metrics.json").read_text())
    details = json.loads((repo / "reports/models/dcgan/details.json").read_text())
    from pipeline.tasks.dcgan import HEADLINE

    assert set(headline) == set(HEADLINE)  # DVC metrics: the headline figures only
    dc = {**headline, **details}
    assert dc["fid"] == "FID (EfficientNet-Lite0 features)"
    # One epoch: evaluate recomputes the last epoch's FID from the saved generator and fixed latents.
    assert dc["fid_lite0"] == pytest.approx(dc["fid_lite0_first_epoch"], rel=1e-3)
    assert dc["fid_lite0"] > 0
    assert 0.0 <= dc["label_accuracy"] <= 1.0
    assert set(dc["per_class_label_accuracy"]) == set(params["datasets"]["shapes"]["classes"])
    assert set(dc["per_class_diversity"]) == set(dc["per_class_label_accuracy"])
    assert dc["diversity"] > 0
    assert (repo / "reports/models/dcgan/samples.png").stat().st_size > 1000
    assert (repo / "reports/models/dcgan/fid.png").is_file()

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["tracking"]["experiment"])
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"cnn", "dcgan"}
    dcgan_run = runs["dcgan"].info.run_id
    assert [m.step for m in client.get_metric_history(dcgan_run, "fid_lite0")] == [0]
    assert runs["dcgan"].data.metrics["test_label_accuracy"] == pytest.approx(dc["label_accuracy"])
    images = [f.path for f in client.list_artifacts(dcgan_run, "images")]
    assert any("samples" in p and "step+0" in p for p in images)  # the epoch's grid as an MLflow image


def test_diversity_is_one_for_real_images_and_zero_for_one_figure_per_class():
    from pipeline.tasks.dcgan import diversity, spread

    assert spread(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20, 8))
    groups = [("a", np.arange(20) < 10), ("b", np.arange(20) >= 10), ("c", np.arange(20) == 0)]
    assert diversity(real, real, groups) == {"a": pytest.approx(1.0), "b": pytest.approx(1.0), "c": None}
    collapsed = real.copy()
    collapsed[:10] = real[0]  # class a: the same sample ten times
    spread_out = real * 2.0  # class b: twice as far apart as the real images
    mixed = np.where((np.arange(20) < 10)[:, None], collapsed, spread_out)
    d = diversity(mixed, real, groups)
    assert d["a"] == pytest.approx(0.0, abs=1e-6) and d["b"] == pytest.approx(2.0)


def test_cycle_measures_and_unpaired_batches():
    """FID per direction and the cycle error: 0 for identity translators on identical domains."""
    from pipeline.tasks import cyclegan as gan_training

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (10, *SHAPE), dtype=np.uint8)
    b = rng.integers(0, 256, (7, *SHAPE), dtype=np.uint8)
    identity = keras.Sequential([keras.Input(SHAPE), keras.layers.Identity()])

    def score(x):
        return float(np.abs(x.astype(float).mean() - 127.5))

    m = gan_training.cycle_measures(identity, identity, a, b, score, score)
    assert m["cycle_error"] < 0.01  # 8-bit round trip through -1..1 only
    assert set(m) == {"fid_lite0_ab", "fid_lite0_ba", "cycle_error_a", "cycle_error_b", "cycle_error"}
    b = rng.integers(0, 256, (23, *SHAPE), dtype=np.uint8)
    batches = gan_training.UnpairedBatches(a, b, batch_size=4, seed=0)
    assert len(batches) == 6  # the larger domain sets the epoch; the smaller wraps around
    xa, xb = batches[5]
    assert xa.shape == xb.shape == (4, *SHAPE)
    batches.on_epoch_begin()  # epoch 0, as Keras begins it
    first = [batches[i][1].tobytes() for i in range(len(batches))]
    batches.on_epoch_end()
    batches.on_epoch_begin()  # epoch 1
    second = [batches[i][1].tobytes() for i in range(len(batches))]
    assert second != first  # reshuffled each epoch
    batches.start_at(1)  # a resumed training's epoch 1: the same batches
    assert [batches[i][1].tobytes() for i in range(len(batches))] == second

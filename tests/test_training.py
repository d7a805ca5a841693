"""Training helpers: batches, labels, compiling from params, best-epoch weights, stable saving."""

from __future__ import annotations

import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from pipeline import training
from pipeline.models.registry import build
from pipeline.params import MlpParams
from tests.conftest import ROOT, entry, stage_env


def indexed(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose pixels hold their own row number, so batches can be traced back to rows."""
    x = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None], 4, axis=1).repeat(4, axis=2)
    return x, np.arange(n) % 3


def test_encode_labels():
    binary = training.encode_labels(np.array([0, 1, 1]), 2)
    assert binary.dtype == np.float32 and binary.tolist() == [[0.0], [1.0], [1.0]]
    onehot = training.encode_labels(np.array([2, 0]), 3)
    assert onehot.tolist() == [[0, 0, 1], [1, 0, 0]]


def test_batches_have_the_right_shapes_and_labels():
    x, y = indexed(10)
    data = training.ArrayBatches(x, y, batch_size=4, shuffle=False, seed=0, num_classes=3)
    assert len(data) == 3
    shapes = [data[i][0].shape for i in range(len(data))]
    assert shapes == [(4, 4, 4, 1), (4, 4, 4, 1), (2, 4, 4, 1)]
    bx, by = data[1]
    rows = bx[:, 0, 0, 0]
    assert rows.tolist() == [4, 5, 6, 7]
    np.testing.assert_array_equal(by, np.eye(3)[rows % 3])  # labels stay with their images


def test_shuffle_is_seeded_per_epoch_and_covers_every_row_once():
    x, y = indexed(23)

    def epoch_rows(data):
        return [int(r) for i in range(len(data)) for r in data[i][0][:, 0, 0, 0]]

    a = training.ArrayBatches(x, y, 5, shuffle=True, seed=9, num_classes=3)
    b = training.ArrayBatches(x, y, 5, shuffle=True, seed=9, num_classes=3)
    first = epoch_rows(a)
    assert first == epoch_rows(b)
    assert sorted(first) == list(range(23)) and first != list(range(23))
    a.on_epoch_begin()  # epoch 0
    a.on_epoch_end()
    a.on_epoch_begin()  # epoch 1
    second = epoch_rows(a)
    assert sorted(second) == list(range(23)) and second != first
    b.start_at(1)
    assert epoch_rows(b) == second
    c = training.ArrayBatches(x, y, 5, shuffle=True, seed=10, num_classes=3)
    assert epoch_rows(c) != first


def test_fit_trains_each_epoch_on_its_own_order_and_a_resumed_fit_on_the_same():
    """Keras calls on_epoch_end before a fit's first epoch too (resetting its iterator after reading
    two batches for their shapes): epochs are counted where they begin, so epoch k of any fit,
    uninterrupted or resumed with start_at(k), trains on the order of epoch k, batch after batch
    (training.fit: Keras's own shuffle of the batches followed how many epochs the process had run)."""
    x, y = indexed(24)

    class Recorded(training.ArrayBatches):
        def __init__(self):
            super().__init__(x, y, 8, shuffle=True, seed=4, num_classes=3)
            self.seen, self.training = {}, False

        def on_epoch_begin(self):
            super().on_epoch_begin()
            self.training = True

        def on_epoch_end(self):
            self.training = False

        def __getitem__(self, i):
            batch = super().__getitem__(i)
            if self.training:
                self.seen.setdefault(self.epoch, []).append(sorted(int(r) for r in batch[0][:, 0, 0, 0]))
            return batch

    def model():
        net = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
        net.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
        return net

    straight = Recorded()
    training.fit(model(), straight, epochs=3, verbose=0)
    expected = {}
    for e in range(3):  # the batches of epoch e, drawn by a fresh object, in their order
        fresh = training.ArrayBatches(x, y, 8, shuffle=True, seed=4, num_classes=3)
        fresh.start_at(e)
        expected[e] = [sorted(int(r) for r in fresh.order[i : i + 8]) for i in range(0, 24, 8)]
    assert straight.seen == expected
    resumed = Recorded()
    resumed.start_at(2)
    training.fit(model(), resumed, epochs=3, initial_epoch=2, verbose=0)
    assert resumed.seen == {2: straight.seen[2]}


def test_batches_read_memory_mapped_arrays(tmp_path):
    x, y = indexed(7)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    data = training.ArrayBatches(mm, y, 4, shuffle=True, seed=0, num_classes=3)
    bx, _ = data[0]
    assert type(bx) is np.ndarray and bx.shape == (4, 4, 4, 1)


def mlp_params(**kw) -> MlpParams:
    return entry("models", "mlp", dataset="d", **kw)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "rmsprop"])
def test_compile_from_params(optimizer):
    model = build("mlp", (4, 4, 1), 3, hidden=[4])
    p = mlp_params(optimizer=optimizer, lr=0.05, schedule="cosine", epochs=3, weight_decay=0.01)
    training.compile_model(model, p, 3, steps_per_epoch=10, jit=False)
    kinds = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
    assert type(model.optimizer) is getattr(keras.optimizers, kinds[optimizer])
    if optimizer == "sgd":
        assert model.optimizer.momentum == pytest.approx(0.9)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert float(schedule(0)) == pytest.approx(0.05) and float(schedule(30)) == pytest.approx(0.0)
    assert model.optimizer.weight_decay == pytest.approx(0.01)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def test_binary_loss_and_label_smoothing():
    model = build("mlp", (4, 4, 1), 2, hidden=[4])
    training.compile_model(model, mlp_params(label_smoothing=0.2), 2, steps_per_epoch=1, jit=False)
    assert isinstance(model.loss, keras.losses.BinaryCrossentropy)
    assert model.loss.label_smoothing == pytest.approx(0.2)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)


def test_the_best_validation_epoch_is_kept_and_patience_stops_early(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 4, 4, 1)).astype("uint8")
    y = (x[:, 0, 0, 0] > 127).astype(int)  # learnable from one pixel
    model = build("mlp", (4, 4, 1), 2, hidden=[16])
    # A learning rate this large makes the loss jump about, so the last epoch is not the best one.
    p = mlp_params(epochs=30, lr=3.0, optimizer="sgd", early_stopping=2)
    training.compile_model(model, p, 2, steps_per_epoch=4, jit=False)
    train = training.ArrayBatches(x, y, 16, True, 0, 2)
    val = training.ArrayBatches(x[:32], y[:32], 32, False, 0, 2)
    best = training.BestAndResume(training.Checkpoints(tmp_path / "ckpt", "fp"), "run", p.early_stopping)
    history = model.fit(train, validation_data=val, epochs=p.epochs, callbacks=[best], verbose=0)
    val_loss = history.history["val_loss"]
    assert best.best_epoch == int(np.nanargmin(val_loss))
    assert len(val_loss) == best.best_epoch + 1 + 2 < p.epochs, val_loss  # two epochs without a better one
    assert model.evaluate(val, verbose=0)[0] == pytest.approx(val_loss[best.best_epoch], rel=1e-4)


def test_predict_proba_gives_a_column_per_class():
    binary = build("filter_net", (6, 6, 1), 2)
    x = np.random.default_rng(0).integers(0, 256, (5, 6, 6, 1)).astype("uint8")
    p = training.predict_proba(binary, x, batch_size=2)
    assert p.shape == (5, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[:, 1], np.asarray(binary(x))[:, 0], rtol=1e-6)
    multi = build("mlp", (6, 6, 1), 4, hidden=[3])
    assert training.predict_proba(multi, x, batch_size=3).shape == (5, 4)


def test_save_model_gives_the_same_bytes_for_the_same_weights(tmp_path):
    keras.utils.set_random_seed(1)
    model = build("cnn", (8, 8, 1), 3, filters=[2], batch_norm=True)
    training.compile_model(model, mlp_params(), 3, 1, jit=False)
    training.save_model(model, tmp_path / "a.keras")
    time.sleep(1.1)  # zip entries and Keras metadata would otherwise carry different times
    training.save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.keras", "b.keras"]  # no temporary left

    loaded = keras.saving.load_model(tmp_path / "a.keras")
    x = np.full((1, 8, 8, 1), 100, "uint8")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6)

    weights = model.get_layer("block0_conv").get_weights()
    model.get_layer("block0_conv").set_weights([weights[0] + 1.0])
    training.save_model(model, tmp_path / "c.keras")
    assert (tmp_path / "c.keras").read_bytes() != (tmp_path / "a.keras").read_bytes()


def test_runtime_setup_seeds_everything_and_asks_for_determinism(monkeypatch):
    from pipeline import runtime

    for var in ("TF_DETERMINISTIC_OPS", "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS"):
        monkeypatch.delenv(var, raising=False)

    def draws() -> tuple:
        k = runtime.setup(entry("runtime", device="cpu"), seed=5)
        return np.random.rand(3).tolist(), np.asarray(k.random.uniform((3,))).tolist()

    assert draws() == draws()
    assert runtime.os.environ["TF_DETERMINISTIC_OPS"] == "1"
    assert runtime.os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_keras_reads_batches_on_tensorflow_without_tf_data_autotuning():
    """runtime.setup switches tf.data's autotuning off where Keras turns a PyDataset into a dataset
    (it held the first batch of about one epoch in ten back by 1.2 s); the batches stay the same."""
    from keras.src.trainers.data_adapters import get_data_adapter

    from pipeline import runtime

    runtime.setup(entry("runtime", device="cpu"), seed=0)
    x, y = indexed(10)
    data = training.ArrayBatches(x, y, batch_size=4, shuffle=False, seed=0, num_classes=3)
    dataset = get_data_adapter(data).get_tf_dataset()
    assert dataset.options().autotune.enabled is False
    read = [bx[:, 0, 0, 0].numpy().tolist() for bx, _ in dataset]
    assert read == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_tensorflow_stage_process_starts_without_jax():
    """runtime.setup keeps tf.lite's optional JAX import out of a fresh process on TensorFlow (about 1 s
    of every stage's start-up) and the process trains; a process that has Keras already keeps JAX."""
    script = (
        "import sys, numpy as np\n"
        "from pipeline import runtime\n"
        "from tests.conftest import entry\n"
        "keras = runtime.setup(entry('runtime', device='cpu'), seed=0)\n"
        "model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
        "model.compile('sgd', 'mse')\n"
        "model.fit(np.ones((4, 2)), np.ones(4), verbose=0)\n"
        "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'jaxlib'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=stage_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == "['jax']", out.stdout  # the blocked name alone, never loaded
    from pipeline import runtime

    runtime.setup(entry("runtime", device="cpu"), seed=0)  # this process imported Keras long ago
    import jax

    assert jax.numpy.ones(1).shape == (1,)


def test_asking_for_a_gpu_without_one_is_a_user_error():
    from pipeline import runtime
    from pipeline.errors import UserError

    if runtime.gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match=r"runtime\.device: 'gpu' but no GPU is visible"):
        runtime.setup(entry("runtime", device="gpu"), seed=0)


def test_every_stage_fits_through_training_fit():
    """A stage's `model.fit` straight on its batches would let Keras reshuffle them (see training.fit)."""
    import ast

    from pipeline.tools.sandbox import ROOT

    direct = []
    for folder in ("tasks", "lecture"):
        for path in sorted((ROOT / "pipeline" / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                call = node if isinstance(node, ast.Call) else None
                if call and isinstance(call.func, ast.Attribute) and call.func.attr == "fit":
                    owner = call.func.value
                    if not (isinstance(owner, ast.Name) and owner.id == "training"):
                        direct.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not direct, f"fit the batches with training.fit: {direct}"

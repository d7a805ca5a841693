"""The GANs' training step on JAX (Keras's stateless API): every network and BatchNorm statistic moves,
the EMA generator follows, and the step is jit-compiled (runtime.jit_compile: auto); the schema
takes auto as well as true/false. Keras reads its backend once per process, so the JAX runs are
subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.errors import UserError
from pipeline.params import parse
from tests.conftest import JAX_CPU, project_params, stage_env

SCRIPT = r"""
import json, sys
import keras, numpy as np
from pipeline.models import cyclegan, dcgan
from pipeline.tasks.gan import adam

jit = json.loads(sys.argv[1])
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (16, 16, 16, 1)).astype("uint8")
y = rng.integers(0, 3, 16)
g = dcgan.dcgan_generator((16, 16, 1), 3, 8, (16, 8), True, "upsample")
ema = dcgan.dcgan_generator((16, 16, 1), 3, 8, (16, 8), True, "upsample")
d = dcgan.dcgan_discriminator((16, 16, 1), 3, (8, 16), True, 0.3, aux_classifier=True)
m = dcgan.DCGAN(g, d, 8, True, 0.1, 0.1, total_steps=4, seed=0, aux_weight=1.0, ema_generator=ema,
                ema_decay=0.9)
m.compile(g_optimizer=adam(2e-4, 0.5, 4), d_optimizer=adam(2e-4, 0.5, 4), jit_compile=jit)
before = {n: [np.array(w) for w in net.weights] for n, net in (("g", g), ("d", d), ("ema", ema))}
h = m.fit(x, y, batch_size=8, epochs=2, verbose=0)
moved = {n: [bool(np.any(np.array(w) != b)) for w, b in zip(net.weights, before[n])]
         for n, net in (("g", g), ("d", d), ("ema", ema))}
out = {"dcgan_moved": {n: all(v) for n, v in moved.items()}, "dcgan_jit": bool(m.jit_compile),
       "dcgan_losses": {k: float(v[-1]) for k, v in h.history.items()},
       "dcgan_steps": [int(m.g_optimizer.iterations), int(m.d_optimizer.iterations)]}
nets = [cyclegan.cyclegan_generator((16, 16, 1), 4, 1, 1, n) for n in ("g_ab", "g_ba")]
nets += [cyclegan.patchgan_discriminator((16, 16, 1), 4, 2, n) for n in ("d_a", "d_b")]
c = cyclegan.CycleGAN(*nets, 10.0, 5.0)
c.compile(g_optimizer=adam(2e-4, 0.5, 4), d_optimizer=adam(2e-4, 0.5, 4), jit_compile=jit)
before = [[np.array(w) for w in n.trainable_weights] for n in nets]
h = c.fit(x, rng.integers(0, 256, (16, 16, 16, 1)).astype("uint8"), batch_size=8, epochs=2, verbose=0)
out["cyclegan_moved"] = [all(bool(np.any(np.array(w) != b)) for w, b in zip(n.trainable_weights, bs))
                         for n, bs in zip(nets, before)]
out["cyclegan_losses"] = {k: float(v[-1]) for k, v in h.history.items()}
print(json.dumps(out))
"""


def run_on_jax(jit) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(jit)],
        env=stage_env(KERAS_BACKEND="jax", **JAX_CPU),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gan_steps_train_every_network_on_jax():
    """jit_compile auto, the default: compiled steps. (false, Keras's eager debugging path, runs the
    same train_step op by op; it cost a minute and a half of the suite and is not a default.)"""
    jit = "auto"
    out = run_on_jax(jit)
    # Every weight of G and D moved, BatchNorm statistics included; the EMA generator followed.
    assert out["dcgan_moved"] == {"g": True, "d": True, "ema": True}
    assert out["dcgan_steps"] == [4, 4]  # 2 epochs x 2 batches, each optimizer once per step
    assert out["dcgan_jit"] is (jit == "auto")  # auto compiles the step on JAX: no eager training
    assert set(out["dcgan_losses"]) == {"d_loss", "g_loss", "d_real", "aux_loss"}
    assert all(0.0 < v < 50.0 for v in out["dcgan_losses"].values())
    assert out["cyclegan_moved"] == [True] * 4
    assert set(out["cyclegan_losses"]) == {"g_loss", "d_loss", "cycle_loss", "identity_loss"}
    assert all(0.0 < v < 100.0 for v in out["cyclegan_losses"].values())


def test_jit_compile_takes_auto_true_false_and_nothing_else():
    raw = project_params()
    assert raw["runtime"]["jit_compile"] == "auto"  # the default: Keras's choice, never eager on JAX
    for value in ("auto", True, False):
        raw["runtime"]["jit_compile"] = value
        assert parse(raw).runtime.jit_compile == value
    raw["runtime"]["jit_compile"] = "xla"
    with pytest.raises(UserError, match=r"runtime\.jit_compile"):
        parse(raw)

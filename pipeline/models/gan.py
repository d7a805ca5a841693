"""What both GAN families share: images scaled to -1..1 (tanh outputs) and back to uint8 pixels,
the discriminators' LeakyReLU slope, and the side check of stride-2 stacks."""

from __future__ import annotations

import numpy as np
from keras import ops

LEAK = 0.2  # LeakyReLU slope of the discriminators (DCGAN paper)


def to_model_range(images):
    """uint8-range pixels 0..255 -> -1..1."""
    return ops.cast(images, "float32") / 127.5 - 1.0


def to_pixels(images) -> np.ndarray:
    """-1..1 model outputs -> uint8 pixels, as the prepared data is stored."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- DCGAN


def start_side(image_shape, upsamplings: int, what: str) -> int:
    side = image_shape[0] // 2**upsamplings
    if image_shape[0] != image_shape[1] or side * 2**upsamplings != image_shape[0] or side < 1:
        raise ValueError(
            f"{what}: {upsamplings} stride-2 steps need square images whose side divides by "
            f"{2**upsamplings}, "
            f"got {image_shape[0]}x{image_shape[1]}"
        )
    return side


# ---------------------------------------------------------------- training steps on any backend
# A GAN's step trains several networks, each with its own optimizer. It is written once, with Keras
# variables, and `minimize` computes the gradients: a tf.GradientTape on TensorFlow; on JAX the step
# runs inside a keras.StatelessScope on the values that fit() passes (`stateless_train_step`), and
# `minimize` takes jax.vjp of the losses as functions of the weights' values (the pattern of Keras's
# guide "Customizing what happens in fit() with JAX", for several losses and optimizers).


def minimize(model, loss_fn, *targets):
    """Run `loss_fn() -> (losses, aux)` and minimise losses[i] over targets[i] = (optimizer, weights).

    Returns (losses, aux). On TensorFlow one tape records the forward pass (persistent when there
    are several losses); each gradient is applied before the next is taken, in the given order."""
    import keras

    if keras.backend.backend() == "jax":
        return _minimize_jax(model, loss_fn, targets)
    import tensorflow as tf

    with tf.GradientTape(persistent=len(targets) > 1) as tape:
        losses, aux = loss_fn()
    for loss, (optimizer, weights) in zip(losses, targets, strict=True):
        optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
    del tape
    return losses, aux


def _state_variables(model) -> list:
    # The variables fit() carries through a JAX step, in the order of its state tuple.
    return [
        *model.trainable_variables,
        *model.non_trainable_variables,
        *model.optimizer.variables,
        *model.metrics_variables,
    ]


def _minimize_jax(model, loss_fn, targets):
    import jax
    import keras
    from jax import numpy as jnp

    variables = _state_variables(model)
    weights = [list(w) for _, w in targets]

    def forward(values):
        # Every variable at its current value in the step's scope, the weights as the traced `values`;
        # what the forward pass assigns (BatchNorm statistics, seed generators) comes back as aux.
        mapping = [(v, v.value) for v in variables]
        for ws, xs in zip(weights, values, strict=True):
            mapping += zip(ws, xs, strict=True)
        with keras.StatelessScope(state_mapping=mapping) as scope:
            losses, aux = loss_fn()
        return tuple(losses), (aux, [scope.get_current_value(v) for v in variables])

    current = [[w.value for w in ws] for ws in weights]
    losses, pullback, (aux, updated) = jax.vjp(forward, current, has_aux=True)
    for variable, value in zip(variables, updated, strict=True):
        variable.assign(value)
    for i, (optimizer, ws) in enumerate(targets):
        cotangent = tuple(jnp.ones_like(x) if j == i else jnp.zeros_like(x) for j, x in enumerate(losses))
        optimizer.apply(pullback(cotangent)[0][i], list(ws))
    return losses, aux


def stateless_train_step(model, step, state, data):
    """JAX's train_step(state, data): run `step(data)` (written with variables and `minimize`) on the
    values of `state`, and return (logs, the new state)."""
    import keras

    groups = [
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    ]
    mapping = []
    for vs, values in zip(groups, state, strict=True):
        mapping += zip(vs, values, strict=True)
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = step(data)
    return logs, tuple([scope.get_current_value(v) for v in vs] for vs in groups)


class OptimizerPair:
    """On JAX, fit() carries `model.optimizer.variables` through each step: this stands for a GAN's
    optimizers there, each built on the weights it trains."""

    built = True

    def __init__(self, *targets):
        self.optimizers = [optimizer for optimizer, _ in targets]
        for optimizer, weights in targets:
            optimizer.build(weights)

    @property
    def variables(self) -> list:
        return [v for optimizer in self.optimizers for v in optimizer.variables]

    def build(self, variables) -> None:
        pass

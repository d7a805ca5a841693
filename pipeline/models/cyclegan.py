"""A CycleGAN: two ResNet-style translators, two PatchGAN discriminators, and the model whose
`train_step` trains all four (adversarial, cycle-consistency and identity losses), so that `fit()`
drives it, on TensorFlow or JAX (gradients: pipeline.models.gan.minimize). Functional models with
explicit layer names."""

from __future__ import annotations

import keras
from keras import layers, ops

from pipeline.models.gan import (
    LEAK,
    OptimizerPair,
    minimize,
    start_side,
    stateless_train_step,
    to_model_range,
)


def _instance_norm(name: str):
    # GroupNormalization with one group per channel is instance normalisation (CycleGAN's choice:
    # each image's own statistics, independent of the batch).
    return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def cyclegan_generator(
    image_shape, filters: int = 16, downsamplings: int = 2, residual_blocks: int = 3, name: str = "generator"
) -> keras.Model:
    """ResNet-style translator: encoder (stride-2 convolutions) -> residual blocks at the bottleneck ->
    transposed-convolution decoder -> image of the same shape, -1..1."""
    start_side(image_shape, downsamplings, "downsamplings")
    inputs = keras.Input(shape=tuple(image_shape), name="image")
    x = layers.Conv2D(filters, 7, padding="same", name="stem")(inputs)
    x = layers.ReLU(name="stem_relu")(_instance_norm("stem_norm")(x))
    f = filters
    for i in range(1, downsamplings + 1):
        f *= 2
        x = layers.Conv2D(f, 3, strides=2, padding="same", name=f"down{i}")(x)
        x = layers.ReLU(name=f"down{i}_relu")(_instance_norm(f"down{i}_norm")(x))
    for i in range(1, residual_blocks + 1):
        y = layers.Conv2D(f, 3, padding="same", name=f"res{i}_conv1")(x)
        y = layers.ReLU(name=f"res{i}_relu")(_instance_norm(f"res{i}_norm1")(y))
        y = layers.Conv2D(f, 3, padding="same", name=f"res{i}_conv2")(y)
        y = _instance_norm(f"res{i}_norm2")(y)
        x = layers.Add(name=f"res{i}_add")([x, y])
    for i in range(1, downsamplings + 1):
        f //= 2
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", name=f"up{i}")(x)
        x = layers.ReLU(name=f"up{i}_relu")(_instance_norm(f"up{i}_norm")(x))
    out = layers.Conv2D(image_shape[-1], 7, padding="same", activation="tanh", name="image_out")(x)
    return keras.Model(inputs, out, name=name)


def patchgan_discriminator(
    image_shape, filters: int = 16, layers_: int = 3, name: str = "discriminator"
) -> keras.Model:
    """PatchGAN: a map of real/fake logits, each judging one overlapping patch of the image.

    `layers_` stride-2 convolutions (filters doubling), then a stride-1 one and a 1-channel output.
    """
    start_side(image_shape, layers_, "discriminator_layers")
    inputs = keras.Input(shape=tuple(image_shape), name="image")
    x = inputs
    f = filters
    for i in range(1, layers_ + 1):
        x = layers.Conv2D(f, 4, strides=2, padding="same", name=f"conv{i}")(x)
        if i > 1:  # the first layer is not normalised (pix2pix/CycleGAN)
            x = _instance_norm(f"conv{i}_norm")(x)
        x = layers.LeakyReLU(LEAK, name=f"conv{i}_leaky")(x)
        f *= 2
    x = layers.Conv2D(f, 4, padding="same", name="conv_last")(x)
    x = layers.LeakyReLU(LEAK, name="conv_last_leaky")(_instance_norm("conv_last_norm")(x))
    out = layers.Conv2D(1, 4, padding="same", name="patch_logits")(x)
    return keras.Model(inputs, out, name=name)


class CycleGAN(keras.Model):
    """Two translators (a->b, b->a) and two PatchGAN discriminators, trained by `fit()` on unpaired
    (images of a, images of b) batches.

    Least-squares adversarial loss (as in the CycleGAN paper), plus `cycle_weight` x the L1 cycle
    loss |a - g_ba(g_ab(a))| + |b - g_ab(g_ba(b))| and `identity_weight` x the L1 identity loss
    |b - g_ab(b)| + |a - g_ba(a)|.
    """

    def __init__(
        self,
        g_ab: keras.Model,
        g_ba: keras.Model,
        d_a: keras.Model,
        d_b: keras.Model,
        cycle_weight: float = 10.0,
        identity_weight: float = 5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.cycle_weight, self.identity_weight = cycle_weight, identity_weight
        names = ("g_loss", "d_loss", "cycle_loss", "identity_loss")
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}

    def compile(self, g_optimizer, d_optimizer, **kwargs) -> None:
        super().compile(**kwargs)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        if keras.backend.backend() == "jax":
            self.optimizer = OptimizerPair(
                (g_optimizer, self.g_ab.trainable_weights + self.g_ba.trainable_weights),
                (d_optimizer, self.d_a.trainable_weights + self.d_b.trainable_weights),
            )
            self.built = True  # its networks are built; JAX's fit() would otherwise trace a call() it lacks

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, *args):
        # TensorFlow calls train_step(data); JAX calls train_step(state, data) and wants the new state back.
        if keras.backend.backend() == "jax":
            return stateless_train_step(self, self._step, *args)
        return self._step(*args)

    def _step(self, data):
        a, b = data
        a, b = to_model_range(a), to_model_range(b)

        def mse(target: float, logits):
            return ops.mean(ops.square(logits - target))

        def l1(x, y):
            return ops.mean(ops.abs(x - y))

        def losses():
            fake_b = self.g_ab(a, training=True)
            fake_a = self.g_ba(b, training=True)
            cycle = l1(a, self.g_ba(fake_b, training=True)) + l1(b, self.g_ab(fake_a, training=True))
            identity = l1(b, self.g_ab(b, training=True)) + l1(a, self.g_ba(a, training=True))
            d_b_fake = self.d_b(fake_b, training=True)
            d_a_fake = self.d_a(fake_a, training=True)
            adversarial = mse(1.0, d_b_fake) + mse(1.0, d_a_fake)
            g_loss = adversarial + self.cycle_weight * cycle + self.identity_weight * identity
            # The discriminators see the same fakes; their gradients reach only their own weights.
            d_loss = 0.5 * (
                mse(1.0, self.d_a(a, training=True))
                + mse(0.0, d_a_fake)
                + mse(1.0, self.d_b(b, training=True))
                + mse(0.0, d_b_fake)
            )
            return (g_loss, d_loss), (cycle, identity)

        (g_loss, d_loss), (cycle, identity) = minimize(
            self,
            losses,
            (self.g_optimizer, self.g_ab.trainable_weights + self.g_ba.trainable_weights),
            (self.d_optimizer, self.d_a.trainable_weights + self.d_b.trainable_weights),
        )
        for name, value in (
            ("g_loss", g_loss),
            ("d_loss", d_loss),
            ("cycle_loss", cycle),
            ("identity_loss", identity),
        ):
            self.trackers[name].update_state(value)
        return {n: t.result() for n, t in self.trackers.items()}

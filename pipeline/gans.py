"""Generative models: a (conditional) DCGAN and a CycleGAN.

The builders are backend-neutral functional models with explicit layer names, working on images
scaled to -1..1 (tanh outputs); `to_model_range` and `to_pixels` convert from and to the uint8
pixels on disk. `DCGAN` and `CycleGAN` hold their networks and override `train_step`, so `fit()`
drives adversarial training; the step uses `tf.GradientTape`, so training is TensorFlow-only
(pipeline.stages.gan_train refuses runtime.backend jax with one message).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

LEAK = 0.2  # LeakyReLU slope of the discriminators (DCGAN paper)
# The generator's BatchNorm statistics average over ~5 steps, not Keras's ~100: in a few hundred
# steps the weights change so fast that inference-mode samples drawn with the default lagging
# statistics were checkerboards while training-mode ones were not.
BN_MOMENTUM = 0.8


def to_model_range(images):
    """uint8-range pixels 0..255 -> -1..1."""
    return ops.cast(images, "float32") / 127.5 - 1.0


def to_pixels(images) -> np.ndarray:
    """-1..1 model outputs -> uint8 pixels, as the prepared data is stored."""
    return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- DCGAN


def _start_side(image_shape, upsamplings: int, what: str) -> int:
    side = image_shape[0] // 2**upsamplings
    if image_shape[0] != image_shape[1] or side * 2**upsamplings != image_shape[0] or side < 1:
        raise ValueError(
            f"{what}: {upsamplings} stride-2 steps need square images whose side divides by "
            f"{2**upsamplings}, "
            f"got {image_shape[0]}x{image_shape[1]}"
        )
    return side


def dcgan_generator(
    image_shape,
    num_classes: int,
    latent_dim: int = 64,
    filters=(128, 64),
    conditional: bool = True,
    upsampling: str = "transpose",
) -> keras.Model:
    """Latent vector (the bottleneck) [+ class label] -> Dense -> reshape -> Conv2DTranspose blocks -> image.

    Dense projects to a (side, side, filters[0]) map with side = image side / 2**len(filters); each
    entry of `filters` is then one stride-2 transposed convolution doubling the side; a stride-1
    convolution gives the image's channels (a last stride-2 transposed convolution straight to the
    pixels left a grid of dots: its overlapping kernels paint every other pixel twice).
    `upsampling="upsample"` doubles the side by nearest-neighbour resizing followed by a 3x3
    convolution instead (Odena et al. 2016, "Deconvolution and checkerboard artifacts").
    """
    side = _start_side(image_shape, len(filters), "generator_filters")
    z = keras.Input(shape=(latent_dim,), name="latent")
    inputs, x = [z], z
    if conditional:
        label = keras.Input(shape=(1,), dtype="int32", name="label")
        embedded = layers.Flatten(name="label_flat")(
            layers.Embedding(num_classes, latent_dim, name="label_embedding")(label)
        )
        inputs.append(label)
        x = layers.Concatenate(name="latent_and_label")([z, embedded])
    x = layers.Dense(side * side * filters[0], use_bias=False, name="project")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((side, side, filters[0]), name="bottleneck")(x)
    for i, f in enumerate(filters, start=1):
        if upsampling == "upsample":
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}_upsample")(x)
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"up{i}")(x)
        else:
            x = layers.Conv2DTranspose(f, 4, strides=2, padding="same", use_bias=False, name=f"up{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"up{i}_bn")(x)
        x = layers.ReLU(name=f"up{i}_relu")(x)
    out = layers.Conv2D(image_shape[-1], 3, padding="same", activation="tanh", name="image_out")(x)
    return keras.Model(inputs if conditional else z, out, name="generator")


def dcgan_discriminator(
    image_shape,
    num_classes: int,
    filters=(64, 128),
    conditional: bool = True,
    dropout: float = 0.3,
    aux_classifier: bool = False,
) -> keras.Model:
    """Image [+ class label as an extra channel] -> stride-2 convolutions -> one real/fake logit.

    With `aux_classifier` (AC-GAN, Odena et al. 2017) a second output, `class_logits`, guesses the
    image's class from the same features: the model then returns [logit, class_logits].
    """
    image = keras.Input(shape=tuple(image_shape), name="image")
    inputs, x = [image], image
    if conditional:
        label = keras.Input(shape=(1,), dtype="int32", name="label")
        h, w = image_shape[0], image_shape[1]
        plane = layers.Embedding(num_classes, h * w, name="label_embedding")(label)
        plane = layers.Reshape((h, w, 1), name="label_plane")(plane)
        inputs.append(label)
        x = layers.Concatenate(name="image_and_label")([image, plane])
    for i, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, 4, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(LEAK, name=f"conv{i}_leaky")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"conv{i}_dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(1, name="logit")(x)
    if conditional:
        # Projection discriminator (Miyato & Koyama 2018): the logit also gets <embed(label), features>,
        # so judging real/fake directly involves the label; a label plane at the input alone left
        # samples classified at chance after a few hundred steps.
        embedded = layers.Flatten(name="label_projection_flat")(
            layers.Embedding(num_classes, x.shape[-1], name="label_projection")(label)
        )
        projection = layers.Dot(axes=1, name="label_dot_features")([embedded, x])
        out = layers.Add(name="logit_with_label")([out, projection])
    if aux_classifier:
        out = [out, layers.Dense(num_classes, name="class_logits")(x)]
    return keras.Model(inputs if conditional else image, out, name="discriminator")


class DCGAN(keras.Model):
    """Generator and discriminator trained in turn by `fit()` on (images, labels) batches.

    Non-saturating loss; one-sided label smoothing (real targets 1 - label_smoothing); instance
    noise of std `instance_noise` (in -1..1 units) added to real and fake images alike, decaying
    linearly to 0 over `total_steps`, so the discriminator cannot win early by telling the
    supports apart.

    `aux_weight` > 0 needs a discriminator with an auxiliary class head (AC-GAN): the discriminator
    also learns the class of real images, and the generator is also trained so that this head
    assigns its samples their conditioning label (cross-entropy, times `aux_weight`, in both losses).

    `ema_generator` (a network of the generator's architecture), if given, follows an exponential
    moving average of the generator's weights (decay `ema_decay`, warmed up as (1 + t) / (10 + t)
    so that it tracks the early steps closely); sampling for FID, grids and evaluation uses it.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int,
        conditional: bool,
        label_smoothing: float = 0.0,
        instance_noise: float = 0.0,
        total_steps: int = 1,
        seed: int = 0,
        aux_weight: float = 0.0,
        ema_generator: keras.Model | None = None,
        ema_decay: float = 0.999,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.aux_weight, self.ema_generator, self.ema_decay = aux_weight, ema_generator, ema_decay
        self.cce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if ema_generator is not None:
            ema_generator.set_weights(generator.get_weights())
        self.latent_dim, self.conditional = latent_dim, conditional
        self.label_smoothing, self.instance_noise = label_smoothing, instance_noise
        self.total_steps = max(1, total_steps)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_real_tracker = keras.metrics.Mean(name="d_real")  # mean D(real): share judged real
        self.aux_tracker = keras.metrics.Mean(name="aux_loss")  # the class head's loss on real images

    def compile(self, g_optimizer, d_optimizer, **kwargs) -> None:
        super().compile(**kwargs)
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer

    @property
    def metrics(self):
        trackers = [self.d_loss_tracker, self.g_loss_tracker, self.d_real_tracker]
        return [*trackers, self.aux_tracker] if self.aux_weight else trackers

    @property
    def sampler(self) -> keras.Model:
        """The network that draws the samples that are measured and shown: the EMA generator if any."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def _split(self, outputs):
        # (real/fake logits, class logits or None), whether or not the discriminator has a class head
        return (outputs[0], outputs[1]) if self.aux_weight else (outputs, None)

    def _noisy(self, images, std):
        return images + std * keras.random.normal(ops.shape(images), seed=self.seed_generator)

    def train_step(self, data):
        import tensorflow as tf  # custom training steps are backend-specific; see the module docstring

        images, labels = data
        real = to_model_range(images)
        n = ops.shape(real)[0]
        labels = ops.reshape(ops.cast(labels, "int32"), (-1, 1))
        progress = ops.cast(self.d_optimizer.iterations, "float32") / self.total_steps
        std = self.instance_noise * ops.maximum(0.0, 1.0 - progress)

        def g_in(z):
            return [z, labels] if self.conditional else z

        def d_in(x):
            return [self._noisy(x, std), labels] if self.conditional else self._noisy(x, std)

        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake = self.generator(g_in(z), training=True)
            real_logits, real_classes = self._split(self.discriminator(d_in(real), training=True))
            fake_logits, _ = self._split(self.discriminator(d_in(fake), training=True))
            d_loss = self.bce(ops.ones_like(real_logits) * (1.0 - self.label_smoothing), real_logits)
            d_loss += self.bce(ops.zeros_like(fake_logits), fake_logits)
            if self.aux_weight:
                # Only real images teach the class head: fakes of the wrong class must not pass as right.
                aux_loss = self.cce(labels, real_classes)
                d_loss += self.aux_weight * aux_loss
        weights = self.discriminator.trainable_weights
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, weights), weights, strict=True))

        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        with tf.GradientTape() as tape:
            fake = self.generator(g_in(z), training=True)
            fake_logits, fake_classes = self._split(self.discriminator(d_in(fake), training=True))
            g_loss = self.bce(ops.ones_like(fake_logits), fake_logits)
            if self.aux_weight:
                g_loss += self.aux_weight * self.cce(labels, fake_classes)
        weights = self.generator.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, weights), weights, strict=True))
        if self.ema_generator is not None:
            t = ops.cast(self.g_optimizer.iterations, "float32")
            decay = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
            # All weights, BatchNorm statistics included, so the averaged net normalises consistently.
            for average, current in zip(self.ema_generator.weights, self.generator.weights, strict=True):
                average.assign(decay * average + (1.0 - decay) * ops.cast(current, average.dtype))

        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.d_real_tracker.update_state(ops.mean(ops.sigmoid(real_logits)))
        if self.aux_weight:
            self.aux_tracker.update_state(aux_loss)
        return {m.name: m.result() for m in self.metrics}


# ---------------------------------------------------------------- CycleGAN


def _instance_norm(name: str):
    # GroupNormalization with one group per channel is instance normalisation (CycleGAN's choice:
    # each image's own statistics, independent of the batch).
    return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name)


def cyclegan_generator(
    image_shape, filters: int = 16, downsamplings: int = 2, residual_blocks: int = 3, name: str = "generator"
) -> keras.Model:
    """ResNet-style translator: encoder (stride-2 convolutions) -> residual blocks at the bottleneck ->
    transposed-convolution decoder -> image of the same shape, -1..1."""
    _start_side(image_shape, downsamplings, "downsamplings")
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
    _start_side(image_shape, layers_, "discriminator_layers")
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

    @property
    def metrics(self):
        return list(self.trackers.values())

    def train_step(self, data):
        import tensorflow as tf  # custom training steps are backend-specific; see the module docstring

        a, b = data
        a, b = to_model_range(a), to_model_range(b)

        def mse(target: float, logits):
            return ops.mean(ops.square(logits - target))

        def l1(x, y):
            return ops.mean(ops.abs(x - y))

        with tf.GradientTape(persistent=True) as tape:
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
        g_weights = self.g_ab.trainable_weights + self.g_ba.trainable_weights
        d_weights = self.d_a.trainable_weights + self.d_b.trainable_weights
        self.g_optimizer.apply_gradients(zip(tape.gradient(g_loss, g_weights), g_weights, strict=True))
        self.d_optimizer.apply_gradients(zip(tape.gradient(d_loss, d_weights), d_weights, strict=True))
        del tape
        for name, value in (
            ("g_loss", g_loss),
            ("d_loss", d_loss),
            ("cycle_loss", cycle),
            ("identity_loss", identity),
        ):
            self.trackers[name].update_state(value)
        return {n: t.result() for n, t in self.trackers.items()}

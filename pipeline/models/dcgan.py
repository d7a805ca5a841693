"""A (conditional) DCGAN: generator, discriminator, and the model whose `train_step` plays them
against each other, so that `fit()` drives adversarial training on TensorFlow or JAX (gradients:
pipeline.models.gan.minimize). Functional models with explicit layer names, on images in -1..1."""

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

# The generator's BatchNorm statistics average over ~5 steps, not Keras's ~100: in a few hundred
# steps the weights change so fast that inference-mode samples drawn with the default lagging
# statistics were checkerboards while training-mode ones were not.
BN_MOMENTUM = 0.8


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
    side = start_side(image_shape, len(filters), "generator_filters")
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
        if keras.backend.backend() == "jax":
            self.optimizer = OptimizerPair(
                (g_optimizer, self.generator.trainable_weights),
                (d_optimizer, self.discriminator.trainable_weights),
            )
            self.built = True  # its networks are built; JAX's fit() would otherwise trace a call() it lacks

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

    def train_step(self, *args):
        # TensorFlow calls train_step(data); JAX calls train_step(state, data) and wants the new state back.
        if keras.backend.backend() == "jax":
            return stateless_train_step(self, self._step, *args)
        return self._step(*args)

    def _step(self, data):
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

        def d_losses(z):
            fake = self.generator(g_in(z), training=True)
            real_logits, real_classes = self._split(self.discriminator(d_in(real), training=True))
            fake_logits, _ = self._split(self.discriminator(d_in(fake), training=True))
            d_loss = self.bce(ops.ones_like(real_logits) * (1.0 - self.label_smoothing), real_logits)
            d_loss += self.bce(ops.zeros_like(fake_logits), fake_logits)
            aux_loss = None
            if self.aux_weight:
                # Only real images teach the class head: fakes of the wrong class must not pass as right.
                aux_loss = self.cce(labels, real_classes)
                d_loss += self.aux_weight * aux_loss
            return (d_loss,), (real_logits, aux_loss)

        def g_losses(z):
            fake = self.generator(g_in(z), training=True)
            fake_logits, fake_classes = self._split(self.discriminator(d_in(fake), training=True))
            g_loss = self.bce(ops.ones_like(fake_logits), fake_logits)
            if self.aux_weight:
                g_loss += self.aux_weight * self.cce(labels, fake_classes)
            return (g_loss,), None

        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        (d_loss,), (real_logits, aux_loss) = minimize(
            self, lambda: d_losses(z), (self.d_optimizer, self.discriminator.trainable_weights)
        )
        z = keras.random.normal((n, self.latent_dim), seed=self.seed_generator)
        (g_loss,), _ = minimize(
            self, lambda: g_losses(z), (self.g_optimizer, self.generator.trainable_weights)
        )
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

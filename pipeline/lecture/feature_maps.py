"""Feature maps: what each convolution block of a trained 2D network makes of a few test images."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)


def block_outputs(model: keras.Model) -> list[str]:
    """Names of the layer that ends each convolution block: the activation after each convolution
    (after its batch norm, if any), or the convolution itself where no activation follows."""
    names: list[str] = []
    current = None
    for layer in model.layers:
        if isinstance(layer, CONV_TYPES):
            if current is not None:
                names.append(current)
            current = layer.name
        elif current is not None and isinstance(layer, keras.layers.Activation | keras.layers.ReLU):
            names.append(layer.name)
            current = None
    if current is not None:
        names.append(current)
    return names


def activations(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Each block's output for `images`, {layer name: (n, h, w, channels)}."""
    names = block_outputs(model)
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outputs = probe.predict(np.asarray(images), verbose=0)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return {n: np.asarray(o) for n, o in zip(names, outputs, strict=True)}


def pick_examples(labels: np.ndarray, count: int) -> list[int]:
    """Indices of the first test image of each class in turn, so that the examples differ."""
    labels = np.asarray(labels)
    firsts = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picked: list[int] = []
    for k in range(max((len(f) for f in firsts), default=0)):
        picked += [int(f[k]) for f in firsts if k < len(f)]
        if len(picked) >= count:
            break
    return picked[:count]


def to_uint8(maps: np.ndarray) -> np.ndarray:
    """(h, w, c) activations -> c images in 0..255, each stretched over its own range (blank: black)."""
    maps = np.moveaxis(np.asarray(maps, dtype=np.float64), -1, 0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    scaled = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
    return (scaled * 255 + 0.5).astype(np.uint8)


def feature_map_figures(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    out_dir: Path,
    count: int = 3,
    channels: int = 8,
) -> list[Path]:
    """One PNG per example image: the image, then the first `channels` feature maps of each block."""
    from pipeline import plots

    picked = pick_examples(labels, count)
    x = np.asarray(images)[picked]
    if x.ndim != 4:
        raise ValueError(f"feature maps are drawn for 2D images; got rows of shape {x.shape[1:]}")
    acts = activations(model, x)
    predicted = model.predict(x, verbose=0)
    paths = []
    for k, index in enumerate(picked):
        rows = [[x[k]]]
        titles = [f"test image {index}: {classes[int(labels[index])]}"]
        for name, maps in acts.items():
            shown = min(channels, maps.shape[-1])
            rows.append(list(to_uint8(maps[k])[:shown]))
            titles.append(f"{name}: {maps.shape[1]}x{maps.shape[2]}, maps 1-{shown} of {maps.shape[-1]}")
        guess = _predicted_class(predicted[k], classes)
        path = Path(out_dir) / f"feature_maps_{k}.png"
        plots.image_grid(rows, path, titles, title=f"{model.name}: feature maps (predicted: {guess})")
        paths.append(path)
    return paths


def _predicted_class(output: np.ndarray, classes: list[str]) -> str:
    output = np.asarray(output)
    if output.shape[-1] == 1:  # one sigmoid unit
        return classes[int(output[0] > 0.5)]
    return classes[int(output.argmax())]

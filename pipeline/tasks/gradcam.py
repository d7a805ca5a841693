"""What a 2D classifier looks at: Grad-CAM maps, filter_net's arg-max, and how often they point at the figure.

Grad-CAM (Selvaraju et al. 2017) weighs each channel of the last convolutional block's activations
by the mean gradient of the class score (the logit, before softmax or sigmoid) over its pixels; the
ReLU of the weighted sum, upsampled to the image, is the map. `filter_net` has one filter and a
global max pooling: its map is the filter's response itself, and its peak (the arg-max the pooling
picks) is "where the angle was found". A network without convolutions (`mlp`) gets the absolute
input gradient (a saliency map) instead.

Gradients: the model is cut at the feature tensor into a body (image -> features) and a head
(features -> the last layer's input), both Keras models, and the head's gradient is taken with the
backend's own tool: tf.GradientTape on TensorFlow, jax.grad on JAX (the head is a pure function of
the features there), torch.autograd on PyTorch.

Pointing: the heatmap's peak is a hit when it lies on the figure or within `POINTING_TOLERANCE`
pixels of it (Euclidean), counted over correctly classified test images that hold a figure. The
figure is its strokes and what they enclose; the holes are found on the strokes thickened by one
pixel: `shapes` nicks a ring's '/' arc (one pixel, so that no ring draws an angle's '/' run), and the
nick must not open the ring.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops
from scipy import ndimage

POINTING_TOLERANCE = 2.0  # pixels: a peak this close to a figure pixel points at the figure
SHOWN = 8  # images per row of gradcam.png: a row of mistakes, a row of correct answers
CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.DepthwiseConv2D)
BLOCK_TYPES = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU)
BRIDGE = np.ones((3, 3), bool)  # thickening by one pixel closes gaps of up to 2 pixels in a stroke


def feature_layer(model: keras.Model) -> tuple[int, str] | None:
    """(index in model.layers, name) of the last convolutional block's last layer before pooling: the
    last convolution (or nested backbone model) and the normalisation and activation right after it;
    None for a network without convolutions."""
    found = None
    for i, layer in enumerate(model.layers):
        follows = found is not None and found == i - 1 and isinstance(layer, BLOCK_TYPES)
        if follows or isinstance(layer, (*CONV_TYPES, keras.Model)):
            found = i
    return None if found is None else (found, model.layers[found].name)


def map_cell_px(model: keras.Model) -> float | None:
    """Image pixels per cell of the Grad-CAM map (the last convolutional block's grid), None where the
    map is not Grad-CAM's. A peak lies on a cell centre, so a map much coarser than
    `POINTING_TOLERANCE` points at the cell next to a stroke as readily as at the stroke's own."""
    body, _, method = _split(model)
    if method != "gradcam":
        return None
    return float(model.input.shape[1] / body.output.shape[1])


def _split(model: keras.Model) -> tuple[keras.Model | None, keras.Model, str]:
    """(body: image -> features, None where the features are the image; head: features -> the last
    layer's input; the method)."""
    head_out = model.layers[-1].input
    found = feature_layer(model)
    if found is None:
        return None, keras.Model(model.input, head_out), "saliency"
    index, _ = found
    # The consumer's input is the feature tensor of the outer graph, also for a nested backbone.
    features = model.layers[index + 1].input
    method = "filter_response" if model.name == "filter_net" else "gradcam"
    return keras.Model(model.input, features), keras.Model(features, head_out), method


def _logits(model: keras.Model, h, classes: np.ndarray):
    """The class scores before the output activation, of `classes` (one per row)."""
    last = model.layers[-1]
    z = ops.matmul(h, last.kernel) + last.bias
    if z.shape[-1] == 1:  # one sigmoid unit: class 1 scores z, class 0 scores -z
        z = ops.concatenate([-z, z], axis=-1)
    onehot = ops.one_hot(ops.convert_to_tensor(classes.astype("int32")), z.shape[-1])
    return ops.sum(z * ops.cast(onehot, z.dtype))


def gradients(head: keras.Model, model: keras.Model, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """d(score of `classes`)/d(features) for a batch, on the active backend."""
    backend = keras.backend.backend()
    features = np.asarray(features, "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        f = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(f)
            score = _logits(model, head(f, training=False), classes)
        return tape.gradient(score, f).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda f: _logits(model, head(f, training=False), classes))(features))
    if backend == "torch":
        import torch

        f = torch.tensor(features, requires_grad=True)
        _logits(model, head(f, training=False), classes).backward()
        return f.grad.detach().cpu().numpy()
    raise ValueError(f"gradients on backend {backend!r}: valid: tensorflow, jax, torch")


def heatmaps(
    model: keras.Model, x: np.ndarray, classes: np.ndarray, batch: int = 128
) -> tuple[np.ndarray, str]:
    """Maps (n, H, W) at image resolution, one per image, for the given classes; and the method used."""
    body, head, method = _split(model)
    size = tuple(np.asarray(x[:1]).shape[1:3])
    out = []
    for start in range(0, len(x), batch):
        images = np.asarray(x[start : start + batch], "float32")
        c = np.asarray(classes[start : start + batch])
        if body is None:
            out.append(np.abs(gradients(head, model, images, c)).sum(axis=-1))
            continue
        features = np.asarray(body(images, training=False))
        if method == "filter_response":
            out.append(_place(features[..., 0], size))
            continue
        weights = gradients(head, model, features, c).mean(axis=(1, 2), keepdims=True)
        cam = np.maximum((weights * features).sum(axis=-1), 0.0)
        out.append(_upsample(cam, size))
    return np.concatenate(out).astype("float32"), method


def _place(response: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 'valid' convolution's response on the image grid: each value at its window's centre; the
    border no window is centred on gets the map's minimum."""
    _, h, w = response.shape
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    out = np.repeat(response.min(axis=(1, 2), keepdims=True), size[0], 1).repeat(size[1], 2)
    out[:, top : top + h, left : left + w] = response
    return out


def _upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, cell centres on the centres of the image regions they summarise."""
    zoom = (1, size[0] / cam.shape[1], size[1] / cam.shape[2])
    return ndimage.zoom(cam, zoom, order=1, mode="nearest", grid_mode=True)


def peaks(maps: np.ndarray) -> np.ndarray:
    """(row, column) of each map's maximum, (n, 2)."""
    flat = maps.reshape(len(maps), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, maps.shape[1:]), axis=1)


def figure_area(mask: np.ndarray) -> np.ndarray:
    """The figure's strokes and what they enclose, also where a one-pixel nick (pipeline.data.shapes
    breaks '/' runs so) leaves a ring open: its holes are those of the strokes thickened by one pixel.
    Only the holes are added, not the thickening: the tolerance stays measured from the strokes."""
    mask = np.asarray(mask) > 0
    thick = ndimage.binary_dilation(mask, BRIDGE)
    return ndimage.binary_fill_holes(mask) | (ndimage.binary_fill_holes(thick) & ~thick)


def pointing_hits(maps: np.ndarray, figures: np.ndarray, tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """Per image: 1.0 if the map's peak lies on the figure or within `tolerance` pixels, 0.0 if not,
    NaN if the image holds no figure. The figure is its strokes and what they enclose: a peak in a
    ring's middle points at the ring (measured on the cnn: rings 0.19 on the strokes alone, 0.67 with
    the holes of unbroken rings only, 1.00 with nicked rings closed too; the cnn 0.783 -> 0.867)."""
    hits = np.full(len(maps), np.nan)
    for i, ((r, c), mask) in enumerate(zip(peaks(maps), figures, strict=True)):
        mask = figure_area(mask)
        if mask.any():
            hits[i] = float(ndimage.distance_transform_edt(~mask)[r, c] <= tolerance)
    return hits


def load_figures(data: Path, split: str) -> np.ndarray | None:
    """The split's figure masks (n, H, W) that prepare writes for sources that know them, else None."""
    path = Path(data) / f"{split}_figure.npy"
    return np.load(path, mmap_mode="r") if path.is_file() else None


def explain(
    name: str,
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    classes: list[str],
    figures: np.ndarray | None,
    out: Path,
) -> dict:
    """gradcam.png (mistakes, then correct answers, each with its map and peak) in `out`; returns the
    details: `method` (and layer) and, where figures are known, the pointing accuracy over correctly
    classified images with a figure (`pointing_images` of them), and over the wrong ones."""
    from pipeline import plots

    maps, method = heatmaps(model, x, pred)
    found = feature_layer(model)
    correct = pred == y
    details: dict = {"method": method if found is None else f"{method} on {found[1]}"}
    if method == "gradcam":
        details["map_cell_px"] = map_cell_px(model)
    if figures is not None:
        hits = pointing_hits(maps, figures)
        counted = correct & ~np.isnan(hits)
        if counted.any():
            details["pointing_accuracy"] = float(hits[counted].mean())
        details.update(pointing_images=int(counted.sum()), pointing_tolerance_px=POINTING_TOLERANCE)
        if (~correct & ~np.isnan(hits)).any():
            details["pointing_accuracy_wrong"] = float(np.nanmean(hits[~correct]))
    wrong, right = np.flatnonzero(~correct)[:SHOWN], np.flatnonzero(correct)[:SHOWN]
    rows = [r for r in (wrong, right) if len(r)]
    captions = [[f"{classes[int(y[i])]} -> {classes[int(pred[i])]}" for i in r] for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    labels = {
        "gradcam": "Grad-CAM of the predicted class",
        "filter_response": "filter response, peak = arg-max",
    }
    plots.heatmap_grid(
        [np.asarray(x[r]) for r in rows],
        [maps[r] for r in rows],
        [peaks(maps[r]) for r in rows],
        [np.asarray(figures[r]) for r in rows] if figures is not None else None,
        out / "gradcam.png",
        f"{name}: {labels.get(method, 'input-gradient saliency (no convolution)')}; rows: wrong, right",
        captions,
    )
    return details

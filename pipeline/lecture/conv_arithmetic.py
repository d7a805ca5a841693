"""Convolution arithmetic: output sizes and receptive fields of convolution and pooling layers.

Along one axis, a window of `kernel` taps spaced `dilation` apart covers d(k-1)+1 inputs. With
`padding` zeros on each side and a step of `stride`, it fits floor((n + 2p - d(k-1) - 1) / s) + 1
times. Keras' padding="same" instead pads just enough for ceil(n / s) outputs; "valid" is p = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras


def output_size(size: int, kernel: int, stride: int = 1, padding: int | str = 0, dilation: int = 1) -> int:
    """Output length along one axis; `padding` is zeros on each side, or Keras' "valid" / "same"."""
    if min(size, kernel, stride, dilation) < 1:
        raise ValueError(
            f"size, kernel, stride and dilation must be >= 1 (got {size}, {kernel}, {stride}, {dilation})"
        )
    if padding == "same":
        return math.ceil(size / stride)
    if padding == "valid":
        padding = 0
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be 'valid', 'same' or a number of pixels >= 0, got {padding!r}")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"a window spanning {span} does not fit into {size} + 2 x {padding} padding")
    return (size + 2 * padding - span) // stride + 1


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of one layer's output along each spatial axis, in input pixels.

    `size` is how many input pixels one output unit sees (None: all of them, after a global pooling
    or a flatten); `jump` is how far apart, in input pixels, neighbouring output units sit.
    """

    size: tuple[float, ...] | None
    jump: tuple[float, ...]


@dataclass(frozen=True)
class LayerShape:
    name: str
    kind: str
    output_shape: tuple
    params: int
    field: ReceptiveField


def _tuple(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (value,) * n


def _next_field(layer, parents: list[ReceptiveField]) -> ReceptiveField:
    """The receptive field after `layer`, from those of its inputs."""
    sized = [f for f in parents if f.size is not None]
    if len(sized) < len(parents) or not parents:
        return ReceptiveField(None, parents[0].jump if parents else ())
    # Merging layers (concatenate, add) see as far as their widest input.
    size = tuple(max(s) for s in zip(*(f.size for f in sized), strict=True))
    jump = tuple(max(j) for j in zip(*(f.jump for f in sized), strict=True))
    n = len(size)
    if isinstance(layer, keras.layers.Flatten) or type(layer).__name__.startswith("Global"):
        return ReceptiveField(None, jump)
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):  # Conv*D, also transposed
        kernel, strides = _tuple(layer.kernel_size, n), _tuple(layer.strides, n)
        dilation = _tuple(getattr(layer, "dilation_rate", 1), n)
        if "Transpose" in type(layer).__name__:
            jump = tuple(j / s for j, s in zip(jump, strides, strict=True))
            strides = (1,) * n
        size = tuple(r + d * (k - 1) * j for r, k, d, j in zip(size, kernel, dilation, jump, strict=True))
        return ReceptiveField(size, tuple(j * s for j, s in zip(jump, strides, strict=True)))
    if hasattr(layer, "pool_size"):
        pool, strides = _tuple(layer.pool_size, n), _tuple(layer.strides or layer.pool_size, n)
        size = tuple(r + (k - 1) * j for r, k, j in zip(size, pool, jump, strict=True))
        return ReceptiveField(size, tuple(j * s for j, s in zip(jump, strides, strict=True)))
    if isinstance(layer, keras.layers.UpSampling1D | keras.layers.UpSampling2D | keras.layers.UpSampling3D):
        factor = _tuple(layer.size, n)
        return ReceptiveField(size, tuple(j / f for j, f in zip(jump, factor, strict=True)))
    return ReceptiveField(size, jump)  # element-wise layers, padding, dense on the channel axis


def _parents(layer) -> list:
    inputs = layer.input if isinstance(layer.input, list | tuple) else [layer.input]
    return [t._keras_history.operation for t in inputs if hasattr(t, "_keras_history")]


def layer_shapes(model: keras.Model) -> list[LayerShape]:
    """Output shape, parameter count and receptive field of every layer, in order."""
    spatial = len(model.inputs[0].shape) - 2  # batch and channels aside
    fields = {
        id(t._keras_history.operation): ReceptiveField((1,) * spatial, (1.0,) * spatial) for t in model.inputs
    }
    rows = []
    for layer in model.layers:
        if id(layer) not in fields:
            fields[id(layer)] = _next_field(
                layer, [fields[id(p)] for p in _parents(layer) if id(p) in fields]
            )
        field = fields[id(layer)]
        shape = layer.output.shape if not isinstance(layer.output, list) else layer.output[0].shape
        rows.append(
            LayerShape(layer.name, type(layer).__name__, tuple(shape[1:]), layer.count_params(), field)
        )
    return rows


def format_table(rows: list[LayerShape], title: str = "") -> str:
    """A plain-text table of `layer_shapes`, totals at the end."""

    def field_text(f: ReceptiveField) -> tuple[str, str]:
        if f.size is None:
            return "all", ""
        return "x".join(f"{s:g}" for s in f.size), "x".join(f"{j:g}" for j in f.jump)

    header = ("layer", "type", "output shape", "params", "receptive field", "jump")
    lines = [header] + [
        (r.name, r.kind, "x".join(str(d) for d in r.output_shape), f"{r.params:,}", *field_text(r.field))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [title] if title else []
    for k, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append(f"total parameters: {sum(r.params for r in rows):,}")
    out.append(
        "receptive field: input pixels one output unit sees; jump: input pixels between neighbouring units"
    )
    return "\n".join(out)

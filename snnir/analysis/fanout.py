"""Fan-out maps: how many operations one input value of a node triggers, element by element.

An input spike at position ``i`` of a synapse node reaches every output that reads ``i``: for
``linear``, all ``out_features`` outputs; for a convolution, each output position whose receptive
field covers ``i`` (exact with padding, stride, dilation and groups: positions near the border are
read by fewer windows), times the output channels of ``i``'s group; for pooling, the windows that
contain ``i``; for element-wise ops (add, batchnorm, affine, scale, relu, clip), one. Summing a
fan-out map gives the operations one dense step does on real inputs; ``dense_ops`` is the ANN
counters' convention, which also counts a window's padded taps.

Example:
    >>> import numpy as np
    >>> axis_reads(5, out=3, kernel=3, stride=2, padding=1, dilation=1).tolist()
    [1, 2, 1, 2, 1]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from snnir.graph import Node

Shape = tuple[int, ...]

WEIGHTED = ("linear", "conv1d", "conv2d", "batchnorm", "affine", "scale")
"""Ops that multiply each input by a weight: with spike input an accumulate, else a multiply-accumulate.
The other ops with a fan-out rule (add, pooling, relu, clip) add or compare without weights."""


def _tuple(value: object, n: int) -> tuple[int, ...]:
    return (int(value),) * n if isinstance(value, (int, float)) else tuple(int(v) for v in value)  # type: ignore


def axis_reads(size: int, out: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """``reads[i]``: the number of (output position, kernel tap) pairs that read input index ``i``
    along one axis (output ``o``, tap ``k`` read ``o * stride - padding + k * dilation``)."""
    taps = (np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation).ravel()
    return np.bincount(taps[(taps >= 0) & (taps < size)], minlength=size).astype(np.int64)


def adaptive_axis_reads(size: int, out: int) -> np.ndarray:
    """``reads[i]`` for adaptive pooling: output ``o`` averages ``[floor(o L / O), ceil((o + 1) L / O))``."""
    reads = np.zeros(size, np.int64)
    for o in range(out):
        reads[(o * size) // out:-(-((o + 1) * size) // out)] += 1
    return reads


def _outer(per_axis: list[np.ndarray]) -> np.ndarray:
    grid = per_axis[0]
    for reads in per_axis[1:]:
        grid = np.multiply.outer(grid, reads)
    return grid


def _windowed(node: Node, in_shape: Shape, kernel: tuple[int, ...], stride: tuple[int, ...],
              padding: tuple[int, ...], dilation: tuple[int, ...]) -> np.ndarray:
    out = node.shape[1:]  # type: ignore[index]
    per_axis = [axis_reads(s, o, k, st, p, d)
                for s, o, k, st, p, d in zip(in_shape[1:], out, kernel, stride, padding, dilation)]
    return np.broadcast_to(_outer(per_axis), in_shape)


def _conv(node: Node, in_shape: Shape) -> np.ndarray:
    w = node.params["weight"]
    ndim = w.ndim - 2
    a = node.attrs
    spatial = _windowed(node, in_shape, tuple(w.shape[2:]), _tuple(a["stride"] or 1, ndim),
                        _tuple(a["padding"], ndim), _tuple(a["dilation"], ndim))
    return spatial * (w.shape[0] // a["groups"])  # every output channel of the input's group


def _pool(node: Node, in_shape: Shape) -> np.ndarray:
    ndim = len(in_shape) - 1
    a = node.attrs
    kernel = _tuple(a["kernel_size"], ndim)
    return _windowed(node, in_shape, kernel, _tuple(a["stride"] or kernel, ndim), _tuple(a["padding"], ndim),
                     _tuple(a.get("dilation", 1), ndim))


def _adaptive(node: Node, in_shape: Shape) -> np.ndarray:
    per_axis = [adaptive_axis_reads(s, o) for s, o in zip(in_shape[1:], node.shape[1:])]  # type: ignore[index]
    return np.broadcast_to(_outer(per_axis), in_shape)


def _linear(node: Node, in_shape: Shape) -> np.ndarray:
    return np.full(in_shape, node.params["weight"].shape[0], np.int64)


def _elementwise(node: Node, in_shape: Shape) -> np.ndarray:
    return np.ones(in_shape, np.int64)


FANOUT: dict[str, Callable[[Node, Shape], np.ndarray]] = {
    "linear": _linear, "conv1d": _conv, "conv2d": _conv,
    "maxpool1d": _pool, "maxpool2d": _pool, "avgpool1d": _pool, "avgpool2d": _pool, "spiking_maxpool2d": _pool,
    "adaptive_avgpool1d": _adaptive, "adaptive_avgpool2d": _adaptive,
    **dict.fromkeys(("add", "batchnorm", "affine", "scale", "relu", "clip"), _elementwise),
}
"""Op -> ``fanout(node, input_shape)``; register a rule here for a user-defined op."""


def fanout(node: Node, in_shape: Shape) -> np.ndarray:
    """The fan-out map of one input of ``node`` (shape ``in_shape``, int64): operations triggered
    per input value. ``node`` must be validated (its output shape known)."""
    if node.op not in FANOUT:
        raise KeyError(f"node {node.id!r}: no fan-out rule for op {node.op!r}")
    return np.asarray(FANOUT[node.op](node, tuple(in_shape)), np.int64)


def dense_ops(node: Node, in_shape: Shape) -> int:
    """Operations of one step and sample on a dense input, as ANN counters count them: a
    convolution or pooling window costs its whole kernel, padded taps included (torch computes
    them), so this is ``out_elements x fan_in``; element-wise and adaptive ops read every input once
    per window (the fan-out summed over the input)."""
    out = math.prod(node.shape or ())
    if node.op in ("conv1d", "conv2d"):
        return out * math.prod(node.params["weight"].shape[1:])
    if node.op in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "spiking_maxpool2d"):
        return out * math.prod(_tuple(node.attrs["kernel_size"], len(in_shape) - 1))
    return int(fanout(node, in_shape).sum())

"""``ann_to_snn``: ReLUs become IF neurons with soft reset, scaled by calibrated activations.

Rate coding: an IF neuron with threshold 1 and reset by subtraction, fed a constant current
``a / lambda``, fires at rate ``min(a / lambda, 1)``. So each ``relu`` (or ``clip(0, c)``) with
calibrated activation scale ``lambda`` becomes

    scale(1 / lambda) -> IF(v_threshold=1, v_reset=None) -> scale(lambda)

and the network computes the ANN's activations as spike rates times ``lambda``. Because every
spiking layer's output carries its own ``lambda``, residual adds and concatenations receive
consistently scaled inputs without extra bookkeeping, and average pooling (linear) commutes.
``fuse_elementwise`` folds the ``1 / lambda`` into the preceding conv/linear weights.
Channel-wise scales use a per-channel ``affine`` instead of ``scale``.

MaxPool: ``maxpool2d`` becomes ``spiking_maxpool2d`` (the spike of the input with the highest
count so far, Rueckauer et al. 2017); for constant analog inputs it equals max pooling.

Scales come from ``graph.meta["calibration"]["scales"]`` (node id -> scale or per-channel list),
written by ``snnir.convert``. Output decoding is by the final layer's input current (the graph's
output is the last analog layer; average it over time), or, with ``meta["calibration"]["decode"]
== "rate"``, by an IF layer appended to the output (spike counts times its scale).
"""

from __future__ import annotations

import numpy as np

from snnir.errors import GraphError
from snnir.graph import Graph, _normalize_attrs
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import rewire

# Ops that act linearly on their spiking inputs, so rate codes pass through them unchanged (spike
# rates times the scale that each IF layer's output carries). ReLU/clip(0, c) become neurons,
# 2-d max pooling its spiking form.
_RATE_LINEAR = {
    "input", "output", "constant", "linear", "conv1d", "conv2d", "batchnorm", "avgpool1d", "avgpool2d",
    "adaptive_avgpool1d", "adaptive_avgpool2d", "flatten", "reshape", "transpose", "slice", "expand", "cat",
    "add", "sub", "scale", "affine", "dropout", "mean", "sum", "upsample", "relu", "clip", "maxpool2d",
}
# Products are linear only when one factor is a constant (a divisor: input 1).
_LINEAR_IF_CONSTANT = {"mul": (0, 1), "matmul": (0, 1), "div": (1,)}


def check_convertible(g: Graph) -> None:
    """Raise ``GraphError`` naming the first node rate-coded conversion cannot express (softmax,
    layer norm, GELU and other smooth activations, products of two activations, neurons)."""
    for node in g:
        if node.op in _RATE_LINEAR:
            continue
        preds = g.predecessors(node.id)
        if node.op in _LINEAR_IF_CONSTANT and any(g.node(preds[i]).op == "constant"
                                                  for i in _LINEAR_IF_CONSTANT[node.op]):
            continue
        why = ("a product of two activations" if node.op in _LINEAR_IF_CONSTANT else
               "stateful already" if node.stateful else f"{node.op} is not linear in spike rates")
        raise GraphError(f"node {node.id!r} ({node.op}) cannot be converted to spiking neurons: {why}. Rate-coded "
                         "conversion keeps ops linear in their inputs (conv, linear, pooling, add, cat, reshapes, "
                         "mean, upsample, products with constants) and turns ReLU/clip(0, c) into IF neurons; "
                         "replace it (e.g. GELU -> ReLU, LayerNorm -> BatchNorm) and fine-tune, or convert only "
                         "the part of the network before it")


def _scale_node(g: Graph, src: str, factor, name: str) -> str:
    f = np.asarray(factor, np.float32)
    if f.ndim == 0:
        return g.add_node("scale", [src], attrs={"factor": float(f)}, id=g._new_id(name))
    return g.add_node("affine", [src], params={"weight": f, "bias": np.zeros_like(f)}, id=g._new_id(name))


@register_pass("ann_to_snn")
def ann_to_snn(g: Graph) -> Graph:
    g = g.copy().validate()
    calib = g.meta.get("calibration")
    if not calib:
        raise GraphError("ann_to_snn needs calibrated activation scales in graph.meta['calibration']; use "
                         "snnir.convert(model, calibration=loader) to compute them")
    scales = calib["scales"]
    check_convertible(g)
    # Rebuild in insertion order so the new nodes sit where the ReLUs were (ids stay readable).
    for node in list(g):
        if node.op == "clip" and node.attrs["min"] not in (0.0, None):
            raise GraphError(f"node {node.id!r}: clip with min {node.attrs['min']} has no spiking equivalent "
                             "(only clip(0, c), i.e. ReLU6-style, converts)")
        if node.op not in ("relu", "clip"):
            if node.op == "maxpool2d":
                node.op = "spiking_maxpool2d"
            continue
        if node.id not in scales:
            raise GraphError(f"node {node.id!r} ({node.op}) has no calibrated scale")
        lam = np.asarray(scales[node.id], np.float64)
        if node.op == "clip" and node.attrs["max"] is not None:
            lam = np.minimum(lam, node.attrs["max"])
        lam = np.maximum(lam, 1e-8)
        (into,) = g.in_edges(node.id)
        pre = _scale_node(g, into.src, 1.0 / lam, f"{node.id}_norm")
        g.remove_edge(into.src, node.id, 0)
        g.add_edge(pre, node.id, port=0, offset=into.offset)
        node.op, node.params = "neuron", {}
        node.attrs = _normalize_attrs(node.id, node.spec, {"model": "IF", "v_threshold": 1.0, "v_reset": None})
        post = _scale_node(g, node.id, lam, f"{node.id}_rate")
        rewire(g, node.id, post, skip=post)
    if calib.get("decode") == "rate":
        for out in g.outputs:
            (src,) = g.predecessors(out)
            lam = np.asarray(calib["scales"].get("__output__", 1.0), np.float64)
            pre = _scale_node(g, src, 1.0 / np.maximum(lam, 1e-8), "output_norm")
            n = g.add_node("neuron", [pre], attrs={"model": "IF", "v_reset": None}, id=g._new_id("output_if"))
            post = _scale_node(g, n, lam, "output_rate")
            g.remove_edge(src, out, 0)
            g.add_edge(post, out, port=0)
    return g.validate()

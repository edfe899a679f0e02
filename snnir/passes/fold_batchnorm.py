"""``fold_batchnorm``: BatchNorm folded into the conv/linear before it, or into an ``affine``.

With inference statistics, ``bn(x) = x * s + (beta - mean * s)`` where ``s = gamma / sqrt(var +
eps)``. After ``conv``/``linear`` (whose output only the BN reads) this scales the weights per
output channel and shifts the bias; elsewhere the BN becomes a per-channel ``affine`` op. The graph
then computes the model's *evaluation-mode* function (batch statistics are no longer used).
"""

from __future__ import annotations

import numpy as np

from snnir.graph import Graph
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import (
    absorbs_output_affine,
    bypass,
    fold_output_affine,
    single_consumer,
    touches_recurrence,
)


def _bn_affine(params: dict[str, np.ndarray], eps: float) -> tuple[np.ndarray, np.ndarray]:
    mean = params["running_mean"].astype(np.float64)
    var = params["running_var"].astype(np.float64)
    gamma = params.get("weight", np.ones_like(mean)).astype(np.float64)
    beta = params.get("bias", np.zeros_like(mean)).astype(np.float64)
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


@register_pass("fold_batchnorm")
def fold_batchnorm(g: Graph) -> Graph:
    g = g.copy().validate()
    recurrent = g.recurrent_edges()
    for bn in [n for n in g if n.op == "batchnorm"]:
        if touches_recurrence(g, bn.id, recurrent):
            continue
        scale, shift = _bn_affine(bn.params, bn.attrs["eps"])
        (src_id,) = g.predecessors(bn.id)
        src = g.node(src_id)
        if absorbs_output_affine(src) and single_consumer(g, src_id) == bn.id:
            fold_output_affine(src, scale, shift)
            bypass(g, bn.id)
        else:
            dtype = bn.params["running_mean"].dtype
            bn.op, bn.attrs = "affine", {}
            bn.params = {"weight": np.asarray(scale, dtype), "bias": np.asarray(shift, dtype)}
    return g.validate()

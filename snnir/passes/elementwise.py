"""``fuse_elementwise``: chains of ``scale``/``affine`` ops collapse into one ``affine``.

``(x * w1 + b1) * w2 + b2 = x * (w1 w2) + (b1 w2 + b2)``, per channel or scalar. A chain is fused
when each link is the only reader of the previous one; a ``scale`` or ``affine`` right after a
``linear``/``conv`` is folded into its weights too (per output channel, exact). A ``scale`` (or
per-channel ``affine`` without shift) right *before* a ``linear``/``conv`` that is its only reader
folds into that layer's input weights: ``W (s x) = (W s) x`` (weight normalization). A shift
folds into a linear's bias (``W b``) but not into a zero-padded conv, where it would be wrong at
the borders.
"""

from __future__ import annotations

import numpy as np

from snnir.graph import Graph, Node
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import (
    absorbs_output_affine,
    bypass,
    fold_output_affine,
    single_consumer,
    touches_recurrence,
)

_ELEMENTWISE = ("scale", "affine")


def _as_affine(n: Node) -> tuple[np.ndarray, np.ndarray]:
    if n.op == "scale":
        return np.asarray(n.attrs["factor"], np.float64), np.asarray(0.0)
    return n.params["weight"].astype(np.float64), n.params["bias"].astype(np.float64)


@register_pass("fuse_elementwise")
def fuse_elementwise(g: Graph) -> Graph:
    g = g.copy().validate()
    changed = True
    while changed:
        changed = False
        recurrent = g.recurrent_edges()
        for node in list(g):
            if node.op not in _ELEMENTWISE or touches_recurrence(g, node.id, recurrent):
                continue
            (src_id,) = g.predecessors(node.id)
            src = g.node(src_id)
            if _fold_into_reader(g, node, recurrent):
                bypass(g, node.id)
                changed = True
                break
            if single_consumer(g, src_id) != node.id or touches_recurrence(g, src_id, recurrent):
                continue
            w2, b2 = _as_affine(node)
            if src.op in _ELEMENTWISE:
                w1, b1 = _as_affine(src)
                dtype = node.params["weight"].dtype if node.op == "affine" else (
                    src.params["weight"].dtype if src.op == "affine" else np.float32)
                src.op, src.attrs = "affine", {}
                src.params = {"weight": np.asarray(w1 * w2, dtype), "bias": np.asarray(b1 * w2 + b2, dtype)}
            elif absorbs_output_affine(src):
                fold_output_affine(src, w2, b2)
            else:
                continue
            bypass(g, node.id)
            changed = True
            break
    return g.validate()


def _fold_into_reader(g: Graph, node: Node, recurrent) -> bool:
    """Fold ``node`` (scale/affine) into the input side of its only reader, a conv or linear."""
    reader_id = single_consumer(g, node.id)
    if reader_id is None or touches_recurrence(g, reader_id, recurrent):
        return False
    reader = g.node(reader_id)
    if reader.op not in ("linear", "conv1d", "conv2d"):
        return False
    w_s, b_s = _as_affine(node)
    w = reader.params["weight"]
    if reader.op == "linear" and len(node.shape) == 1:
        cols = np.broadcast_to(w_s, (w.shape[1],))
        shift = np.broadcast_to(b_s, (w.shape[1],))
        bias = reader.params.get("bias", np.zeros(w.shape[0], w.dtype)).astype(np.float64)
        reader.params["bias"] = (bias + w.astype(np.float64) @ shift).astype(w.dtype)
        reader.params["weight"] = (w.astype(np.float64) * cols[None, :]).astype(w.dtype)
        return True
    if reader.op in ("conv1d", "conv2d") and not np.any(b_s) and reader.attrs["groups"] == 1:
        chans = np.broadcast_to(w_s, (w.shape[1],))
        shape = (1, -1) + (1,) * (w.ndim - 2)
        reader.params["weight"] = (w.astype(np.float64) * chans.reshape(shape)).astype(w.dtype)
        return True
    return False

"""Small graph-rewriting helpers shared by the passes (they edit a graph in place)."""

from __future__ import annotations

import numpy as np

from snnir.errors import GraphError
from snnir.graph import Graph, Node


def touches_recurrence(g: Graph, node_id: str, recurrent: set[tuple[str, str]]) -> bool:
    """Whether an edge into or out of ``node_id`` carries a previous-step value."""
    return any(u == node_id or v == node_id for u, v in recurrent)


def bypass(g: Graph, node_id: str) -> None:
    """Remove a one-input node, feeding its input to its consumers on the same ports (an edge's
    time offset is the sum of the two it replaces)."""
    (into,) = g.in_edges(node_id)
    outs = g.out_edges(node_id)
    if into.offset and any(e.offset for e in outs):
        raise GraphError(f"node {node_id!r} cannot be bypassed: it is read one step late from a value one step late")
    g.remove_node(node_id)
    for e in outs:
        g.add_edge(into.src, e.dst, e.port, offset=into.offset + e.offset)


def rewire(g: Graph, old: str, new: str, skip: str | None = None) -> None:
    """Make every reader of ``old`` (except ``skip``) read ``new`` instead, on the same port and offset."""
    for e in g.out_edges(old):
        if e.dst != skip:
            g.remove_edge(old, e.dst, e.port)
            g.add_edge(new, e.dst, e.port, offset=e.offset)


def single_consumer(g: Graph, node_id: str) -> str | None:
    """The only node reading ``node_id``, or None."""
    succ = g.successors(node_id)
    return succ[0] if len(succ) == 1 else None


def absorbs_output_affine(node: Node) -> bool:
    """Whether ``y * w + b`` per channel (axis 0) can fold into ``node``'s weights: the output
    channels of a conv, or the features of a linear on a vector (not a (L, features) sequence)."""
    return node.op in ("conv1d", "conv2d") or (node.op == "linear" and len(node.shape or ()) == 1)


def fold_output_affine(node: Node, scale, shift) -> None:
    """``node(x) * scale + shift`` -> ``node'(x)``: scale the weights per output channel, shift the
    bias (computed in float64, stored in the weights' dtype)."""
    w = node.params["weight"]
    out = w.shape[0]
    scale = np.broadcast_to(np.asarray(scale, np.float64), (out,))
    shift = np.broadcast_to(np.asarray(shift, np.float64), (out,))
    shape = (-1,) + (1,) * (w.ndim - 1)
    bias = node.params.get("bias", np.zeros(out, w.dtype)).astype(np.float64)
    node.params["weight"] = (w.astype(np.float64) * scale.reshape(shape)).astype(w.dtype)
    node.params["bias"] = (bias * scale + shift).astype(w.dtype)

"""``eliminate_dead`` (unreachable nodes, identity ops) and ``fold_constants``."""

from __future__ import annotations

import networkx as nx
import numpy as np

from snnir.graph import Graph, Node
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import bypass, touches_recurrence


def _is_identity(n: Node, in_shape: tuple[int, ...] | None) -> bool:
    a = n.attrs
    if n.op == "scale":
        return a["factor"] == 1.0
    if n.op == "affine":
        return bool(np.all(n.params["weight"] == 1) and np.all(n.params["bias"] == 0))
    if n.op == "dropout":
        return a["p"] == 0.0
    if n.op in ("add", "cat"):
        return False  # handled by arity below
    if n.op == "flatten":
        return in_shape is not None and n.shape == in_shape
    return False


@register_pass("eliminate_dead")
def eliminate_dead(g: Graph) -> Graph:
    """Remove nodes no output depends on, and identity ops (scale by 1, dropout p=0, a flatten that
    changes nothing, single-input add/cat). Inputs are kept (they fix the model's signature)."""
    g = g.copy().validate()
    live = set(g.outputs) | set(g.inputs)
    for out in g.outputs:
        live |= nx.ancestors(g.nx, out)
    for n in [n for n in g.nx.nodes if n not in live]:
        g.remove_node(n)
    recurrent = g.recurrent_edges()
    for node in list(g):
        preds = g.predecessors(node.id)
        single = len(preds) == 1 and node.op in ("add", "cat")
        in_shape = g.node(preds[0]).shape if len(preds) == 1 else None
        if (single or _is_identity(node, in_shape)) and not touches_recurrence(g, node.id, recurrent):
            bypass(g, node.id)
    return g.validate()


def _eval(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
    """numpy value of a stateless op on constant inputs (None: not folded)."""
    a, p = node.attrs, node.params
    if node.op == "relu":
        return np.maximum(args[0], 0)
    if node.op == "scale":
        return args[0] * a["factor"]
    if node.op == "affine":
        shape = (-1,) + (1,) * (args[0].ndim - 1)
        w, b = p["weight"], p["bias"]
        return args[0] * (w.reshape(shape) if w.ndim else w) + (b.reshape(shape) if b.ndim else b)
    if node.op == "add":
        return sum(args[1:], args[0])
    if node.op == "cat":
        return np.concatenate(args, axis=a["axis"])
    if node.op == "flatten":
        return args[0].reshape(node.shape)
    if node.op == "linear":
        y = args[0] @ p["weight"].T
        return y + p["bias"] if "bias" in p else y
    return None


@register_pass("fold_constants")
def fold_constants(g: Graph) -> Graph:
    """Evaluate stateless nodes whose inputs are all constants, replacing them by constants."""
    g = g.copy().validate()
    for node_id in g.topological_order():
        node = g.node(node_id)
        preds = g.predecessors(node_id)
        if not preds or node.stateful or node.op == "output":
            continue
        edges = g.in_edges(node_id)
        # a constant read one step late is 0 at the first step: not a constant
        if not all(g.node(e.src).op == "constant" and not e.offset for e in edges):
            continue
        value = _eval(node, [g.node(p).params["value"] for p in preds])
        if value is None:
            continue
        for e in edges:
            g.remove_edge(e.src, node_id, e.port)
        node.op, node.attrs = "constant", {}
        node.params = {"value": np.asarray(value, dtype=g.node(preds[0]).params["value"].dtype)}
    return eliminate_dead(g)

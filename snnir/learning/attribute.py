"""Plasticity on the IR: which synapse node learns, with which rule and parameters.

A graph carries its plasticity in ``graph.meta["plasticity"]``, a JSON list (so it traces, saves
and loads with the graph), one entry per learning synapse::

    {"synapse": "fc1", "post": "lif1", "rule": "STDP", "options": {...}, "params": {...}}

``synapse`` is a ``linear``, ``conv1d`` or ``conv2d`` node; ``post`` the neuron whose spikes are
the post-synaptic side (by default the neuron the synapse drives, through shape-preserving ops
such as a batchnorm or an add); the rest is ``PlasticityRule.to_dict()``. ``Graph.validate()``
checks every entry, so a malformed or hostile file is refused on load with the entry named, and
``snnir.compile`` turns each entry back into a ``Learner`` (``module.learners[synapse]``).

Example:
    >>> import numpy as np, snnir
    >>> from snnir.learning import STDP, attach, plasticity
    >>> g = snnir.Graph(); x = g.add_input((4,))
    >>> fc = g.add_node("linear", [x], params={"weight": np.zeros((3, 4), np.float32)}, id="fc")
    >>> _ = g.add_output(g.add_node("neuron", [fc], attrs={"model": "LIF"}, id="lif"))
    >>> g = attach(g, "fc", STDP(a_minus=0.5))
    >>> [(e.synapse, e.post, e.rule) for e in plasticity(g)]
    [('fc', 'lif', STDP(a_minus=0.5))]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snnir.errors import GraphError, ShapeError
from snnir.learning.rule import PlasticityRule, rule_from_dict

if TYPE_CHECKING:
    from snnir.graph import Graph

KEY = "plasticity"
SYNAPSE_OPS = ("linear", "conv1d", "conv2d")
POST_OPS = ("neuron",)
# ops between a synapse and its neuron that keep one value per post-synaptic neuron
PASS_THROUGH = ("batchnorm", "scale", "affine", "add", "dropout", "synapse_filter", "clip")
_FIELDS = {"synapse", "post", "rule", "options", "params"}


@dataclass(frozen=True)
class Plasticity:
    """One learning synapse of a graph: its node, the neuron giving post spikes, the rule."""

    synapse: str
    post: str
    rule: PlasticityRule

    def to_dict(self) -> dict[str, Any]:
        return {"synapse": self.synapse, "post": self.post, **self.rule.to_dict()}


def infer_post(graph: Graph, synapse: str) -> str:
    """The neuron node ``synapse`` drives: its only consumer, followed through shape-preserving
    ops (``PASS_THROUGH``) to a neuron; ``GraphError`` naming where the path ends otherwise."""
    node, path = synapse, [synapse]
    while True:
        consumers = graph.successors(node)
        if len(consumers) != 1:
            what = "nothing" if not consumers else f"{len(consumers)} nodes {consumers}"
            raise GraphError(f"plasticity on {synapse!r}: cannot tell its post-synaptic neuron, {node!r} feeds "
                             f"{what}; name it with post=")
        node = consumers[0]
        op = graph.node(node).op
        path.append(node)
        if op in POST_OPS:
            return node
        if op not in PASS_THROUGH:
            raise GraphError(f"plasticity on {synapse!r}: the path {' -> '.join(path)} reaches {op!r}, not a neuron; "
                             f"name the post-synaptic neuron with post=")


def _check_entry(graph: Graph, i: int, entry: Any) -> Plasticity:
    who = f"graph {graph.name!r} plasticity entry {i}"
    if not isinstance(entry, dict) or set(entry) - _FIELDS or not {"synapse", "post", "rule"} <= set(entry):
        raise GraphError(f"{who}: expected an object with keys {sorted(_FIELDS)}, got {entry!r}"[:400])
    synapse, post = entry["synapse"], entry["post"]
    for field, value in (("synapse", synapse), ("post", post)):
        if not isinstance(value, str) or value not in graph:
            raise GraphError(f"{who}: {field} {value!r} is not a node of the graph (a pass may have removed or "
                             "renamed it)")
    who = f"graph {graph.name!r}: plasticity on {synapse!r}"
    op = graph.node(synapse).op
    if op not in SYNAPSE_OPS:
        raise GraphError(f"{who}: node {synapse!r} is a {op!r} node; a plasticity rule needs a synapse with a "
                         f"weight ({', '.join(SYNAPSE_OPS)})")
    post_op = graph.node(post).op
    if post_op not in POST_OPS:
        raise GraphError(f"{who}: post {post!r} is a {post_op!r} node, not a spiking neuron")
    s_shape, p_shape = graph.node(synapse).shape, graph.node(post).shape
    if s_shape is not None and p_shape is not None and s_shape != p_shape:
        raise ShapeError(f"{who}: the synapse's output has shape {s_shape} but post neuron {post!r} has shape "
                         f"{p_shape}; the post neuron must receive the synapse's output element for element")
    rule = rule_from_dict({k: entry[k] for k in ("rule", "options", "params") if k in entry}, who)
    return Plasticity(synapse, post, rule)


def plasticity(graph: Graph) -> list[Plasticity]:
    """The graph's learning synapses, checked (``GraphError`` names a bad entry)."""
    entries = graph.meta.get(KEY, [])
    if not isinstance(entries, list):
        raise GraphError(f"graph {graph.name!r}: meta[{KEY!r}] must be a list of entries, got {type(entries).__name__}")
    out = [_check_entry(graph, i, e) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for p in out:
        if p.synapse in seen:
            raise GraphError(f"graph {graph.name!r}: synapse {p.synapse!r} has more than one plasticity rule")
        seen.add(p.synapse)
    return out


def check(graph: Graph) -> None:
    """``Graph.validate``'s check of the plasticity entries."""
    plasticity(graph)


def attach(graph: Graph, synapse: str, rule: PlasticityRule, post: str | None = None) -> Graph:
    """A copy of ``graph`` where ``synapse`` learns by ``rule`` (replacing a rule it had).

    ``post`` defaults to the neuron the synapse drives (``infer_post``).
    """
    if not isinstance(rule, PlasticityRule):
        raise TypeError(f"attach: rule must be a PlasticityRule instance (e.g. STDP()), got {type(rule).__name__}")
    out = graph.copy()
    out.infer_shapes()
    if synapse not in out:
        raise GraphError(f"plasticity: graph {graph.name!r} has no node {synapse!r}")
    op = out.node(synapse).op
    if op not in SYNAPSE_OPS:
        raise GraphError(f"graph {graph.name!r}: plasticity on {synapse!r}: node {synapse!r} is a {op!r} node; a "
                         f"plasticity rule needs a synapse with a weight ({', '.join(SYNAPSE_OPS)})")
    entry = Plasticity(synapse, post if post is not None else infer_post(out, synapse), rule).to_dict()
    kept = [e for e in out.meta.get(KEY, []) if not (isinstance(e, dict) and e.get("synapse") == synapse)]
    out.meta[KEY] = [*kept, entry]
    plasticity(out)
    return out


def detach(graph: Graph, synapse: str | None = None) -> Graph:
    """A copy of ``graph`` without the rule of ``synapse`` (without any rule when ``None``)."""
    out = graph.copy()
    kept = [e for e in out.meta.get(KEY, []) if synapse is not None and e.get("synapse") != synapse]
    if kept:
        out.meta[KEY] = kept
    else:
        out.meta.pop(KEY, None)
    return out


__all__ = ["Plasticity", "attach", "check", "detach", "infer_post", "plasticity"]

"""``Graph``: the stateful SNN IR, a thin class over ``networkx.DiGraph``.

Nodes have an id, an ``op`` (looked up in the op registry), ``attrs`` (JSON-able hyperparameters),
``params`` (numpy arrays) and, once validated, a per-sample output ``shape`` (no batch, no time
axis). Edges carry the input ``port`` of the consumer. The graph is evaluated once per time step.

Recurrence: an edge that closes a cycle reads the previous step's value. Which edges those are is
defined by insertion order: inside a strongly connected component, an edge ``u -> v`` with ``v``
added no later than ``u`` is *recurrent* (frontends add nodes in execution order, so feedback
edges are exactly these). Every cycle must pass through a stateful node (a neuron, a synapse
filter, a delay), otherwise a value would depend on itself within one step. ``meta`` holds
JSON-able annotations that passes attach (the ``schedule`` plan, synapse-neuron groups).

Example:
    >>> import numpy as np
    >>> from snnir import Graph
    >>> g = Graph()
    >>> x = g.add_input((64,))
    >>> h = g.add_node("linear", [x], params={"weight": np.zeros((10, 64), np.float32)})
    >>> s = g.add_node("neuron", [h], attrs={"model": "LIF", "tau": 2.0})
    >>> _ = g.add_output(s)
    >>> g.validate().node(s).shape
    (10,)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

import snnir.ops  # noqa: F401  (registers the built-in ops)
from snnir.errors import GraphError, ShapeError
from snnir.ops.registry import REQUIRED, OpSpec, Shape, get_op

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _canonical(value: Any) -> Any:
    """JSON-stable form of an attribute: tuples for sequences, plain Python scalars."""
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        raise GraphError(f"attribute value {value} is not finite")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GraphError(f"attribute value {value!r} of type {type(value).__name__} is not JSON-able")


def _jsonable(value: Any) -> Any:
    """Lists back from JSON's tuples-as-lists, for ``meta`` (which keeps lists, like JSON)."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass
class Node:
    """One IR node. ``shape`` is filled by ``Graph.validate()``."""

    id: str
    op: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    shape: Shape | None = None
    in_shape: Shape | None = None  # shape of input 0, filled by validate()

    @property
    def spec(self) -> OpSpec:
        return get_op(self.op)

    @property
    def stateful(self) -> bool:
        return self.spec.stateful

    def state_spec(self) -> dict[str, Shape]:
        """State variables a backend keeps between steps, with per-sample shapes."""
        if not self.spec.stateful:
            return {}
        if self.shape is None:
            raise GraphError(f"node {self.id!r}: shapes are unknown, call graph.validate() first")
        return self.spec.state(self.attrs, self.shape, self.in_shape or self.shape)  # type: ignore[misc]


def _normalize_attrs(node_id: str, spec: OpSpec, attrs: dict[str, Any]) -> dict[str, Any]:
    try:
        if spec.normalize is not None:
            return _canonical(spec.normalize(dict(attrs)))
        unknown = set(attrs) - set(spec.attrs)
        if unknown:
            raise GraphError(f"unknown attributes {sorted(unknown)}; {spec.name} takes {sorted(spec.attrs)}")
        out = {}
        for name, default in spec.attrs.items():
            if name not in attrs and default is REQUIRED:
                raise GraphError(f"missing required attribute {name!r}")
            out[name] = _canonical(attrs.get(name, default))
        return out
    except GraphError as e:
        raise GraphError(f"node {node_id!r} ({spec.name}): {e}") from None


class Graph:
    """The SNN IR: a directed graph of ``Node``s (see the module docstring)."""

    def __init__(self, name: str = "snnir") -> None:
        self.name = name
        self._g = nx.DiGraph()
        self.meta: dict[str, Any] = {}

    # --- construction ----------------------------------------------------------------------------
    def _new_id(self, base: str) -> str:
        base = re.sub(r"\W", "_", base) or "node"
        if base[0].isdigit():
            base = f"n_{base}"
        if base not in self._g:
            return base
        k = 1
        while f"{base}_{k}" in self._g:
            k += 1
        return f"{base}_{k}"

    def add_node(self, op: str, inputs: Iterable[str] = (), attrs: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None, id: str | None = None) -> str:
        """Add a node fed by ``inputs`` (port = position); returns its id.

        ``id`` defaults to the op name (made unique). Attributes are checked against the op's
        declaration and completed with defaults; params are copied into numpy arrays.
        """
        spec = get_op(op)
        node_id = self._new_id(op) if id is None else id
        if not _ID.match(node_id):
            raise GraphError(f"node id {node_id!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        if node_id in self._g:
            raise GraphError(f"node id {node_id!r} already exists")
        inputs = list(inputs)
        if spec.arity is not None and len(inputs) != spec.arity:
            raise GraphError(f"node {node_id!r} ({op}) takes {spec.arity} input(s), got {len(inputs)}")
        if spec.arity is None and not inputs:
            raise GraphError(f"node {node_id!r} ({op}) needs at least one input")
        for src in inputs:
            if src not in self._g:
                raise GraphError(f"node {node_id!r} ({op}) reads {src!r}, which is not in the graph")
        params = {k: np.array(v, copy=True) for k, v in (params or {}).items()}
        allowed = set(spec.params) | set(spec.optional_params)
        if spec.normalize is None:
            missing, unknown = set(spec.params) - set(params), set(params) - allowed
            if missing or unknown:
                raise GraphError(f"node {node_id!r} ({op}): params {sorted(params)} do not match; "
                                 f"required {list(spec.params)}, optional {list(spec.optional_params)}")
        for k, v in params.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise GraphError(f"node {node_id!r} ({op}): param {k!r} has NaN or Inf values")
        node = Node(node_id, op, _normalize_attrs(node_id, spec, attrs or {}), params)
        self._g.add_node(node_id, node=node)
        for port, src in enumerate(inputs):
            self.add_edge(src, node_id, port)
        return node_id

    def add_edge(self, src: str, dst: str, port: int = 0) -> None:
        """Connect ``src``'s output to input ``port`` of ``dst`` (e.g. to close a recurrent loop)."""
        if self._g.has_edge(src, dst):
            raise GraphError(f"edge {src!r} -> {dst!r} already exists (use a scale or add node to fan in twice)")
        self._g.add_edge(src, dst, port=port)

    def add_input(self, shape: Iterable[int], id: str = "input") -> str:
        """Add a graph input with per-sample ``shape``; returns its id."""
        return self.add_node("input", attrs={"shape": tuple(int(s) for s in shape)}, id=self._new_id(id))

    def add_output(self, src: str, id: str = "output") -> str:
        """Mark ``src`` as a graph output; returns the output node's id."""
        return self.add_node("output", [src], id=self._new_id(id))

    def remove_node(self, node_id: str) -> None:
        self._g.remove_node(node_id)

    # --- queries ---------------------------------------------------------------------------------
    @property
    def nx(self) -> nx.DiGraph:
        """The underlying ``networkx.DiGraph`` (node attribute ``node`` holds the ``Node``)."""
        return self._g

    def node(self, node_id: str) -> Node:
        try:
            return self._g.nodes[node_id]["node"]
        except KeyError:
            raise GraphError(f"no node {node_id!r} in graph {self.name!r}") from None

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._g

    def __iter__(self) -> Iterator[Node]:
        return (self._g.nodes[n]["node"] for n in self._g.nodes)

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    @property
    def inputs(self) -> list[str]:
        return [n.id for n in self if n.op == "input"]

    @property
    def outputs(self) -> list[str]:
        return [n.id for n in self if n.op == "output"]

    def predecessors(self, node_id: str) -> list[str]:
        """Input node ids of ``node_id``, ordered by port."""
        edges = self._g.in_edges(node_id, data="port")
        return [src for src, _, _ in sorted(edges, key=lambda e: e[2])]

    def successors(self, node_id: str) -> list[str]:
        return list(self._g.successors(node_id))

    def recurrent_edges(self) -> set[tuple[str, str]]:
        """Edges that close a cycle (they carry the previous step's value); see the module doc."""
        order = {n: i for i, n in enumerate(self._g.nodes)}
        out = set()
        for component in nx.strongly_connected_components(self._g):
            if len(component) == 1 and not any(self._g.has_edge(n, n) for n in component):
                continue
            for u in component:
                for v in self._g.successors(u):
                    if v in component and order[v] <= order[u]:
                        out.add((u, v))
        return out

    def is_recurrent(self) -> bool:
        return not nx.is_directed_acyclic_graph(self._g)

    def topological_order(self) -> list[str]:
        """Node ids with every node after its inputs within a step (recurrent edges excluded),
        ties broken by insertion order."""
        order = {n: i for i, n in enumerate(self._g.nodes)}
        dag = self._g
        if self.is_recurrent():
            dag = nx.DiGraph(self._g)
            dag.remove_edges_from(self.recurrent_edges())
        return list(nx.lexicographical_topological_sort(dag, key=order.__getitem__))

    # --- checks ----------------------------------------------------------------------------------
    def validate(self) -> Graph:
        """Check structure and infer every node's shape; errors name the node. Returns ``self``."""
        if not self.inputs:
            raise GraphError(f"graph {self.name!r} has no input node")
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no output node")
        for cycle_nodes in nx.strongly_connected_components(self._g):
            cyclic = len(cycle_nodes) > 1 or any(self._g.has_edge(n, n) for n in cycle_nodes)
            if cyclic and not any(self.node(n).stateful for n in cycle_nodes):
                raise GraphError(f"cycle through {sorted(cycle_nodes)} has no stateful node or delay: "
                                 "a value would depend on itself within one time step")
        order = self.topological_order()
        for node_id in order:
            node = self.node(node_id)
            spec = node.spec
            preds = self.predecessors(node_id)
            if spec.arity is not None and len(preds) != spec.arity:
                raise GraphError(f"node {node_id!r} ({node.op}) takes {spec.arity} input(s), has {len(preds)}")
            ports = sorted(p for _, _, p in self._g.in_edges(node_id, data="port"))
            if ports != list(range(len(preds))):
                raise GraphError(f"node {node_id!r} ({node.op}) has input ports {ports}, expected 0..{len(preds) - 1}")
            if node.op == "output" and self.successors(node_id):
                raise GraphError(f"output node {node_id!r} must not feed other nodes")
        return self.infer_shapes()

    def infer_shapes(self) -> Graph:
        """Infer every node's per-sample shape (also on a graph still being built); returns ``self``."""
        order = self.topological_order()
        # Shapes: a recurrent input's shape is known only after its source; a first pass infers
        # what it can (an add takes its known inputs' shape), the second checks with all inputs.
        shapes: dict[str, Shape] = {}
        for final in (False, True) if self.is_recurrent() else (True,):
            for node_id in order:
                node = self.node(node_id)
                in_shapes = [shapes.get(p) for p in self.predecessors(node_id)]
                if None in in_shapes:
                    known = [s for s in in_shapes if s is not None]
                    if final or not known or node.spec.arity is not None or node.op != "add":
                        if final:
                            raise ShapeError(f"node {node_id!r} ({node.op}): the shape of a recurrent input "
                                             "cannot be inferred")
                        continue
                    in_shapes = known
                try:
                    shapes[node_id] = tuple(int(d) for d in node.spec.infer_shape(node.attrs, node.params, in_shapes))
                except ShapeError as e:
                    raise ShapeError(f"node {node_id!r} ({node.op}): {e}") from None
                except GraphError as e:
                    raise GraphError(f"node {node_id!r} ({node.op}): {e}") from None
        for node_id, shape in shapes.items():
            node = self.node(node_id)
            node.shape = shape
            preds = self.predecessors(node_id)
            node.in_shape = shapes[preds[0]] if preds else None
        return self

    # --- copying and (de)serializing ---------------------------------------------------------------
    def copy(self) -> Graph:
        """A deep copy (new nodes, copied arrays)."""
        structure, arrays = self.to_dict()
        return Graph.from_dict(structure, {k: v.copy() for k, v in arrays.items()})

    def to_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(structure, arrays)``: JSON-able structure, and params keyed ``"<node>.<param>"``."""
        nodes, arrays = [], {}
        for n in self:
            nodes.append({"id": n.id, "op": n.op, "attrs": n.attrs, "params": sorted(n.params)})
            for k, v in n.params.items():
                arrays[f"{n.id}.{k}"] = v
        edges = [[s, d, p] for s, d, p in self._g.edges(data="port")]
        return {"name": self.name, "nodes": nodes, "edges": edges, "meta": _jsonable(_canonical(self.meta))}, arrays

    @classmethod
    def from_dict(cls, structure: dict[str, Any], arrays: dict[str, np.ndarray]) -> Graph:
        """Inverse of ``to_dict`` (raises ``GraphError`` naming what is inconsistent)."""
        g = cls(structure.get("name", "snnir"))
        g.meta = _jsonable(structure.get("meta", {}))
        for entry in structure["nodes"]:
            node_id = entry["id"]
            params = {}
            for k in entry.get("params", []):
                key = f"{node_id}.{k}"
                if key not in arrays:
                    raise GraphError(f"node {node_id!r}: array {key!r} is missing")
                params[k] = arrays[key]
            spec = get_op(entry["op"])
            if not isinstance(node_id, str) or not _ID.match(node_id) or node_id in g._g:
                raise GraphError(f"invalid or duplicate node id {node_id!r}")
            node = Node(node_id, entry["op"], _normalize_attrs(node_id, spec, entry.get("attrs", {})), params)
            g._g.add_node(node_id, node=node)
        for src, dst, port in structure["edges"]:
            if src not in g._g or dst not in g._g:
                raise GraphError(f"edge {src!r} -> {dst!r} names a node that does not exist")
            g._g.add_edge(src, dst, port=int(port))
        return g

    # --- display ---------------------------------------------------------------------------------
    def summary(self) -> str:
        """A table of nodes: id, op, inputs, shape, parameter shapes, state variables
        (``snnir.inspect`` adds schedule regions and marks recurrent inputs)."""
        from snnir.inspect import node_table

        return node_table(self, schedule=False)

    def render(self, path: str, engine: str = "auto") -> object:
        """Draw the graph to ``path`` (.svg, .png or .dot); see ``snnir.drawing.render``."""
        from snnir.drawing import render

        return render(self, path, engine)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes, {self._g.number_of_edges()} edges)"

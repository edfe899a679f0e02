"""``Graph``: the stateful SNN IR, a thin class over ``networkx.MultiDiGraph``.

Nodes have an id, an ``op`` (looked up in the op registry), ``attrs`` (JSON-able hyperparameters),
``params`` (numpy arrays) and, once validated, a per-sample output ``shape`` (no batch, no time
axis). The graph is evaluated once per time step. An ``Edge`` feeds input ``port`` of its
consumer and carries its own time ``offset``: 0 reads the source's value of this step, 1 the
value of the previous step (zeros before the first step). Several edges may join the same two
nodes (``h + h`` is an ``add`` whose ports 0 and 1 both read ``h``).

Recurrence: a cycle is legal when it passes through an edge with offset 1. A cycle whose edges
all have offset 0 is legal only through a stateful node (a neuron, a synapse filter, a delay),
and then means what it meant before offsets were explicit (``.snnir`` format version 1): its
*feedback* edges, the edges ``u -> v`` inside the cycle with ``v`` added to the graph no later
than ``u`` (frontends add nodes in execution order), read the previous step. ``validate()``
writes offset 1 on those edges. A cycle of offset-0 edges through stateless nodes only is an
error naming its nodes: a value would depend on itself within one step. ``meta`` holds JSON-able
annotations that frontends and passes attach (the ``schedule`` plan, synapse-neuron groups, the
traced model's training mode).

Example:
    >>> import numpy as np
    >>> from snnir import Graph
    >>> g = Graph()
    >>> x = g.add_input((64,))
    >>> h = g.add_node("linear", [x], params={"weight": np.zeros((10, 64), np.float32)})
    >>> total = g.add_node("add", [h])
    >>> s = g.add_node("neuron", [total], attrs={"model": "LIF", "tau": 2.0})
    >>> r = g.add_node("linear", [s], params={"weight": np.eye(10, dtype=np.float32)})
    >>> g.add_edge(r, total, port=1, offset=1)  # closes the loop: the previous step's spikes
    >>> _ = g.add_output(s)
    >>> g.validate().node(s).shape
    (10,)
    >>> [(e.src, e.port, e.offset) for e in g.in_edges(total)]
    [('linear', 0, 0), ('linear_1', 1, 1)]
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
from snnir.ops.rules import check_attrs
from snnir.ops.time_reduce import check_time_reductions, final_step_nodes
from snnir.validation import check_params, check_structure

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


@dataclass(frozen=True)
class Edge:
    """``src``'s output feeds input ``port`` of ``dst``; ``offset`` 0 reads this step's value,
    1 the previous step's."""

    src: str
    dst: str
    port: int
    offset: int = 0


OFFSETS = (0, 1)


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


def _check_offset(offset: Any, where: str) -> None:
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset not in OFFSETS:
        raise GraphError(f"{where}: time offset must be 0 (this step's value) or 1 (the previous step's), "
                         f"got {offset!r}; longer delays are a 'delay' node")


def _normalize_attrs(node_id: str, spec: OpSpec, attrs: dict[str, Any],
                     params: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        if spec.normalize is not None:
            out = _canonical(spec.normalize(dict(attrs), params or {}))
        else:
            unknown = set(attrs) - set(spec.attrs)
            if unknown:
                raise GraphError(f"unknown attributes {sorted(unknown)}; {spec.name} takes {sorted(spec.attrs)}")
            out = {}
            for name, default in spec.attrs.items():
                if name not in attrs and default is REQUIRED:
                    raise GraphError(f"missing required attribute {name!r}")
                out[name] = _canonical(attrs.get(name, default))
        check_attrs(spec.name, out)
        return out
    except GraphError as e:
        raise type(e)(f"node {node_id!r} ({spec.name}): {e}") from None
    except (TypeError, ValueError, OverflowError) as e:  # float("x"), float(10**400) in a normalize
        raise GraphError(f"node {node_id!r} ({spec.name}): an attribute has the wrong type or size "
                         f"({type(e).__name__}: {e})") from None


class Graph:
    """The SNN IR: a directed multigraph of ``Node``s joined by ``Edge``s (see the module docstring)."""

    def __init__(self, name: str = "snnir") -> None:
        self.name = name
        self._g = nx.MultiDiGraph()  # edge key = the consumer's input port
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
                 params: dict[str, Any] | None = None, id: str | None = None,
                 offsets: Iterable[int] | None = None) -> str:
        """Add a node fed by ``inputs`` (port = position); returns its id.

        ``id`` defaults to the op name (made unique). Attributes are checked against the op's
        declaration and completed with defaults; params are copied into numpy arrays. ``offsets``
        gives each input edge's time offset (default: all 0, this step's values).
        """
        spec = get_op(op)
        node_id = self._new_id(op) if id is None else id
        if not _ID.match(node_id):
            raise GraphError(f"node id {node_id!r} must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        if node_id in self._g:
            raise GraphError(f"node id {node_id!r} already exists")
        inputs = list(inputs)
        offsets = [0] * len(inputs) if offsets is None else list(offsets)
        if len(offsets) != len(inputs):
            raise GraphError(f"node {node_id!r} ({op}): {len(offsets)} offsets for {len(inputs)} inputs")
        if spec.arity is not None and len(inputs) != spec.arity:
            raise GraphError(f"node {node_id!r} ({op}) takes {spec.arity} input(s), got {len(inputs)}")
        if spec.arity is None and not inputs:
            raise GraphError(f"node {node_id!r} ({op}) needs at least one input")
        for src in inputs:
            if src not in self._g:
                raise GraphError(f"node {node_id!r} ({op}) reads {src!r}, which is not in the graph")
        for offset in offsets:
            _check_offset(offset, f"node {node_id!r} ({op})")
        params = {k: np.array(v, copy=True) for k, v in (params or {}).items()}
        allowed = set(spec.params) | set(spec.optional_params)
        if spec.normalize is None:
            missing, unknown = set(spec.params) - set(params), set(params) - allowed
            if missing or unknown:
                raise GraphError(f"node {node_id!r} ({op}): params {sorted(params)} do not match; "
                                 f"required {list(spec.params)}, optional {list(spec.optional_params)}")
        check_params(node_id, op, params)
        node = Node(node_id, op, _normalize_attrs(node_id, spec, attrs or {}, params), params)
        self._g.add_node(node_id, node=node)
        for port, (src, offset) in enumerate(zip(inputs, offsets)):
            self.add_edge(src, node_id, port, offset=offset)
        return node_id

    def add_edge(self, src: str, dst: str, port: int = 0, offset: int = 0) -> None:
        """Feed ``src``'s output to input ``port`` of ``dst``, ``offset`` steps late.

        ``offset=1`` reads the previous step's value (zeros at the first step): that is how a
        loop is closed (``add_edge(feedback, entry, port=1, offset=1)``). Several edges may join
        the same two nodes on different ports.
        """
        for end in (src, dst):
            if end not in self._g:
                raise GraphError(f"edge {src!r} -> {dst!r}: no node {end!r} in graph {self.name!r}")
        if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or port < 0:
            raise GraphError(f"edge {src!r} -> {dst!r}: port must be an int >= 0, got {port!r}")
        _check_offset(offset, f"edge {src!r} -> {dst!r}")
        port, offset = int(port), int(offset)
        for u, _, p in self._g.in_edges(dst, data="port"):
            if p == port:
                raise GraphError(f"input port {port} of {dst!r} is already fed by {u!r}")
        self._g.add_edge(src, dst, key=port, port=port, offset=offset)

    def remove_edge(self, src: str, dst: str, port: int) -> None:
        """Remove the edge from ``src`` into input ``port`` of ``dst``."""
        if not self._g.has_edge(src, dst, key=port):
            raise GraphError(f"no edge {src!r} -> {dst!r} on port {port}")
        self._g.remove_edge(src, dst, key=port)

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
    def nx(self) -> nx.MultiDiGraph:
        """The underlying ``networkx.MultiDiGraph``: node attribute ``node`` holds the ``Node``; an
        edge's key is its port, its attributes ``port`` and ``offset``. Change edges through
        ``add_edge``/``remove_edge``, which keep that invariant."""
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

    @staticmethod
    def _edge(u: str, v: str, data: dict[str, Any]) -> Edge:
        return Edge(u, v, data["port"], data.get("offset", 0))

    def edges(self) -> list[Edge]:
        """Every edge, grouped by consumer (in node insertion order), by port within a consumer."""
        return [e for n in self._g.nodes for e in self.in_edges(n)]

    def in_edges(self, node_id: str) -> list[Edge]:
        """The edges into ``node_id``, ordered by port."""
        edges = [self._edge(u, v, d) for u, v, d in self._g.in_edges(node_id, data=True)]
        return sorted(edges, key=lambda e: e.port)

    def out_edges(self, node_id: str) -> list[Edge]:
        """The edges out of ``node_id`` (consumers in insertion order, then by port)."""
        return [self._edge(u, v, d) for u, v, d in self._g.out_edges(node_id, data=True)]

    def predecessors(self, node_id: str) -> list[str]:
        """Input node ids of ``node_id``, ordered by port (a node read twice appears twice)."""
        return [e.src for e in self.in_edges(node_id)]

    def successors(self, node_id: str) -> list[str]:
        """The distinct nodes reading ``node_id``."""
        return list(self._g.successors(node_id))

    def delayed_edges(self) -> list[Edge]:
        """The edges that read the previous step: offset 1, plus the feedback edges of offset-0
        cycles through stateful nodes (which ``validate()`` gives offset 1; see the module doc)."""
        implicit = set(self._implicit_feedback())
        return [e for e in self.edges() if e.offset == 1 or (e.src, e.dst, e.port) in implicit]

    def recurrent_edges(self) -> set[tuple[str, str]]:
        """``(src, dst)`` pairs joined by an edge that reads the previous step (``delayed_edges``;
        see ``in_edges`` for the offset of each port)."""
        return {(e.src, e.dst) for e in self.delayed_edges()}

    def is_recurrent(self) -> bool:
        """Whether a value crosses a time step along an edge (a cycle or an offset-1 edge)."""
        return bool(self.delayed_edges()) or not nx.is_directed_acyclic_graph(self._g)

    def _same_step_graph(self, delayed: set[tuple[str, str, int]]) -> nx.DiGraph:
        """The nodes joined by their offset-0 edges (minus ``delayed``), in insertion order."""
        dag = nx.DiGraph()
        dag.add_nodes_from(self._g.nodes)
        dag.add_edges_from((u, v) for u, v, k, o in self._g.edges(keys=True, data="offset", default=0)
                           if not o and (u, v, k) not in delayed)
        return dag

    def _implicit_feedback(self) -> list[tuple[str, str, int]]:
        """``(src, dst, port)`` of the offset-0 edges that close a cycle through a stateful node
        (the insertion-order rule); ``GraphError`` for an offset-0 cycle without state."""
        same_step = self._same_step_graph(set())
        if nx.is_directed_acyclic_graph(same_step):
            return []
        order = {n: i for i, n in enumerate(self._g.nodes)}
        found = []
        for component in nx.strongly_connected_components(same_step):
            if len(component) == 1 and not any(same_step.has_edge(n, n) for n in component):
                continue
            back = [(u, v, k) for u, v, k, o in self._g.edges(component, keys=True, data="offset", default=0)
                    if not o and v in component and order[v] <= order[u]]
            if not any(self.node(n).stateful for n in component):
                where = ", ".join(f"{u!r} -> {v!r} (port {k})" for u, v, k in back)
                raise GraphError(f"cycle through {sorted(component, key=order.__getitem__)} has no edge with time "
                                 "offset 1 and no stateful node: a value would depend on itself within one time "
                                 f"step. To read the previous step, add the feedback edge ({where}) with offset=1")
            found += back
        return found

    def topological_order(self) -> list[str]:
        """Node ids with every node after the nodes it reads this step (offset-0 edges), ties
        broken by insertion order."""
        order = {n: i for i, n in enumerate(self._g.nodes)}
        dag = self._same_step_graph(set(self._implicit_feedback()))
        return list(nx.lexicographical_topological_sort(dag, key=order.__getitem__))

    def final_step_nodes(self) -> set[str]:
        """Nodes after a reduction over time (``time_reduce``): a whole-sequence run needs their values
        at the final step only, and returns an output among them as ``[N, ...]`` (see
        ``snnir.ops.time_reduce``)."""
        return final_step_nodes(self)

    # --- checks ----------------------------------------------------------------------------------
    def validate(self) -> Graph:
        """Check structure and infer every node's shape; errors name the node. Returns ``self``.

        Offset-0 feedback edges of cycles through stateful nodes get offset 1 here (see the
        module docstring), so after ``validate()`` every edge states its offset.
        """
        if not self.inputs:
            raise GraphError(f"graph {self.name!r} has no input node")
        if not self.outputs:
            raise GraphError(f"graph {self.name!r} has no output node")
        for u, v, k in self._implicit_feedback():
            self._g.edges[u, v, k]["offset"] = 1
        for node_id in self.topological_order():
            node = self.node(node_id)
            spec = node.spec
            edges = self.in_edges(node_id)
            if spec.arity is not None and len(edges) != spec.arity:
                raise GraphError(f"node {node_id!r} ({node.op}) takes {spec.arity} input(s), has {len(edges)}")
            ports = [e.port for e in edges]
            if ports != list(range(len(edges))):
                raise GraphError(f"node {node_id!r} ({node.op}) has input ports {ports}, expected 0..{len(edges) - 1}")
            for e in edges:
                _check_offset(e.offset, f"edge {e.src!r} -> {e.dst!r} (port {e.port})")
            if node.op == "output" and self.successors(node_id):
                raise GraphError(f"output node {node_id!r} must not feed other nodes")
            if node.op == "output" and edges[0].offset:
                raise GraphError(f"output node {node_id!r} must read {edges[0].src!r} with offset 0 (this step); "
                                 "put a delay before it")
        check_time_reductions(self)
        self.infer_shapes()
        if "plasticity" in self.meta:  # learning synapses (snnir.learning): checked like the nodes
            from snnir.learning.attribute import check

            check(self)
        return self

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
                except GraphError as e:
                    raise type(e)(f"node {node_id!r} ({node.op}): {e}") from None
                except Exception as e:  # a shape rule failing on odd values: still the node's fault, named
                    raise ShapeError(f"node {node_id!r} ({node.op}): cannot infer the output shape from inputs "
                                     f"{in_shapes} ({type(e).__name__}: {e})") from None
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
        """``(structure, arrays)``: JSON-able structure, and params keyed ``"<node>.<param>"``.
        Edges are ``[src, dst, port, offset]``, listed by consumer and port."""
        nodes, arrays = [], {}
        for n in self:
            nodes.append({"id": n.id, "op": n.op, "attrs": n.attrs, "params": sorted(n.params)})
            for k, v in n.params.items():
                arrays[f"{n.id}.{k}"] = v
        edges = [[e.src, e.dst, e.port, e.offset] for e in self.edges()]
        return {"name": self.name, "nodes": nodes, "edges": edges, "meta": _jsonable(_canonical(self.meta))}, arrays

    @classmethod
    def from_dict(cls, structure: dict[str, Any], arrays: dict[str, np.ndarray]) -> Graph:
        """Inverse of ``to_dict`` (raises ``GraphError`` naming what is inconsistent)."""
        check_structure(structure, arrays)
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
            check_params(node_id, entry["op"], params)
            node = Node(node_id, entry["op"], _normalize_attrs(node_id, spec, entry.get("attrs", {}), params), params)
            g._g.add_node(node_id, node=node)
        for entry in structure["edges"]:
            # [src, dst, port, offset]; [src, dst, port] (format version 1): offset 0 here, and
            # validate() gives loops their feedback offsets by the insertion-order rule
            if not isinstance(entry, (list, tuple)) or len(entry) not in (3, 4):
                raise GraphError(f"edge {entry!r} must be [src, dst, port, offset]")
            src, dst, port, offset = (*entry, 0)[:4]
            g.add_edge(src, dst, port, offset=offset)
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

"""Checks of graphs that come from outside: a ``.snnir`` file, an importer (NIR, ONNX).

``Graph.validate()`` checks what every graph needs (ops, attribute ranges, shapes, cycles). A graph
read from a file gets more, so that what loads also compiles and runs:

- ``check_structure``: the JSON document has the types ``Graph.from_dict`` expects (a list of
  node dicts, ``[src, dst, port]`` edges, dict attributes); every array belongs to a node;
  ``check_count``: no more nodes than ``snnir.limits`` allows;
- ``check_params``: parameter arrays are numeric, finite and of the ranks their op takes;
- ``check_loaded``: every node's per-sample activation and state fit ``max_bytes`` (a 1e12-step
  delay or a ``[1e9]`` layer is refused at load, not when a backend allocates it), and the
  annotations in ``meta`` that backends and passes read (``schedule``, ``groups``, ``calibration``,
  ``T``, ``training``) are consistent with the graph.

Errors are ``GraphError`` naming the node or field; the loaders add the file's name.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from snnir import limits
from snnir.errors import GraphError
from snnir.ops.rules import FLOAT32_MAX, check_param_ranks

_STRUCTURE_KEYS = {"name", "nodes", "edges", "meta"}
_NODE_KEYS = {"id", "op", "attrs", "params"}
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_depth(text: bytes | str) -> int:
    """The bracket nesting depth of a JSON text, found without parsing (and without recursion)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    bare = np.frombuffer(_STRING.sub(b'""', data), dtype=np.uint8)
    if bare.size == 0:
        return 0
    step = np.isin(bare, (ord("["), ord("{"))).astype(np.int64) - np.isin(bare, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return type(value).__name__


def check_structure(structure: Any, arrays: dict[str, np.ndarray]) -> None:
    """Types and sizes of a graph document before ``Graph.from_dict`` reads it (see the module docs)."""
    if not isinstance(structure, dict):
        raise GraphError(f"the graph must be a JSON object, got {_kind(structure)}")
    extra = set(structure) - _STRUCTURE_KEYS
    if extra:
        raise GraphError(f"the graph has unknown fields {sorted(extra)}; expected {sorted(_STRUCTURE_KEYS)}")
    name, nodes, edges, meta = (structure.get(k) for k in ("name", "nodes", "edges", "meta"))
    if name is not None and not (isinstance(name, str) and len(name) <= 1000):
        raise GraphError(f"the graph name must be a string of at most 1000 characters, got {_kind(name)}")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise GraphError(f"the graph needs lists 'nodes' and 'edges', got {_kind(nodes)} and {_kind(edges)}")
    if meta is not None and not isinstance(meta, dict):
        raise GraphError(f"the graph's 'meta' must be an object, got {_kind(meta)}")
    owned: set[str] = set()
    for i, entry in enumerate(nodes):
        if not isinstance(entry, dict) or not {"id", "op"} <= set(entry) or set(entry) - _NODE_KEYS:
            raise GraphError(f"node entry {i} must be an object with 'id', 'op', 'attrs', 'params'; got "
                             f"{_short(entry)}")
        node_id = entry["id"]
        if not isinstance(node_id, str) or not isinstance(entry["op"], str):
            raise GraphError(f"node entry {i}: 'id' and 'op' must be strings, got {_short(node_id)}, "
                             f"{_short(entry['op'])}")
        attrs, params = entry.get("attrs", {}), entry.get("params", [])
        if not isinstance(attrs, dict):
            raise GraphError(f"node {node_id!r}: 'attrs' must be an object, got {_kind(attrs)}")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params) or len(set(params)) < len(
                params):
            raise GraphError(f"node {node_id!r}: 'params' must be a list of distinct names, got {_short(params)}")
        owned.update(f"{node_id}.{p}" for p in params)
    for i, edge in enumerate(edges):  # [src, dst, port] (format version 1) or [src, dst, port, offset]
        if not (isinstance(edge, list) and len(edge) in (3, 4) and isinstance(edge[0], str)
                and isinstance(edge[1], str) and all(_is_int(v) for v in edge[2:])):
            raise GraphError(f"edge entry {i} must be [source, target, port, offset] with integer port and offset; "
                             f"got {_short(edge)}")
    stray = sorted(set(arrays) - owned)
    if stray:
        raise GraphError(f"arrays {stray[:5]} belong to no node")


def check_count(structure: dict[str, Any]) -> None:
    """A file's graph may hold at most ``max_nodes`` nodes (and 16 times as many edges)."""
    cap = limits.current().max_nodes
    nodes, edges = structure.get("nodes"), structure.get("edges")
    n, e = (len(x) if isinstance(x, list) else 0 for x in (nodes, edges))
    if n > cap or e > 16 * cap:
        raise GraphError(f"the graph has {n} nodes and {e} edges, above the limit of {cap} nodes "
                         "(snnir.limits.override(max_nodes=...))")


def check_params(node_id: str, op: str, params: dict[str, np.ndarray]) -> None:
    """Parameter arrays: numbers (not objects or strings), finite, of the ranks the op takes."""
    for k, v in params.items():
        if v.dtype.kind not in "biuf" or v.dtype.fields is not None:
            raise GraphError(f"node {node_id!r} ({op}): param {k!r} has dtype {v.dtype}; expected numbers")
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            bad = int(np.flatnonzero(~np.isfinite(v.reshape(-1)))[0])
            raise GraphError(f"node {node_id!r} ({op}): param {k!r} has NaN or Inf values (first at flat index "
                             f"{bad}: {v.reshape(-1)[bad]})")
        if v.dtype.itemsize > 4 and v.size and np.abs(v).max() > FLOAT32_MAX:  # backends compute in float32
            raise GraphError(f"node {node_id!r} ({op}): param {k!r} holds {np.abs(v).max():g}, beyond float32's range "
                             "(+-3.4e38) that backends compute in")
    try:
        check_param_ranks(op, params)
    except GraphError as e:
        raise GraphError(f"node {node_id!r} ({op}): {e}") from None


# --- what a backend will allocate -------------------------------------------------------------------
def check_loaded(graph: Any) -> Any:
    """After ``validate()``: activation and state sizes within the limits, and consistent ``meta``;
    returns ``graph``."""
    cap = limits.current().max_bytes
    for node in graph:
        elems = math.prod(node.shape or ())
        if elems * 4 > cap:
            raise GraphError(f"node {node.id!r} ({node.op}): its per-sample output {node.shape} needs "
                             f"{elems * 4} bytes, above the limit of {cap} (snnir.limits.override(max_bytes=...))")
        for name, shape in node.state_spec().items():
            if math.prod(shape) * 4 > cap:
                raise GraphError(f"node {node.id!r} ({node.op}): its state {name!r} of shape {shape} needs "
                                 f"{math.prod(shape) * 4} bytes per sample, above the limit of {cap}")
    check_meta(graph)
    return graph


def check_meta(graph: Any) -> None:
    """The ``meta`` entries snnir reads must agree with the graph (unknown entries are kept as they are)."""
    meta = graph.meta
    if "schedule" in meta:
        _check_schedule(graph, meta["schedule"])
    if "groups" in meta:
        _check_groups(graph, meta["groups"])
    if "T" in meta and not (isinstance(meta["T"], int) and not isinstance(meta["T"], bool) and meta["T"] >= 1):
        raise GraphError(f"meta 'T' must be an int >= 1 (time steps), got {_short(meta['T'])}")
    if "calibration" in meta:
        _check_calibration(graph, meta["calibration"])
    _check_training(graph, meta)


def _check_schedule(graph: Any, schedule: Any) -> None:
    from snnir.passes.schedule import plan_regions

    regions = schedule.get("regions") if isinstance(schedule, dict) else None
    if not isinstance(regions, list):
        raise GraphError(f"meta 'schedule' must be {{'regions': [...]}}, got {_short(schedule)}")
    if regions != plan_regions(graph):
        raise GraphError("meta 'schedule' does not match the graph (its regions differ from the plan the "
                         "'schedule' pass computes); re-run snnir.optimize(graph, ['schedule']) before saving")


def _check_groups(graph: Any, groups: Any) -> None:
    from snnir.passes.grouping import group_synapse_neuron

    if not isinstance(groups, list):
        raise GraphError(f"meta 'groups' must be a list of [synapse, neuron] pairs, got {_short(groups)}")
    allowed = {tuple(p) for p in group_synapse_neuron(graph).meta["groups"]}
    used: set[Any] = set()
    for pair in groups:
        key = tuple(pair) if isinstance(pair, list) and all(isinstance(p, str) for p in pair) else None
        if key not in allowed or used & set(key):
            raise GraphError(f"meta 'groups' entry {_short(pair)} is not a (linear | conv) -> neuron pair whose "
                             "synapse feeds only that neuron, this step (re-run the group_synapse_neuron pass)")
        used.update(key)


def _check_training(graph: Any, meta: dict[str, Any]) -> None:
    if "training" in meta and not isinstance(meta["training"], bool):
        raise GraphError(f"meta 'training' must be true or false, got {_short(meta['training'])}")
    nodes = meta.get("training_nodes", {})
    if not isinstance(nodes, dict) or not all(k in graph and isinstance(v, bool) for k, v in nodes.items()):
        raise GraphError(f"meta 'training_nodes' must map node ids of the graph to true or false, got {_short(nodes)}")


def _check_calibration(graph: Any, calibration: Any) -> None:
    scales = calibration.get("scales") if isinstance(calibration, dict) else None
    if not isinstance(scales, dict):
        raise GraphError(f"meta 'calibration' must hold a 'scales' object, got {_short(calibration)}")
    for node_id, scale in scales.items():
        values = scale if isinstance(scale, list) else [scale]
        if not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in values):
            raise GraphError(f"meta 'calibration' scale of {node_id!r} must be a positive number or list of them, "
                             f"got {_short(scale)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

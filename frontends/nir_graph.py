"""Reading NIR: HDF5 files with errors that name the node, and nested graphs flattened.

``read_nir(path)`` reads a ``.nir`` file node by node with ``nir``'s own reader, so an unknown
type, a missing field or inconsistent arrays are reported with the file and the node's path.
``flatten(graph)`` inlines nested ``NIRGraph`` nodes (names ``<graph>.<node>``) and removes their
own Input/Output nodes, returning leaf nodes and edges.
"""

from __future__ import annotations

from typing import Any

from snnir.errors import FormatError, GraphError

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
             "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph")


# --- reading ---------------------------------------------------------------------------------------
def read_nir(path: str) -> Any:
    """The ``nir.NIRGraph`` in the file at ``path`` (``FormatError`` naming the node if it is bad)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"{path}: cannot open a NIR (HDF5) file ({e})") from None
    with f:
        if "node" not in f:
            raise FormatError(f"{path}: not a NIR file (no 'node' group at the root)")
        return _read_group(f["node"], path, "node")


def _read_group(group: Any, path: str, where: str) -> Any:
    import nir
    from nir.serialization import read_node

    if "type" not in group:
        raise FormatError(f"{path}: NIR node {where!r} has no 'type' field")
    kind = group["type"][()]
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind not in SUPPORTED:
        raise FormatError(f"{path}: NIR node {where!r} has unknown type {kind!r}; snnir reads {', '.join(SUPPORTED)}")
    if kind == "NIRGraph":
        for field in ("nodes", "edges"):
            if field not in group:
                raise FormatError(f"{path}: NIR graph {where!r} has no {field!r} field")
        nodes = {k: _read_group(v, path, f"{where}/nodes/{k}") for k, v in group["nodes"].items()}
        edges = [(a.decode(), b.decode()) for a, b in group["edges"][()]] if len(group["edges"]) else []
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    try:
        return read_node(group)
    except KeyError as e:
        raise FormatError(f"{path}: NIR node {where!r} ({kind}) is missing a field: {e}") from None
    except (ValueError, AssertionError, TypeError) as e:
        raise FormatError(f"{path}: NIR node {where!r} ({kind}) is inconsistent: {e or 'shapes differ'}") from None


# --- flattening nested graphs ----------------------------------------------------------------------
def flatten(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Leaf nodes by flat name and the edges; a nested graph's own Input/Output are pass-throughs
    (``None``) that ``contract_pass_throughs`` removes.

    Example:
        >>> import nir, numpy as np
        >>> inner = nir.NIRGraph.from_list(nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))
        >>> outer = nir.NIRGraph(nodes={"x": nir.Input(input_type=np.array([2])), "sub": inner,
        ...                             "y": nir.Output(output_type=np.array([2]))},
        ...                      edges=[("x", "sub"), ("sub", "y")])
        >>> nodes, edges = flatten(outer)
        >>> sorted(contract_pass_throughs(nodes, edges)), sorted(nodes)
        ([('sub.li', 'y'), ('x', 'sub.li')], ['sub.li', 'x', 'y'])
    """
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    entry: dict[str, str] = {}   # nested graph name -> its input pass-through
    exit_: dict[str, str] = {}   # nested graph name -> its output pass-through
    for key, node in graph.nodes.items():
        flat = f"{prefix}{key}"
        if isinstance(node, nir.NIRGraph):
            inner, inner_edges = flatten(node, f"{flat}.")
            for role, table, kind in (("input", entry, nir.Input), ("output", exit_, nir.Output)):
                found = [k for k, v in node.nodes.items() if isinstance(v, kind)]
                if len(found) != 1:
                    raise GraphError(f"NIR graph {flat!r}: a nested graph needs exactly one {role} node, "
                                     f"has {found}")
                table[key] = f"{flat}.{found[0]}"
                inner[table[key]] = None  # pass-through
            nodes.update(inner)
            edges += inner_edges
        else:
            nodes[flat] = node
    for src, dst in graph.edges:
        # an edge names a nested graph (its input/output) or, dotted, one of its nodes
        edges.append((exit_.get(src, f"{prefix}{src}"), entry.get(dst, f"{prefix}{dst}")))
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                raise GraphError(f"NIR edge {src!r} -> {dst!r} names {end!r}, which is not a node")
    return nodes, edges


def contract_pass_throughs(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Remove the pass-through nodes (``None``): an edge into one goes to each real node it leads to;
    linear in the number of edges (plus the joined ones), keeping the edge order."""
    through = {k for k, v in nodes.items() if v is None}
    if not through:
        return edges
    outs: dict[str, list[str]] = {p: [] for p in through}
    for a, b in edges:
        if a in through:
            outs[a].append(b)
    reached: dict[str, list[str]] = {}

    def consumers(p: str) -> list[str]:  # the real nodes a pass-through leads to (chains followed)
        if p not in reached:
            reached[p] = []
            found: list[str] = []
            for b in outs[p]:
                found += consumers(b) if b in through else [b]
            reached[p] = found
        return reached[p]

    result: list[tuple[str, str]] = []
    for a, b in edges:
        if a in through:
            continue
        result += [(a, c) for c in consumers(b)] if b in through else [(a, b)]
    for p in through:
        del nodes[p]
    return result

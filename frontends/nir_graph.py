"""Reading NIR: HDF5 files with errors that name the node, and nested graphs flattened.

``read_nir(path)`` reads a ``.nir`` file node by node with ``nir``'s own reader, so an unknown
type, a missing field or inconsistent arrays are reported with the file and the node's path.
``flatten(graph)`` inlines nested ``NIRGraph`` nodes (names ``<graph>.<node>``) and removes their
own Input/Output nodes, returning leaf nodes and edges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from snnir.errors import FormatError, GraphError, SnnirError, file_errors

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
             "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph")


# --- reading ---------------------------------------------------------------------------------------
def read_nir(path: str, safe: bool | None = None) -> Any:
    """The ``nir.NIRGraph`` in the file at ``path`` (``FormatError`` naming the node if it is bad).

    The HDF5 file is read into arrays first (``snnir.hdf5_tree``: every declared size checked
    against ``snnir.limits`` and the file size; in a child process when ``safe``), then each node
    is built by ``nir``'s own reader from those arrays.
    """
    from snnir.hdf5_tree import load_tree

    tree = load_tree(path, safe=safe, roots=("node",))
    root = tree.get("node")
    if not isinstance(root, dict):
        raise FormatError(f"{path}: not a NIR file (no 'node' group at the root)")
    return _read_group(root, path, "node", 0)


def _read_group(group: dict[str, Any], path: str, where: str, depth: int) -> Any:
    import nir
    from nir.serialization import read_node

    from snnir import limits

    limits.check_depth(path, f"NIR graph {where!r}", depth)  # also bounds this recursion
    kind = _text(group.get("type"), path, where, "type")
    if kind not in SUPPORTED:
        raise FormatError(f"{path}: NIR node {where!r} has unknown type {kind!r}; snnir reads {', '.join(SUPPORTED)}")
    if kind == "NIRGraph":
        nodes, edges = group.get("nodes"), group.get("edges")
        if not isinstance(nodes, dict):
            raise FormatError(f"{path}: NIR graph {where!r} has no 'nodes' group")
        limits.check_count(path, f"nodes in NIR graph {where!r}", len(nodes))
        children = {}
        for k, v in nodes.items():
            if not isinstance(v, dict):
                raise FormatError(f"{path}: NIR node '{where}/nodes/{k}' is a dataset, expected a group")
            children[k] = _read_group(v, path, f"{where}/nodes/{k}", depth + 1)
        return nir.NIRGraph(nodes=children, edges=_edges(edges, path, where, set(children)), type_check=False)
    try:
        return read_node(group)
    except KeyError as e:
        raise FormatError(f"{path}: NIR node {where!r} ({kind}) is missing a field: {e}") from None
    except Exception as e:  # nir's constructors check shapes with assert/ValueError, or fail on odd values
        raise FormatError(f"{path}: NIR node {where!r} ({kind}) is inconsistent: "
                          f"{type(e).__name__}: {e or 'shapes differ'}") from None


def _text(value: Any, path: str, where: str, field: str) -> str:
    """A string field (a 0-d bytes array in the tree)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "S":
        try:
            return value[()].decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise FormatError(f"{path}: NIR node {where!r} has no text {field!r} field")


def _edges(value: Any, path: str, where: str, names: set[str]) -> list[tuple[str, str]]:
    """``edges`` as ``(source, target)`` names: a list of byte-string pairs (or nothing)."""
    if value is None:
        raise FormatError(f"{path}: NIR graph {where!r} has no 'edges' field")
    if isinstance(value, np.ndarray) and value.size == 0:
        return []
    if isinstance(value, np.ndarray) and value.dtype.kind == "S" and value.ndim == 2:
        value = value.tolist()
    if not isinstance(value, list):
        raise FormatError(f"{path}: NIR graph {where!r}: 'edges' must be pairs of node names")
    from snnir import limits

    limits.check_count(path, f"edges in NIR graph {where!r}", len(value))
    out = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, bytes) for p in pair)):
            raise FormatError(f"{path}: NIR graph {where!r}: edge {i} is {str(pair)[:80]}, expected two node names")
        try:
            out.append((pair[0].decode("utf-8"), pair[1].decode("utf-8")))
        except UnicodeDecodeError:
            raise FormatError(f"{path}: NIR graph {where!r}: edge {i} names are not UTF-8") from None
    return out


@contextlib.contextmanager
def nir_errors(where: str, from_file: bool) -> Iterator[None]:
    """Around an import: from a file, every error is a ``FormatError`` naming the file (a graph snnir
    refuses: ``InvalidGraphFileError``); from a ``NIRGraph`` object, raw errors become ``GraphError``."""
    if from_file:
        with file_errors(where, "NIR import"):
            yield
            return
    try:
        yield
    except SnnirError:
        raise
    except Exception as e:  # noqa: BLE001
        raise GraphError(f"{where}: {type(e).__name__}: {e}") from e


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

"""Small graph-rewriting helpers shared by the passes (they edit a graph in place)."""

from __future__ import annotations

from snnir.graph import Graph


def touches_recurrence(g: Graph, node_id: str, recurrent: set[tuple[str, str]]) -> bool:
    """Whether an edge into or out of ``node_id`` carries a previous-step value."""
    return any(u == node_id or v == node_id for u, v in recurrent)


def bypass(g: Graph, node_id: str) -> None:
    """Remove a one-input node, feeding its input to its consumers on the same ports."""
    (src,) = g.predecessors(node_id)
    outs = [(v, port) for _, v, port in g.nx.out_edges(node_id, data="port")]
    g.remove_node(node_id)
    for v, port in outs:
        g.nx.add_edge(src, v, port=port)


def single_consumer(g: Graph, node_id: str) -> str | None:
    """The only node reading ``node_id``, or None."""
    succ = g.successors(node_id)
    return succ[0] if len(succ) == 1 else None

"""Looking at a graph: a node table with the schedule; drawings (SVG/PNG/DOT) are in ``snnir.drawing``.

Example:
    >>> import snnir
    >>> g = snnir.Graph(); x = g.add_input((3,))
    >>> s = g.add_node("add", [x], id="sum")
    >>> n = g.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    >>> g.add_edge(n, s, port=1, offset=1); _ = g.add_output(n)
    >>> _ = snnir.inspect(snnir.optimize(g))  # doctest: +NORMALIZE_WHITESPACE
    node    op          inputs      shape  params  state  region
    input   input                   (3,)                  0 sequence
    sum     add         input,lif*  (3,)                  1 step
    lif     neuron:LIF  sum         (3,)           v      1 step
    output  output      lif         (3,)                  2 sequence
    (* = recurrent input: the previous step's value)
"""

from __future__ import annotations

from snnir.drawing import GraphvizHint, render, to_dot
from snnir.graph import Graph

__all__ = ["GraphvizHint", "inspect", "node_table", "render", "to_dot"]


def _regions(g: Graph) -> dict[str, str]:
    plan = g.meta.get("schedule", {}).get("regions", [])
    return {n: f"{i} {r['mode']}" for i, r in enumerate(plan) for n in r["nodes"]}


def node_table(g: Graph, schedule: bool = True) -> str:
    """The node table: id, op, inputs, shape, params, state (and, with ``schedule``, the region
    and ``*`` on inputs read with time offset 1)."""
    delayed = {(e.src, e.dst, e.port) for e in g.delayed_edges()} if schedule else set()
    regions = _regions(g)
    header = ("node", "op", "inputs", "shape", "params", "state") + (("region",) if schedule else ())
    rows = [header]
    for n in g:
        params = " ".join(f"{k}{list(v.shape)}" for k, v in n.params.items())
        state = " ".join(n.state_spec()) if n.stateful and n.shape is not None else ""
        op = f"{n.op}:{n.attrs['model']}" if n.op == "neuron" else f"{n.op}:{n.attrs['mode']}" \
            if n.op == "time_reduce" else n.op
        inputs = ",".join(e.src + ("*" if (e.src, e.dst, e.port) in delayed else "") for e in g.in_edges(n.id))
        row = (n.id, op, inputs, str(n.shape), params, state)
        rows.append(row + ((regions.get(n.id, ""),) if schedule else ()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    if delayed:
        text += "\n(* = recurrent input: the previous step's value)"
    return text


def inspect(g: Graph, file=None) -> str:
    """Print (and return) a table: node, op, inputs, shape, params, state, schedule region."""
    g = g.copy().validate() if any(n.shape is None for n in g) else g
    text = node_table(g)
    print(text, file=file)
    return text

"""Looking at a graph: a node table with the schedule, and drawings (SVG/PNG/DOT).

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

import os
import shutil
import subprocess
from pathlib import Path

from snnir.graph import Graph

_COLORS = ["#cfe2f3", "#f4cccc", "#d9ead3", "#fff2cc", "#ead1dc", "#d0e0e3", "#fce5cd", "#d9d2e9"]


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
        op = f"{n.op}:{n.attrs['model']}" if n.op == "neuron" else n.op
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


def to_dot(g: Graph) -> str:
    """The graph in Graphviz DOT; nodes filled by schedule region, edges reading the previous
    step dashed and labelled ``t-1``."""
    regions = g.meta.get("schedule", {}).get("regions", [])
    color = {n: _COLORS[i % len(_COLORS)] for i, r in enumerate(regions) for n in r["nodes"]}
    delayed = {(e.src, e.dst, e.port) for e in g.delayed_edges()}
    lines = [f'digraph "{g.name}" {{', "  rankdir=TB; node [shape=box, style=filled, fontname=Helvetica];"]
    for n in g:
        label = f"{n.id}\\n{n.op}:{n.attrs['model']}" if n.op == "neuron" else f"{n.id}\\n{n.op}"
        if n.shape is not None:
            label += f"\\n{n.shape}"
        lines.append(f'  "{n.id}" [label="{label}", fillcolor="{color.get(n.id, "#eeeeee")}"];')
    for e in g.edges():
        style = ', style=dashed, label="t-1"' if (e.src, e.dst, e.port) in delayed else ""
        lines.append(f'  "{e.src}" -> "{e.dst}" [taillabel="", headlabel="{e.port}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(g: Graph, path: str | os.PathLike) -> Path:
    """Draw ``g`` to ``path``: ``.dot`` (DOT text), ``.svg`` or ``.png``.

    SVG/PNG use Graphviz's ``dot`` when it is installed, else networkx's layout with matplotlib
    (``pip install matplotlib``). Regions of the schedule plan have one colour each; recurrent
    edges are dashed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".dot", ".svg", ".png"):
        raise ValueError(f"render writes .dot, .svg or .png files, got {path.name!r}")
    dot = to_dot(g)
    if suffix == ".dot":
        path.write_text(dot)
        return path
    if shutil.which("dot"):
        subprocess.run(["dot", f"-T{suffix[1:]}", "-o", str(path)], input=dot, text=True, check=True)
        return path
    return _render_matplotlib(g, path)


def _render_matplotlib(g: Graph, path: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("rendering to SVG/PNG needs Graphviz ('dot') or matplotlib (pip install matplotlib); "
                          "render to a .dot file instead") from None
    import networkx as nx

    order = g.topological_order()
    layer = {n: 0 for n in order}
    delayed = {(e.src, e.dst) for e in g.delayed_edges()}
    for n in order:
        for e in g.in_edges(n):
            if not e.offset and (e.src, n) not in delayed:
                layer[n] = max(layer[n], layer[e.src] + 1)
    drawn = nx.DiGraph()  # one arrow per pair of nodes
    drawn.add_nodes_from((n, {"layer": layer[n]}) for n in order)
    drawn.add_edges_from((e.src, e.dst) for e in g.edges())
    pos = nx.multipartite_layout(drawn, subset_key="layer", align="horizontal")
    pos = {n: (x, -y) for n, (y, x) in pos.items()}
    regions = g.meta.get("schedule", {}).get("regions", [])
    color = {n: _COLORS[i % len(_COLORS)] for i, r in enumerate(regions) for n in r["nodes"]}
    fig, ax = plt.subplots(figsize=(6, 1.0 + 0.9 * (max(layer.values()) + 1)))
    forward = [e for e in drawn.edges if e not in delayed]
    nx.draw_networkx_edges(drawn, pos, edgelist=forward, ax=ax, arrows=True)
    nx.draw_networkx_edges(drawn, pos, edgelist=sorted(delayed), ax=ax, arrows=True, style="dashed",
                           connectionstyle="arc3,rad=0.4", edge_color="#cc0000")
    labels = {n.id: f"{n.id}\n{n.attrs['model'] if n.op == 'neuron' else n.op}" for n in g}
    nx.draw_networkx_labels(drawn, pos, labels=labels, ax=ax, font_size=8,
                            bbox={"boxstyle": "round", "fc": "white", "ec": "gray"})
    for n, (x, y) in pos.items():
        ax.scatter([x], [y], s=2200, c=color.get(n, "#eeeeee"), marker="s", zorder=0)
    ax.set_axis_off()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path

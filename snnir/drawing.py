"""Drawing a graph: Graphviz DOT text, and PNG/SVG with Graphviz or, without it, matplotlib.

Both drawings show the same things: one box per node with its id, op (and the attributes that
define it: kernel, stride, neuron model and time constant), per-sample shape and parameter shapes;
the box's fill and outline style say what kind of op it is (synapse, neuron, other stateful op,
pooling, element-wise, structure, input/output), explained in a legend; the outline colour is the
node's schedule region; recurrent edges (the previous step's value) are dashed and red.

The matplotlib fallback lays the graph out in layers (longest path from the inputs, each layer
ordered by the barycentre of its predecessors to reduce crossings) and wraps long chains into
columns, so a 30-node network stays readable. It draws edges as straight or gently curved arrows
and cannot route them around boxes: on graphs with many branches, Graphviz (``dot`` on the PATH;
``apt install graphviz``) draws cleaner, and ``render`` says so.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import warnings
from pathlib import Path

from snnir.graph import Graph, Node

#: op kind -> (fill colour, matplotlib box style, Graphviz shape, legend text)
KINDS = {
    "io": ("#37474f", "round,pad=0.35", "box", "input / output"),
    "synapse": ("#bbdefb", "square,pad=0.35", "box", "synapse (linear, conv)"),
    "neuron": ("#ffcc80", "round,pad=0.35", "box", "spiking neuron"),
    "stateful": ("#f8bbd0", "round4,pad=0.35", "box", "other stateful (filter, delay, integrator)"),
    "pool": ("#c8e6c9", "round,pad=0.35", "box", "pooling"),
    "elementwise": ("#fff9c4", "square,pad=0.35", "box", "element-wise (norm, scale, relu, dropout)"),
    "structure": ("#e0e0e0", "round,pad=0.35", "box", "structure (flatten, add, cat)"),
}
_DOT_STYLE = {"io": "filled,rounded", "synapse": "filled", "neuron": "filled,rounded,bold",
              "stateful": "filled,rounded,dashed", "pool": "filled,rounded", "elementwise": "filled",
              "structure": "filled,rounded"}
_OP_KIND = {"linear": "synapse", "conv1d": "synapse", "conv2d": "synapse",
            "batchnorm": "elementwise", "affine": "elementwise", "scale": "elementwise", "relu": "elementwise",
            "clip": "elementwise", "dropout": "elementwise", "constant": "elementwise",
            "flatten": "structure", "add": "structure", "cat": "structure"}
REGION_COLOURS = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457"]
_HINT_NODES, _HINT_BRANCHES = 16, 3  # from this size, or this many branching nodes, the fallback suggests Graphviz


class GraphvizHint(UserWarning):
    """A drawing was made without Graphviz where Graphviz would lay it out better."""


def op_kind(node: Node) -> str:
    """The legend category of ``node``: io, synapse, neuron, stateful, pool, elementwise, structure."""
    if node.op in ("input", "output"):
        return "io"
    if node.op == "neuron":
        return "neuron"
    if node.stateful:
        return "stateful"
    if "pool" in node.op:
        return "pool"
    return _OP_KIND.get(node.op, "structure")


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pair(v) -> str:
    if isinstance(v, (list, tuple)):
        return "x".join(map(str, v)) if len(set(v)) > 1 else str(v[0])
    return str(v)


def op_label(node: Node) -> str:
    """The op and the attributes that define it, short: ``conv2d 3x3 s2 p1``, ``LIF tau=2``."""
    a = node.attrs
    if node.op == "neuron":
        parts = [str(a.get("model", "neuron"))]
        for key in ("tau", "tau_mem", "tau_syn"):
            if key in a:
                parts.append(f"{key.replace('tau', 'τ')}={_num(a[key])}")
        if "v_reset" in a and a["v_reset"] is None:
            parts.append("soft")
        return " ".join(parts)
    if node.op in ("conv1d", "conv2d") and "weight" in node.params:
        parts = [node.op, "x".join(map(str, node.params["weight"].shape[2:]))]
        if a.get("stride") not in (None, 1, (1,), (1, 1), [1], [1, 1]):
            parts.append(f"s{_pair(a['stride'])}")
        if a.get("padding") not in (None, 0, (0,), (0, 0), [0], [0, 0]):
            parts.append(f"p{_pair(a['padding'])}")
        return " ".join(parts)
    if "pool" in node.op and "kernel_size" in a:
        return f"{node.op} {_pair(a['kernel_size'])}"
    for key in ("factor", "p", "steps", "tau"):
        if key in a and not isinstance(a[key], (dict, list)):
            return f"{node.op} {key}={_num(a[key])}"
    return node.op


def node_lines(node: Node) -> list[str]:
    """The text of a node's box: id and op, per-sample shape, parameter shapes (and quantization)."""
    label = op_label(node)
    lines = [f"{node.id}: {label}" if node.id != node.op else label]
    if node.shape is not None:
        lines.append("(" + ", ".join(map(str, node.shape)) + ")")
    params = " ".join(f"{k[0] if k in ('weight', 'bias') else k}[{','.join(map(str, v.shape))}]"
                      for k, v in node.params.items() if k not in ("running_mean", "running_var"))
    if params:
        lines.append(params if len(params) <= 34 else params[:32] + "…")
    if node.attrs.get("quant"):
        lines.append(f"int{node.attrs['quant'].get('bits', '?')}")
    return lines


def _delayed(g: Graph) -> set[tuple[str, str, int]]:
    """``(src, dst, port)`` of the edges that read the previous step."""
    return {(e.src, e.dst, e.port) for e in g.delayed_edges()}


def _regions(g: Graph) -> dict[str, int]:
    plan = g.meta.get("schedule", {}).get("regions", [])
    return {n: i for i, r in enumerate(plan) for n in r["nodes"]}


# -- DOT ---------------------------------------------------------------------------------------------
def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(g: Graph) -> str:
    """The graph in Graphviz DOT: boxes styled by op kind (legend cluster), outlined by schedule
    region, recurrent edges dashed and labelled ``t-1``."""
    region = _regions(g)
    delayed = _delayed(g)
    lines = [f'digraph "{_dot_escape(g.name)}" {{',
             '  rankdir=TB; nodesep=0.25; ranksep=0.35;',
             '  node [shape=box, style=filled, fontname=Helvetica, fontsize=10, margin="0.12,0.05"];',
             '  edge [arrowsize=0.7];']
    kinds = set()
    for n in g:
        kind = op_kind(n)
        kinds.add(kind)
        fill, _, shape, _ = KINDS[kind]
        label = "\\n".join(_dot_escape(s) for s in node_lines(n))
        colour = REGION_COLOURS[region[n.id] % len(REGION_COLOURS)] if n.id in region else "#555555"
        font = ', fontcolor="white"' if kind == "io" else ""
        lines.append(f'  "{_dot_escape(n.id)}" [label="{label}", shape={shape}, style="{_DOT_STYLE[kind]}", '
                     f'fillcolor="{fill}", color="{colour}", penwidth=2{font}];')
    for e in g.edges():
        late = (e.src, e.dst, e.port) in delayed
        attrs = ['style=dashed', 'color="#c62828"', 'label="t-1"', "constraint=false"] if late else []
        if e.port:
            attrs.append(f'headlabel="{e.port}"')
        lines.append(f'  "{_dot_escape(e.src)}" -> "{_dot_escape(e.dst)}"' + (f" [{', '.join(attrs)}]" if attrs else "")
                     + ";")
    lines.append('  subgraph cluster_legend { label="legend"; fontname=Helvetica; fontsize=10; color="#bbbbbb";')
    for kind in (k for k in KINDS if k in kinds):
        fill, _, shape, text = KINDS[kind]
        font = ', fontcolor="white"' if kind == "io" else ""
        lines.append(f'    "legend_{kind}" [label="{text}", shape={shape}, style="{_DOT_STYLE[kind]}", '
                     f'fillcolor="{fill}", fontsize=9{font}];')
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- layered layout ----------------------------------------------------------------------------------
def layered_layout(g: Graph, sweeps: int = 4) -> list[list[str]]:
    """Node ids by layer: a node's layer is its longest path from an input over forward (not
    recurrent) edges; within a layer nodes are ordered by the mean position of their neighbours in
    the layers before (and, on upward sweeps, after) it, which removes most edge crossings."""
    delayed = _delayed(g)
    same_step = [e for e in g.edges() if (e.src, e.dst, e.port) not in delayed]
    layer: dict[str, int] = {}
    for n in g.topological_order():
        layer[n] = max((layer[e.src] + 1 for e in same_step if e.dst == n), default=0)
    for o in g.outputs:  # outputs at the bottom, below everything
        layer[o] = max(layer.values())
    layers: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in g.topological_order():
        layers[layer[n]].append(n)
    forward = {(e.src, e.dst) for e in same_step if layer[e.src] < layer[e.dst]}
    preds: dict[str, list[str]] = {n: [] for n in layer}
    succs: dict[str, list[str]] = {n: [] for n in layer}
    for u, v in forward:
        preds[v].append(u)
        succs[u].append(v)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        pos = {n: i - (len(lay) - 1) / 2 for lay in layers for i, n in enumerate(lay)}
        for lay in (layers[1:] if down else layers[-2::-1]):
            neighbours = preds if down else succs

            def centre(n, neighbours=neighbours, pos=pos):
                near = neighbours[n]
                return sum(pos[m] for m in near) / len(near) if near else pos[n]

            lay.sort(key=centre)
            pos.update({n: i - (len(lay) - 1) / 2 for i, n in enumerate(lay)})
    return layers


# -- matplotlib drawing ------------------------------------------------------------------------------
def _positions(layers: list[list[str]], rows_per_column: int, column_width: float) -> dict[str, tuple[float, float]]:
    width = max(len(lay) for lay in layers)
    pos = {}
    for k, lay in enumerate(layers):
        column, row = divmod(k, rows_per_column)
        for i, n in enumerate(lay):
            pos[n] = ((column * (width + 0.6) + i - (len(lay) - 1) / 2) * column_width, -row)
    return pos


def _arc_middle(ax, start, end, rad: float) -> tuple[float, float]:
    """The midpoint of matplotlib's ``arc3`` curve from ``start`` to ``end`` (data coordinates); the
    curve is a quadratic Bezier whose control point is built in display space."""
    (x1, y1), (x2, y2) = ax.transData.transform([start, end])
    mx, my = (x1 + x2) / 2 + rad / 2 * (y2 - y1), (y1 + y2) / 2 - rad / 2 * (x2 - x1)
    return tuple(ax.transData.inverted().transform((mx, my)))


def draw_matplotlib(g: Graph, path: str | os.PathLike, max_rows: int = 11) -> Path:
    """Draw ``g`` with matplotlib (see the module docstring); ``.png`` or ``.svg``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch
    except ImportError:
        raise ImportError("drawing to SVG/PNG needs Graphviz ('dot') or matplotlib (pip install matplotlib); "
                          "render to a .dot file instead") from None
    path = Path(path)
    layers = layered_layout(g)
    columns = max(1, math.ceil(len(layers) / max_rows))
    rows = math.ceil(len(layers) / columns)
    width = max(len(lay) for lay in layers)
    column_width = 2.3  # inches per node slot
    pos = _positions(layers, rows, 1.0)
    region = _regions(g)
    delayed = _delayed(g)
    plan = g.meta.get("schedule", {}).get("regions", [])
    entries = len({op_kind(n) for n in g}) + bool(delayed) + min(len(plan), len(REGION_COLOURS))
    fig_w = max(6.0, columns * (width + 0.6) * column_width)
    legend_columns = max(1, min(4, entries, int(fig_w // 2.9)))
    top = 0.45 + 0.2 * math.ceil(entries / legend_columns)  # inches for the title and the legend
    fig_h = top + 0.3 + rows * 0.95
    dpi = 110  # drawn once before the arrows are placed: the same dpi when saving keeps boxes where they were
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=dpi)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - top / fig_h)  # before the first draw
    xs = [x for x, _ in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_axis_off()
    texts = {}
    kinds = []
    for n in g:
        kind = op_kind(n)
        kinds.append(kind)
        fill, box, _, _ = KINDS[kind]
        edge = REGION_COLOURS[region[n.id] % len(REGION_COLOURS)] if n.id in region else "#555555"
        x, y = pos[n.id]
        texts[n.id] = ax.text(x, y, "\n".join(node_lines(n)), ha="center", va="center", fontsize=7.5,
                              color="white" if kind == "io" else "black", zorder=3, linespacing=1.25,
                              bbox={"boxstyle": box, "fc": fill, "ec": edge, "lw": 1.6})
    fig.canvas.draw()  # sizes the boxes, so arrows can stop at their edges
    drawn: dict[tuple[str, str], int] = {}
    for e in g.edges():
        u, v, late = e.src, e.dst, (e.src, e.dst, e.port) in delayed
        (xu, yu), (xv, yv) = pos[u], pos[v]
        repeat = drawn.get((u, v), 0)  # several edges between two nodes (h + h) fan out
        drawn[(u, v)] = repeat + 1
        if late:
            style = {"color": "#c62828", "linestyle": "--", "connectionstyle": "arc3,rad=-0.55"}
        elif xu != xv and abs(xu - xv) > width:  # to the next column
            style = {"color": "#888888", "connectionstyle": "arc3,rad=0.15"}
        else:
            skips = round(yu - yv) > 1 and abs(xu - xv) < 0.5  # would cross the boxes in between
            rad = 0.35 if skips else 0.0
            style = {"color": "#333333", "connectionstyle": f"arc3,rad={rad + 0.25 * repeat}"}
        ax.annotate("", xy=(xv, yv), xytext=(xu, yu), zorder=2,
                    arrowprops={"arrowstyle": "-|>", "patchA": texts[u].get_bbox_patch(),
                                "patchB": texts[v].get_bbox_patch(), "shrinkA": 2, "shrinkB": 2,
                                "lw": 1.0, "mutation_scale": 10, **style})
        if late:
            ax.text(*_arc_middle(ax, (xu, yu), (xv, yv), -0.55), "t-1", fontsize=7, color="#c62828", ha="center",
                    va="center", zorder=4, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
    handles = [Patch(facecolor=KINDS[k][0], edgecolor="#555555", label=KINDS[k][3]) for k in KINDS if k in kinds]
    if delayed:
        handles.append(Line2D([], [], color="#c62828", linestyle="--", label="edge reading the previous step (t-1)"))
    for i, r in enumerate(plan[:len(REGION_COLOURS)]):
        handles.append(Patch(facecolor="white", edgecolor=REGION_COLOURS[i], linewidth=1.6,
                             label=f"region {i}: {r['mode']}"))
    fig.suptitle(f"{g.name}: {len(g)} nodes", y=1 - 0.08 / fig_h, va="top", fontsize=9)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / fig_h), ncol=legend_columns,
               fontsize=7.5, frameon=False)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def render(g: Graph, path: str | os.PathLike, engine: str = "auto") -> Path:
    """Draw ``g`` to ``path``: ``.dot`` (DOT text), ``.svg`` or ``.png``.

    ``engine="auto"`` uses Graphviz's ``dot`` when it is on the PATH, else matplotlib (and warns
    with a ``GraphvizHint`` when the graph is large or branched enough for Graphviz to draw it
    better); ``"graphviz"`` or ``"matplotlib"`` choose one.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".dot", ".svg", ".png"):
        raise ValueError(f"render writes .dot, .svg or .png files, got {path.name!r}")
    if engine not in ("auto", "graphviz", "matplotlib"):
        raise ValueError(f"render engine must be 'auto', 'graphviz' or 'matplotlib', got {engine!r}")
    g = g.copy().validate() if any(n.shape is None for n in g) else g
    if suffix == ".dot":
        path.write_text(to_dot(g))
        return path
    dot = shutil.which("dot")
    if engine == "graphviz" and not dot:
        raise FileNotFoundError("render(engine='graphviz') needs Graphviz's 'dot' on the PATH (apt install graphviz)")
    if dot and engine != "matplotlib":
        subprocess.run([dot, f"-T{suffix[1:]}", "-o", str(path)], input=to_dot(g), text=True, check=True)
        return path
    branches = sum(len(g.successors(n.id)) > 1 for n in g)
    if engine == "auto" and (len(g) >= _HINT_NODES or branches >= _HINT_BRANCHES):
        where = f"{len(g)} nodes" + (f", {branches} branching" if branches else "")
        warnings.warn(f"drew {g.name!r} ({where}) with matplotlib's "
                      "layered layout; with Graphviz installed ('dot' on the PATH: apt install graphviz, brew "
                      "install graphviz or conda install graphviz) snnir routes edges around the boxes instead",
                      GraphvizHint, stacklevel=2)
    return draw_matplotlib(g, path)

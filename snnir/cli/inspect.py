"""``snnir inspect``: a .snnir file's node table, and optionally a drawing."""

from __future__ import annotations

import argparse
import sys
import warnings

from snnir.cli._common import GRAPH_HELP, add_verb, load_array, load_graph

EXAMPLES = """
snnir inspect model.snnir                       # node, op, inputs, shape, params, state, region
snnir inspect model.snnir --render model.png    # also draw it (.png, .svg or .dot)
snnir inspect model.snnir --ops input.npy       # + operation/energy counts on a [T, N, ...] batch

Drawings use Graphviz's dot when it is installed, else matplotlib's layered layout (the note on
stderr says when Graphviz would draw a large or branching graph better).
"""


def run(args: argparse.Namespace) -> int:
    from snnir.inspect import GraphvizHint, inspect, render
    graph = load_graph(args.file)
    print(f"{graph!r} from {args.file}")
    inspect(graph)
    if args.ops:
        _print_ops(graph, args.ops)
    if args.render:
        with warnings.catch_warnings(record=True) as hints:
            warnings.simplefilter("always", GraphvizHint)
            print(f"drawn to {render(graph, args.render)}")
        for hint in hints:
            print(f"note: {hint.message}", file=sys.stderr)
    return 0


def _print_ops(graph, input_path: str) -> None:
    """Operation and energy counts of ``graph`` on the ``[T, N, ...]`` batch in ``input_path`` (.npy),
    and the Loihi cores it needs when it maps to Loihi."""
    from snnir.analysis import count_ops, loihi_resources
    from snnir.errors import LoihiMappingError

    x = load_array(input_path, "--ops")  # never unpickled; numeric and finite
    print(f"\noperations on {input_path} (shape {list(x.shape)}: [T, N, ...]):")
    print(count_ops(graph, x))
    try:
        print(f"\nLoihi mapping:\n{loihi_resources(graph)}")
    except LoihiMappingError as e:
        print(f"\nLoihi mapping: not mappable ({e})")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "inspect", "print a .snnir file's nodes, shapes, params and state", EXAMPLES)
    p.add_argument("file", help=GRAPH_HELP)
    p.add_argument("--render", metavar="PATH", help="also draw the graph (.svg, .png or .dot)")
    p.add_argument("--ops", metavar="INPUT.npy", help="also count operations and energy on this [T, N, ...] batch")
    p.set_defaults(func=run)

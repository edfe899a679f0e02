"""``snnir inspect``: a .snnir file's node table, and optionally a drawing."""

from __future__ import annotations

import argparse
import sys
import warnings

from snnir.cli._common import add_verb

EXAMPLES = """
snnir inspect model.snnir                       # node, op, inputs, shape, params, state, region
snnir inspect model.snnir --render model.png    # also draw it (.png, .svg or .dot)

Drawings use Graphviz's dot when it is installed, else matplotlib's layered layout (the note on
stderr says when Graphviz would draw a large or branching graph better).
"""


def run(args: argparse.Namespace) -> int:
    from snnir.inspect import GraphvizHint, inspect, render
    from snnir.serialization import load

    graph = load(args.file)
    print(f"{graph!r} from {args.file}")
    inspect(graph)
    if args.render:
        with warnings.catch_warnings(record=True) as hints:
            warnings.simplefilter("always", GraphvizHint)
            print(f"drawn to {render(graph, args.render)}")
        for hint in hints:
            print(f"note: {hint.message}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "inspect", "print a .snnir file's nodes, shapes, params and state", EXAMPLES)
    p.add_argument("file")
    p.add_argument("--render", metavar="PATH", help="also draw the graph (.svg, .png or .dot)")
    p.set_defaults(func=run)

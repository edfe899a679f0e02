"""``snnir optimize``: run graph passes on a .snnir file."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from snnir.inspect import inspect
    from snnir.passes import optimize
    from snnir.serialization import load, save

    graph = optimize(load(args.input), args.passes, check=args.check)
    save(graph, args.output)
    inspect(graph)
    print(f"{len(graph)} nodes written to {args.output}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("optimize", help="run graph passes on a .snnir file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--passes", nargs="+", default=None, help="pass names (default: the standard pipeline)")
    p.add_argument("--check", action="store_true", help="prove each pass keeps the outputs (needs torch)")
    p.set_defaults(func=run)

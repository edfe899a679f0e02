"""The ``snnir`` command line.

    snnir inspect model.snnir      # node table: op, shapes, params, state
    snnir version
"""

from __future__ import annotations

import argparse
import sys

from snnir.errors import SnnirError


def _inspect(args: argparse.Namespace) -> int:
    from snnir.serialization import load

    graph = load(args.file)
    print(f"{graph!r} from {args.file}")
    print(graph.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snnir`` console script."""
    parser = argparse.ArgumentParser(prog="snnir", description="snnir: spiking neural networks on one graph IR")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print a .snnir file's nodes, shapes, params and state")
    p.add_argument("file")
    p.set_defaults(func=_inspect)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda a: print(__import__("snnir").__version__) or 0)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (SnnirError, OSError) as e:
        print(f"snnir {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

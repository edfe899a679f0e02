"""The ``snnir`` command line: one module per verb, this file only assembles them.

    snnir inspect model.snnir [--render model.svg]   # node table (and a drawing)
    snnir optimize model.snnir optimized.snnir [--passes fold_batchnorm schedule] [--check]
    snnir export model.snnir net.h5 --format lava     # lava (netx HDF5), nir, onnx [--dt 1e-4] [--unroll T]
    snnir version

Each verb module has ``add_parser(subparsers)``, which declares its arguments and sets ``func``
(``args -> exit code``). Adding a verb is one module and one line in ``VERBS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from snnir.errors import SnnirError

# one verb module per line (sorted), so branches that add verbs merge cleanly
VERBS = (
    "export",
    "inspect",
    "optimize",
    "version",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``snnir`` argument parser with every verb in ``VERBS``."""
    parser = argparse.ArgumentParser(prog="snnir", description="snnir: spiking neural networks on one graph IR")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for verb in VERBS:
        importlib.import_module(f"snnir.cli.{verb}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snnir`` console script; returns the exit code (0 success, 1 error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SnnirError, OSError, ValueError) as e:
        print(f"snnir {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

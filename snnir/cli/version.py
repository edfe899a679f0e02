"""``snnir version``: print the installed version."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import snnir

    print(snnir.__version__)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=run)

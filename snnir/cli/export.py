"""``snnir export``: a .snnir graph to a netx (Loihi), NIR or streaming ONNX file."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from snnir.faces import export
    from snnir.serialization import load

    kwargs = {}
    if args.dt is not None:
        kwargs["dt"] = args.dt
    if args.unroll is not None:
        kwargs["unroll"] = args.unroll
    export(load(args.input), args.output, format=args.format, **kwargs)
    print(f"{args.input} written to {args.output} ({args.format})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a .snnir graph as a netx (Loihi), NIR or streaming ONNX file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--format", required=True, choices=["lava", "nir", "onnx"])
    p.add_argument("--dt", type=float, default=None, help="NIR: the time step in seconds (default 1e-4)")
    p.add_argument("--unroll", type=int, default=None, help="ONNX: write a whole T-step sequence model")
    p.set_defaults(func=run)

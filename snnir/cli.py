"""The ``snnir`` command line.

    snnir inspect model.snnir [--render model.svg]   # node table (and a drawing)
    snnir inspect model.snnir --ops input.npy         # + operation/energy counts on a [T, N, ...] batch
    snnir optimize model.snnir optimized.snnir [--passes fold_batchnorm schedule] [--check]
    snnir export model.snnir net.h5 --format lava     # lava (netx HDF5), nir, onnx [--dt 1e-4] [--unroll T]
    snnir version
"""

from __future__ import annotations

import argparse
import sys

from snnir.errors import SnnirError


def _inspect(args: argparse.Namespace) -> int:
    from snnir.inspect import inspect, render
    from snnir.serialization import load

    graph = load(args.file)
    print(f"{graph!r} from {args.file}")
    inspect(graph)
    if args.render:
        print(f"drawn to {render(graph, args.render)}")
    if args.ops:
        _print_ops(graph, args.ops)
    return 0


def _print_ops(graph, input_path: str) -> None:
    """Operation and energy counts of ``graph`` on the ``[T, N, ...]`` batch in ``input_path`` (.npy),
    and the Loihi cores it needs when it maps to Loihi."""
    import numpy as np

    from snnir.analysis import count_ops, loihi_resources
    from snnir.errors import LoihiMappingError

    try:
        x = np.load(input_path, allow_pickle=False)
    except (EOFError, ValueError) as e:  # empty, truncated or pickled: refused, never unpickled
        raise ValueError(f"{input_path} is not a readable .npy array: {e}") from None
    print(f"\noperations on {input_path} (shape {list(x.shape)}: [T, N, ...]):")
    print(count_ops(graph, x))
    try:
        print(f"\nLoihi mapping:\n{loihi_resources(graph)}")
    except LoihiMappingError as e:
        print(f"\nLoihi mapping: not mappable ({e})")


def _optimize(args: argparse.Namespace) -> int:
    from snnir.inspect import inspect
    from snnir.passes import optimize
    from snnir.serialization import load, save

    graph = optimize(load(args.input), args.passes, check=args.check)
    save(graph, args.output)
    inspect(graph)
    print(f"{len(graph)} nodes written to {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snnir`` console script."""
    parser = argparse.ArgumentParser(prog="snnir", description="snnir: spiking neural networks on one graph IR")
    parser.add_argument("--trusted", action="store_true", help="the input files are trusted: parse HDF5/.mat "
                        "in this process (default: safe mode, in a child process with memory and time limits)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print a .snnir file's nodes, shapes, params and state")
    p.add_argument("file")
    p.add_argument("--render", metavar="PATH", help="also draw the graph (.svg, .png or .dot)")
    p.add_argument("--ops", metavar="INPUT.npy", help="also count operations and energy on this [T, N, ...] batch")
    p.set_defaults(func=_inspect)
    p = sub.add_parser("optimize", help="run graph passes on a .snnir file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--passes", nargs="+", default=None, help="pass names (default: the standard pipeline)")
    p.add_argument("--check", action="store_true", help="prove each pass keeps the outputs (needs torch)")
    p.set_defaults(func=_optimize)
    p = sub.add_parser("export", help="write a .snnir graph as a netx (Loihi), NIR or streaming ONNX file")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--format", required=True, choices=["lava", "nir", "onnx"])
    p.add_argument("--dt", type=float, default=None, help="NIR: the time step in seconds (default 1e-4)")
    p.add_argument("--unroll", type=int, default=None, help="ONNX: write a whole T-step sequence model")
    p.set_defaults(func=_export)
    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda a: print(__import__("snnir").__version__) or 0)
    args = parser.parse_args(argv)
    from snnir import limits

    try:
        with limits.override(safe=not args.trusted):  # files given on a command line come from anywhere
            return args.func(args)
    except (SnnirError, OSError, ValueError) as e:
        print(f"snnir {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

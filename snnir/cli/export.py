"""``snnir export``: a .snnir graph to a streaming ONNX, NIR or netx (Loihi) file, by its extension."""

from __future__ import annotations

import argparse
from pathlib import Path

from snnir.cli._common import GRAPH_HELP, CliError, add_verb, load_graph

#: file extension -> export format (``snnir.faces.EXPORTERS``)
FORMAT_OF_EXTENSION = {".onnx": "onnx", ".nir": "nir", ".h5": "lava", ".hdf5": "lava", ".net": "lava"}

EXAMPLES = """
snnir export model.snnir model.onnx              # one time step, state as inputs/outputs (onnxruntime)
snnir export model.snnir model.onnx --unroll 32  # a whole 32-step sequence model
snnir export model.snnir model.nir --dt 1e-3     # NIR (snnTorch, Norse, SpikingJelly, Lava, ...)
snnir export model.snnir network.net             # Loihi: lava-dl netx HDF5 (.net, .h5)
snnir export model.snnir weights.bin --format onnx

The format comes from the output's extension (.onnx, .nir, .h5/.hdf5/.net); --format overrides it.
"""


def format_for(path: str, explicit: str | None) -> str:
    """The export format: ``explicit`` if given, else the one ``path``'s extension names."""
    if explicit:
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_OF_EXTENSION:
        known = ", ".join(f"{ext} ({fmt})" for ext, fmt in FORMAT_OF_EXTENSION.items())
        raise CliError(f"cannot tell the export format of {path!r} from its extension {suffix or '(none)'!r}; "
                       f"use one of {known}, or pass --format")
    return FORMAT_OF_EXTENSION[suffix]


def run(args: argparse.Namespace) -> int:
    from snnir.faces import export
    fmt = format_for(args.output, args.format)
    kwargs = {}
    if args.dt is not None:
        if fmt != "nir":
            raise CliError(f"--dt applies to NIR export, not {fmt}")
        kwargs["dt"] = args.dt
    if args.unroll is not None:
        if fmt != "onnx":
            raise CliError(f"--unroll applies to ONNX export, not {fmt}")
        kwargs["unroll"] = args.unroll
    export(load_graph(args.input), args.output, format=fmt, **kwargs)
    print(f"{args.input} written to {args.output} ({fmt})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "export", "write a .snnir graph as a streaming ONNX, NIR or netx (Loihi) file", EXAMPLES)
    p.add_argument("input", help=GRAPH_HELP)
    p.add_argument("output", help="the file to write; its extension picks the format")
    from snnir.faces import EXPORTERS

    p.add_argument("--format", choices=sorted(EXPORTERS),
                   help="override the format the extension implies")
    p.add_argument("--dt", type=float, default=None, help="NIR: the time step in seconds (default 1e-4)")
    p.add_argument("--unroll", type=int, default=None, help="ONNX: write a whole T-step sequence model")
    p.set_defaults(func=run)

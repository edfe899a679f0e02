"""The ``snnir`` command line: one module per verb, this file only assembles them.

    snnir trace models.py:make_model --input-shape 16,8,1,28,28 -o model.snnir   # torch -> graph
    snnir convert ann.onnx --calibration calib.npy -T 32 --mode 99.9% -o snn.snnir  # ANN -> SNN
    snnir inspect model.snnir [--render model.png]     # node table (and a drawing)
    snnir optimize model.snnir optimized.snnir [--passes ...] [--check]
    snnir run model.snnir --input x.npy [--backend torch|lava] -o out.npy   # outputs, firing rates
    snnir bench model.snnir --input-shape 16,32        # fwd, fwd+bwd ms, peak memory, per-node time
    snnir export model.snnir net.onnx                  # format from the extension: .onnx .nir .h5/.net
    snnir version

``snnir <verb> --help`` shows each verb's options and examples.

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
    "bench",
    "convert",
    "export",
    "inspect",
    "optimize",
    "run",
    "trace",
    "version",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``snnir`` argument parser with every verb in ``VERBS``."""
    parser = argparse.ArgumentParser(prog="snnir", description="snnir: spiking neural networks on one graph IR")
    parser.add_argument("--trusted", action="store_true", help="the input files are trusted: parse HDF5/.mat "
                        "in this process (default: safe mode, in a child process with memory and time limits)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for verb in VERBS:
        importlib.import_module(f"snnir.cli.{verb}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snnir`` console script; returns the exit code (0 success, 1 error)."""
    args = build_parser().parse_args(argv)
    from snnir import limits

    try:
        with limits.override(safe=not args.trusted):  # files given on a command line come from anywhere
            return args.func(args)
    except (SnnirError, OSError, ValueError) as e:
        print(f"snnir {args.command}: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # a backend that cannot run here (no GPU, no CuPy) says why
        print(f"snnir {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except ImportError as e:  # an optional dependency (onnx, h5py, nir, matplotlib) is missing
        print(f"snnir {args.command}: error: {e} (see the extras in README: pip install 'snnir[onnx]', ...)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

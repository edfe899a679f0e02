"""``snnir optimize``: run graph passes on a .snnir file, optionally proving they keep the outputs."""

from __future__ import annotations

import argparse

import numpy as np

from snnir.cli._common import GRAPH_HELP, add_verb, load_graph

EXAMPLES = """
snnir optimize model.snnir optimized.snnir                  # the standard pipeline
snnir optimize model.snnir optimized.snnir --check          # ... and prove it kept the outputs
snnir optimize model.snnir q.snnir --passes quantize schedule

--check runs the torch backend before and after every pass on the same random input and stops
at the first pass that changes an output (exit status 1, the pass named); then it prints the
verdict: how the optimized graph's outputs compare with the original's.
"""


def verdict(before: list[np.ndarray], after: list[np.ndarray]) -> list[str]:
    """One line per output: spikes compared element by element, analog values by max difference."""
    lines = []
    for i, (a, b) in enumerate(zip(before, after)):
        if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
            lines.append(f"output {i}: spikes {tuple(a.shape)}, {int((a != b).sum())} of {a.size} differ")
        else:
            lines.append(f"output {i}: values {tuple(a.shape)}, max |difference| {float(np.abs(a - b).max()):.3g}")
    return lines


def run(args: argparse.Namespace) -> int:
    from snnir.inspect import inspect
    from snnir.passes import DEFAULT_PIPELINE, optimize
    from snnir.passes.pipeline import run_torch
    from snnir.serialization import save

    graph = load_graph(args.input)
    optimized = optimize(graph, args.passes, check=args.check, T=args.check_steps)
    save(optimized, args.output)
    inspect(optimized)
    print(f"{len(graph)} -> {len(optimized)} nodes written to {args.output}")
    if args.check:
        rng = np.random.default_rng(1)  # another input than the per-pass check's
        inputs = [rng.uniform(0, 1.5, (args.check_steps, 4, *graph.node(i).shape)).astype(np.float32)
                  for i in graph.inputs]
        passes = list(DEFAULT_PIPELINE if args.passes is None else args.passes)
        print(f"check passed: every pass of {', '.join(passes)} kept the outputs on random input. "
              f"Original vs optimized on a fresh input [T={args.check_steps}, N=4]:")
        for line in verdict(run_torch(graph, inputs), run_torch(optimized, inputs)):
            print("  " + line)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "optimize", "run graph passes on a .snnir file", EXAMPLES)
    p.add_argument("input", help=GRAPH_HELP)
    p.add_argument("output")
    p.add_argument("--passes", nargs="+", default=None, help="pass names (default: the standard pipeline)")
    p.add_argument("--check", action="store_true", help="prove each pass keeps the outputs (needs torch)")
    p.add_argument("--check-steps", type=int, default=6, help="time steps of the check's random input (6)")
    p.set_defaults(func=run)

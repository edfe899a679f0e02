"""``snnir trace``: a torch model built by a Python factory -> a ``.snnir`` graph file."""

from __future__ import annotations

import argparse

from snnir.cli._common import CliError, add_verb, call_factory, literal_kwargs, load_weights, parse_shape

EXAMPLES = """
snnir trace models.py:make_model --input-shape 16,8,1,28,28 -o model.snnir
snnir trace models.py:make_model --weights trained.pt --input-shape 16,1,2,34,34 -o model.snnir
snnir trace models.py:make_model --arg hidden=256 --arg tau=2.0 --input-shape 25,1,700 -o shd.snnir
snnir trace mypackage.nets:resnet --input-shape 1,3,32,32 --no-time-axis -o resnet.snnir

The factory is called with the --arg values and must return a torch.nn.Module built from snnir.nn
neurons and torch layers; --weights loads a state_dict saved with torch.save(model.state_dict(), ...)
(read with torch.load(weights_only=True), so no code in it runs) or a .safetensors file.
The model is traced in eval mode on a zero input of --input-shape ([T, N, ...]; the values do not
matter, only the per-sample shape).
"""


def run(args: argparse.Namespace) -> int:
    import torch

    from snnir.faces import trace
    from snnir.serialization import save

    shapes = [parse_shape(s, "--input-shape", min_rank=2 if args.time_axis else 1) for s in args.input_shape]
    model = call_factory(args.factory, literal_kwargs(args.arg))
    if not isinstance(model, torch.nn.Module):
        raise CliError(f"factory {args.factory} returned {type(model).__name__}, expected a torch.nn.Module")
    if args.weights:
        load_weights(model, args.weights)
    model.eval()
    examples = [torch.zeros(s) for s in shapes]
    graph = trace(model, examples[0] if len(examples) == 1 else tuple(examples), time_axis=args.time_axis,
                  name=args.name)
    save(graph, args.output)
    print(graph.summary())
    print(f"{len(graph)} nodes written to {args.output}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "trace", "trace a torch model (from a Python factory) into a .snnir file", EXAMPLES)
    p.add_argument("factory", help="FILE.py:FUNCTION or package.module:FUNCTION returning the torch module")
    p.add_argument("--input-shape", required=True, action="append", metavar="T,N,...",
                   help="example input shape, time first (repeat once per input of a multi-input model)")
    p.add_argument("-o", "--output", required=True, help="the .snnir file to write")
    p.add_argument("--weights", help="a state_dict file (.pt/.pth via torch.load(weights_only=True), or .safetensors)")
    p.add_argument("--arg", action="append", metavar="NAME=VALUE", help="a keyword argument for the factory "
                   "(a Python literal; repeatable)")
    p.add_argument("--no-time-axis", dest="time_axis", action="store_false",
                   help="--input-shape is [N, ...] without the time axis")
    p.add_argument("--name", help="graph name (default: the model's class name)")
    p.set_defaults(func=run)

"""``snnir convert``: a trained ANN (ONNX file or torch factory) -> a calibrated SNN ``.snnir`` file."""

from __future__ import annotations

import argparse

from snnir.cli._common import (
    CliError,
    add_verb,
    call_factory,
    existing_file,
    literal_kwargs,
    load_array,
    load_weights,
)

EXAMPLES = """
snnir convert ann.onnx --calibration calib.npy -T 32 --mode 99.9% -o snn.snnir
snnir convert models.py:make_ann --weights ann.pt --calibration calib.npy --mode max --channel-wise -o snn.snnir
snnir convert ann.onnx --calibration calib.npy --mode 0.9 --decode rate -o snn.snnir

--calibration is a .npy array [N, ...] of training inputs (no time axis), cut into --batch-size
batches; --mode is 'max', a percentile like 99.9%, or a float in (0, 1] times the max. Run the
result on [T, N, ...] input (the image repeated each step) with `snnir run`, and average the
output over time (decode membrane) or count its spikes (decode rate).
"""


def _mode(text: str) -> str | float:
    if text == "max" or text.endswith("%"):
        return text
    try:
        return float(text)
    except ValueError:
        raise CliError(f"--mode {text!r}: expected 'max', a percentile like 99.9%, or a float in (0, 1]") from None


def run(args: argparse.Namespace) -> int:
    from snnir.conversion import convert
    from snnir.serialization import save

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be positive, got {args.batch_size}")
    mode = _mode(args.mode)
    data = load_array(args.calibration, "--calibration").astype("float32")
    if data.ndim < 2:
        raise CliError(f"--calibration {args.calibration!r}: expected [N, ...] samples, got shape {data.shape}")
    batches = [data[i:i + args.batch_size] for i in range(0, len(data), args.batch_size)]
    if args.model.endswith(".onnx"):
        if args.weights or args.arg:
            raise CliError("--weights and --arg apply to a torch factory, not to an .onnx file")
        model = str(existing_file(args.model, "ANN"))
    else:
        import torch

        model = call_factory(args.model, literal_kwargs(args.arg))
        if not isinstance(model, torch.nn.Module):
            raise CliError(f"factory {args.model} returned {type(model).__name__}, expected a torch.nn.Module")
        if args.weights:
            load_weights(model, args.weights)
    graph = convert(model, calibration=batches, mode=mode, T=args.T, channel_wise=args.channel_wise,
                    decode=args.decode)
    save(graph, args.output)
    print(graph.summary())
    neurons = sum(1 for n in graph if n.op == "neuron")
    print(f"{len(graph)} nodes ({neurons} spiking layers, mode {args.mode}, T={args.T}, calibrated on "
          f"{len(data)} samples) written to {args.output}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "convert", "convert a trained ANN (.onnx or torch factory) to an SNN .snnir file", EXAMPLES)
    p.add_argument("model", help="an .onnx file, or FILE.py:FUNCTION returning the torch ANN")
    p.add_argument("--calibration", required=True, metavar="NPY", help="calibration inputs [N, ...] (.npy)")
    p.add_argument("-o", "--output", required=True, help="the .snnir file to write")
    p.add_argument("-T", type=int, default=32, help="time steps the SNN is meant to run (stored in the graph; 32)")
    p.add_argument("--mode", default="99.9%", help="'max', a percentile like 99.9%% (default), or a float in (0, 1]")
    p.add_argument("--channel-wise", action="store_true", help="one scale per channel instead of per layer")
    p.add_argument("--decode", choices=["membrane", "rate"], default="membrane", help="output decoding")
    p.add_argument("--batch-size", type=int, default=256, help="calibration batch size (256)")
    p.add_argument("--weights", help="a state_dict for the torch factory (torch.load(weights_only=True))")
    p.add_argument("--arg", action="append", metavar="NAME=VALUE", help="a keyword argument for the factory")
    p.set_defaults(func=run)

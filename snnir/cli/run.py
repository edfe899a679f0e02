"""``snnir run``: run a .snnir graph on a backend over an input file; outputs and firing rates."""

from __future__ import annotations

import argparse
import time

import numpy as np

from snnir.cli._common import GRAPH_HELP, CliError, add_verb, load_array, load_graph
from snnir.cli._execute import RateRecorder, backend_names, check_inputs, compile_graph, reset_state

EXAMPLES = """
snnir run model.snnir --input x.npy -o out.npy                   # x: [T, N, ...]
snnir run snn.snnir --input images.npy --repeat 32 --labels y.npy   # [N, ...] shown for 32 steps
snnir run model.snnir --input spikes.npy --backend lava         # Loihi's bit-accurate simulator
snnir run model.snnir --input x.npy --device cuda --batch-size 256

Prints each spiking layer's firing rate (spikes per neuron per time step, averaged over neurons),
its most active neuron's rate and the share of neurons that never fired. --labels y.npy ([N]
integers) prints the accuracy of the output averaged over time (membrane or rate decoding).
Samples are independent: they run in --batch-size chunks, neuron state reset between chunks.
Every node's output is checked for NaN/Inf (torch and cupy backends): the first node where one
appears is named with its time step and sample. The check costs one reduction per node and step
block (a few percent on CPU; a device sync per node on a GPU): --no-check-finite turns it off.
"""


def _outputs(result) -> list[np.ndarray]:
    items = result if isinstance(result, tuple) else (result,)
    return [x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in items]


def run_chunks(compiled, device, arrays: list[np.ndarray], batch_size: int, recorder: RateRecorder,
               progress: bool = True) -> list[np.ndarray]:
    """Outputs over all samples, computed ``batch_size`` samples at a time (a tqdm bar)."""
    from tqdm import tqdm

    n = arrays[0].shape[1]
    chunks = range(0, n, batch_size)
    outs: list[list[np.ndarray]] = []
    for start in tqdm(chunks, desc="running", unit="chunk", disable=not progress or len(chunks) < 2):
        part = [a[:, start:start + batch_size] for a in arrays]
        reset_state(compiled)
        if device is not None:
            import torch

            with torch.no_grad():
                result = compiled(*[torch.from_numpy(np.ascontiguousarray(p)).to(device) for p in part])
        else:
            if len(part) != 1:
                raise CliError(f"backend object {type(compiled).__name__} runs one input; the graph has {len(part)}")
            result = compiled.run(part[0])
            if isinstance(getattr(compiled, "spikes", None), dict):
                recorder.add_recorded(compiled.spikes)
        outs.append(_outputs(result))
    return [np.concatenate(o, axis=1) for o in zip(*outs)]


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be positive, got {args.batch_size}")
    graph = load_graph(args.model)
    arrays = [load_array(p, "--input").astype(np.float32) for p in args.input]
    if args.repeat is not None:
        if args.repeat < 1:
            raise CliError(f"--repeat must be a positive number of time steps, got {args.repeat}")
        arrays = [np.broadcast_to(a, (args.repeat, *a.shape)) for a in arrays]
    check_inputs(graph, arrays, [f"--input {p}" for p in args.input])
    labels = None
    if args.labels:
        labels = load_array(args.labels, "--labels")
        if labels.shape != (arrays[0].shape[1],) or not np.issubdtype(labels.dtype, np.integer):
            raise CliError(f"--labels {args.labels!r}: expected {arrays[0].shape[1]} integer labels [N], "
                           f"got {labels.dtype} {labels.shape}")
    compiled, device = compile_graph(graph, args.backend, args.device, check_finite=args.check_finite)
    recorder = RateRecorder(graph).attach(compiled)
    t0 = time.perf_counter()
    try:
        outputs = run_chunks(compiled, device, arrays, args.batch_size, recorder, progress=not args.quiet)
    finally:
        recorder.detach()
    seconds = time.perf_counter() - t0
    T, N = arrays[0].shape[:2]
    where = f"{args.backend}" + (f", {device}" if device is not None else "")
    shapes = ", ".join(str(list(o.shape)) for o in outputs)
    print(f"{args.model}: {N} samples x {T} steps on {where} in {seconds:.2f} s -> output {shapes}")
    if recorder.layers:
        print("firing rates (spikes per neuron per step):")
        print(recorder.table())
    if labels is not None:
        predicted = outputs[0].reshape(T, N, -1).mean(0).argmax(-1)
        print(f"accuracy {np.mean(predicted == labels) * 100:.2f}% ({int(np.sum(predicted == labels))} of {N}, "
              "output averaged over time)")
    if args.output:
        _save(args.output, outputs, graph.outputs)
        print(f"output written to {args.output}")
    return 0


def _save(path: str, outputs: list[np.ndarray], names: list[str]) -> None:
    if path.endswith(".npz"):
        np.savez(path, **dict(zip(names, outputs)))
    elif len(outputs) == 1:
        np.save(path, outputs[0])
    else:
        raise CliError(f"-o {path!r}: the graph has {len(outputs)} outputs; write them to an .npz file")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "run", "run a .snnir graph on an input file and summarize its firing rates", EXAMPLES)
    p.add_argument("model", help=GRAPH_HELP)
    p.add_argument("--input", required=True, action="append", metavar="NPY",
                   help="input array [T, N, ...] (.npy; repeat once per graph input)")
    p.add_argument("--backend", default="torch", choices=backend_names(), help="where to run it (torch)")
    p.add_argument("--device", default=None, help="torch device for torch-module backends (cpu, cuda, cuda:1)")
    p.add_argument("--repeat", type=int, metavar="T", help="the input is [N, ...]: present each sample for T steps")
    p.add_argument("--labels", metavar="NPY", help="integer labels [N]: print the accuracy")
    p.add_argument("--batch-size", type=int, default=1024, help="samples per chunk (1024)")
    p.add_argument("-o", "--output", help="write the output (.npy; .npz with one array per graph output)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-check-finite", dest="check_finite", action="store_false",
                   help="do not check each node's output for NaN/Inf (on by default; it costs a reduction per "
                        "node, a device sync on GPU)")
    p.set_defaults(func=run)

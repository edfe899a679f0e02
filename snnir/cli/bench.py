"""``snnir bench``: how fast a .snnir graph runs (fwd, fwd+bwd), its peak memory and where time goes."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from snnir.cli._common import GRAPH_HELP, CliError, add_verb, load_graph, parse_shape
from snnir.cli._execute import backend_names, compile_graph, reset_state

EXAMPLES = """
snnir bench model.snnir --input-shape 16,32                 # T=16, N=32, the graph's sample shape
snnir bench model.snnir --input-shape 16,32,2,34,34 --repeats 20 --threads 2
snnir bench model.snnir --input-shape 100,64 --spikes 0.1   # Bernoulli(0.1) spike input
snnir bench model.snnir --input-shape 16,256 --device cuda

Times are medians over --repeats runs after --warmup runs (spread: min..max), each from reset
neuron state on the same seeded random input: forward (inference, no autograd) and forward +
backward (sum of the outputs, gradients for every parameter and the input). Peak memory is the
growth of the process's peak resident memory during one forward+backward (CPU, Linux), or
torch.cuda.max_memory_allocated (GPU). Per-node times come from forward and backward hooks on
each node's module in separate runs (the hooks' overhead is not in the totals).
"""


def _sync(device: Any) -> Callable[[], None]:
    import torch

    if device is not None and device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _times(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None],
           desc: str, progress: bool) -> list[float]:
    from tqdm import tqdm

    for _ in range(warmup):
        fn()
    out = []
    for _ in tqdm(range(repeats), desc=desc, unit="run", disable=not progress, leave=False):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_memory_mib(fn: Callable[[], Any], device: Any) -> tuple[float | None, str]:
    """Memory one call of ``fn`` needs beyond what is live before it, and how it was measured."""
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "torch.cuda.max_memory_allocated"
    pool = sys.modules.get("snnir.backends.torch.buffers")
    if pool is not None:
        pool.release()  # the kernels' output pool starts empty, so its buffers count
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the kernel's peak-RSS counter (VmHWM)
    except OSError:
        return None, "peak RSS (unavailable: not Linux)"
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if base is None or peak is None:
        return None, "peak RSS (unavailable)"
    return (peak - base) / 1024, "process peak RSS growth"


def _per_node_ms(compiled: Any, graph: Any, run: Callable[[], Any], repeats: int, sync: Callable[[], None],
                 backward: bool) -> dict[str, tuple[float, float | None]]:
    """Median forward (and backward) ms per node over ``repeats`` runs, from module hooks."""
    layers = {n.id: compiled.layer(n.id) for n in graph if n.op not in ("input", "output")}
    fwd: dict[str, list[float]] = defaultdict(list)
    bwd: dict[str, list[float]] = defaultdict(list)
    acc_f: dict[str, float] = defaultdict(float)
    acc_b: dict[str, float] = defaultdict(float)
    start: dict[tuple[str, str], float] = {}
    hooks = []
    for node_id, m in layers.items():
        def pre(_m, _i, node_id=node_id):
            sync()
            start[("f", node_id)] = time.perf_counter()

        def post(_m, _i, _o, node_id=node_id):
            sync()
            acc_f[node_id] += (time.perf_counter() - start[("f", node_id)]) * 1000

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
        if backward:
            def bpre(_m, _g, node_id=node_id):
                sync()
                start[("b", node_id)] = time.perf_counter()

            def bpost(_m, _gi, _go, node_id=node_id):
                sync()
                if ("b", node_id) in start:
                    acc_b[node_id] += (time.perf_counter() - start.pop(("b", node_id))) * 1000

            hooks += [m.register_full_backward_pre_hook(bpre), m.register_full_backward_hook(bpost)]
    try:
        for _ in range(repeats):
            acc_f.clear()
            acc_b.clear()
            run()
            for node_id in layers:
                fwd[node_id].append(acc_f.get(node_id, 0.0))
                if backward:
                    bwd[node_id].append(acc_b.get(node_id, 0.0))
    finally:
        for h in hooks:
            h.remove()
    return {n: (statistics.median(fwd[n]), statistics.median(bwd[n]) if backward else None) for n in layers}


def _fmt(times: list[float]) -> str:
    return f"{statistics.median(times):10.3f} ms   ({min(times):.3f}..{max(times):.3f}, {len(times)} runs)"


def run(args: argparse.Namespace) -> int:
    import torch

    if args.repeats < 1 or args.warmup < 0:
        raise CliError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}")
    if args.spikes is not None and not 0 <= args.spikes <= 1:
        raise CliError(f"--spikes is a firing probability in [0, 1], got {args.spikes}")
    graph = load_graph(args.model)
    lead = parse_shape(args.input_shape, "--input-shape", min_rank=2)
    shapes = []
    for node_id in graph.inputs:
        sample = tuple(graph.node(node_id).shape)
        if len(lead) > 2 and lead[2:] != sample:
            raise CliError(f"--input-shape {args.input_shape}: graph input {node_id!r} takes [T, N, "
                           f"{', '.join(map(str, sample))}]; give T,N or the full shape")
        shapes.append((*lead[:2], *sample))
    if args.threads:
        torch.set_num_threads(args.threads)
    compiled, device = compile_graph(graph, args.backend, args.device)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(s, generator=gen) for s in shapes]
    if args.spikes is not None:
        xs = [(x < args.spikes).float() for x in xs]
    progress = not args.quiet
    where = f"{args.backend}" + (f", {device}" if device is not None else "")
    print(f"{args.model}: input {' + '.join(str(list(s)) for s in shapes)} on {where}, "
          f"{torch.get_num_threads()} threads")
    if device is None:  # a backend object with run(x): forward only
        arrays = [x.numpy() for x in xs]
        fwd = _times(lambda: compiled.run(*arrays), args.warmup, args.repeats, lambda: None, "forward", progress)
        print(f"forward          {_fmt(fwd)}")
        print("forward+backward n/a: this backend does not train")
        return 0
    xs = [x.to(device) for x in xs]
    sync = _sync(device)

    def forward() -> None:
        reset_state(compiled)
        with torch.no_grad():
            compiled(*xs)

    inputs = [x.clone().requires_grad_(True) for x in xs]

    def forward_backward() -> None:
        reset_state(compiled)
        compiled.zero_grad(set_to_none=True)
        out = compiled(*inputs)
        sum(o.float().sum() for o in (out if isinstance(out, tuple) else (out,))).backward()

    fwd = _times(forward, args.warmup, args.repeats, sync, "forward", progress)
    train = not args.no_backward
    if train:
        compiled.train()  # training-mode layers (dropout, batchnorm statistics), as when training
        fb = _times(forward_backward, args.warmup, args.repeats, sync, "forward+backward", progress)
        peak, how = _peak_memory_mib(forward_backward, device)
    else:
        peak, how = _peak_memory_mib(forward, device)
    print(f"forward          {_fmt(fwd)}")
    if train:
        print(f"forward+backward {_fmt(fb)}")
    print(f"peak memory      {'n/a' if peak is None else f'{peak:10.1f} MiB'}   ({how}, "
          f"{'forward+backward' if train else 'forward'})")
    if callable(getattr(compiled, "layer", None)):
        repeats = max(1, min(args.repeats, 5))
        try:
            per_node = _per_node_ms(compiled, graph, forward_backward if train else forward, repeats, sync, train)
        except RuntimeError as e:  # a layer that backward hooks cannot wrap (in-place ops on its output)
            print(f"per-node backward times unavailable ({str(e).splitlines()[0]}); forward only")
            train = False
            per_node = _per_node_ms(compiled, graph, forward, repeats, sync, False)
        _print_per_node(graph, per_node, train)
    return 0


def _print_per_node(graph: Any, per_node: dict[str, tuple[float, float | None]], train: bool) -> None:
    total = sum(f + (b or 0.0) for f, b in per_node.values()) or 1.0
    rows = [("node", "op", "fwd ms", "bwd ms" if train else "", "share")]
    for node_id, (f, b) in per_node.items():
        node = graph.node(node_id)
        op = f"{node.op}:{node.attrs['model']}" if node.op == "neuron" else node.op
        rows.append((node_id, op, f"{f:.3f}", f"{b:.3f}" if b is not None else "",
                     f"{(f + (b or 0.0)) / total * 100:.1f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print("per node (median of hooked runs):")
    for r in rows:
        print("  " + "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = add_verb(sub, "bench", "time a .snnir graph: fwd and fwd+bwd ms, peak memory, per-node time", EXAMPLES)
    p.add_argument("model", help=GRAPH_HELP)
    p.add_argument("--input-shape", required=True, metavar="T,N[,...]",
                   help="time steps and batch size (the sample shape comes from the graph)")
    p.add_argument("--backend", default="torch", choices=backend_names(), help="where to run it (torch)")
    p.add_argument("--device", default=None, help="torch device (cpu, cuda, ...)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs (10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, "
                   f"{os.cpu_count()} CPUs here)")
    p.add_argument("--spikes", type=float, default=None, metavar="P",
                   help="feed Bernoulli(P) spikes instead of uniform [0, 1) values")
    p.add_argument("--no-backward", action="store_true", help="time inference only")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)

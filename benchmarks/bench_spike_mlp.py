"""A spiking MLP's training step with and without the event-driven linear kernels, and SpikingJelly.

784-512-512-10 with a LIF after each linear layer (tau 2, hard reset to 0, threshold 1, ATan
surrogate), T = 25, B = 64, rate-coded (Poisson) input. A step is: reset, forward, cross-entropy on
the time-averaged readout, backward, SGD. Contenders, one set of weights, all in one process and
timed in interleaved rounds (order rotated per round; medians, min-max spread, ratios round by
round):

- ``snnir``: traced and compiled; the two linear layers fed by a LIF take ``spike_linear``'s event
  kernels when their input's counted density is below ``MAX_DENSITY`` (the 512->10 readout keeps
  the skinny kernel, the first layer the GEMM: its input is the encoder's, not a neuron's);
- ``snnir-dense``: the same compiled model with the event path switched off (``spike_input =
  False``): main's path before it existed;
- ``spikingjelly``: its multi-step ``layer.Linear`` and ``LIFNode`` (torch backend).

Peak memory: growth of peak RSS during one step, each contender in a process of its own.
``--scale`` multiplies the Kaiming-uniform weights (3: the hidden LIFs fire at 5-11%; the rates are
printed: the event path's gain depends on them).

    python benchmarks/bench_spike_mlp.py --rounds 15
    python benchmarks/bench_spike_mlp.py --kernels --threads 1   # the kernels alone vs GEMM, by density
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from timing import interleaved_ms, peak_rss_reset, rss_status  # noqa: E402

T, BATCH, SIZES = 25, 64, (784, 512, 512, 10)
CONTENDERS = ("snnir", "snnir-dense", "spikingjelly")


def weights(scale: float, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, o in zip(SIZES[:-1], SIZES[1:]):
        bound = math.sqrt(3.0 / i) * scale
        out.append(((torch.rand(o, i, generator=g) * 2 - 1) * bound, (torch.rand(o, generator=g) * 2 - 1) * 0.1))
    return out


def data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(BATCH, SIZES[0], generator=g)
    x = (torch.rand(T, BATCH, SIZES[0], generator=g) < img * 0.5).float()
    return x, torch.randint(0, 10, (BATCH,), generator=g)


def build(name: str, scale: float, x: torch.Tensor):
    """(model, reset) of a contender."""
    layers = []
    if name.startswith("snnir"):
        import snnir
        from snnir import nn as snn

        for w, b in weights(scale):
            lin = snn.Linear(w.shape[1], w.shape[0], step_mode="m")
            with torch.no_grad():
                lin.weight.copy_(w), lin.bias.copy_(b)
            layers += [lin, snn.LIF(tau=2.0, surrogate=snn.surrogate.ATan(alpha=2.0), step_mode="m")]
        model = snnir.compile(snnir.trace(torch.nn.Sequential(*layers), x)).train()
        if name == "snnir-dense":
            for layer in model.layers.values():
                if hasattr(layer, "spike_input"):
                    layer.spike_input = False
        return model, model.reset
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    for w, b in weights(scale):
        lin = layer.Linear(w.shape[1], w.shape[0], step_mode="m")
        with torch.no_grad():
            lin.weight.copy_(w), lin.bias.copy_(b)
        layers += [lin, neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m")]
    model = torch.nn.Sequential(*layers).train()
    return model, lambda: functional.reset_net(model)


class Step:
    def __init__(self, name: str, scale: float) -> None:
        self.x, self.y = data()
        self.model, self.reset = build(name, scale, self.x)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        self.reset()
        out = self.model(self.x)
        loss = torch.nn.functional.cross_entropy(out.mean(0), self.y)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def memory(name: str, scale: float) -> float | None:
    proc = subprocess.run([sys.executable, __file__, "--memory-worker", name, "--scale", str(scale)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        print(f"memory of {name} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]


def _kernel_fns(lib, x: torch.Tensor, w: torch.Tensor, threads: int) -> dict:
    (R, K), J = x.shape, w.shape[0]
    wt = w.t().contiguous()
    g, y, gw = torch.randn(R, J), torch.empty(R, J), torch.empty(J, K)
    return {"fwd event": lambda: lib.snnir_spike_fwd_f32(R, K, J, x.data_ptr(), K, wt.data_ptr(), None, y.data_ptr(),
                                                         threads),
            "fwd GEMM": lambda: x @ w.t(),
            "dW event": lambda: lib.snnir_spike_gw_f32(R, K, J, g.data_ptr(), x.data_ptr(), K, gw.data_ptr(), threads),
            "dW GEMM": lambda: g.t() @ x}


def kernels(rounds: int) -> None:
    """``spike_linear``'s forward and weight gradient against torch's GEMMs, by input density."""
    from snnir.backends.torch import spike_linear

    lib = spike_linear._library()
    threads = torch.get_num_threads()
    R = T * BATCH
    for K, J in ((512, 512), (784, 512)):
        w = torch.randn(J, K) / K**0.5
        for d in (0.01, 0.05, 0.1, 0.2, 0.3):
            x = (torch.rand(R, K) < d).float()
            fns = _kernel_fns(lib, x, w, threads)
            times = interleaved_ms(fns, rounds)
            print(f"{R}x{K}->{J} density {d:4.2f}: " + "  ".join(
                f"{n} {statistics.median(ts):6.2f}" for n, ts in times.items()) + " ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--scale", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    ap.add_argument("--memory-worker")
    ap.add_argument("--kernels", action="store_true", help="time the kernels alone")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.kernels:
        kernels(args.rounds)
        return
    if args.memory_worker:
        step = Step(args.memory_worker, args.scale)
        step(), step()
        base = peak_rss_reset()
        step()
        print(json.dumps({"peak_mib": (rss_status("VmHWM") - base) / 1024}))
        return
    steps = {n: Step(n, args.scale) for n in args.contenders}
    ref = next(iter(steps.values()))
    with torch.no_grad():
        ref.reset()
        ref.model.capture = set(ref.model.layers) if hasattr(ref.model, "capture") else set()
        outs = {n: (s.reset(), s.model(s.x))[1] for n, s in steps.items()}
        if getattr(ref.model, "captured", None):
            rates = {k: float((v != 0).float().mean()) for k, v in ref.model.captured.items()
                     if type(ref.model.layers[k]).__name__ == "LIF"}
            print("firing rates of the LIF layers:", {k: round(v, 3) for k, v in rates.items()})
            ref.model.capture = set()
    first = next(iter(outs.values()))
    print("output spikes differing from", next(iter(outs)), {n: int((o != first).sum()) for n, o in outs.items()})
    times = interleaved_ms(steps, args.rounds)
    peaks = {n: memory(n, args.scale) for n in args.contenders}
    print(f"\nT={T} B={BATCH} {'-'.join(map(str, SIZES))} LIF, fwd+bwd+SGD, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'contender':<14}{'median ms':>11}{'min-max ms':>15}{'x SpikingJelly':>18}{'x snnir-dense':>18}"
          f"{'peak MiB':>10}")
    for name, ts in times.items():
        cols = []
        for base in ("spikingjelly", "snnir-dense"):
            ratios = [a / b for a, b in zip(times[base], ts)] if base in times else []
            cols.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "")
        peak = "" if peaks[name] is None else f"{peaks[name]:.0f}"
        print(f"{name:<14}{statistics.median(ts):>11.1f}{f'{min(ts):.0f}-{max(ts):.0f}':>15}{cols[0]:>18}"
              f"{cols[1]:>18}{peak:>10}")


if __name__ == "__main__":
    main()

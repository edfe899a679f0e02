"""Your neuron on the GPU: the CUDA kernels snnir generates from its equations, checked where you are.

Three levels, each taken when the machine allows it:

1. always: print the generated CUDA C++ of a user-defined neuron (``kernel_source``), here a LIF
   whose leak saturates (``tanh``) with a per-neuron time constant, in float16;
2. with ``nvcc`` (the CUDA toolkit, no GPU needed): compile every dtype's kernels to PTX for the
   given architecture, as the test suite does;
3. with CuPy and a GPU: train a small convolutional SNN with ``snnir.compile(g, backend="cupy")``
   under float16 autocast, and check the fused kernels' spikes against the per-step torch path.

    python examples/gpu_kernels.py [--arch sm_90] [--show]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import sympy as sp
import torch

import snnir
from snnir import nn as snn
from snnir.backends.cupy import kernel_source, unavailable_reason


class SaturatingLIF(snnir.NeuronModel):
    """LIF whose leak saturates for large voltages: ``v <- v + (x - g tanh(v / g)) / tau``."""

    params = {"tau": 2.0, "g": 1.5}

    def charge(self, s, **options):
        return {"v": s.v + (s.x - s.g * sp.tanh(s.v / s.g)) / s.tau}


def compile_ptx(arch: str) -> list[str]:
    """Every dtype's kernels of ``SaturatingLIF`` through ``nvcc -ptx``; returns the entry points."""
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16", "bfloat16", "float64"):
            src = Path(tmp) / f"saturating_{dtype}.cu"
            src.write_text(kernel_source(SaturatingLIF, dtype, per_neuron=("tau",)))
            ptx = src.with_suffix(".ptx")
            proc = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", "-diag-suppress=177,550", str(src), "-o", str(ptx)],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"nvcc failed for {dtype}:\n{proc.stderr[-2000:]}")
            entries += [f"{dtype}: {line.split()[2].rstrip('(')}" for line in ptx.read_text().splitlines()
                        if line.startswith(".visible .entry")]
    return entries


def train_on_gpu() -> None:
    torch.manual_seed(0)
    neuron = snn.Neuron(SaturatingLIF(), tau=torch.full((8, 1, 1), 2.0))  # one time constant per channel
    net = torch.nn.Sequential(snn.Conv2d(2, 8, 3, padding=1), neuron, snn.MaxPool2d(2), snn.Flatten(),
                              snn.Linear(8 * 8 * 8, 2))
    snn.set_step_mode(net, "m")
    g = snnir.trace(net, torch.rand(4, 1, 2, 16, 16))
    m = snnir.compile(g, backend="cupy")
    x = torch.rand(8, 32, 2, 16, 16, device="cuda")
    target = (x[:, :, 0].mean((0, 2, 3)) > x[:, :, 1].mean((0, 2, 3))).long()  # which channel is brighter
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for epoch in range(30):
        snn.reset(m)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(m(x).float().mean(0), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 10 == 0:
            print(f"epoch {epoch:2d}  loss {loss.item():.3f}")
    reference = snnir.compile(g).cuda()
    reference.load_state_dict(m.state_dict())
    for neuron in reference.neurons().values():
        neuron.fused = False
    snn.reset(m)
    same = torch.equal(m(x), reference(x))
    print(f"fused CUDA kernels == per-step torch path (float32): {same}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="sm_90")
    p.add_argument("--show", action="store_true", help="print the whole float16 source")
    args = p.parse_args()
    src = kernel_source(SaturatingLIF, "float16", per_neuron=("tau",))
    print(src if args.show else "\n".join(src.splitlines()[:3]) + f"\n... ({len(src.splitlines())} lines)")
    if shutil.which("nvcc"):
        print("\n".join(compile_ptx(args.arch)))
    else:
        print("nvcc not found: PTX check skipped")
    reason = unavailable_reason()
    if reason is None:
        train_on_gpu()
    else:
        print(f"GPU training skipped: {reason}")


if __name__ == "__main__":
    main()

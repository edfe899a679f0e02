"""ANN -> SNN conversion on scikit-learn's digits: accuracy by mode and T, against SpikingJelly.

Trains a small CNN (conv-BN-ReLU x2, max pooling, linear), converts it with every calibration
mode, runs the SNNs for T = 8, 16, 32, 64 steps (the image as a constant input current), and
prints a mode x T accuracy table beside the ANN's accuracy. The same trained ANN and calibration
data go through SpikingJelly's converter (if installed) for comparison, and the best SNN is
quantized to int8 per-channel weights.

    python examples/ann2snn_digits.py
"""

from __future__ import annotations

import copy
import os
import sys

import numpy as np
import torch
from torch import nn

import snnir
from snnir import nn as snn
from snnir.passes.quantize import quantize

sys.path.insert(0, os.path.dirname(__file__))
from train_digits import digits_tensors  # noqa: E402  (the same fixed split as the SNN example)

TS = (8, 16, 32, 64)
MODES = ("max", "99.9%", "99.99%", 0.9)


def build_ann() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def train_ann(x: torch.Tensor, y: torch.Tensor, epochs: int = 40, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    ann = build_ann()
    opt = torch.optim.Adam(ann.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        ann.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(ann(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return ann.eval()


@torch.no_grad()
def snn_accuracy(graph: snnir.Graph, x: torch.Tensor, y: torch.Tensor, T: int) -> float:
    """Membrane decoding: the output layer's input current averaged over T steps."""
    module = snnir.compile(graph).eval()
    module.reset()
    logits = module(snn.direct(x, T)).mean(0)
    return (logits.argmax(1) == y).float().mean().item()


@torch.no_grad()
def spikingjelly_accuracy(ann: nn.Module, calib: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                          mode, T: int) -> float | None:
    try:
        from spikingjelly.activation_based import ann2snn, functional
    except ImportError as e:
        print(f"SpikingJelly's converter is not available ({e}); pip install --no-deps spikingjelly requests")
        return None
    loader = [(b, torch.zeros(len(b))) for b in calib]
    # SpikingJelly 2.0: a rate-coding recipe (the same calibration data and percentile)
    recipe = ann2snn.recipes.RateCodingRecipe(loader, mode=mode)
    model = ann2snn.Converter(recipe).convert(copy.deepcopy(ann)).eval()
    functional.reset_net(model)
    out = 0.0
    for _ in range(T):
        out = out + model(x)
    return (out.argmax(1) == y).float().mean().item()


def main() -> dict:
    torch.set_num_threads(2)
    x_tr, y_tr, x_te, y_te = digits_tensors()
    ann = train_ann(x_tr, y_tr)
    with torch.no_grad():
        ann_acc = (ann(x_te).argmax(1) == y_te).float().mean().item()
    calib = list(x_tr[:512].split(64))
    table: dict[str, dict[int, float]] = {}
    graphs = {}
    for mode in MODES:
        for channel_wise in (False, True):
            name = f"{mode}{' per-channel' if channel_wise else ''}"
            g = snnir.convert(ann, calibration=calib, mode=mode, T=32, channel_wise=channel_wise, progress=False)
            graphs[name] = g
            table[name] = {T: snn_accuracy(g, x_te, y_te, T) for T in TS}
    sj = {T: spikingjelly_accuracy(ann, calib, x_te, y_te, "99.9%", T) for T in TS}
    best = max(table, key=lambda k: (table[k][32], table[k][64]))
    q = quantize(graphs[best], bits=8, per_channel=True)
    q_acc = {T: snn_accuracy(q, x_te, y_te, T) for T in TS}

    print(f"ANN test accuracy: {ann_acc * 100:.2f}%  ({len(y_te)} test images)\n")
    print(f"{'mode':<24}" + "".join(f"{'T=' + str(T):>9}" for T in TS))
    for name, row in table.items():
        print(f"{'snnir ' + name:<24}" + "".join(f"{row[T] * 100:>8.2f}%" for T in TS))
    if sj[TS[0]] is not None:
        print(f"{'spikingjelly 99.9%':<24}" + "".join(f"{sj[T] * 100:>8.2f}%" for T in TS))
    print(f"{'snnir best, int8':<24}" + "".join(f"{q_acc[T] * 100:>8.2f}%" for T in TS))
    print(f"\nbest mode at T=32: {best}, {table[best][32] * 100:.2f}% "
          f"({(ann_acc - table[best][32]) * 100:+.2f} points below the ANN); int8 per-channel: "
          f"{q_acc[32] * 100:.2f}%")
    return {"ann": ann_acc, "table": table, "spikingjelly": sj, "best": best, "int8": q_acc}


if __name__ == "__main__":
    result = main()
    np.set_printoptions(precision=4)

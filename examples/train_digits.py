"""Train a convolutional LIF SNN on scikit-learn's digits, then trace -> save -> load -> compile.

The digits (8x8 grey images, 10 classes, shipped with scikit-learn, no download) are fed directly
(the same image at every time step; the first conv + LIF layer is the spike encoder). The network
trains with surrogate gradients through time; the readout averages the last linear layer over time.
After training the model is traced into the snnir IR, saved to a .snnir file, loaded, compiled
with the torch backend, and evaluated again: the same accuracy (the compiled graph runs its
convolutions channels-last on CPU, which rounds differently: a neuron within rounding of its threshold
could flip; ``memory_format=torch.contiguous_format`` makes the round trip bit for bit).

    python examples/train_digits.py            # ~1 minute on 2 CPU cores
    python examples/train_digits.py --epochs 3 # quick look
    python examples/train_digits.py --bf16 --channels-last   # the CPU speed opt-ins

``--channels-last`` trains the eager model with channels-last convolution weights and activations
(oneDNN's faster layout on CPU; the compiled graph does that by itself); ``--bf16`` trains under
``torch.autocast("cpu", torch.bfloat16)``: convolutions and the readout run in bfloat16, the neurons'
states stay float32 (their kernels widen the input and round only the spikes they store, which are
exact), weights and optimizer in float32.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm

import snnir
from snnir import nn as snn


def digits_tensors(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The fixed split: 75% train / 25% test, stratified, images scaled to [0, 1]."""
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    x_tr, x_te, y_tr, y_te = train_test_split(x, data.target, test_size=0.25, random_state=seed,
                                              stratify=data.target)
    return (torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
            torch.from_numpy(x_te), torch.from_numpy(y_te).long())


def build_net(tau: float = 2.0) -> torch.nn.Sequential:
    """Conv(1->16)-BN-LIF, Conv(16->32)-BN-LIF, MaxPool, Linear(512->10) readout."""
    surrogate = snn.surrogate.ATan(alpha=2.0)
    return torch.nn.Sequential(
        snn.Conv2d(1, 16, 3, padding=1, bias=False), snn.BatchNorm2d(16), snn.LIF(tau=tau, surrogate=surrogate),
        snn.Conv2d(16, 32, 3, padding=1, bias=False), snn.BatchNorm2d(32), snn.LIF(tau=tau, surrogate=surrogate),
        snn.MaxPool2d(2), snn.Flatten(), snn.Dropout(0.2), snn.Linear(32 * 4 * 4, 10),
    )


def predict_logits(net: torch.nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    """Run T steps of direct input; logits are the readout averaged over time."""
    snn.reset(net)
    out = net(snn.direct(x, T))  # [T, N, 10]
    return out.mean(0)


@torch.no_grad()
def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, T: int, batch: int = 256) -> float:
    net.eval()
    correct = sum((predict_logits(net, x[i:i + batch], T).argmax(1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    return correct / len(x)


def train(epochs: int = 40, T: int = 4, batch: int = 64, lr: float = 5e-3, seed: int = 0, bf16: bool = False,
          channels_last: bool = False) -> dict[str, float]:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = digits_tensors(seed)
    net = snn.set_step_mode(build_net(), "m")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="training", unit="epoch")
    for _ in bar:
        net.train()
        perm = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), batch):
            idx = perm[i:i + batch]
            with precision:
                logits = predict_logits(net, x_tr[idx], T)
            loss = torch.nn.functional.cross_entropy(logits.float(), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds = time.perf_counter() - start
    acc = accuracy(net, x_te, y_te, T)

    # The IR round trip: trace, save, load, compile, evaluate again.
    graph = snnir.trace(net, snn.direct(x_te[:2], T))
    path = os.path.join(tempfile.mkdtemp(), "digits.snnir")
    snnir.save(graph, path)
    compiled = snnir.compile(snnir.load(path), backend="torch")
    acc_compiled = accuracy(compiled, x_te, y_te, T)
    print(graph.summary())
    print(f"test accuracy: trained model {acc:.4f}, after trace/save/load/compile {acc_compiled:.4f} "
          f"({len(x_te)} test images, T={T}, {train_seconds:.1f} s training)")
    return {"accuracy": acc, "accuracy_compiled": acc_compiled, "train_seconds": train_seconds}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="channels-last convolutions")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    train(epochs=args.epochs, T=args.T, seed=args.seed, bf16=args.bf16, channels_last=args.channels_last)

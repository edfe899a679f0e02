"""Train a Loihi-friendly SNN on scikit-learn's digits, map it to Loihi, and check it in fixed point.

The chip path end to end: the network uses only what Loihi (through lava-dl netx) runs - a strided
conv instead of pooling, a dense layer, LIF neurons with a hard reset to 0 - and trains with
surrogate gradients on the torch backend. Then ``to_loihi`` quantizes it to 8-bit weights and
12-bit decays, the netx HDF5 file is written, and the bit-accurate ``LoihiSimulator`` runs the
integer network: its accuracy must stay within 1 point of the float network's.

Inputs are spikes (Loihi's input layer passes spikes): each pixel intensity x in [0, 1] becomes a
regular spike train with round(T x) spikes over T steps (deterministic, so float and chip see
the same input). The class is the output neuron with the most spikes.

    python examples/loihi_digits.py             # ~1 minute on 2 CPU cores
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
from snnir.backends import lava


def rate_spikes(x: torch.Tensor, T: int) -> torch.Tensor:
    """Regular rate code: step t fires when floor((t + 1) x T / T) grows, round(T x) spikes in all."""
    counts = torch.floor(torch.arange(T + 1, dtype=x.dtype).view(-1, *[1] * x.dim()) * x.unsqueeze(0) + 0.5)
    return (counts[1:] - counts[:-1]).clamp(0, 1)


def digits(seed: int = 0):
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8]
    x_tr, x_te, y_tr, y_te = train_test_split(x, data.target, test_size=0.25, random_state=seed,
                                              stratify=data.target)
    return torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(), torch.from_numpy(x_te), torch.from_numpy(y_te).long()


def build_net(tau: float = 2.0) -> torch.nn.Sequential:
    surrogate = snn.surrogate.ATan(alpha=2.0)
    return torch.nn.Sequential(
        snn.Conv2d(1, 32, 3, stride=2, padding=1), snn.BatchNorm2d(32),        # 8x8 -> 4x4, no pooling
        snn.LIF(tau=tau, decay_input=False, surrogate=surrogate),
        snn.Flatten(), snn.Linear(32 * 4 * 4, 10, bias=False),
        snn.LIF(tau=tau, decay_input=False, surrogate=surrogate),
    )


def accuracy_float(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, T: int) -> float:
    net.eval()
    with torch.no_grad():
        snn.reset(net)
        counts = net(rate_spikes(x, T)).sum(0)
    return (counts.argmax(1) == y).float().mean().item()


def main(epochs: int = 30, T: int = 16, batch: int = 64, lr: float = 1e-2, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = digits(seed)
    net = snn.set_step_mode(build_net(), "m")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    start = time.perf_counter()
    for _ in (bar := tqdm(range(epochs), desc="training", unit="epoch")):
        net.train()
        perm = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), batch):
            idx = perm[i:i + batch]
            snn.reset(net)
            rate = net(rate_spikes(x_tr[idx], T)).mean(0)
            loss = torch.nn.functional.mse_loss(rate, torch.nn.functional.one_hot(y_tr[idx], 10).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    seconds = time.perf_counter() - start
    acc_float = accuracy_float(net, x_te, y_te, T)

    # The chip path: trace -> to_loihi -> netx file -> bit-accurate simulation of the file.
    spikes = rate_spikes(x_te, T)
    graph = snnir.trace(net.eval(), spikes[:, :2])
    mapped = snnir.optimize(graph, ["to_loihi"])
    acc_mapped_float = accuracy_float(snnir.compile(mapped), x_te, y_te, T)
    path = os.path.join(tempfile.mkdtemp(), "digits_loihi.h5")
    snnir.export(graph, path, format="lava")
    sim = snnir.compile(lava.read(path), backend="lava")
    counts = sim.run(spikes.numpy(), progress=True).sum(0)
    acc_loihi = float((counts.argmax(1) == y_te.numpy()).mean())
    print("\nper-layer spike agreement, float (mapped graph, torch) vs fixed point (simulator):")
    rows = lava.compare(mapped, spikes.numpy())
    print(f"\ntest accuracy: float {acc_float:.4f}, mapped float {acc_mapped_float:.4f}, "
          f"Loihi fixed point {acc_loihi:.4f} ({len(x_te)} test images, T={T}, {seconds:.1f} s training); "
          f"lava-nc run possible here: {lava.lava_available()}")
    return {"accuracy_float": acc_float, "accuracy_mapped_float": acc_mapped_float, "accuracy_loihi": acc_loihi,
            "train_seconds": seconds, "agreement": {r.layer: r.agreement for r in rows}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    main(epochs=args.epochs, T=args.T, seed=args.seed)

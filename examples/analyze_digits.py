"""What does the digits SNN fire, and what would it cost? Monitors and operation/energy counts.

Trains the convolutional LIF network of ``train_digits.py`` for a few epochs (scikit-learn's
digits, no download), then:

1. records the firing rate of every LIF layer over the test set (``snnir.analysis.record``: rates
   only, a few floats per neuron), and the voltages of one batch;
2. traces the network to the IR, folds the batchnorms into the convolutions (what a deployment
   would run) and counts per node the dense MACs, the synaptic operations the spikes trigger, ACs
   vs MACs, neuron updates, memory traffic and the energy estimate (``snnir.analysis.count_ops``,
   45 nm constants of Horowitz, ISSCC 2014), next to the ANN-equivalent compute;
3. with ``--plots DIR``, saves a raster and the per-layer rate histograms (needs matplotlib).

    python examples/analyze_digits.py            # about 30 s on 2 CPU cores
    python examples/analyze_digits.py --epochs 1 --plots /tmp/digits_plots
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_digits import accuracy, build_net, digits_tensors, predict_logits  # noqa: E402

import snnir  # noqa: E402
from snnir import nn as snn  # noqa: E402
from snnir.analysis import count_ops, record  # noqa: E402


def train(epochs: int, T: int, seed: int = 0, batch: int = 64) -> tuple[torch.nn.Module, tuple]:
    torch.manual_seed(seed)
    data = digits_tensors(seed)
    x_tr, y_tr = data[0], data[1]
    net = snn.set_step_mode(build_net(), "m")
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in tqdm(range(epochs), desc="training", unit="epoch"):
        net.train()
        perm = torch.randperm(len(x_tr))
        for i in range(0, len(x_tr), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(predict_logits(net, x_tr[idx], T), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval(), data


def main(epochs: int = 8, T: int = 4, plots: str | None = None) -> dict[str, float]:
    start = time.perf_counter()
    net, (_, _, x_te, y_te) = train(epochs, T)
    acc = accuracy(net, x_te, y_te, T)
    print(f"test accuracy {acc:.4f} after {epochs} epochs ({time.perf_counter() - start:.1f} s)")

    # 1. firing rates over the whole test set: running sums only
    with torch.no_grad(), record(net) as rec:
        for i in range(0, len(x_te), 128):
            snn.reset(net)
            net(snn.direct(x_te[i:i + 128], T))
    print("\nfiring rates per LIF layer (test set):")
    print(rec.summary())

    # 2. operation and energy counts on 64 test images, on the deployed graph
    x = snn.direct(x_te[:64], T)
    graph = snnir.optimize(snnir.trace(net, x), ["fold_batchnorm"])
    ops = count_ops(graph, x.numpy())
    print(f"\noperation counts (64 test images, T={T}, batchnorm folded):")
    print(ops)
    energy = ops.energy_pj()

    # 3. plots: a raster of one image's first LIF layer, and the rate histograms
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        out = Path(plots)
        out.mkdir(parents=True, exist_ok=True)
        first = rec.keys[0]
        with torch.no_grad(), record(net, keys=first, traces=True) as trace:
            snn.reset(net)
            net(snn.direct(x_te[:1], 32))  # 32 steps of one image, to see the spike trains
        trace.plot_raster(first).figure.savefig(out / "raster.png", dpi=120)
        rec.plot_rates().savefig(out / "rates.png", dpi=120)
        print(f"\nplots written to {out}/raster.png and {out}/rates.png")
    rates = rec.rates()
    return {"accuracy": acc, "energy_per_sample_pj": energy["per_sample"], "compute_per_sample_pj":
            energy["per_sample_compute"], "ann_pj": energy["ann"], **{f"rate_{k}": v for k, v in rates.items()},
            "mean_rate": float(np.mean(list(rates.values())))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--plots", metavar="DIR", default=None, help="save raster.png and rates.png there")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    main(args.epochs, args.T, args.plots)

"""Unsupervised STDP features on scikit-learn's digits, read out linearly, against random features.

The 8x8 digits (shipped with scikit-learn, no download) become Poisson spike trains (pixel
intensity x ``rate`` per step). They drive ``snn.Linear(64, neurons)`` -> ``snn.LIF``, whose input
weights learn by pair-based STDP (``snnir.learning.STDP``, additive; the update runs in the C kernel
generated from the rule's equations). Competition, without which every neuron learns the average
digit: lateral inhibition in its idealised form, a winner-take-all that lets only the winning
neuron's spikes reach the rule (Masquelier & Thorpe 2007; Kheradpisheh et al. 2018), with a
homeostatic handicap on frequent winners so that every neuron gets to learn; weights stay
non-negative and each neuron's are normalised to a fixed sum after every batch (Diehl & Cook 2015).
Nothing uses the labels.

Then every image is presented to the network (no winner-take-all, no learning) and the spike counts
of all LIF neurons are its features. A logistic-regression readout is trained on the training
images' features and scored on the held-out ones, for: the STDP-trained weights; the same network
before training (random weights, the same normalisation); and those random weights scaled up until
the network fires as much as the trained one (so the comparison is not about firing more).

    python examples/stdp_digits.py                 # about half a minute on 2 CPU cores
    python examples/stdp_digits.py --neurons 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from snnir import nn as snn
from snnir.learning import STDP, Learner


class WinnerTakeAll(snn.StepModule):
    """Lateral inhibition for learning: per sample, only the neuron with the most spikes keeps them.

    ``handicap`` grows by ``homeostasis`` each time a neuron wins (and the mean is subtracted), so a
    neuron that wins too often loses to the runner-up: every neuron learns something.
    """

    def __init__(self, neurons: int, homeostasis: float = 0.5) -> None:
        super().__init__()
        self.step_mode = "m"
        self.homeostasis = homeostasis
        self.register_buffer("handicap", torch.zeros(neurons))

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:  # [T, N, neurons]
        counts = spikes.sum(0)
        score = (counts - self.handicap + 1e-3 * torch.rand_like(counts)).masked_fill(counts == 0, -torch.inf)
        winner = torch.nn.functional.one_hot(score.argmax(1), counts.shape[1]).to(spikes.dtype)
        winner *= (counts > 0).any(1, keepdim=True)  # a silent sample has no winner
        self.handicap += self.homeostasis * winner.sum(0)
        self.handicap -= self.handicap.mean()
        return spikes * winner


def normalize_(weight: torch.Tensor, total: float) -> None:
    """Non-negative weights, each neuron's summing to ``total``."""
    weight.clamp_(min=0.0)
    weight.mul_(total / weight.sum(1, keepdim=True).clamp(min=1e-6))


def digits(seed: int = 0, limit: int | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Images as [N, 64] in [0, 1], labels, and a stratified 70/30 split (indices)."""
    data = load_digits()
    x, y = torch.tensor(data.images.reshape(-1, 64) / 16.0, dtype=torch.float32), data.target
    if limit is not None:
        x, y = x[:limit], y[:limit]
    train, test = train_test_split(np.arange(len(x)), test_size=0.3, random_state=seed, stratify=y)
    return x, y, train, test


@torch.no_grad()
def features(net: torch.nn.Module, x: torch.Tensor, T: int, rate: float, generator: torch.Generator) -> np.ndarray:
    """Spike counts of the LIF layer per image (no learning, no winner-take-all)."""
    out = []
    for i in range(0, len(x), 256):
        snn.reset(net)
        spikes = snn.poisson(x[i:i + 256] * rate, T, generator=generator)
        out.append(net(spikes).sum(0))
    return torch.cat(out).numpy()


def readout_accuracy(f: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    scaler = StandardScaler().fit(f[train])
    clf = LogisticRegression(max_iter=5000).fit(scaler.transform(f[train]), y[train])
    return float(clf.score(scaler.transform(f[test]), y[test]))


def evaluate(net: torch.nn.Module, x: torch.Tensor, y: np.ndarray, train: np.ndarray, test: np.ndarray, T: int,
             rate: float, seed: int) -> tuple[float, float]:
    """(readout accuracy, mean spike count per neuron and image) with a fixed input sample."""
    f = features(net, x, T, rate, torch.Generator().manual_seed(seed + 1))
    return readout_accuracy(f, y, train, test), float(f.mean())


def run(epochs: int = 5, neurons: int = 50, T: int = 30, batch: int = 8, rate: float = 0.5, total: float = 6.0,
        a_plus: float = 0.01, a_minus: float = 0.005, seed: int = 0, limit: int | None = None,
        progress: bool = True) -> dict[str, float]:
    """Train STDP features, then compare readouts; returns accuracies, firing and timing."""
    torch.manual_seed(seed)
    x, y, train, test = digits(seed, limit)
    fc, lif = snn.Linear(64, neurons, bias=False), snn.LIF(tau=4.0)
    net = snn.set_step_mode(torch.nn.Sequential(fc, lif), "m")
    with torch.no_grad():
        fc.weight.uniform_(0.0, 1.0)
        normalize_(fc.weight, total)
    random_weight = fc.weight.detach().clone()
    acc_random, rate_random = evaluate(net, x, y, train, test, T, rate, seed)

    wta = WinnerTakeAll(neurons)
    learner = Learner(fc, STDP(tau_pre=4.0, tau_post=4.0, a_plus=a_plus, a_minus=a_minus, w_min=0.0), post=wta)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in tqdm(range(epochs), desc="STDP", unit="epoch", disable=not progress):
        order = torch.from_numpy(rng.permutation(train))
        for i in range(0, len(order), batch):
            snn.reset(net)
            learner.reset()  # traces start afresh with every image
            with torch.no_grad():
                wta(net(snn.poisson(x[order[i:i + batch]] * rate, T)))
            learner.step()
            normalize_(fc.weight.data, total)
    train_seconds = time.perf_counter() - start
    learner.close()
    acc_stdp, rate_stdp = evaluate(net, x, y, train, test, T, rate, seed)
    learned = fc.weight.detach().clone()

    # random weights scaled (bisection) until the network fires as much as the trained one
    lo, hi = 1.0, 16.0
    for _ in range(10):
        mid = (lo * hi) ** 0.5
        fc.weight.data.copy_(random_weight * mid)
        fired = features(net, x, T, rate, torch.Generator().manual_seed(seed + 1)).mean()
        lo, hi = (mid, hi) if fired < rate_stdp else (lo, mid)
    acc_matched, rate_matched = evaluate(net, x, y, train, test, T, rate, seed)
    fc.weight.data.copy_(learned)
    return {"accuracy_stdp": acc_stdp, "accuracy_random": acc_random, "accuracy_random_matched": acc_matched,
            "spikes_stdp": rate_stdp, "spikes_random": rate_random, "spikes_random_matched": rate_matched,
            "matched_scale": mid, "train_seconds": train_seconds,
            "weight_change": float((learned - random_weight).abs().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--neurons", type=int, default=50)
    parser.add_argument("--steps", type=int, default=30, help="time steps per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = run(args.epochs, args.neurons, args.steps, seed=args.seed)
    print(f"STDP training: {r['train_seconds']:.1f} s for {args.epochs} epoch(s) of the 1257 training images, "
          f"{args.neurons} neurons, {args.steps} steps per image")
    print(f"linear readout on STDP features:             accuracy {r['accuracy_stdp']:.4f} "
          f"({r['spikes_stdp']:.2f} spikes per neuron and image)")
    print(f"same readout, random (untrained) features:   accuracy {r['accuracy_random']:.4f} "
          f"({r['spikes_random']:.2f} spikes)")
    print(f"same readout, random features, same firing:  accuracy {r['accuracy_random_matched']:.4f} "
          f"({r['spikes_random_matched']:.2f} spikes; weights x{r['matched_scale']:.2f})")


if __name__ == "__main__":
    main()

"""Plots of recorded activity with matplotlib (optional: ``pip install matplotlib``).

``raster(spikes)`` draws a ``[steps, neurons]`` 0/1 array as dots; ``rate_histograms({layer:
rates})`` draws one histogram of per-neuron firing rates per layer. ``Recording.plot_raster`` and
``Recording.plot_rates`` call them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib, which is not installed: pip install matplotlib "
                          "(or pip install snnir[render])") from None
    return plt


def raster(spikes: np.ndarray, title: str = "", ax: Any = None, max_neurons: int | None = 2000) -> Any:
    """Dots at (step, neuron) where ``spikes`` (``[steps, neurons]``) is nonzero; returns the axes.

    Only the first ``max_neurons`` neurons are drawn (``None``: all).
    """
    plt = _pyplot()
    spikes = np.asarray(spikes)
    if spikes.ndim != 2:
        raise ValueError(f"raster expects [steps, neurons], got shape {spikes.shape}")
    if max_neurons is not None:
        spikes = spikes[:, :max_neurons]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3))
    t, n = np.nonzero(spikes)
    ax.scatter(t, n, s=4, marker="|", c="k")
    ax.set_xlim(-0.5, spikes.shape[0] - 0.5)
    ax.set_ylim(-0.5, spikes.shape[1] - 0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("neuron")
    ax.set_title(title)
    if fig is not None:
        fig.tight_layout()
    return ax


def rate_histograms(rates: dict[str, np.ndarray], bins: int = 20) -> Any:
    """One histogram of per-neuron firing rates (spikes per step) per layer; returns the figure."""
    plt = _pyplot()
    if not rates:
        raise ValueError("no layer rates to plot (nothing recorded yet?)")
    cols = min(3, len(rates))
    rows = math.ceil(len(rates) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (name, r) in zip(axes.ravel(), rates.items()):
        r = np.asarray(r).ravel()
        ax.hist(r, bins=bins, range=(0.0, max(1.0, float(r.max(initial=0)))), color="#4a7ab5")
        ax.set_title(f"{name} (mean {r.mean():.3f})", fontsize=9)
        ax.set_xlabel("firing rate")
        ax.set_ylabel("neurons")
    for ax in axes.ravel()[len(rates):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig

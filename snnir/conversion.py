"""``snnir.convert``: a trained ANN (torch module, ONNX file or ANN graph) to a calibrated SNN graph.

Steps: import the ANN, fold BatchNorm and elementwise chains, run the calibration data through the
ANN (torch backend) recording each ReLU's activations, pick a scale per ReLU (or per channel), and
apply the ``ann_to_snn`` pass (see it for the spiking rules), then the standard clean-up passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from snnir.errors import GraphError
from snnir.graph import Graph
from snnir.passes import optimize
from snnir.passes.ann_to_snn import check_convertible

_MAX_SAMPLES = 2_000_000  # activations kept per layer (per channel: per channel) for percentiles


def _ann_graph(model: Any, example: np.ndarray | None) -> Graph:
    if isinstance(model, Graph):
        return model.copy().validate()
    if isinstance(model, (str, os.PathLike)):
        from snnir.frontends import from_onnx

        return from_onnx(model)
    import torch

    if isinstance(model, torch.nn.Module):
        if example is None:
            raise ValueError("converting a torch module needs calibration data (its first batch fixes the shapes)")
        from snnir.frontends import from_torch_ann

        return from_torch_ann(model.eval(), torch.as_tensor(example[:1]))
    raise TypeError(f"snnir.convert takes a torch module, an ONNX path or a snnir Graph, got {type(model).__name__}")


def _batches(calibration: Iterable) -> Iterable[np.ndarray]:
    for batch in calibration:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        if not np.isfinite(x).all():
            raise ValueError("calibration data contains NaN or Inf values")
        yield x.astype(np.float32)


def _parse_mode(mode: str | float) -> tuple[float, float]:
    """(percentile, factor): 'max' -> (100, 1); '99.9%' -> (99.9, 1); 0.9 -> (100, 0.9)."""
    if isinstance(mode, str):
        if mode == "max":
            return 100.0, 1.0
        if mode.endswith("%"):
            p = float(mode[:-1])
            if not 0 < p <= 100:
                raise ValueError(f"percentile mode must be in (0, 100]%, got {mode!r}")
            return p, 1.0
        raise ValueError(f"mode must be 'max', a percentile like '99.9%', or a float in (0, 1]; got {mode!r}")
    if not 0 < float(mode) <= 1:
        raise ValueError(f"a float mode multiplies the max and must be in (0, 1], got {mode}")
    return 100.0, float(mode)


def calibrate(g: Graph, calibration: Iterable, mode: str | float = "99.9%", channel_wise: bool = False,
              decode: str = "membrane", progress: bool = True) -> dict[str, Any]:
    """Activation scales of every ReLU/clip node of ANN graph ``g`` over the calibration data."""
    import torch
    from tqdm import tqdm

    from snnir.faces import compile

    percentile, factor = _parse_mode(mode)
    targets = [n.id for n in g if n.op in ("relu", "clip")]
    outputs = [g.predecessors(o)[0] for o in g.outputs]
    module = compile(g, backend="torch", step_mode="s").eval()
    module.capture = set(targets) | set(outputs)
    samples: dict[str, list[np.ndarray]] = {n: [] for n in module.capture}
    maxima: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    seen = 0
    for x in tqdm(_batches(calibration), desc="calibrating", unit="batch", disable=not progress):
        seen += 1
        with torch.no_grad():
            module(torch.from_numpy(x))
        for n, value in module.captured.items():
            a = value.numpy()
            a = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if channel_wise and a.ndim > 1 else a.reshape(1, -1)
            m = a.max(1)
            maxima[n] = m if n not in maxima else np.maximum(maxima[n], m)
            if percentile < 100:
                keep = max(1, _MAX_SAMPLES // max(1, a.shape[0] * 64))  # per batch, per channel
                if a.shape[1] > keep:
                    a = a[:, rng.choice(a.shape[1], keep, replace=False)]
                samples[n].append(a)
    if seen == 0:
        raise ValueError("the calibration loader yielded no batches")
    scales: dict[str, Any] = {}
    for n in module.capture:
        if percentile < 100:
            s = np.percentile(np.concatenate(samples[n], axis=1), percentile, axis=1)
        else:
            s = maxima[n]
        s = np.maximum(s * factor, 1e-8)
        key = "__output__" if n in outputs and n not in targets else n
        scales[key] = float(s[0]) if s.size == 1 else s.tolist()
    return {"scales": scales, "mode": mode if isinstance(mode, str) else float(mode),
            "channel_wise": channel_wise, "decode": decode, "batches": seen}


def convert(model: Any, calibration: Iterable | None = None, mode: str | float = "99.9%", T: int = 32,
            channel_wise: bool = False, decode: str = "membrane", progress: bool = True) -> Graph:
    """Convert a trained ANN to an SNN graph (IF neurons with soft reset, calibrated thresholds).

    Args:
        model: a ``torch.nn.Module`` (evaluated in eval mode), an ``.onnx`` path, or an ANN graph.
        calibration: iterable of input batches ``[N, ...]`` (or ``(x, y)`` pairs), e.g. a
            ``DataLoader`` over training data. Required.
        mode: ``"max"``, a percentile such as ``"99.9%"``, or a float in (0, 1] times the max.
        T: the number of time steps the SNN is meant to run (stored in ``meta["T"]``).
        channel_wise: one scale per channel instead of per layer.
        decode: ``"membrane"`` (the output is the last layer's input current each step: average
            it over time, then argmax) or ``"rate"`` (an IF layer emits spikes; count them).

    Returns the SNN graph; run it with ``snnir.compile(g)`` on ``[T, N, ...]`` input (the image
    repeated at every step: ``snn.direct(x, T)``).

    Example:
        >>> import torch, snnir
        >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> data = [torch.rand(16, 4) for _ in range(4)]
        >>> snn_graph = snnir.convert(ann, calibration=data, mode="max", T=16, progress=False)
        >>> [n.op for n in snn_graph]        # the 1/lambda and lambda scales folded into the weights
        ['input', 'linear', 'neuron', 'linear', 'output']
    """
    if calibration is None:
        raise ValueError("snnir.convert needs calibration data (a loader of input batches) to set the "
                         "neuron thresholds; pass calibration=your_train_loader")
    if decode not in ("membrane", "rate"):
        raise ValueError(f"decode must be 'membrane' or 'rate', got {decode!r}")
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    batches = list(_batches(calibration))
    g = _ann_graph(model, batches[0] if batches else None)
    if any(n.stateful for n in g):
        raise GraphError(f"graph {g.name!r} already has stateful nodes; convert takes an ANN")
    check_convertible(g)  # before calibration: say what cannot convert without running the data
    g = optimize(g, ["eliminate_dead", "fold_batchnorm", "fuse_elementwise"])
    g.meta["calibration"] = calibrate(g, batches, mode, channel_wise, decode, progress)
    g.meta["T"] = T
    return optimize(g, ["ann_to_snn", "fuse_elementwise", "eliminate_dead", "group_synapse_neuron", "schedule"])

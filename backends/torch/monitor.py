"""Monitors for torch networks: spikes, voltages and layer outputs, recorded through forward hooks.

``record(net)`` works on ``snnir.nn`` networks of any nesting (keys are module paths) and on
compiled graphs (``GraphModule``: keys are node ids; a GraphModule nested in a network gets its
path as prefix). Hooks exist only inside the ``with`` block, so a network runs at full speed
whenever it is not recorded.

Voltages: the fused neuron kernel writes no per-step voltage unless ``store_v_seq`` is set. While
``"v"`` is recorded, the neuron modules get ``store_v_seq=True`` (the kernel then writes ``v`` once
per step, after reset: the same values as ``store_v_seq`` itself) and their previous setting comes
back on exit; recording only spikes leaves the kernel untouched.

Memory: by default only running sums are kept (per-neuron spike counts, per-element sums of ``v``),
a few floats per neuron however long the run. ``traces=True`` also keeps every step (spikes as one
byte per value), at most the latest ``max_steps`` steps per key when given.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from snnir.errors import GraphError

from .base import StepModule
from .lower import GraphModule
from .neuron import Neuron

WHAT = ("spikes", "v", "outputs")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def walk(root: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """``(key, module)`` for every module under ``root``: module paths, except that the layers of a
    ``GraphModule`` are keyed by node id (``prefix.node_id`` when it is nested)."""
    if isinstance(root, GraphModule):
        for node_id, key in root._key.items():
            yield _join(prefix, node_id), root.layers[key]
        return
    for name, child in root.named_children():
        yield _join(prefix, name), child
        yield from walk(child, _join(prefix, name))


@dataclass
class _Series:
    """What is kept for one key and one quantity: a running sum and, optionally, the traces."""

    total: torch.Tensor | None = None   # per element, summed over steps and batch (float64)
    chunks: list[torch.Tensor] = field(default_factory=list)
    chunk_steps: int = 0

    def add(self, x: torch.Tensor, keep: bool, max_steps: int | None, as_bool: bool) -> None:
        # a float32 sum per call (a float64 one is ten times slower on CPU), accumulated in float64:
        # spike counts stay exact (a call sums at most T x N ones per neuron, far below 2**24)
        s = x.detach().sum(dim=(0, 1)).double()
        self.total = s if self.total is None else self.total + s
        if not keep:
            return
        if max_steps is not None and x.shape[0] > max_steps:
            x = x[-max_steps:]
        self.chunks.append(x.detach().to("cpu", torch.bool if as_bool else torch.float32, copy=True))
        self.chunk_steps += x.shape[0]
        while max_steps is not None and self.chunk_steps > max_steps:
            drop = self.chunk_steps - max_steps
            first = self.chunks[0]
            if first.shape[0] <= drop:
                self.chunks.pop(0)
                self.chunk_steps -= first.shape[0]
            else:
                self.chunks[0] = first[drop:].clone()
                self.chunk_steps -= drop

    def nbytes(self) -> int:
        held = [self.total] if self.total is not None else []
        return sum(t.numel() * t.element_size() for t in [*held, *self.chunks])


class Recording:
    """Spikes, voltages and outputs of a network, recorded while in a ``with`` block.

    Made by ``snnir.analysis.record`` (see it for the arguments). After (or during) the block:
    ``rates()`` (mean firing rate per node), ``neuron_rates(key)`` (per neuron), ``spike_counts``,
    ``mean(key, "v")``, ``spikes(key)`` / ``v(key)`` / ``trace(key, what)`` (with ``traces=True``),
    ``summary()``, ``plot_raster(key)`` and ``plot_rates()``.
    """

    def __init__(self, module: nn.Module, what: Iterable[str] | str = ("spikes",), keys: Iterable[str] | None = None,
                 traces: bool = False, max_steps: int | None = None) -> None:
        what = (what,) if isinstance(what, str) else tuple(what)
        unknown = set(what) - set(WHAT)
        if unknown or not what:
            raise ValueError(f"record: what={what!r}; choose from {WHAT}")
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"record: max_steps must be a positive int or None, got {max_steps!r}")
        if not isinstance(module, nn.Module):
            raise TypeError(f"record expects a torch module (an snnir.nn network or a compiled graph), "
                            f"got {type(module).__name__}")
        self.what, self.traces, self.max_steps = what, bool(traces), max_steps
        self.module = module
        sites = list(walk(module))
        if not sites and isinstance(module, StepModule):
            sites = [(type(module).__name__, module)]
        neurons = [(k, m) for k, m in sites if isinstance(m, Neuron)]
        layers = [(k, m) for k, m in sites if isinstance(m, StepModule) and not isinstance(m, GraphModule)
                  and not any(isinstance(c, StepModule) for c in list(m.modules())[1:])]  # innermost layers
        chosen = dict(layers if "outputs" in what else neurons)
        if keys is not None:
            patterns = [keys] if isinstance(keys, str) else list(keys)
            unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for k in chosen)]
            if unmatched:
                raise KeyError(f"record: no recordable module matches {unmatched}; recordable: {sorted(chosen)}")
            chosen = {k: m for k, m in chosen.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
        if not chosen:
            kind = "layer" if "outputs" in what else "snnir neuron"
            raise ValueError(f"record: {type(module).__name__} has no {kind} modules to record")
        self._sites = chosen
        self.keys: list[str] = list(chosen)
        self.steps: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.samples: dict[str, int] = dict.fromkeys(self.keys, 0)  # sum over calls of steps x batch
        self._series: dict[tuple[str, str], _Series] = {}
        self._handles: list[Any] = []
        self._saved_store_v: dict[Neuron, bool] = {}

    # --- attaching -------------------------------------------------------------------------------
    def __enter__(self) -> Recording:
        self.attach()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def attach(self) -> Recording:
        """Install the hooks (``with record(...)`` does this)."""
        if self._handles:
            raise RuntimeError("this recording is already attached")
        for key, m in self._sites.items():
            if "v" in self.what and isinstance(m, Neuron):
                self._saved_store_v[m] = m.store_v_seq
                m.store_v_seq = True
            self._handles.append(m.register_forward_hook(self._hook(key)))
        return self

    def detach(self) -> None:
        """Remove the hooks and give the neurons their ``store_v_seq`` setting back."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for m, saved in self._saved_store_v.items():
            m.store_v_seq = saved
            if not saved:
                m.v_seq = None
        self._saved_store_v = {}

    def _hook(self, key: str):
        spiking = isinstance(self._sites[key], Neuron)

        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if not torch.is_tensor(out):
                return
            multi = getattr(module, "step_mode", "s") == "m"
            x = out if multi else out.unsqueeze(0)
            if x.dim() < 2:
                x = x.reshape(x.shape[0], 1)
            self.steps[key] += x.shape[0]
            self.samples[key] += x.shape[0] * x.shape[1]
            if spiking and "spikes" in self.what:
                self._add(key, "spikes", x, as_bool=True)
            if spiking and "v" in self.what:
                v = module.v_seq if multi else module.v.unsqueeze(0)
                if v is None:
                    raise RuntimeError(f"record: neuron {key!r} kept no voltage sequence")
                self._add(key, "v", v.reshape(x.shape), as_bool=False)
                if multi and not self._saved_store_v.get(module, True):
                    module.v_seq = None  # nobody else asked for it: do not keep it alive
            if "outputs" in self.what:
                self._add(key, "outputs", x, as_bool=False)

        return hook

    def _add(self, key: str, what: str, x: torch.Tensor, as_bool: bool) -> None:
        self._series.setdefault((key, what), _Series()).add(x, self.traces, self.max_steps, as_bool)

    # --- reading ---------------------------------------------------------------------------------
    def _get(self, key: str, what: str) -> _Series:
        if key not in self._sites:
            raise KeyError(f"no recorded node {key!r}; recorded: {self.keys}")
        if what not in self.what:
            raise KeyError(f"{what!r} was not recorded (what={self.what}); record(..., what=(..., {what!r}))")
        series = self._series.get((key, what))
        if series is None or series.total is None:
            raise KeyError(f"{key!r} has not run since recording started")
        return series

    def spike_counts(self, key: str) -> np.ndarray:
        """Spikes per neuron of ``key`` (per-sample shape), summed over steps and batch."""
        return self._get(key, "spikes").total.cpu().numpy()  # type: ignore[union-attr]

    def neuron_rates(self, key: str) -> np.ndarray:
        """Firing rate of each neuron of ``key``: spikes per step and sample."""
        return self.spike_counts(key) / max(self.samples[key], 1)

    def rate(self, key: str) -> float:
        """The mean firing rate of ``key`` (spikes per neuron, step and sample)."""
        counts = self.spike_counts(key)
        return float(counts.sum() / max(counts.size * self.samples[key], 1))

    def rates(self) -> dict[str, float]:
        """Mean firing rate per recorded neuron layer (those that have run)."""
        return {k: self.rate(k) for k in self.keys if (k, "spikes") in self._series}

    def mean(self, key: str, what: str = "v") -> np.ndarray:
        """Per-element mean of ``what`` (``"v"`` or ``"outputs"``) over steps and samples."""
        return self._get(key, what).total.cpu().numpy() / max(self.samples[key], 1)  # type: ignore[union-attr]

    def trace(self, key: str, what: str = "spikes") -> torch.Tensor:
        """The recorded steps of ``what`` for ``key``: ``[steps, N, ...]`` (float32; needs ``traces=True``)."""
        series = self._get(key, what)
        if not self.traces:
            raise ValueError("record(..., traces=True) keeps traces; this recording keeps running sums only")
        batches = {c.shape[1:] for c in series.chunks}
        if len(batches) > 1:
            raise ValueError(f"{key!r} ran with different batch shapes {sorted(batches)}; its steps cannot be "
                             "stacked into one tensor (record one batch shape at a time)")
        return torch.cat(series.chunks).float()

    def spikes(self, key: str) -> torch.Tensor:
        """Recorded spikes of ``key``, ``[steps, N, ...]``."""
        return self.trace(key, "spikes")

    def v(self, key: str) -> torch.Tensor:
        """Recorded voltages of ``key`` after reset, ``[steps, N, ...]``."""
        return self.trace(key, "v")

    def nbytes(self) -> int:
        """Bytes of tensors this recording holds."""
        return sum(s.nbytes() for s in self._series.values())

    def summary(self) -> str:
        """A table per neuron layer: neurons, steps, mean rate, silent and most active neurons."""
        rows = [("node", "neurons", "steps", "rate", "silent", "max rate")]
        for key in self.rates():
            r = self.neuron_rates(key)
            rows.append((key, str(r.size), str(self.steps[key]), f"{r.mean():.4f}", f"{(r == 0).mean():.1%}",
                         f"{r.max():.3f}"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def plot_raster(self, key: str, sample: int = 0, ax: Any = None, max_neurons: int | None = 2000) -> Any:
        """Raster of ``key``'s spikes for one ``sample`` (time on x, neuron on y); returns the axes."""
        from snnir.analysis.plots import raster

        spikes = self.spikes(key)
        if not 0 <= sample < spikes.shape[1]:
            raise IndexError(f"sample {sample} is out of range for a batch of {spikes.shape[1]}")
        return raster(spikes[:, sample].reshape(spikes.shape[0], -1).numpy(), title=f"{key}: sample {sample}", ax=ax,
                      max_neurons=max_neurons)

    def plot_rates(self, bins: int = 20, keys: Iterable[str] | None = None) -> Any:
        """Histogram of per-neuron firing rates, one panel per layer; returns the figure."""
        from snnir.analysis.plots import rate_histograms

        keys = list(keys) if keys is not None else list(self.rates())
        return rate_histograms({k: self.neuron_rates(k).ravel() for k in keys}, bins=bins)

    def __repr__(self) -> str:
        return f"Recording({len(self.keys)} nodes, what={self.what}, traces={self.traces})"


def record(module: nn.Module, what: Iterable[str] | str = ("spikes",), keys: Iterable[str] | None = None,
           traces: bool = False, max_steps: int | None = None) -> Recording:
    """See ``snnir.analysis.record``."""
    return Recording(module, what, keys, traces, max_steps)


# --- activity for the operation counts ----------------------------------------------------------
def _as_inputs(graph: Any, inputs: Any) -> list[torch.Tensor]:
    values = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    names = graph.inputs
    if len(values) != len(names):
        raise GraphError(f"graph {graph.name!r} has inputs {names}, got {len(values)} array(s)")
    out = []
    for name, v in zip(names, values):
        t = torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v).detach()
        shape = tuple(graph.node(name).shape)
        if t.dim() != len(shape) + 2 or tuple(t.shape[2:]) != shape:
            raise GraphError(f"input {name!r}: expected an array [T, N, {', '.join(map(str, shape))}] "
                             f"(time, batch, per-sample shape), got shape {tuple(t.shape)}")
        if t.is_complex():
            raise GraphError(f"input {name!r}: complex values are not supported")
        t = t.to(torch.float32)
        if not torch.isfinite(t).all():
            raise GraphError(f"input {name!r} has NaN or Inf values")
        out.append(t)
    return out


def activity(graph: Any, inputs: Any) -> dict[str, Any]:
    """Run ``graph`` (validated) on ``inputs`` with the torch backend and return each node's
    ``snnir.analysis.counts.Activity``: nonzero values per step and element, summed over the batch."""
    from snnir.analysis.counts import Activity

    xs = _as_inputs(graph, inputs)
    module = GraphModule(graph, step_mode="m").eval()
    parts: dict[str, list[torch.Tensor]] = {}
    binary: dict[str, bool] = {}
    batch: dict[str, int] = {}

    def observe(node_id: str, x: torch.Tensor) -> None:
        parts.setdefault(node_id, []).append((x != 0).sum(dim=1, dtype=torch.int64))
        binary[node_id] = binary.get(node_id, True) and bool(((x == 0) | (x == 1)).all())
        batch[node_id] = x.shape[1]

    def hook(node_id: str):
        def fn(m: nn.Module, args: Any, out: torch.Tensor) -> None:
            observe(node_id, out if getattr(m, "step_mode", "s") == "m" else out.unsqueeze(0))
        return fn

    for name, x in zip(graph.inputs, xs):
        observe(name, x)
    handles = [layer.register_forward_hook(hook(node_id)) for node_id, layer in walk(module)]
    try:
        with torch.no_grad():
            module(*xs)
    finally:
        for h in handles:
            h.remove()
    steps = xs[0].shape[0]
    final = graph.final_step_nodes()  # after a reduction over time: computed at the last step only
    out = {}
    for node_id, chunks in parts.items():
        events = torch.cat(chunks).numpy()
        if events.shape[0] != (1 if node_id in final else steps):
            raise GraphError(f"node {node_id!r} ran {events.shape[0]} steps, expected {steps}")
        out[node_id] = Activity(events, binary[node_id], batch[node_id])
    return out


__all__ = ["Recording", "activity", "record", "walk"]

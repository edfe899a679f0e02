"""Running a graph on a backend from the command line: compile, check inputs, summarize firing rates.

A backend's ``compile`` returns either a ``torch.nn.Module`` (``torch``, and GPU backends built on
it) or an object with ``run(x)`` (``lava``'s simulator, whose ``spikes`` holds each layer's
spikes). ``run`` and ``bench`` handle both kinds through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from snnir.cli._common import CliError
from snnir.graph import Graph


def backend_names() -> list[str]:
    """The registered backends (``snnir.faces.BACKENDS``), so a new backend appears in ``--backend``."""
    from snnir.faces import BACKENDS

    return sorted(BACKENDS)


def compile_graph(graph: Graph, backend: str, device: str | None, check_finite: bool = False) -> tuple[Any, Any]:
    """``(compiled, torch device or None)``: torch modules go to ``device`` (default: where the
    backend put them, else the CPU) in eval mode. ``check_finite`` goes to backends whose
    ``compile`` takes it (torch, cupy: the first node holding NaN/Inf is named); the Loihi
    simulator computes in integers and needs none."""
    from snnir.faces import compile

    kwargs = {"check_finite": True} if check_finite and _takes(backend, "check_finite") else {}
    compiled = compile(graph, backend=backend, **kwargs)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return compiled, None
    if isinstance(compiled, torch.nn.Module):
        if device is not None:
            compiled = compiled.to(device)
        tensors = [*compiled.parameters(), *compiled.buffers()]
        where = torch.device(device) if device is not None else (tensors[0].device if tensors else torch.device("cpu"))
        return compiled.eval(), where
    if device is not None:
        raise CliError(f"--device applies to torch-module backends; backend {backend!r} returned "
                       f"{type(compiled).__name__}")
    return compiled, None


def _takes(backend: str, keyword: str) -> bool:
    """Whether ``backend``'s ``compile`` accepts ``keyword`` (by name or through ``**kwargs``)."""
    import importlib
    import inspect

    from snnir.faces import BACKENDS

    if backend not in BACKENDS:
        return False  # faces.compile names the unknown backend
    params = inspect.signature(importlib.import_module(BACKENDS[backend]).compile).parameters.values()
    return any(p.name == keyword or p.kind is p.VAR_KEYWORD for p in params)


def check_inputs(graph: Graph, arrays: list[np.ndarray], names: list[str]) -> None:
    """Each array must be ``[T, N, *shape]`` of its graph input; the message says what was expected."""
    if len(arrays) != len(graph.inputs):
        raise CliError(f"graph {graph.name!r} has {len(graph.inputs)} input(s) {graph.inputs}; got {len(arrays)} "
                       "--input file(s)")
    lead = None
    for a, name, node_id in zip(arrays, names, graph.inputs):
        shape = tuple(graph.node(node_id).shape)
        expected = f"[T, N, {', '.join(map(str, shape))}]"
        if a.ndim == len(shape) + 1 and tuple(a.shape[1:]) == shape:
            raise CliError(f"{name} has shape {a.shape}, [N, ...] without a time axis; graph input {node_id!r} "
                           f"takes {expected}: pass --repeat T to present each sample for T steps")
        if a.ndim != len(shape) + 2 or tuple(a.shape[2:]) != shape:
            raise CliError(f"{name} has shape {a.shape}; graph input {node_id!r} takes {expected}")
        if lead is not None and a.shape[:2] != lead:
            raise CliError(f"{name}: every input needs the same T and N, got {a.shape[:2]} and {lead}")
        lead = a.shape[:2]


@dataclass
class LayerRate:
    """Spike statistics of one spiking layer, summed over time steps and samples."""

    node: str
    model: str
    per_unit: np.ndarray | None = None  # spikes per unit (neuron of one sample)
    steps: int = 0  # time steps x samples seen

    def add(self, spikes: np.ndarray, unit_shape: tuple[int, ...]) -> None:
        lead = spikes.ndim - len(unit_shape)
        counts = spikes.reshape(-1, *unit_shape).sum(0, dtype=np.float64) if lead else spikes.astype(np.float64)
        self.per_unit = counts if self.per_unit is None else self.per_unit + counts
        self.steps += int(np.prod(spikes.shape[:lead])) if lead else 1

    def row(self) -> tuple[str, ...]:
        rates = self.per_unit / max(self.steps, 1)
        return (self.node, self.model, str(rates.size), f"{rates.mean():.4f}", f"{rates.max():.4f}",
                f"{(rates == 0).mean() * 100:.1f}%")


@dataclass
class RateRecorder:
    """Spike counts per spiking layer while a compiled graph runs: ``snnir.analysis.record`` on torch
    modules, the backend's own recording (``spikes``) on others."""

    graph: Graph
    layers: dict[str, LayerRate] = field(default_factory=dict)
    _recording: Any = None

    def attach(self, compiled: Any) -> RateRecorder:
        import torch

        if isinstance(compiled, torch.nn.Module):
            from snnir.analysis import record

            try:
                self._recording = record(compiled).attach()
            except ValueError:  # no neuron modules: nothing to summarize
                self._recording = None
        return self

    def add_recorded(self, spikes: dict[str, np.ndarray]) -> None:
        """Layers a non-torch backend recorded (``LoihiSimulator.spikes``: ``[T, N, ...]`` each)."""
        for node_id, s in spikes.items():
            rate = self.layers.setdefault(node_id, LayerRate(node_id, _model_name(self.graph, node_id)))
            rate.add(np.asarray(s), tuple(s.shape[2:]))

    def detach(self) -> None:
        rec, self._recording = self._recording, None
        if rec is None:
            return
        rec.detach()
        for key in rec.rates():
            self.layers[key] = LayerRate(key, _model_name(self.graph, key), rec.spike_counts(key).astype(np.float64),
                                         rec.samples[key])

    def table(self) -> str:
        header = ("node", "neuron", "units", "rate", "max", "silent")
        rows = [header] + [r.row() for r in self.layers.values() if r.per_unit is not None]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        return "\n".join("  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         for r in rows)


def _model_name(graph: Graph, node_id: str) -> str:
    if node_id in graph and graph.node(node_id).op == "neuron":
        return str(graph.node(node_id).attrs.get("model", ""))
    return graph.node(node_id).op if node_id in graph else ""


def reset_state(compiled: Any) -> None:
    """Forget neuron state between independent runs (torch modules; the simulator starts fresh)."""
    if callable(getattr(compiled, "reset", None)):
        compiled.reset()

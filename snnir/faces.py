"""The public faces ``trace`` and ``compile``: they reach frontends and backends lazily, by name.

The core never imports a backend or frontend at import time, so ``import snnir`` stays light
(numpy, networkx, sympy) and a backend's heavy dependency loads only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from snnir.graph import Graph

BACKENDS = {"torch": "snnir.backends.torch", "lava": "snnir.backends.lava"}
FRONTENDS = {"torch": "snnir.frontends.torch"}
# Each exporter module has ``export(graph, path, **kwargs) -> None``.
EXPORTERS = {"lava": "snnir.backends.lava", "nir": "snnir.backends.nir", "onnx": "snnir.backends.onnx"}


def _load(table: dict[str, str], kind: str, name: str) -> Any:
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table))}")
    return importlib.import_module(table[name])


def trace(model: Any, example_input: Any = None, **kwargs: Any) -> Graph:
    """Trace ``model`` into a ``snnir.Graph``.

    A ``torch.nn.Module`` (built from ``snnir.nn`` neurons and torch layers) goes through the torch
    frontend (``torch.fx``); ``example_input`` is ``[T, N, ...]`` (time first) unless
    ``time_axis=False``. See ``snnir.frontends.torch.trace``.

    Example:
        >>> import torch, snnir
        >>> from snnir import nn as snn
        >>> net = torch.nn.Sequential(snn.Flatten(), snn.Linear(4, 2), snn.LIF())
        >>> g = snnir.trace(net, torch.rand(3, 1, 2, 2))
        >>> [n.op for n in g]
        ['input', 'flatten', 'linear', 'neuron', 'output']
    """
    return _load(FRONTENDS, "frontend", "torch").trace(model, example_input, **kwargs)


def convert(model: Any, calibration: Any = None, **kwargs: Any) -> Graph:
    """Convert a trained ANN to a calibrated SNN graph; see ``snnir.conversion.convert``."""
    from snnir.conversion import convert as impl

    return impl(model, calibration, **kwargs)


def compile(graph: Graph, backend: str = "torch", **kwargs: Any) -> Any:
    """Lower ``graph`` to ``backend`` and return something that runs it.

    Backends (``snnir.faces.BACKENDS``; keyword arguments go to the backend's ``compile``):

    - ``"torch"``: a trainable ``torch.nn.Module`` (``GraphModule``) executing the graph's schedule
      on CPU or GPU, fused neuron kernels on CPU; ``step_mode="m"`` (``[T, N, ...]`` per call, the
      default) or ``"s"`` (one step per call). See ``snnir.backends.torch``.
    - ``"lava"``: maps the graph onto Loihi's fixed-point grid (``to_loihi``) and returns a
      bit-accurate ``LoihiSimulator`` (``.run(x)`` on ``[T, N, ...]`` spikes). See
      ``snnir.backends.lava``.

    Interchange formats (ONNX, NIR, netx files) are written by ``snnir.export``, not compiled.

    Example:
        >>> import snnir
        >>> g = snnir.Graph(); x = g.add_input((3,))
        >>> _ = g.add_output(g.add_node("neuron", [x], attrs={"model": "IF"}))
        >>> type(snnir.compile(g, backend="torch")).__name__
        'GraphModule'
    """
    return _load(BACKENDS, "backend", backend).compile(graph, **kwargs)


def export(graph: Graph, path: Any, format: str, **kwargs: Any) -> None:
    """Write ``graph`` to ``path`` in an interchange or chip ``format``.

    ``"lava"``: a lava-dl netx HDF5 file (``snnir.backends.lava``); ``"nir"``: a NIR HDF5 file
    (``snnir.backends.nir``); ``"onnx"``: a streaming one-step ONNX model (``snnir.backends.onnx``).
    Keyword arguments go to the exporter (``dt`` for NIR, ``unroll`` for ONNX, ...).
    """
    _load(EXPORTERS, "export format", format).export(graph, path, **kwargs)

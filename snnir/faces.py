"""The public faces ``trace`` and ``compile``: they reach frontends and backends lazily, by name.

The core never imports a backend or frontend at import time, so ``import snnir`` stays light
(numpy, networkx, sympy) and a backend's heavy dependency loads only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

from snnir.graph import Graph

BACKENDS = {"torch": "snnir.backends.torch", "cupy": "snnir.backends.cupy", "lava": "snnir.backends.lava"}
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
    - ``"cupy"``: the torch backend's module on a CUDA device with the neurons running CUDA kernels
      generated from their equations (needs CuPy and a GPU; ``CudaUnavailableError`` otherwise).
      See ``snnir.backends.cupy``.
    - ``"lava"``: maps the graph onto Loihi's fixed-point grid (``to_loihi``) and returns a
      bit-accurate ``LoihiSimulator`` (``.run(x)`` on ``[T, N, ...]`` spikes). See
      ``snnir.backends.lava``.

    Interchange formats (ONNX, NIR, netx files) are written by ``snnir.export``, not compiled.

    Training mode: the torch module starts in the mode of the model that was traced, so a model
    traced in ``eval()`` mode compiles to an eval-mode module (BatchNorm uses its running
    statistics, dropout is off) and a training model to a training module; a layer traced in the
    other mode than its model (a frozen BatchNorm) keeps its own. A graph that records no mode
    (built by hand, imported from NIR, saved before snnir recorded it) compiles in training
    mode, as every new ``torch.nn.Module`` starts; an ONNX checkpoint is imported in eval mode.
    Call ``.train()`` / ``.eval()`` on the result to switch.

    The compiled module checks its inputs against the per-sample shape the graph's input nodes
    recorded at trace time: ``[T, N, *shape]`` with ``step_mode="m"`` (the default), ``[N,
    *shape]`` with ``step_mode="s"``; a missing or extra time axis is named in the error.

    Example:
        >>> import torch, snnir
        >>> from snnir import nn as snn
        >>> net = torch.nn.Sequential(snn.Linear(3, 2), snn.Dropout(0.5), snn.LIF()).eval()
        >>> m = snnir.compile(snnir.trace(net, torch.rand(4, 1, 3)))
        >>> type(m).__name__, m.training
        ('GraphModule', False)
        >>> m(torch.rand(1, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: graph 'Sequential' (step_mode='m') expects input 'input' of shape [T, N, 3] ...
    """
    return _load(BACKENDS, "backend", backend).compile(graph, **kwargs)


def export(graph: Graph, path: Any, format: str, **kwargs: Any) -> None:
    """Write ``graph`` to ``path`` in an interchange or chip ``format``.

    ``"lava"``: a lava-dl netx HDF5 file (``snnir.backends.lava``); ``"nir"``: a NIR HDF5 file
    (``snnir.backends.nir``); ``"onnx"``: a streaming one-step ONNX model (``snnir.backends.onnx``).
    Keyword arguments go to the exporter (``dt`` for NIR, ``unroll`` for ONNX, ...).
    """
    _load(EXPORTERS, "export format", format).export(graph, path, **kwargs)

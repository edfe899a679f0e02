"""ANNs from PyTorch: a ``torch.nn.Module`` becomes a graph of ANN ops (no time axis).

The module is traced with the torch frontend on a single-step example ``[N, ...]``; dropout is
removed (conversion and inference see the evaluation-mode network).
"""

from __future__ import annotations

from typing import Any

from snnir.graph import Graph
from snnir.passes.rewrite import bypass


def from_torch_ann(module: Any, example_input: Any, name: str | None = None) -> Graph:
    """Trace an ANN (``torch.nn.Module``) on ``example_input`` (``[N, ...]``, no time axis).

    Example:
        >>> import torch
        >>> ann = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Dropout(),
        ...                           torch.nn.Linear(3, 2))
        >>> [n.op for n in from_torch_ann(ann, torch.rand(1, 4))]
        ['input', 'linear', 'relu', 'linear', 'output']
    """
    from snnir.frontends.torch import trace

    g = trace(module, example_input, time_axis=False, name=name or type(module).__name__)
    for node in [n for n in g if n.op == "dropout"]:
        bypass(g, node.id)
    return g.validate()

"""Lower a ``snnir.Graph`` to a ``torch.nn.Module`` built from ``snnir.nn`` modules.

Each node becomes the same module the authoring API offers (``Linear``, ``LIF``, ...), so a traced
model and its compiled graph run identical float operations. Nodes run in topological order;
in multi-step mode each layer processes the whole sequence before the next (acyclic graphs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from snnir.errors import GraphError
from snnir.graph import Graph, Node
from snnir.surrogate import surrogate_from_dict

from . import layers as L
from .base import check_step_mode
from .functional import reset, set_step_mode
from .neuron import Neuron, neuron_for

Builder = Callable[[Node, tuple[int, ...]], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def builds(*ops: str) -> Callable[[Builder], Builder]:
    """Register the module builder for ``ops`` (``builder(node, input_shape) -> nn.Module``)."""
    def wrap(fn: Builder) -> Builder:
        for op in ops:
            _BUILDERS[op] = fn
        return fn
    return wrap


def _load_params(module: nn.Module, node: Node, names: dict[str, str] | None = None) -> nn.Module:
    """Copy ``node.params`` into ``module``'s tensors of the same (or mapped) names."""
    state = {(names or {}).get(k, k): torch.from_numpy(v.copy()) for k, v in node.params.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise GraphError(f"node {node.id!r} ({node.op}): params {unexpected} have no place in {type(module).__name__}")
    return module


@builds("linear")
def _linear(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    out_f, in_f = node.params["weight"].shape
    return _load_params(L.Linear(in_f, out_f, bias="bias" in node.params), node)


@builds("conv1d", "conv2d")
def _conv(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    w = node.params["weight"]
    cls = L.Conv1d if node.op == "conv1d" else L.Conv2d
    a = node.attrs
    return _load_params(cls(w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[2:]), stride=a["stride"],
                            padding=a["padding"], dilation=a["dilation"], groups=a["groups"],
                            bias="bias" in node.params), node)


@builds("batchnorm")
def _batchnorm(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    cls = L.BatchNorm2d if len(in_shape) == 3 else L.BatchNorm1d
    affine = "weight" in node.params
    m = cls(in_shape[0], eps=node.attrs["eps"], momentum=node.attrs["momentum"], affine=affine)
    return _load_params(m, node)


@builds("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d")
def _pool(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    cls = {"maxpool1d": L.MaxPool1d, "maxpool2d": L.MaxPool2d,
           "avgpool1d": L.AvgPool1d, "avgpool2d": L.AvgPool2d}[node.op]
    return cls(**node.attrs)


@builds("adaptive_avgpool1d", "adaptive_avgpool2d")
def _adaptive(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    cls = L.AdaptiveAvgPool1d if node.op.endswith("1d") else L.AdaptiveAvgPool2d
    return cls(node.attrs["output_size"])


@builds("flatten")
def _flatten(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    rank = len(in_shape)
    start, end = node.attrs["start"] % max(rank, 1), node.attrs["end"] % max(rank, 1)
    return L.Flatten(start_dim=start + 1, end_dim=end + 1)


@builds("dropout")
def _dropout(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return (L.Dropout2d if node.attrs["channelwise"] else L.Dropout)(node.attrs["p"])


@builds("relu")
def _relu(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.ReLU()


@builds("add")
def _add(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Add()


@builds("cat")
def _cat(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Cat(node.attrs["axis"] % len(in_shape))


@builds("scale")
def _scale(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Scale(node.attrs["factor"])


@builds("neuron")
def _neuron(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    kwargs = dict(node.attrs)
    cls = neuron_for(kwargs.pop("model"))
    kwargs["surrogate"] = surrogate_from_dict(kwargs["surrogate"])
    kwargs.update({k: float(v) for k, v in node.params.items()})  # learnable, overwritten below
    return _load_params(cls(**kwargs), node)


class GraphModule(nn.Module):
    """A compiled graph: ``forward(*inputs)`` evaluates the nodes in topological order.

    ``layers[node_id]`` is the module of each node; ``reset()`` clears all neuron state.
    In ``step_mode='m'`` inputs are ``[T, N, ...]``; in ``'s'`` one call is one step ``[N, ...]``.
    """

    def __init__(self, graph: Graph, step_mode: str = "m") -> None:
        super().__init__()
        graph = graph.copy().validate()
        self.graph_name = graph.name
        self.layers = nn.ModuleDict()
        self._key: dict[str, str] = {}
        self._plan: list[tuple[str, str, list[str]]] = []
        for node_id in graph.topological_order():
            node = graph.node(node_id)
            preds = graph.predecessors(node_id)
            if node.op not in ("input", "output"):
                if node.op not in _BUILDERS:
                    raise GraphError(f"node {node_id!r}: the torch backend has no lowering for op {node.op!r}")
                key = node_id if not hasattr(self.layers, node_id) else f"{node_id}_"
                self._key[node_id] = key
                self.layers[key] = _BUILDERS[node.op](node, graph.node(preds[0]).shape if preds else ())
            self._plan.append((node_id, node.op, preds))
        self.input_names = graph.inputs
        self.output_names = graph.outputs
        self.step_mode = check_step_mode(step_mode)
        set_step_mode(self, step_mode)

    def layer(self, node_id: str) -> nn.Module:
        """The module that runs node ``node_id``."""
        return self.layers[self._key[node_id]]

    def neurons(self) -> dict[str, Neuron]:
        """Neuron modules by node id (their ``.v`` etc. hold the state)."""
        return {n: self.layers[k] for n, k in self._key.items() if isinstance(self.layers[k], Neuron)}

    def reset(self) -> None:
        reset(self.layers)

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"graph {self.graph_name!r} takes {len(self.input_names)} input(s) "
                            f"{self.input_names}, got {len(inputs)}")
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        outputs = []
        for node_id, op, preds in self._plan:
            if op == "input":
                continue
            args = [env[p] for p in preds]
            if op == "output":
                outputs.append(args[0])
            else:
                env[node_id] = self.layers[self._key[node_id]](*args)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def compile(graph: Graph, step_mode: str = "m", **kwargs: Any) -> GraphModule:
    """Lower ``graph`` to a trainable ``GraphModule`` (see its docstring)."""
    if kwargs:
        raise TypeError(f"torch backend: unknown options {sorted(kwargs)}")
    return GraphModule(graph, step_mode=step_mode)

"""Lower a ``snnir.Graph`` to a ``torch.nn.Module`` built from ``snnir.nn`` modules.

Each node becomes the same module the authoring API offers (``Linear``, ``LIF``, ...), so a traced
model and its compiled graph run identical float operations. The module executes the graph's
``schedule`` plan: in multi-step mode each layer of an acyclic region processes the whole
sequence before the next; loops run step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from snnir.errors import GraphError
from snnir.graph import Graph, Node
from snnir.passes.grouping import group_synapse_neuron
from snnir.passes.schedule import schedule as schedule_pass
from snnir.surrogate import surrogate_from_dict

from . import fused_bn, recompute
from . import layers as L
from . import stateful as S
from . import tensor_ops as X
from .base import StepModule, check_step_mode
from .functional import reset, set_step_mode
from .neuron import Neuron, neuron_for
from .quant import apply_quant

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
    state = {(names or {}).get(k, k): torch.tensor(np.asarray(v)) for k, v in node.params.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if unexpected:
        raise GraphError(f"node {node.id!r} ({node.op}): params {unexpected} have no place in {type(module).__name__}")
    return module


def _quantized(module: nn.Module, node: Node) -> nn.Module:
    return apply_quant(module, node.attrs["quant"]) if node.attrs.get("quant") else module


_SPIKE_PRESERVING = ("flatten", "dropout")  # zeros stay zeros (dropout scales the rest)


def _reads_spikes(graph: Graph, node_id: str) -> bool:
    """Whether ``node_id``'s only input is a neuron's output (through flattens and dropouts):
    mostly zeros, which ``spike_linear`` skips."""
    while True:
        preds = graph.predecessors(node_id)
        if len(preds) != 1:
            return False
        node = graph.node(preds[0])
        if node.op == "neuron":
            return True
        if node.op not in _SPIKE_PRESERVING:
            return False
        node_id = node.id


@builds("linear")
def _linear(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    out_f, in_f = node.params["weight"].shape
    return _quantized(_load_params(L.Linear(in_f, out_f, bias="bias" in node.params), node), node)


@builds("conv1d", "conv2d")
def _conv(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    w = node.params["weight"]
    cls = L.Conv1d if node.op == "conv1d" else L.Conv2d
    a = node.attrs
    conv = cls(w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[2:]), stride=a["stride"], padding=a["padding"],
               dilation=a["dilation"], groups=a["groups"], bias="bias" in node.params)
    return _quantized(_load_params(conv, node), node)


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


@builds("affine")
def _affine(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Affine(torch.tensor(np.asarray(node.params["weight"])), torch.tensor(np.asarray(node.params["bias"])))


@builds("constant")
def _constant(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Constant(torch.tensor(np.asarray(node.params["value"])))


@builds("clip")
def _clip(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.Clip(node.attrs["min"], node.attrs["max"])


@builds("reshape")
def _reshape(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Reshape(node.attrs["shape"])


@builds("expand")
def _expand(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Expand(node.attrs["shape"])


@builds("transpose")
def _transpose(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Transpose(node.attrs["perm"])


@builds("slice")
def _slice(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Slice(**node.attrs)


@builds("mean", "sum")
def _reduce(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Reduce(node.op, node.attrs["axes"], node.attrs["keepdim"])


@builds("matmul")
def _matmul(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.MatMul()


@builds("sigmoid", "tanh", "erf", "exp", "sqrt", "silu", "hardswish", "hardsigmoid", "gelu")
def _elementwise(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Elementwise(node.op, **node.attrs)


@builds("mul", "sub", "div")
def _binary(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Binary(node.op)


@builds("softmax")
def _softmax(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Softmax(node.attrs["axis"])


@builds("layernorm")
def _layernorm(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    m = X.LayerNorm(node.attrs["normalized_shape"], node.attrs["eps"], elementwise_affine="weight" in node.params,
                    bias="bias" in node.params)
    return _load_params(m, node)


@builds("upsample")
def _upsample(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return X.Upsample(**node.attrs)


@builds("spiking_maxpool2d")
def _spiking_maxpool(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return L.SpikingMaxPool2d(**node.attrs)


@builds("synapse_filter")
def _synapse_filter(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return S.SynapseFilter(node.attrs["tau"])


@builds("delay")
def _delay(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return S.Delay(node.attrs["steps"])


@builds("time_reduce")
def _time_reduce(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    return S.TimeReduce(node.attrs["mode"])


@builds("integrator")
def _integrator(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    from .integrator import Integrator

    arrays = {k: torch.tensor(np.asarray(v), dtype=torch.get_default_dtype()) for k, v in node.params.items()}
    return Integrator(**node.attrs, **arrays)


@builds("neuron")
def _neuron(node: Node, in_shape: tuple[int, ...]) -> nn.Module:
    kwargs = dict(node.attrs)
    cls = neuron_for(kwargs.pop("model"))
    kwargs["surrogate"] = surrogate_from_dict(kwargs["surrogate"])
    learnable = set(kwargs.pop("learnable", ())) | set(cls.model.learnable if cls.model else ())
    for k, v in node.params.items():  # per-neuron arrays are buffers, learnable ones parameters
        t = torch.tensor(np.asarray(v), dtype=torch.get_default_dtype())
        kwargs[k] = nn.Parameter(t) if k in learnable else t
    return cls(**kwargs)


class GraphModule(StepModule):
    """A compiled graph that executes the graph's ``schedule`` plan.

    ``step_mode='m'`` (inputs ``[T, N, *shape]``): ``sequence`` regions run node by node over
    blocks of time steps whose largest activation fits ``time_block_bytes`` (8 MiB by default;
    the whole sequence at once while a BatchNorm in the region trains, since its batch statistics
    span all steps); ``step`` regions (recurrent loops) run step by step; the ``final`` region (the
    nodes after a reduction over time, ``time_reduce``) runs once, on the last step, and an output
    there is ``[N, ...]``, like the traced model's ``head(x.mean(0))``. ``step_mode='s'``: one
    call is one time step (inputs ``[N, *shape]``) through all nodes. ``shape`` is the input
    node's per-sample shape; other input shapes are refused with an error naming the expected one.

    An edge with time offset 1 reads its source's value of the previous step: zeros at the first
    step after construction or ``reset()``, and across calls the last step of the previous call
    (in both modes, like the neurons' state), so a sequence fed in chunks gives the outputs of
    one call. ``layers[node_id]`` holds each node's module; a graph without a plan gets one from
    the ``schedule`` pass.

    Inputs are tensors or numpy arrays (converted: floating arrays to the module's dtype, integer
    and boolean spike arrays to float). ``check_finite=True`` checks every node's output and raises
    ``NonFiniteError`` naming the first node (in execution order), the time step and the element
    where NaN or Inf appear (off by default: one attribute test per node call).
    """

    def __init__(self, graph: Graph, step_mode: str = "m", memory_format: torch.memory_format | str | None = "auto",
                 fuse: bool = True, check_finite: bool = False, recompute_currents: bool = False) -> None:
        super().__init__()
        self.check_finite = bool(check_finite)
        self.recompute_currents = bool(recompute_currents)
        graph = graph.copy().validate()
        if "schedule" not in graph.meta:
            graph = schedule_pass(graph)
        if fuse and "groups" not in graph.meta:
            graph = group_synapse_neuron(graph)
        self.graph_name = graph.name
        self.layers = nn.ModuleDict()
        self._key: dict[str, str] = {}
        self._op: dict[str, str] = {}
        self._shape: dict[str, tuple[int, ...]] = {}
        # per node, its inputs by port: (source, time offset)
        self._preds: dict[str, list[tuple[str, int]]] = {}
        for node_id in graph.topological_order():
            node = graph.node(node_id)
            preds = graph.predecessors(node_id)
            self._preds[node_id] = [(e.src, e.offset) for e in graph.in_edges(node_id)]
            self._op[node_id] = node.op
            self._shape[node_id] = node.shape  # type: ignore[assignment]
            if node.op in ("input", "output"):
                continue
            if node.op not in _BUILDERS:
                raise GraphError(f"node {node_id!r}: the torch backend has no lowering for op {node.op!r}")
            key = node_id if not hasattr(self.layers, node_id) else f"{node_id}_"
            self._key[node_id] = key
            self.layers[key] = _BUILDERS[node.op](node, graph.node(preds[0]).shape if preds else ())
        self._order = graph.topological_order()
        for node_id, key in self._key.items():  # linear layers fed by spikes may skip the zeros
            if self._op[node_id] == "linear" and _reads_spikes(graph, node_id):
                self.layers[key].spike_input = True
        regions = graph.meta["schedule"]["regions"]
        self._plan = [(r["mode"], list(r["nodes"])) for r in regions]
        self._sample_elems = [r.get("sample_elems", 0) for r in regions]
        self.time_block_bytes = 8 << 20
        # nodes whose values leave their region (read by a later region or a graph output)
        region_of = {n: i for i, (_, nodes) in enumerate(self._plan) for n in nodes}
        # per region, the BatchNorms whose training mode forbids time blocks (checked each call)
        self._batchnorms = [[self.layers[self._key[n]] for n in nodes if n in self._key
                             and isinstance(self.layers[self._key[n]], nn.modules.batchnorm._BatchNorm)]
                            for _, nodes in self._plan]
        self._exported = [{n for n in nodes if any(region_of[v] != i or graph.node(v).op == "output"
                                                   for v in graph.successors(n))}
                          for i, (_, nodes) in enumerate(self._plan)]
        # chains run as one unit (synapse [-> batchnorm] -> neuron): head -> the chain's node ids
        self._group = {chain[0]: list(chain) for chain in graph.meta.get("groups", [])} if fuse else {}
        self._grouped = {n for chain in self._group.values() for n in chain[1:]}
        delayed = graph.delayed_edges()
        self._delayed_sources = sorted({e.src for e in delayed})
        # per region, the sources it reads with offset 1 from other regions (shifted once by forward)
        self._shifted = [sorted({e.src for e in delayed if region_of[e.dst] == i and region_of[e.src] != i})
                         for i in range(len(self._plan))]
        for e in delayed:
            if region_of[e.src] == region_of[e.dst] and self._plan[region_of[e.src]][0] == "sequence":
                raise GraphError(f"the schedule runs {e.src!r} and {e.dst!r} in one sequence region, but "
                                 f"{e.dst!r} reads {e.src!r} with offset 1; re-run the 'schedule' pass")
        self._stepped = [n for mode, nodes in self._plan if mode == "step" for n in nodes if n in self._key]
        self.input_names = graph.inputs
        self.output_names = graph.outputs
        self._final = graph.final_step_nodes()  # outputs among them are [N, ...] in multi-step mode
        self.input_shapes = {i: graph.node(i).shape for i in graph.inputs}
        self._last: dict[str, torch.Tensor] = {}  # offset-1 sources' values at the last step run
        self.capture: set[str] = set()  # node ids whose values forward() keeps in .captured
        self.captured: dict[str, torch.Tensor] = {}
        self.step_mode = check_step_mode(step_mode)
        set_step_mode(self, step_mode)
        if memory_format not in ("auto", None, torch.contiguous_format, torch.channels_last):
            raise ValueError(f"memory_format must be 'auto', torch.channels_last or torch.contiguous_format, got "
                             f"{memory_format!r}")
        # 'auto': 2-d convolutions run their CPU inputs channels-last (as Inductor does on CPU), outputs
        # are handed back contiguous; an explicit format converts the inputs and the conv weights
        self._auto_layout = memory_format == "auto" and any(isinstance(m, L.Conv2d) for m in self.layers.values())
        self.memory_format = None if memory_format == "auto" else memory_format
        for layer in self.layers.values():
            if isinstance(layer, L.Conv2d):
                layer.channels_last_on_cpu = self._auto_layout
            if isinstance(layer, nn.Conv2d) and self.memory_format is not None:
                layer.to(memory_format=self.memory_format)

    def layer(self, node_id: str) -> nn.Module:
        """The module that runs node ``node_id``."""
        return self.layers[self._key[node_id]]

    def neurons(self) -> dict[str, Neuron]:
        """Neuron modules by node id (their ``.v`` etc. hold the state)."""
        return {n: self.layers[k] for n, k in self._key.items() if isinstance(self.layers[k], Neuron)}

    def regions(self) -> list[tuple[str, list[str]]]:
        """The executed plan: ``(mode, node ids)`` per region."""
        return [(m, list(n)) for m, n in self._plan]

    def reset(self) -> None:
        reset(self.layers)
        self._last = {}

    def _call(self, node_id: str, args: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        layer = self.layers[self._key[node_id]]
        if self._op[node_id] == "constant":
            return layer(like)
        return layer(*args)

    def _zeros(self, node_id: str, like: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(*lead, *self._shape[node_id], dtype=like.dtype, device=like.device)

    def _as_input(self, name: str, x: Any) -> torch.Tensor:
        """``x`` as a tensor: numpy arrays are converted, other types refused naming the input."""
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "biuf":
                raise TypeError(f"graph {self.graph_name!r}: input {name!r} is a numpy array of dtype {x.dtype}; "
                                "expected numbers")
            ref = next((p for p in self.parameters() if p.is_floating_point()), None)
            dtype = ref.dtype if ref is not None else torch.get_default_dtype()
            x = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"graph {self.graph_name!r}: input {name!r} must be a torch.Tensor or numpy array, "
                            f"got {type(x).__name__}")
        return x

    def _finite(self, node_id: str, value: torch.Tensor, t0: int = 0, step: int | None = None) -> None:
        """Raise NonFiniteError if ``value`` (node ``node_id``'s output) holds NaN or Inf."""
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            return
        # one reduction in the value's own precision (float32 for half types; a float64 sum costs ~10x on
        # CPU): NaN and Inf survive a sum, and an overflowing sum of finite values is re-checked element-wise
        with torch.no_grad():
            low = value.dtype in (torch.float16, torch.bfloat16)
            total = value.sum(dtype=torch.float32) if low else value.sum()
            if math.isfinite(float(total)) or bool(torch.isfinite(value).all()):
                return
        from snnir.errors import NonFiniteError

        bad = ~torch.isfinite(value.detach())
        index = tuple(int(i) for i in bad.nonzero()[0])
        first = float(value.detach()[index])
        if step is not None:
            where = f"time step {step}, sample {index[0]}, element {index[1:]}"
        elif self.step_mode == "m":
            where = f"time step {t0 + index[0]}, sample {index[1]}, element {index[2:]}"
        else:
            where = f"this step, sample {index[0]}, element {index[1:]}"
        kind = "an input" if self._op[node_id] == "input" else "the first node (in execution order)"
        raise NonFiniteError(f"graph {self.graph_name!r}: node {node_id!r} ({self._op[node_id]}) holds {first} at "
                             f"{where}: {kind} where a non-finite value appears")

    def _previous(self, node_id: str, like: torch.Tensor) -> torch.Tensor:
        """``node_id``'s value at the step before this one (zeros after a reset); ``like`` is [N, ...]."""
        last = self._last.get(node_id)
        if last is None:
            return self._zeros(node_id, like, (like.shape[0],))
        if last.shape[0] != like.shape[0]:
            raise RuntimeError(f"graph {self.graph_name!r}: node {node_id!r} holds its previous step for batch "
                               f"size {last.shape[0]}, this call has batch size {like.shape[0]}; call reset() "
                               "before a new sequence")
        return last

    def _shift(self, node_id: str, seq: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``seq`` ([T, N, ...]) one step late: the value of t-1 at t."""
        return torch.cat([self._previous(node_id, like[0]).unsqueeze(0), seq[:-1]])

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise TypeError(f"graph {self.graph_name!r} takes {len(self.input_names)} input(s) "
                            f"{self.input_names}, got {len(inputs)}")
        inputs = tuple(self._as_input(n, x) for n, x in zip(self.input_names, inputs))
        self._check_inputs(inputs)
        if self.memory_format is not None:
            inputs = tuple(self._in_format(x) for x in inputs)
        if self.check_finite:
            for name, x in zip(self.input_names, inputs):
                self._finite(name, x)
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        like = inputs[0]
        if self.step_mode == "s":
            self._single_step(env, like)
        else:
            for i, (mode, nodes) in enumerate(self._plan):
                for p in self._shifted[i]:
                    env[_late(p)] = self._shift(p, env[p], like)
                if mode == "step":
                    self._run_steps(nodes, env, like)
                    continue
                if mode == "final":  # after a reduction over time: once, at the last step
                    self._run_sequence(nodes, {**env, **{k: v[-1:] for k, v in env.items()}}, like[-1:],
                                       like.shape[0] - 1, into=env)
                    continue
                block = self._time_block(i, like)
                if block >= like.shape[0]:
                    self._run_sequence(nodes, env, like)
                    continue
                keep = self._exported[i] | (self.capture & set(nodes))  # captured values survive the blocks
                outs: dict[str, list[torch.Tensor]] = {n: [] for n in keep}
                for start in range(0, like.shape[0], block):
                    part = {k: v[start:start + block] for k, v in env.items()}
                    self._run_sequence(nodes, part, like[start:start + block], start)
                    for n in outs:
                        outs[n].append(part[n])
                env.update({n: torch.cat(v) for n, v in outs.items()})
            self.__dict__["_last"] = {p: env[p][-1] for p in self._delayed_sources}
        # plain attributes, written directly (nn.Module.__setattr__ costs microseconds per call)
        self.__dict__["captured"] = {n: env[n] for n in self.capture if n in env} if self.capture else {}
        outs = [env[self._preds[o][0][0]] for o in self.output_names]
        if self.step_mode == "m":  # an output after a reduction over time: [N, ...], its final step
            outs = [x[-1] if o in self._final else x for o, x in zip(self.output_names, outs)]
        if self._auto_layout:  # the layout chosen inside stays inside
            outs = [x.contiguous() if isinstance(x, torch.Tensor) and x.dim() >= 4 else x for x in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _in_format(self, x: torch.Tensor) -> torch.Tensor:
        """An image input (``[T, N, C, H, W]`` or ``[N, C, H, W]``) in ``memory_format``."""
        lead = 2 if self.step_mode == "m" else 1
        if x.dim() != lead + 3:
            return x
        if lead == 1:
            return x.contiguous(memory_format=self.memory_format)
        return x.flatten(0, 1).contiguous(memory_format=self.memory_format).unflatten(0, x.shape[:2])

    def _time_block(self, region: int, like: torch.Tensor) -> int:
        """Time steps per call for a sequence region (all of them while a BatchNorm trains)."""
        if any(bn.training for bn in self._batchnorms[region]):
            return like.shape[0]
        per_step = max(1, like.shape[1] * self._sample_elems[region] * like.element_size())
        return max(1, self.time_block_bytes // per_step)

    def _run_sequence(self, nodes: list[str], env: dict[str, torch.Tensor], like: torch.Tensor,
                      t0: int = 0, into: dict[str, torch.Tensor] | None = None) -> None:
        """Run ``nodes`` over the steps of ``env``'s values; results go to ``into`` (default ``env``)."""
        into = env if into is None else into
        for node_id in nodes:
            op = self._op[node_id]
            if op in ("input", "output") or node_id in self._grouped:
                continue
            args = [env[_late(p) if offset else p] for p, offset in self._preds[node_id]]
            chain = self._group.get(node_id)
            if chain is not None and not self.check_finite and not (self.capture & set(chain[:-1])):
                # intermediate values are not kept
                env[chain[-1]] = into[chain[-1]] = self._run_chain(chain, args, like)
                continue
            out = env[node_id] = into[node_id] = self._call(node_id, args, like)
            if self.check_finite:
                self._finite(node_id, out, t0)
            for member in chain[1:] if chain is not None else ():  # captured or checked: each value kept
                out = env[member] = into[member] = self._call(member, [out], like)
                if self.check_finite:
                    self._finite(member, out, t0)

    def _run_chain(self, chain: list[str], args: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """``synapse [-> batchnorm] -> neuron`` (or ``batchnorm -> neuron``): a batchnorm is applied
        inside the neuron's kernel where that applies (``fused_bn``)."""
        layers = [self.layers[self._key[n]] for n in chain]
        if (self.recompute_currents and len(chain) == 2 and self._op[chain[0]] == "linear"
                and not torch.compiler.is_compiling()):  # traced: the compiler plans its own memory
            return recompute.linear_neuron(layers[0], layers[1], args[0])
        out = args[0] if self._op[chain[0]] == "batchnorm" else layers[0](*args)
        if self._op[chain[-2]] == "batchnorm":
            bn, neuron = layers[-2], layers[-1]
            if fused_bn.applies(bn, neuron, out):  # traced too: the kernels run as custom ops
                return fused_bn.batchnorm_neuron(bn, neuron, out)
            out = bn(out)
        return layers[-1](out)

    def _run_steps(self, nodes: list[str], env: dict[str, torch.Tensor], like: torch.Tensor) -> None:
        for node_id in nodes:  # a recurrent loop runs one step at a time
            if node_id in self._key:
                self.layers[self._key[node_id]].step_mode = "s"
        T = like.shape[0]
        members = set(nodes)
        prev = {n: self._previous(n, like[0]) for n in nodes if n in self._delayed_sources}
        seqs: dict[str, list[torch.Tensor]] = {n: [] for n in nodes}
        for t in range(T):
            cur: dict[str, torch.Tensor] = {}
            for node_id in nodes:
                args = [(prev[p] if p in members else env[_late(p)][t]) if offset
                        else (cur[p] if p in members else env[p][t])
                        for p, offset in self._preds[node_id]]
                cur[node_id] = self._call(node_id, args, like[t])
                if self.check_finite:
                    self._finite(node_id, cur[node_id], step=t)
                seqs[node_id].append(cur[node_id])
            prev = cur
        for node_id in nodes:
            env[node_id] = torch.stack(seqs[node_id])

    def _single_step(self, env: dict[str, torch.Tensor], like: torch.Tensor) -> None:
        # (node, module, inputs, constant?) per node, looked up once: a streaming step is all overhead
        # rebuilt when a layer was replaced: the list compare runs in C and tests identity first
        cached, layers = self.__dict__.get("_step_list"), list(self.layers._modules.values())
        if cached is None or cached[0] != layers:
            cached = self.__dict__["_step_list"] = (layers, [
                (n, self.layers[self._key[n]], self._preds[n], self._op[n] == "constant")
                for n in self._order if self._op[n] not in ("input", "output")])
        steps = cached[1]
        delayed = self._delayed_sources
        for node_id, layer, preds, constant in steps:
            if constant:
                env[node_id] = layer(like)
            elif len(preds) == 1 and not preds[0][1]:
                env[node_id] = layer(env[preds[0][0]])
            else:
                env[node_id] = layer(*[self._previous(p, like) if offset else env[p] for p, offset in preds])
            if self.check_finite:
                self._finite(node_id, env[node_id])
        self.__dict__["_last"] = {n: env[n] for n in delayed} if delayed else {}

    def _check_inputs(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """Refuse inputs without (or with an extra) time axis, naming the shape the graph expects."""
        multi = self.step_mode == "m"
        for name, x in zip(self.input_names, inputs):
            if not torch.is_tensor(x):
                raise TypeError(f"graph {self.graph_name!r}: input {name!r} must be a tensor, got {type(x).__name__}")
            sample = self.input_shapes[name]
            if x.dim() == len(sample) + (2 if multi else 1) and tuple(x.shape[x.dim() - len(sample):]) == sample:
                continue
            dims = ", ".join(["T", "N", *map(str, sample)] if multi else ["N", *map(str, sample)])
            got = list(x.shape)
            what = (f"graph {self.graph_name!r} (step_mode={self.step_mode!r}) expects input {name!r} of shape "
                    f"[{dims}] (per-sample shape {sample}, recorded at trace time), got {got}")
            if multi and tuple(got[1:]) == sample:
                raise ValueError(f"{what}: the time axis is missing. Pass a sequence [T, N, ...] (x.unsqueeze(0) "
                                 "for one step), or compile with step_mode='s' to feed one step per call")
            if not multi and tuple(got[2:]) == sample and x.dim() == len(sample) + 2:
                raise ValueError(f"{what}: this is a sequence, but a single-step module takes one time step per "
                                 "call. Compile with step_mode='m' for whole sequences, or call it once per step")
            raise ValueError(what)


def _late(node_id: str) -> str:
    """The environment key of ``node_id``'s values one step late (ids cannot contain '@')."""
    return f"{node_id}@t-1"


def compile(graph: Graph, step_mode: str = "m", memory_format: torch.memory_format | str | None = "auto",
            fuse: bool = True, check_finite: bool = False, recompute_currents: bool = False,
            **kwargs: Any) -> GraphModule:
    """Lower ``graph`` to a trainable ``GraphModule`` (see its docstring).

    The module starts in the training mode the graph records (``graph.meta["training"]``, set by
    ``snnir.trace`` from the traced model, with per-node exceptions in
    ``meta["training_nodes"]``), and in training mode when the graph records none.

    ``memory_format``: ``"auto"`` (default) runs 2-d convolutions on CPU tensors channels-last
    (oneDNN's native layout, as Inductor does on CPU: with plain NCHW activations oneDNN reorders
    them inside every convolution, forward and backward), so BatchNorms, neurons and pooling after
    them see channels-last activations too; parameters keep their layout, outputs are returned
    contiguous, other devices are left alone. ``torch.contiguous_format`` keeps NCHW throughout
    (the layout of the eager model, e.g. for bitwise comparisons with it);
    ``torch.channels_last`` also stores the convolution weights channels-last and converts image
    inputs on every device (cuDNN's tensor-core layout in 16-bit; outputs keep that layout);
    ``None`` leaves layouts as the tensors come. ``fuse``
    (default): the chains of ``group_synapse_neuron`` (computed here if the graph has none) run as
    one unit: a batchnorm before a neuron is applied inside the neuron's kernel.
    ``check_finite=True`` names the first node whose output holds NaN or Inf (``NonFiniteError``).
    ``recompute_currents=True`` (a memory opt-in, with ``fuse``): a ``linear -> neuron`` chain does
    not keep the linear's output (the neuron's input current, ``T * N * out`` values) for backward;
    the backward computes it again with one more forward product per layer (same kernel, same
    bits: outputs and gradients equal the default's). A graph without such chains, single-step
    mode, and chains run unfused (``check_finite``, monitors) are unaffected. See
    ``backends/torch/recompute.py``; settable later as ``module.recompute_currents``.
    A graph with learning synapses (``meta["plasticity"]``, see ``snnir.learning``) compiles with
    one ``Learner`` per synapse in ``module.learners`` (keyed by node id), recording from the start.

    Example:
        >>> import numpy as np, snnir
        >>> g = snnir.Graph(); x = g.add_input((2,))
        >>> _ = g.add_output(g.add_node("scale", [x], attrs={"factor": 2.0}, id="double"))
        >>> m = compile(g, check_finite=True)
        >>> m(np.ones((1, 1, 2))).tolist()          # numpy in, tensor out
        [[[2.0, 2.0]]]
        >>> try:
        ...     m(np.array([[[1.0, np.inf]]]))
        ... except snnir.NonFiniteError as e:
        ...     print(e)
        graph 'snnir': node 'input' (input) holds inf at time step 0, sample 0, element (1,): an input where a \
non-finite value appears
    """
    if kwargs:
        raise TypeError(f"torch backend: unknown options {sorted(kwargs)}")
    module = GraphModule(graph, step_mode=step_mode, memory_format=memory_format, fuse=fuse,
                         check_finite=check_finite, recompute_currents=recompute_currents)
    module.train(bool(graph.meta.get("training", True)))
    for node_id, flag in graph.meta.get("training_nodes", {}).items():
        if node_id in module._key:
            module.layer(node_id).train(bool(flag))
    module.learners = {}
    if graph.meta.get("plasticity"):  # learning synapses become learners (snnir.learning)
        from .plasticity import attach_learners

        module.learners = attach_learners(module, graph.copy().validate())
    return module

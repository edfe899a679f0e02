"""Trace a ``torch.nn.Module`` into a ``snnir.Graph`` with ``torch.fx``.

``snnir.nn`` modules and torch layers are leaves; each maps to one IR op through the tables
below. SpikingJelly, snnTorch and Norse modules are leaves too, mapped by ``snnir.frontends.peers``.
Functional calls and tensor methods (``F.relu``, ``x.view(x.shape[0], -1)``, ``q @ k.mT``,
``x.softmax(-1)``, ``torch.cat``, ...) map through ``torch_functions``. Every call is mapped while
the model runs under the tracer, and the model reads concrete shapes (``x.shape``, ``x.ndim``), so
shape checks and shape arithmetic in ``forward`` work; the time and batch sizes it reads are
tracked (``values``) so reshapes keep them apart from the per-sample axes.
Anything else stops tracing with the fx node, module path and class named.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from snnir.backends.torch import layers as L
from snnir.backends.torch import stateful as S
from snnir.backends.torch.base import StepModule
from snnir.backends.torch.encoding import _Encoder
from snnir.backends.torch.neuron import Neuron
from snnir.backends.torch.plasticity import plasticity_entries
from snnir.errors import GraphError, TimeReductionError, TraceError
from snnir.frontends import peers
from snnir.frontends import torch_functions as TF
from snnir.frontends.values import Results, TraceContext, Value, lead_words
from snnir.graph import Graph

OpMapping = tuple[str, dict[str, Any], dict[str, Any]]  # (op, attrs, params)
# A mapper returns an OpMapping, None (the module forwards its input), or the Value it emitted itself.
ModuleMapper = Callable[[nn.Module, "TraceContext"], "OpMapping | Value | None"]
_MODULES: dict[type, ModuleMapper] = {}


def maps(*classes: type) -> Callable[[ModuleMapper], ModuleMapper]:
    """Register how modules of ``classes`` (and subclasses) become IR ops."""
    def wrap(fn: ModuleMapper) -> ModuleMapper:
        for cls in classes:
            _MODULES[cls] = fn
        return fn
    return wrap


def _np(t: torch.Tensor) -> Any:
    return t.detach().cpu().numpy().copy()


def _weights(m: nn.Module) -> dict[str, Any]:
    out = {"weight": _np(m.weight)}
    if getattr(m, "bias", None) is not None:
        out["bias"] = _np(m.bias)
    return out


@maps(nn.Linear)
def _linear(m: nn.Linear, ctx: TraceContext) -> OpMapping:
    return "linear", {}, _weights(m)


@maps(nn.Conv1d, nn.Conv2d)
def _conv(m: nn.Conv1d | nn.Conv2d, ctx: TraceContext) -> OpMapping:
    if m.padding_mode != "zeros":
        raise ctx.error(f"padding_mode={m.padding_mode!r} is not supported (only 'zeros')")
    padding = m.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        else:  # 'same' (stride 1): symmetric only
            totals = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            if any(t % 2 for t in totals):
                raise ctx.error("padding='same' with an even kernel pads asymmetrically; give explicit padding")
            padding = tuple(t // 2 for t in totals)
    attrs = {"stride": m.stride, "padding": padding, "dilation": m.dilation, "groups": m.groups}
    return f"conv{len(m.kernel_size)}d", attrs, _weights(m)


@maps(nn.BatchNorm1d, nn.BatchNorm2d)
def _batchnorm(m: nn.modules.batchnorm._BatchNorm, ctx: TraceContext) -> OpMapping:
    if m.running_mean is None:
        raise ctx.error("BatchNorm without running statistics (track_running_stats=False) has no IR form")
    params = {"running_mean": _np(m.running_mean), "running_var": _np(m.running_var)}
    if m.affine:
        params.update(_weights(m))
    return "batchnorm", {"eps": m.eps, "momentum": m.momentum}, params


@maps(nn.MaxPool1d, nn.MaxPool2d)
def _maxpool(m: nn.MaxPool2d, ctx: TraceContext) -> OpMapping:
    if m.return_indices:
        raise ctx.error("MaxPool with return_indices=True is not supported")
    n = 2 if isinstance(m, nn.MaxPool2d) else 1
    return f"maxpool{n}d", {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                            "dilation": m.dilation, "ceil_mode": m.ceil_mode}, {}


@maps(nn.AvgPool1d, nn.AvgPool2d)
def _avgpool(m: nn.AvgPool2d, ctx: TraceContext) -> OpMapping:
    if getattr(m, "divisor_override", None):
        raise ctx.error("AvgPool with divisor_override is not supported")
    n = 2 if isinstance(m, nn.AvgPool2d) else 1
    return f"avgpool{n}d", {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                            "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}, {}


@maps(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _adaptive(m: nn.AdaptiveAvgPool2d, ctx: TraceContext) -> OpMapping:
    size = m.output_size
    if size is None or (isinstance(size, tuple) and None in size):
        raise ctx.error("AdaptiveAvgPool with a None output size is not supported; give every size")
    n = 2 if isinstance(m, nn.AdaptiveAvgPool2d) else 1
    return f"adaptive_avgpool{n}d", {"output_size": size}, {}


@maps(nn.Flatten)
def _flatten(m: nn.Flatten, ctx: TraceContext) -> OpMapping:
    # snn.Flatten folds time first, so its dims count from the batch axis in both modes
    own_offset = 1 if isinstance(m, StepModule) else ctx.offset
    start = m.start_dim if m.start_dim < 0 else m.start_dim - own_offset
    end = m.end_dim if m.end_dim < 0 else m.end_dim - own_offset
    if m.start_dim >= 0 and start < 0:
        raise ctx.error(f"Flatten(start_dim={m.start_dim}) would merge the batch axis into features")
    return "flatten", {"start": start, "end": end}, {}


@maps(nn.Dropout, nn.Dropout2d, L.Dropout)
def _dropout(m: nn.Module, ctx: TraceContext) -> OpMapping:
    channelwise = isinstance(m, (nn.Dropout2d, L.Dropout2d))
    return "dropout", {"p": m.p, "channelwise": channelwise}, {}


@maps(nn.ReLU)
def _relu(m: nn.ReLU, ctx: TraceContext) -> OpMapping:
    return "relu", {}, {}


@maps(nn.ReLU6, nn.Hardtanh)
def _clip_module(m: nn.Module, ctx: TraceContext) -> OpMapping:
    lo, hi = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (float(m.min_val), float(m.max_val))
    return "clip", {"min": lo, "max": hi}, {}


@maps(nn.Identity)
def _identity(m: nn.Identity, ctx: TraceContext) -> None:
    return None  # the node forwards its input


@maps(L.Scale)
def _scale(m: L.Scale, ctx: TraceContext) -> OpMapping:
    return "scale", {"factor": m.factor}, {}


@maps(L.Add)
def _add_module(m: L.Add, ctx: TraceContext) -> OpMapping:
    return "add", {}, {}


@maps(L.Cat)
def _cat_module(m: L.Cat, ctx: TraceContext) -> OpMapping:
    return "cat", {"axis": m.axis}, {}


@maps(Neuron)
def _neuron(m: Neuron, ctx: TraceContext) -> OpMapping:
    attrs: dict[str, Any] = {"model": m.model.name, "detach_reset": m.detach_reset,
                             "surrogate": m.surrogate.to_dict(), **m.options}
    params = {}
    for name, value in m.parameter_values().items():  # per-neuron / learnable tensors become arrays
        if name == "v_reset" and m.v_reset is None:
            attrs["v_reset"] = None
        elif isinstance(value, torch.Tensor):
            params[name] = _np(value)
        else:
            attrs[name] = value
    extra = [n for n in m.learnable if n not in m.model.learnable]
    if extra:
        attrs["learnable"] = extra
    return "neuron", attrs, params


@maps(S.SynapseFilter)
def _synapse_filter(m: S.SynapseFilter, ctx: TraceContext) -> OpMapping:
    return "synapse_filter", {"tau": m.tau}, {}


@maps(S.Delay)
def _delay(m: S.Delay, ctx: TraceContext) -> OpMapping:
    return "delay", {"steps": m.steps}, {}


@maps(L.Affine)
def _affine_module(m: L.Affine, ctx: TraceContext) -> OpMapping:
    return "affine", {}, {"weight": _np(m.weight), "bias": _np(m.bias)}


@maps(_Encoder)
def _encoder(m: nn.Module, ctx: TraceContext) -> None:
    raise ctx.error(f"{type(m).__name__} creates the time axis; encode the input before the traced "
                    "network (snn.poisson(x, T), ...) and trace the network alone")


@maps(nn.LayerNorm)
def _layernorm(m: nn.LayerNorm, ctx: TraceContext) -> OpMapping:
    params = {k: _np(getattr(m, k)) for k in ("weight", "bias") if getattr(m, k, None) is not None}
    return "layernorm", {"normalized_shape": tuple(m.normalized_shape), "eps": m.eps}, params


_ACTIVATIONS = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu", nn.Hardswish: "hardswish",
                nn.Hardsigmoid: "hardsigmoid"}


@maps(*_ACTIVATIONS)
def _activation(m: nn.Module, ctx: TraceContext) -> OpMapping:
    return next(op for cls, op in _ACTIVATIONS.items() if isinstance(m, cls)), {}, {}


@maps(nn.GELU)
def _gelu(m: nn.GELU, ctx: TraceContext) -> OpMapping:
    return "gelu", {"approximate": m.approximate}, {}


@maps(nn.Softmax)
def _softmax(m: nn.Softmax, ctx: TraceContext) -> OpMapping:
    if m.dim is None:
        raise ctx.error("nn.Softmax without dim is ambiguous; give dim")
    return "softmax", {"axis": ctx.axis(ctx.inputs[0], m.dim, "softmax")}, {}


@maps(nn.Upsample)
def _upsample(m: nn.Upsample, ctx: TraceContext) -> Value:
    return TF.upsample(ctx, ctx.inputs[0], m.size, m.scale_factor, m.mode, m.align_corners,
                       bool(m.recompute_scale_factor))


@maps(nn.Unflatten)
def _unflatten(m: nn.Unflatten, ctx: TraceContext) -> Value:
    return TF.HANDLERS["unflatten"](ctx, [ctx.inputs[0], m.dim, m.unflattened_size], {})


@maps(nn.MultiheadAttention)
def _mha(m: nn.MultiheadAttention, ctx: TraceContext) -> Results:
    return TF.multi_head_attention(ctx, m, ctx.inputs, ctx.kwargs)


def _peer_leaf(m: nn.Module) -> bool:
    return peers.is_leaf(m)


def _module_mapper(m: nn.Module) -> ModuleMapper | None:
    """The mapper of ``m``'s class or nearest registered base, unless a class in between redefines
    ``forward`` (``LayerNorm2d(nn.LayerNorm)`` permuting around the norm is traced into, not mapped as
    a LayerNorm); snnir's own classes (step-mode wrappers, encoders) redefine it without changing the op."""
    mro = type(m).__mro__
    for i, cls in enumerate(mro):
        if cls in _MODULES:
            overrides = [c for c in mro[:i] if "forward" in c.__dict__ and not c.__module__.startswith("snnir.")]
            return None if overrides else _MODULES[cls]
    return None


def _outer_step_modules(model: nn.Module) -> list[StepModule]:
    """StepModules outside any Recurrent wrapper (whose insides always run single steps)."""
    found: list[StepModule] = []

    def visit(m: nn.Module) -> None:
        if isinstance(m, StepModule):
            found.append(m)
        if isinstance(m, S.Recurrent):
            return
        for child in m.children():
            visit(child)

    visit(model)
    return found


def _step_offset(model: nn.Module) -> int:
    modes = {m.step_mode for m in _outer_step_modules(model)} | peers.step_modes(model)
    if len(modes) > 1:
        raise TraceError("the model mixes single-step and multi-step modules; set one mode with "
                         "snn.set_step_mode(model, 's' or 'm') before tracing")
    return 2 if modes == {"m"} else 1


def trace(model: nn.Module, example_input: Any = None, *, time_axis: bool = True,
          name: str | None = None) -> Graph:
    """Trace ``model`` into a validated ``snnir.Graph``.

    Args:
        model: a module built from ``snnir.nn`` modules, torch layers and the supported functions.
        example_input: a tensor (or tuple of tensors, one per input) fixing per-sample shapes;
            ``[T, N, ...]`` when ``time_axis`` (the default), else ``[N, ...]``. An ``[N, ...]``
            example traced with ``time_axis=True`` that only fits the model without a time axis
            is refused, asking for ``time_axis=False``.
        time_axis: whether ``example_input`` has the leading time axis.
        name: graph name (default: the model's class name).

    The graph records the model's training mode (``meta["training"]``, and
    ``meta["training_nodes"]`` for layers in the other mode, e.g. a frozen BatchNorm), which
    ``snnir.compile`` restores.

    ``snn.Recurrent`` wrappers become graph cycles: ``add(x, feedback) -> module -> connection``
    with the feedback edge reading the previous step (time offset 1). ``forward`` may read shapes and reshape with
    them (``B, L, C = x.shape; x.view(B, L, heads, C // heads)``): the time and batch axes must stay
    in front, since the graph holds per-sample shapes. A mean or sum over the time axis
    (``head(x.mean(0))``) becomes a ``time_reduce`` node; what follows it runs at the final step
    (``snnir.ops.time_reduce``).

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> net = torch.nn.Sequential(snn.Conv2d(1, 4, 3), snn.LIF(), snn.Flatten(), snn.Linear(16, 2))
        >>> print(trace(net, torch.rand(2, 1, 1, 4, 4)).summary())  # doctest: +NORMALIZE_WHITESPACE
        node    op          inputs  shape      params                      state
        input   input               (1, 4, 4)
        _0      conv2d      input   (4, 2, 2)  weight[4, 1, 3, 3] bias[4]
        _1      neuron:LIF  _0      (4, 2, 2)                              v
        _2      flatten     _1      (16,)
        _3      linear      _2      (2,)       weight[2, 16] bias[2]
        output  output      _3      (2,)
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"snnir.trace expects a torch.nn.Module, got {type(model).__name__}")
    if example_input is None:
        raise TraceError("snnir.trace needs an example input ([T, N, ...] by default) to fix the "
                         "per-sample shapes")
    examples = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    lead = 2 if time_axis else 1
    for x in examples:
        if not torch.is_tensor(x) or x.dim() < lead:
            raise TraceError(f"example input must be a tensor with {'[T, N, ...]' if time_axis else '[N, ...]'} "
                             f"axes, got {getattr(x, 'shape', type(x).__name__)}")
    sizes = {"T": int(examples[0].shape[0]) if time_axis else 1, "N": int(examples[0].shape[lead - 1])}
    try:
        g = _trace_shapes(model, [tuple(x.shape[lead:]) for x in examples], sizes, name)
    except TraceError as e:
        if time_axis and all(x.dim() >= 2 for x in examples):
            try:  # does the example fit without a time axis? then say so instead
                _trace_shapes(model, [tuple(x.shape[1:]) for x in examples], {"T": 1, "N": int(examples[0].shape[0])},
                              name)
            except TraceError:
                pass
            else:
                got = ", ".join(str(list(x.shape)) for x in examples)
                samples = ", ".join(str(tuple(x.shape[1:])) for x in examples)
                raise TraceError(f"example input {got} has no time axis: {type(model).__name__} takes per-sample "
                                 f"shape {samples}, so this is [N, ...]. Pass time_axis=False to trace from a "
                                 f"single step, or give a sequence [T, N, ...] (x.unsqueeze(0)). ({e})") from None
        raise
    g.meta["training"] = bool(model.training)
    return g


def _trace_shapes(model: nn.Module, shapes: list[tuple[int, ...]], sizes: dict[str, int], name: str | None) -> Graph:
    g = Graph(name or type(model).__name__)
    emitter = _Emitter(g, sizes, ("T", "N") if _step_offset(model) == 2 else ("N",))
    outputs = emitter.module(model, None, shapes, prefix="")
    for out in outputs:
        g.add_output(out.node)
    other_mode = {n: flag for n, flag in emitter.training.items() if flag != model.training and n in g}
    if other_mode:
        g.meta["training_nodes"] = other_mode
    learning = plasticity_entries(emitter.node_of_module)  # Learners attached to traced synapses
    if learning:
        g.meta["plasticity"] = learning
    try:
        return g.validate()
    except TimeReductionError as e:  # the model's own structure, not a tracer mismatch
        raise TraceError(f"cannot trace {type(model).__name__}: {e}") from None
    except GraphError as e:
        raise TraceError(f"traced graph of {type(model).__name__} is inconsistent with the example "
                         f"input: {e}") from None


class _Proxy(fx.Proxy):
    """A traced tensor whose shape the model can read: ``x.shape``, ``x.size(1)``, ``x.ndim`` and
    ``len(x)`` are concrete (the time and batch sizes as ``LeadDim``s), so shape checks and shape
    arithmetic in ``forward`` run as in eager mode."""

    def _value(self) -> Any:
        return self.tracer.value_of(self.node)

    def _tensor(self) -> Value:
        v = self._value()
        if not isinstance(v, Value):
            raise TraceError(f"fx node {self.node.name!r} is not a tensor (it holds {type(v).__name__})")
        return v

    @property
    def shape(self) -> tuple[int, ...]:
        return self.tracer.emitter.ctx.traced_shape(self._tensor())

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self._tensor().rank

    @property
    def ndim(self) -> int:
        return self._tensor().rank

    def numel(self) -> int:
        return self.shape.numel()

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def is_cuda(self) -> bool:
        return False

    def __len__(self) -> int:
        v = self._value()
        return len(v) if isinstance(v, Results) else self.shape[0]

    def __iter__(self) -> Any:
        v = self._value()
        if isinstance(v, Results):
            return iter([self[i] for i in range(len(v))])
        if isinstance(v, Value) and (v.pos > 0 or not v.lead):  # dim 0 is a per-sample axis: q, k, v = qkv
            return iter([self[i] for i in range(self.shape[0])])
        raise TraceError(f"fx node {self.node.name!r}: iterating over a tensor walks its time/batch axis; "
                         "snnir ops act per sample")


class _Tracer(fx.Tracer):
    """Stops at snnir modules and at every module a mapper knows; maps each call as it is made."""

    def __init__(self, emitter: _Emitter, prefix: str, inputs: list[Value] | None,
                 shapes: list[tuple[int, ...]] | None) -> None:
        super().__init__()
        self.emitter, self.prefix, self.inputs, self.shapes = emitter, prefix, inputs, shapes
        self.values: dict[fx.Node, Any] = {}
        self.placeholders = 0
        self.mapping = False
        self.module_calls: dict[str, str] = {}  # module path -> first fx node calling it

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, StepModule) or _module_mapper(m) is not None or _peer_leaf(m)
                or super().is_leaf_module(m, qualname))

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _Proxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: tuple, kwargs: dict, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Any = None) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self.mapping = True  # mappers read modules' real parameters, not proxies of them
        try:
            self.values[proxy.node] = self.emitter.map_node(self, proxy.node)
        finally:
            self.mapping = False
        return proxy

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if self.mapping:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def value_of(self, node: fx.Node) -> Any:
        if node not in self.values:
            if node.op != "get_attr":
                raise TraceError(f"fx node {node.name!r} ({node.op} {node.target}) has no traced value")
            self.mapping = True
            try:
                self.values[node] = TF.constant(self.fetch(node.target))
            finally:
                self.mapping = False
        return self.values[node]

    def fetch(self, target: str) -> np.ndarray:
        obj: Any = self.root
        for atom in target.split("."):
            obj = getattr(obj, atom)
        if not isinstance(obj, torch.Tensor):
            raise TraceError(f"attribute '{target}' read in forward is a {type(obj).__name__}, not a tensor")
        return _np(obj)


class _Emitter:
    """Adds the ops of one (sub)module to a graph; recursive for ``Recurrent`` wrappers."""

    def __init__(self, g: Graph, sizes: dict[str, int], lead: tuple[str, ...]) -> None:
        self.g, self.lead = g, lead
        self.ctx = TraceContext(g, sizes)
        self.training: dict[str, bool] = {}  # node id -> training flag of the module it came from
        self.node_of_module: dict[int, str] = {}  # id(leaf module) -> its node id

    def module(self, model: nn.Module, inputs: list[Value] | None, shapes: list[tuple[int, ...]] | None,
               prefix: str) -> list[Value]:
        """Emit ``model`` fed by ``inputs``, or by new input nodes of ``shapes``; returns its outputs."""
        if _module_mapper(model) is not None or isinstance(model, S.Recurrent) or _peer_leaf(model):
            # a leaf used as a whole (sub-)model, e.g. Recurrent(snn.LIF()) or trace(snn.LIF(), x)
            if inputs is None:
                inputs = [Value(self.lead, s, self.g.add_input(s)) for s in (shapes or ())][:1]
            name = (prefix.rstrip("_") or type(model).__name__.lower())
            self.ctx.name = name
            return self.outputs(self.leaf(model, name, inputs, {}, name))
        tracer = _Tracer(self, prefix, inputs, shapes)
        try:
            fx_graph = tracer.trace(model)
        except TraceError:
            raise
        except Exception as e:
            raise TraceError(f"torch.fx could not trace {type(model).__name__}: {e}. Data-dependent control "
                             "flow must live inside a leaf module") from e
        expected = len(inputs) if inputs is not None else len(shapes or ())
        if tracer.placeholders != expected:
            raise TraceError(f"model takes {tracer.placeholders} input(s) but {expected} were given")
        (out_node,) = [n for n in fx_graph.nodes if n.op == "output"]
        self.ctx.where = "model output"
        return self.outputs(fx.node.map_arg(out_node.args[0], tracer.value_of))

    def outputs(self, result: Any) -> list[Value]:
        """The tensors a model returns, flattened (a peer neuron's tuple gives its spikes)."""
        flat: list[Value] = []

        def collect(v: Any) -> None:
            if isinstance(v, Results):
                for i in range(1 if getattr(v, "primary", False) else len(v)):
                    collect(v.get(i))
            elif isinstance(v, (tuple, list)):
                for item in v:
                    collect(item)
            elif isinstance(v, peers.Unusable):
                raise TraceError(v.why("a model output"))
            elif isinstance(v, Value) and not v.is_const:
                if v.pos:
                    raise TraceError(f"model output {len(flat)} has its {lead_words(v.lead)} behind per-sample axes "
                                     f"(shape {tuple(self.ctx.traced_shape(v))}); permute it back to the front")
                flat.append(v)
            else:
                raise TraceError(f"model output must be tensors computed from the input, got {type(v).__name__} "
                                 f"{'constant' if isinstance(v, Value) else repr(v)}")
        collect(result)
        return flat

    def map_node(self, tracer: _Tracer, node: fx.Node) -> Any:
        """The traced value of a new fx node (emitting its IR nodes)."""
        ctx = self.ctx
        ctx.name = tracer.prefix + node.name
        if node.op == "placeholder":
            return self.placeholder(tracer, node)
        if node.op == "get_attr":
            return TF.constant(tracer.fetch(node.target))
        args = list(fx.node.map_arg(node.args, tracer.value_of))
        kwargs = dict(fx.node.map_arg(node.kwargs, tracer.value_of))
        if node.op == "call_module":
            return self.call_module(tracer, node, args, kwargs)
        target = node.target
        label = getattr(target, "__name__", str(target))
        ctx.where = f"fx node {node.name!r} ({node.op} {label})"
        ctx.target, ctx.label = target, label
        if target is builtins.getattr:
            return TF.getattr_tensor(ctx, TF.tensor(ctx, args[0], "attribute owner"), args[1])
        handler = TF.HANDLERS.get(target) if not isinstance(target, str) or node.op == "call_method" else None
        if handler is None:
            raise ctx.error(f"no snnir op for {node.op} {label!r}. Supported: activations (relu, clamp, sigmoid, tanh, "
                            "gelu, silu, hardswish, softmax), layer_norm, linear, shape ops (view/reshape with "
                            "x.shape, flatten, permute, transpose, squeeze/unsqueeze, chunk, split, indexing, cat, "
                            "stack), + - * / with tensors or numbers, matmul/@, mean/sum over per-sample dims, "
                            "pools, interpolate, scaled_dot_product_attention. Wrap other computations in a "
                            "supported module")
        return handler(ctx, args, kwargs)

    def placeholder(self, tracer: _Tracer, node: fx.Node) -> Value:
        i = tracer.placeholders
        tracer.placeholders += 1
        if tracer.inputs is not None:
            if i >= len(tracer.inputs):
                raise TraceError(f"module input {node.name!r} has no value")
            return tracer.inputs[i]
        if i >= len(tracer.shapes or ()):
            raise TraceError(f"model input {node.name!r} has no example input; pass a tuple of tensors")
        # fx calls Sequential's argument 'input_1' (it avoids the builtin's name)
        input_id = "input" if node.name == "input_1" else node.name
        shape = tracer.shapes[i]
        return Value(self.lead, shape, self.g.add_input(shape, id=input_id))

    def call_module(self, tracer: _Tracer, node: fx.Node, args: list, kwargs: dict) -> Any:
        m = tracer.root.get_submodule(node.target)
        path = tracer.prefix + node.target
        has_state = any(True for _ in m.parameters()) or isinstance(m, (Neuron, L.Dropout, S.SynapseFilter,
                                                                        S.Delay, S.Recurrent)) \
            or peers.is_stateful(m)
        first = tracer.module_calls.setdefault(node.target, node.name)
        if first != node.name and has_state:
            raise TraceError(f"module '{node.target}' ({type(m).__name__}) is called more than once "
                             f"(fx nodes {[first, node.name]}); shared weights or state cannot be represented "
                             "yet. Use one module per call (copy.deepcopy for independent weights)")
        inputs = [TF.tensor(self.ctx, a, "module input") if not isinstance(a, (Results, tuple, list)) else a
                  for a in args]
        return self.leaf(m, tracer.prefix + node.name, inputs, kwargs, path)

    def leaf(self, m: nn.Module, name: str, inputs: list, kwargs: dict, path: str) -> Any:
        ctx = self.ctx
        ctx.where = f"fx node {name!r} (module '{path}', class {type(m).__module__}.{type(m).__name__})"
        ctx.name = name
        if isinstance(m, S.Recurrent):
            return self.recurrent(m, name, inputs)
        mapper = _module_mapper(m)
        if _peer_leaf(m):
            tensors = [v for v in inputs if isinstance(v, Value)]
            conversion = peers.convert(m, path, lambda: [v.shape for v in tensors])
            if conversion.torch_class is None:
                return self.peer(conversion, name, tensors, m.training, path)
            mapper = _MODULES.get(conversion.torch_class)
        if mapper is None:
            raise ctx.error("no snnir op for this module class. Supported: " +
                            ", ".join(sorted(c.__name__ for c in _MODULES)) +
                            ". Replace it with a supported layer, or define a NeuronModel for custom dynamics")
        tensors = [v for v in inputs if isinstance(v, Value)]
        if any(v.pos for v in tensors):
            raise ctx.error(f"the input's {lead_words(tensors[0].lead)} sits behind per-sample axes; permute it back "
                            "to the front before calling a module")
        ctx.offset = len(tensors[0].lead) if tensors else len(self.lead)
        ctx.inputs, ctx.kwargs = inputs, kwargs
        mapped = mapper(m, ctx)
        if mapped is None:
            return inputs[0]
        if isinstance(mapped, (Value, Results)):
            return mapped
        op, attrs, params = mapped
        out = ctx.emit(op, tensors, attrs, params)
        self.training[out.node] = m.training
        self.node_of_module[id(m)] = out.node
        return out

    def peer(self, conversion: peers.Conversion, name: str, inputs: list[Value], training: bool, path: str) -> Any:
        """Emit a peer module's snnir equivalent (a module traced in its place, or a chain of ops)."""
        if len(inputs) != 1:
            raise self.ctx.error(f"called with {len(inputs)} arguments; snnir traces peer modules called on their "
                                 "input alone (their state lives in the graph, not in explicit arguments)")
        (x,) = inputs
        if conversion.ops is not None:
            out = x
            for i, (op, attrs, params) in enumerate(conversion.ops):
                out = self.ctx.emit(op, [out], attrs, params, suffix="" if i == 0 else f"_{i}")
                self.training[out.node] = training
        else:
            conversion.module.train(training)  # built for the occasion: it takes the peer module's mode
            inner = x
            if conversion.single_step and x.lead == ("T", "N"):  # e.g. SeqToANNContainer: [T*N, ...] inside
                inner = Value(("T*N",), x.shape, x.node, x.const, x.pos)
            (out,) = self.module(conversion.module, [inner], None, prefix=f"{name}_")
            out = Value(x.lead, out.shape, out.node, out.const, out.pos)
        if not conversion.outputs:
            return out
        names, first = conversion.outputs, out
        others = [lambda i=i: peers.TupleOutput(first.node, names, path).select(i) for i in range(1, len(names))]
        result = Results([lambda: first, *others])
        result.primary = True  # a model returning it outputs the spikes
        return result

    def recurrent(self, m: S.Recurrent, name: str, inputs: list[Value]) -> Value:
        """``add(x, feedback) -> module -> connection``; the feedback edge closes the cycle."""
        entry = self.ctx.emit("add", inputs, suffix="_in")
        outer = self.lead
        self.lead = ("N",)  # the wrapped modules run single steps: their dims count from the batch
        try:
            step_in = Value(("N",), entry.shape, entry.node)
            (out,) = self.module(m.module, [step_in], None, prefix=f"{name}_")
            feedback = out
            if m.connection is not None:
                (feedback,) = self.module(m.connection, [out], None, prefix=f"{name}_fb_")
        finally:
            self.lead = outer
        self.g.add_edge(feedback.node, entry.node, port=len(inputs), offset=1)
        return Value(inputs[0].lead, out.shape, out.node)

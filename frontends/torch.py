"""Trace a ``torch.nn.Module`` into a ``snnir.Graph`` with ``torch.fx``.

``snnir.nn`` modules and torch layers are leaves; each maps to one IR op through the tables
below. Functional calls (``F.relu``, ``torch.flatten``, ``+``, ``torch.cat``, ``x * 0.5``) map too.
Anything else stops tracing with the fx node, module path and class named.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from snnir.backends.torch import layers as L
from snnir.backends.torch import stateful as S
from snnir.backends.torch.base import StepModule
from snnir.backends.torch.encoding import _Encoder
from snnir.backends.torch.neuron import Neuron
from snnir.backends.torch.plasticity import plasticity_entries
from snnir.errors import GraphError, TraceError
from snnir.graph import Graph

OpMapping = tuple[str, dict[str, Any], dict[str, Any]]  # (op, attrs, params)
ModuleMapper = Callable[[nn.Module, "_Context"], "OpMapping | None"]
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


class _Context:
    """What a mapper needs to know: the torch-dim offset of per-sample axis 0 and the node."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.where = ""

    def error(self, msg: str) -> TraceError:
        return TraceError(f"{self.where}: {msg}")

    def axis(self, dim: int, what: str) -> int:
        """Per-sample axis of torch ``dim`` (negative dims count from the end and stay negative)."""
        if dim < 0:
            return dim
        if dim < self.offset:
            axes = "time and batch axes" if self.offset == 2 else "batch axis"
            raise self.error(f"{what} over dim {dim} touches the {axes}; snnir ops act per sample")
        return dim - self.offset


@maps(nn.Linear)
def _linear(m: nn.Linear, ctx: _Context) -> OpMapping:
    return "linear", {}, _weights(m)


@maps(nn.Conv1d, nn.Conv2d)
def _conv(m: nn.Conv1d | nn.Conv2d, ctx: _Context) -> OpMapping:
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
def _batchnorm(m: nn.modules.batchnorm._BatchNorm, ctx: _Context) -> OpMapping:
    if m.running_mean is None:
        raise ctx.error("BatchNorm without running statistics (track_running_stats=False) has no IR form")
    params = {"running_mean": _np(m.running_mean), "running_var": _np(m.running_var)}
    if m.affine:
        params.update(_weights(m))
    return "batchnorm", {"eps": m.eps, "momentum": m.momentum}, params


@maps(nn.MaxPool1d, nn.MaxPool2d)
def _maxpool(m: nn.MaxPool2d, ctx: _Context) -> OpMapping:
    if m.return_indices:
        raise ctx.error("MaxPool with return_indices=True is not supported")
    n = 2 if isinstance(m, nn.MaxPool2d) else 1
    return f"maxpool{n}d", {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                            "dilation": m.dilation, "ceil_mode": m.ceil_mode}, {}


@maps(nn.AvgPool1d, nn.AvgPool2d)
def _avgpool(m: nn.AvgPool2d, ctx: _Context) -> OpMapping:
    if getattr(m, "divisor_override", None):
        raise ctx.error("AvgPool with divisor_override is not supported")
    n = 2 if isinstance(m, nn.AvgPool2d) else 1
    return f"avgpool{n}d", {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                            "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad}, {}


@maps(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def _adaptive(m: nn.AdaptiveAvgPool2d, ctx: _Context) -> OpMapping:
    size = m.output_size
    if size is None or (isinstance(size, tuple) and None in size):
        raise ctx.error("AdaptiveAvgPool with a None output size is not supported; give every size")
    n = 2 if isinstance(m, nn.AdaptiveAvgPool2d) else 1
    return f"adaptive_avgpool{n}d", {"output_size": size}, {}


@maps(nn.Flatten)
def _flatten(m: nn.Flatten, ctx: _Context) -> OpMapping:
    # snn.Flatten folds time first, so its dims count from the batch axis in both modes
    own_offset = 1 if isinstance(m, StepModule) else ctx.offset
    start = m.start_dim if m.start_dim < 0 else m.start_dim - own_offset
    end = m.end_dim if m.end_dim < 0 else m.end_dim - own_offset
    if m.start_dim >= 0 and start < 0:
        raise ctx.error(f"Flatten(start_dim={m.start_dim}) would merge the batch axis into features")
    return "flatten", {"start": start, "end": end}, {}


@maps(nn.Dropout, nn.Dropout2d, L.Dropout)
def _dropout(m: nn.Module, ctx: _Context) -> OpMapping:
    channelwise = isinstance(m, (nn.Dropout2d, L.Dropout2d))
    return "dropout", {"p": m.p, "channelwise": channelwise}, {}


@maps(nn.ReLU)
def _relu(m: nn.ReLU, ctx: _Context) -> OpMapping:
    return "relu", {}, {}


@maps(nn.ReLU6, nn.Hardtanh)
def _clip_module(m: nn.Module, ctx: _Context) -> OpMapping:
    lo, hi = (0.0, 6.0) if isinstance(m, nn.ReLU6) else (float(m.min_val), float(m.max_val))
    return "clip", {"min": lo, "max": hi}, {}


@maps(nn.Identity)
def _identity(m: nn.Identity, ctx: _Context) -> None:
    return None  # the node forwards its input


@maps(L.Scale)
def _scale(m: L.Scale, ctx: _Context) -> OpMapping:
    return "scale", {"factor": m.factor}, {}


@maps(L.Add)
def _add_module(m: L.Add, ctx: _Context) -> OpMapping:
    return "add", {}, {}


@maps(L.Cat)
def _cat_module(m: L.Cat, ctx: _Context) -> OpMapping:
    return "cat", {"axis": m.axis}, {}


@maps(Neuron)
def _neuron(m: Neuron, ctx: _Context) -> OpMapping:
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
def _synapse_filter(m: S.SynapseFilter, ctx: _Context) -> OpMapping:
    return "synapse_filter", {"tau": m.tau}, {}


@maps(S.Delay)
def _delay(m: S.Delay, ctx: _Context) -> OpMapping:
    return "delay", {"steps": m.steps}, {}


@maps(L.Affine)
def _affine_module(m: L.Affine, ctx: _Context) -> OpMapping:
    return "affine", {}, {"weight": _np(m.weight), "bias": _np(m.bias)}


@maps(_Encoder)
def _encoder(m: nn.Module, ctx: _Context) -> None:
    raise ctx.error(f"{type(m).__name__} creates the time axis; encode the input before the traced "
                    "network (snn.poisson(x, T), ...) and trace the network alone")


def _module_mapper(m: nn.Module) -> ModuleMapper | None:
    for cls in type(m).__mro__:
        if cls in _MODULES:
            return _MODULES[cls]
    return None


class _Tracer(fx.Tracer):
    """Stops at snnir modules and at every module a mapper knows."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, StepModule) or _module_mapper(m) is not None or super().is_leaf_module(m, qualname)


def _is_number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _refuse_shared_modules(fx_graph: fx.Graph, modules: dict[str, nn.Module]) -> None:
    """A module with weights or state called twice would be untied/split silently: refuse it."""
    calls: dict[str, list[str]] = {}
    for node in fx_graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node.name)
    for target, names in calls.items():
        m = modules[target]
        has_state = any(True for _ in m.parameters()) or isinstance(m, (Neuron, L.Dropout, S.SynapseFilter,
                                                                         S.Delay, S.Recurrent))
        if len(names) > 1 and has_state:
            raise TraceError(f"module '{target}' ({type(m).__name__}) is called {len(names)} times "
                             f"(fx nodes {names}); shared weights or state cannot be represented yet. "
                             "Use one module per call (copy.deepcopy for independent weights)")


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
    modes = {m.step_mode for m in _outer_step_modules(model)}
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
    with the feedback edge reading the previous step (time offset 1).

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
    try:
        g = _trace_shapes(model, [tuple(x.shape[lead:]) for x in examples], name)
    except TraceError as e:
        if time_axis and all(x.dim() >= 2 for x in examples):
            try:  # does the example fit without a time axis? then say so instead
                _trace_shapes(model, [tuple(x.shape[1:]) for x in examples], name)
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


def _trace_shapes(model: nn.Module, shapes: list[tuple[int, ...]], name: str | None) -> Graph:
    g = Graph(name or type(model).__name__)
    emitter = _Emitter(g, _step_offset(model))
    outputs = emitter.module(model, None, shapes, prefix="")
    for out in outputs:
        g.add_output(out)
    other_mode = {n: flag for n, flag in emitter.training.items() if flag != model.training and n in g}
    if other_mode:
        g.meta["training_nodes"] = other_mode
    learning = plasticity_entries(emitter.node_of_module)  # Learners attached to traced synapses
    if learning:
        g.meta["plasticity"] = learning
    try:
        return g.validate()
    except GraphError as e:
        raise TraceError(f"traced graph of {type(model).__name__} is inconsistent with the example "
                         f"input: {e}") from None


class _Emitter:
    """Adds the ops of one (sub)module to a graph; recursive for ``Recurrent`` wrappers."""

    def __init__(self, g: Graph, offset: int) -> None:
        self.g = g
        self.ctx = _Context(offset)
        self.training: dict[str, bool] = {}  # node id -> training flag of the module it came from
        self.node_of_module: dict[int, str] = {}  # id(leaf module) -> its node id

    def module(self, model: nn.Module, inputs: list[str] | None, shapes: list[tuple[int, ...]] | None,
               prefix: str) -> list[str]:
        """Emit ``model`` fed by ``inputs`` (node ids), or by new input nodes of ``shapes``."""
        if _module_mapper(model) is not None or isinstance(model, S.Recurrent):
            # a leaf used as a whole (sub-)model, e.g. Recurrent(snn.LIF()) or trace(snn.LIF(), x)
            if inputs is None:
                inputs = [self.g.add_input(s) for s in (shapes or ())][:1]
            name = (prefix.rstrip("_") or type(model).__name__.lower())
            return [self.leaf(model, name, inputs, name)]
        try:
            fx_graph = _Tracer().trace(model)
        except TraceError:
            raise
        except Exception as e:
            raise TraceError(f"torch.fx could not trace {type(model).__name__}: {e}. Data-dependent control "
                             "flow must live inside a leaf module") from e
        modules = dict(model.named_modules())
        _refuse_shared_modules(fx_graph, modules)
        env: dict[fx.Node, str] = {}
        placeholders, outputs = 0, []
        for node in fx_graph.nodes:
            self.ctx.where = f"fx node {node.name!r}"
            if node.op == "placeholder":
                if inputs is not None:
                    env[node] = inputs[placeholders]
                elif placeholders >= len(shapes or ()):
                    raise TraceError(f"model input {node.name!r} has no example input; pass a tuple of tensors")
                else:  # fx calls Sequential's argument 'input_1' (it avoids the builtin's name)
                    input_id = "input" if node.name == "input_1" else node.name
                    env[node] = self.g.add_input(shapes[placeholders], id=input_id)
                placeholders += 1
            elif node.op == "call_module":
                args = [self.value(a, "module input", env) for a in node.args]
                env[node] = self.leaf(modules[node.target], prefix + node.name, args, prefix + node.target)
            elif node.op in ("call_function", "call_method"):
                _map_function(node, self.ctx, lambda a, what: self.value(a, what, env),
                              lambda n, op, ins, attrs=None, params=None: self.emit(n.name, prefix, env, n, op, ins,
                                                                                  attrs, params), env)
            elif node.op == "output":
                outs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
                outputs = [self.value(o, "model output", env) for o in outs]
            else:  # get_attr
                raise self.ctx.error(f"reads attribute '{node.target}' directly in forward; wrap the computation "
                                     "that uses it in a module")
        expected = len(inputs) if inputs is not None else len(shapes or ())
        if placeholders != expected:
            raise TraceError(f"model takes {placeholders} input(s) but {expected} were given")
        return outputs

    def value(self, a: Any, what: str, env: dict) -> str:
        if not isinstance(a, fx.Node):
            raise self.ctx.error(f"{what} must be a tensor produced by the model, got constant {a!r}")
        return env[a]

    def emit(self, name: str, prefix: str, env: dict, node: fx.Node | None, op: str, inputs: list[str],
             attrs: dict | None = None, params: dict | None = None) -> str:
        try:
            node_id = self.g.add_node(op, inputs, attrs=attrs, params=params, id=self.g._new_id(prefix + name))
        except GraphError as e:
            raise self.ctx.error(str(e)) from None
        if node is not None:
            env[node] = node_id
        return node_id

    def leaf(self, m: nn.Module, name: str, inputs: list[str], path: str) -> str:
        self.ctx.where = f"fx node {name!r} (module '{path}', class {type(m).__module__}.{type(m).__name__})"
        if isinstance(m, S.Recurrent):
            return self.recurrent(m, name, inputs)
        mapper = _module_mapper(m)
        if mapper is None:
            raise self.ctx.error("no snnir op for this module class. Supported: " +
                                 ", ".join(sorted(c.__name__ for c in _MODULES)) +
                                 ". Replace it with a supported layer, or define a NeuronModel for custom dynamics")
        mapped = mapper(m, self.ctx)
        if mapped is None:
            return inputs[0]
        node_id = self.emit(name, "", {}, None, mapped[0], inputs, mapped[1], mapped[2])
        self.training[node_id] = m.training
        self.node_of_module[id(m)] = node_id
        return node_id

    def recurrent(self, m: S.Recurrent, name: str, inputs: list[str]) -> str:
        """``add(x, feedback) -> module -> connection``; the feedback edge closes the cycle."""
        outer = self.ctx.offset
        self.ctx.offset = 1  # the wrapped modules run single steps: their dims count from the batch
        try:
            entry = self.emit(f"{name}_in", "", {}, None, "add", inputs)
            (out,) = self.module(m.module, [entry], None, prefix=f"{name}_")
            feedback = out
            if m.connection is not None:
                (feedback,) = self.module(m.connection, [out], None, prefix=f"{name}_fb_")
        finally:
            self.ctx.offset = outer
        self.g.add_edge(feedback, entry, port=len(inputs), offset=1)
        return out


_RELU = {F.relu, torch.relu, "relu"}
_CLIP = {F.relu6, F.hardtanh, torch.clamp, torch.clip, "clamp", "clip"}
_BATCH = "<batch size>"  # marker for x.size(0) in the fx environment
_FLATTEN = {torch.flatten, "flatten"}
_ADD = {operator.add, torch.add, "add", operator.iadd}
_SUB = {operator.sub, torch.sub, "sub"}
_MUL = {operator.mul, torch.mul, "mul"}
_DIV = {operator.truediv, torch.div, "div"}
_CAT = {torch.cat, torch.concat}
_MAXPOOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVGPOOL_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_MAX_DEFAULTS = {"kernel_size": None, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
_AVG_DEFAULTS = {"kernel_size": None, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}
_POOLS = {
    F.max_pool1d: ("maxpool1d", _MAXPOOL_ARGS, _MAX_DEFAULTS),
    F.max_pool2d: ("maxpool2d", _MAXPOOL_ARGS, _MAX_DEFAULTS),
    F.avg_pool1d: ("avgpool1d", _AVGPOOL_ARGS, _AVG_DEFAULTS),
    F.avg_pool2d: ("avgpool2d", _AVGPOOL_ARGS, _AVG_DEFAULTS),
    F.adaptive_avg_pool1d: ("adaptive_avgpool1d", ("output_size",), {"output_size": None}),
    F.adaptive_avg_pool2d: ("adaptive_avgpool2d", ("output_size",), {"output_size": None}),
}


def _map_function(node: fx.Node, ctx: _Context, value: Callable, emit: Callable, env: dict) -> None:
    target, args, kwargs = node.target, list(node.args), dict(node.kwargs)
    label = getattr(target, "__name__", str(target))
    ctx.where = f"fx node {node.name!r} ({node.op} {label})"
    if target in _RELU:
        emit(node, "relu", [value(args[0], "relu input")])
    elif target in _CLIP:
        lo = args[1] if len(args) > 1 else kwargs.get("min", kwargs.get("min_val", 0.0 if target is F.relu6 else None))
        hi = args[2] if len(args) > 2 else kwargs.get("max", kwargs.get("max_val", 6.0 if target is F.relu6 else None))
        if target is F.hardtanh:
            lo, hi = (-1.0 if lo is None else lo), (1.0 if hi is None else hi)
        emit(node, "clip", [value(args[0], "clip input")],
             {"min": None if lo is None else float(lo), "max": None if hi is None else float(hi)})
    elif target == "size":
        if (args[1] if len(args) > 1 else None) != 0:
            raise ctx.error("only x.size(0) (the batch size, used as x.view(x.size(0), -1)) is supported")
        env[node] = _BATCH
    elif target in ("view", "reshape"):
        shape = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else list(args[1])
        if len(shape) != 2 or env.get(shape[0]) is not _BATCH or shape[1] != -1:
            raise ctx.error("only x.view(x.size(0), -1) / x.reshape(x.size(0), -1) (a flatten) is supported; "
                            "use torch.flatten(x, 1) or snn.Flatten()")
        emit(node, "flatten", [value(args[0], "view input")], {"start": 0, "end": -1})
    elif target in _FLATTEN:
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        emit(node, "flatten", [value(args[0], "flatten input")],
             {"start": ctx.axis(start, "flatten"), "end": ctx.axis(end, "flatten")})
    elif target in _ADD and all(isinstance(a, fx.Node) for a in args[:2]):
        if kwargs.get("alpha", 1) != 1:
            raise ctx.error("torch.add with alpha != 1 is not supported")
        emit(node, "add", [value(a, "add input") for a in args[:2]])
    elif (target in _ADD or target in _SUB) and len(args) == 2 and any(_is_number(a) for a in args):
        tensors = [a for a in args if isinstance(a, fx.Node)]
        if len(tensors) != 1 or kwargs.get("alpha", 1) != 1:
            raise ctx.error("only a tensor plus or minus a number is supported")
        c = float(next(a for a in args if _is_number(a)))
        tensor_first = isinstance(args[0], fx.Node)
        sign, bias = (1.0, c) if target in _ADD else ((1.0, -c) if tensor_first else (-1.0, c))
        emit(node, "affine", [value(tensors[0], "affine input")], {},
             {"weight": np.array(sign, np.float32), "bias": np.array(bias, np.float32)})
    elif (target in _MUL or target in _DIV) and len(args) == 2:
        tensors = [a for a in args if isinstance(a, fx.Node)]
        consts = [a for a in args if _is_number(a)]
        if len(tensors) != 1 or len(consts) != 1 or (target in _DIV and not isinstance(args[0], fx.Node)):
            raise ctx.error("only a tensor times (or divided by) a number is supported")
        factor = float(consts[0]) if target in _MUL else 1.0 / float(consts[0])
        emit(node, "scale", [value(tensors[0], "scale input")], {"factor": factor})
    elif target in _POOLS:
        op, names, defaults = _POOLS[target]
        bound = dict(zip(names, args[1:]))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        if bound.get("return_indices") or bound.get("divisor_override"):
            raise ctx.error(f"{label} with return_indices/divisor_override is not supported")
        attrs = {k: bound.get(k, d) for k, d in defaults.items()}
        emit(node, op, [value(args[0], f"{label} input")], attrs)
    elif target in _CAT:
        tensors = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        emit(node, "cat", [value(t, "cat input") for t in tensors], {"axis": ctx.axis(dim, "cat")})
    else:
        raise ctx.error(f"no snnir op for {node.op} {label!r}. Supported: F.relu/torch.relu, F.relu6/clamp, "
                        "torch.flatten, x.view(x.size(0), -1), F.max/avg/adaptive_avg_pool1d/2d, + / torch.add "
                        "of two tensors, tensor + - * / a number, torch.cat. Wrap other computations in a "
                        "supported module")

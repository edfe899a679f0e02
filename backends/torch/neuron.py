"""Spiking neuron modules generated from ``NeuronModel`` equations.

One class, ``Neuron``, runs any model; the built-ins (``LIF``, ``IF``, ...) are one-line
subclasses that fix the model. A user-defined model needs no code beyond its equations:
``snn.Neuron(MyModel(), tau=3.0)`` or ``snn.neuron_class(MyModel)``.

Every parameter (the model's, ``v_threshold``, ``v_reset``) is a number or a per-neuron tensor that
broadcasts to one sample's neurons (per channel ``(C, 1, 1)``, or the full shape); an
``nn.Parameter`` is learned. The per-step reference path runs the lowered equations
(``snnir.lowering``) as torch ops; the fused path runs all steps in one ``snnir::neuron_forward``
op (``fused.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from snnir import neurons as models
from snnir.lowering import Block, lower_equations
from snnir.neurons import Equations, NeuronModel
from snnir.surrogate import ATan, Surrogate

from . import fused_call
from .base import StepModule, check_step_mode
from .fused import compute_dtype, config_key, cpu_kernel_available, has_fused_kernels
from .lowered import Prologue, join, step_function
from .signature import MODEL_DEFAULT as _DEFAULT
from .signature import neuron_signature
from .surrogate import spike as spike_fn

ParamValue = float | torch.Tensor | np.ndarray


class CompiledEquations:
    """Torch functions for one ``Equations``, printed from its lowering: charge(+fire), reset, init."""

    def __init__(self, eq: Equations) -> None:
        self.eq = eq
        self.lowered = low = lower_equations(eq)
        self.S = tuple(f"s_{k}" for k in eq.states)
        self.U = low.uniforms
        self._charge_fire = Block(*_io(join(low.charge, low.fire), (*self.S, "z")))
        self._charge = Block(*_io(low.charge, self.S))
        self._reset = Block(*_io(low.reset, self.S))
        self._scalar_cache: dict[tuple, list] = {}
        self._init_cache: dict[tuple, tuple] = {}
        self._fns: dict[tuple[str, torch.dtype], Callable[..., tuple]] = {}
        self.prologue = Prologue(low.prologue, self.U)
        for dtype in (torch.float32, torch.float64):  # compiled now: torch.compile cannot trace the printing
            self.charge_fire(dtype), self.charge(dtype), self.reset(dtype)
        self._function("init", low.init, None, torch.float64)

    def _function(self, name: str, block: Block, inputs: tuple[str, ...] | None, dtype: torch.dtype):
        fn = self._fns.get((name, dtype))
        if fn is None:
            fn = self._fns[(name, dtype)] = step_function(block, dtype, inputs, name)
        return fn

    def charge_fire(self, dtype: torch.dtype) -> Callable[..., tuple]:
        """``(x, *states, *uniforms) -> (*charged states, z)``."""
        return self._function("charge_fire", self._charge_fire, ("x", *self.S, *self.U), dtype)

    def charge(self, dtype: torch.dtype) -> Callable[..., tuple]:
        """``(x, *states, *uniforms) -> charged states`` (integrators)."""
        return self._function("charge", self._charge, ("x", *self.S, *self.U), dtype)

    def reset(self, dtype: torch.dtype) -> Callable[..., tuple]:
        """``(spike, *states, *uniforms) -> states after the reset``."""
        return self._function("reset", self._reset, ("spike", *self.S, *self.U), dtype)

    def uniforms(self, params: dict[str, Any]) -> list[Any]:
        """The uniforms (``lowered.uniforms`` order) from parameter values: floats, or tensors
        (float64 where computed, differentiable) -- evaluated one way, in float64."""
        if all(not isinstance(v, torch.Tensor) for v in params.values()) and not torch.compiler.is_compiling():
            key = tuple(params[n] for n in self.eq.params)
            cached = self._scalar_cache.get(key)
            if cached is None:
                if len(self._scalar_cache) > 256:  # parameters swept by the user: keep the cache small
                    self._scalar_cache.clear()
                cached = self._scalar_cache[key] = self._uniforms(params)
            return cached
        return self._uniforms(params)

    def _uniforms(self, params: dict[str, Any]) -> list[Any]:
        values = self.prologue({f"p_{k}": v for k, v in params.items()})
        return [values[n] for n in self.U]

    def initial_values(self, params: dict[str, Any]) -> list[Any]:
        """The initial value of each state: floats (evaluated once per parameter set and cached),
        or float64 tensors when a parameter it reads is a tensor."""
        init = self.lowered.init
        args = [params[n[2:]] for n in init.inputs]
        if any(isinstance(a, torch.Tensor) for a in args) or torch.compiler.is_compiling():
            fn = self._function("init", init, None, torch.float64)
            return list(fn(*(a.to(torch.float64) if isinstance(a, torch.Tensor) else float(a) for a in args)))
        key = tuple(args)
        values = self._init_cache.get(key)
        if values is None:
            if len(self._init_cache) > 256:
                self._init_cache.clear()
            fn = self._function("init", init, None, torch.float64)
            values = self._init_cache[key] = [v if isinstance(v, torch.Tensor) else float(v)
                                               for v in fn(*(float(a) for a in args))]
        return values

    def initial_state(self, like: torch.Tensor, params: dict[str, Any]) -> list[torch.Tensor]:
        """The initial states broadcast to ``like`` (float64 values rounded to its dtype)."""
        out = []
        for value in self.initial_values(params):
            if isinstance(value, torch.Tensor):
                out.append(value.to(like.dtype).expand_as(like).clone())
            else:
                out.append(torch.full_like(like, float(value)))
        return out

    def step(self, x: torch.Tensor, state: list[torch.Tensor], uniforms: list[Any], surrogate: Surrogate,
             detach_reset: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One time step: returns the spikes and the new states."""
        *charged, z = self.charge_fire(x.dtype)(x, *state, *uniforms)
        spikes = spike_fn(z, surrogate)
        new = self.reset(x.dtype)(spikes.detach() if detach_reset else spikes, *charged, *uniforms)
        return spikes, list(new)


def _io(block: Block, outputs: tuple[str, ...]) -> tuple:
    return block.inputs, block.ops, outputs, block.booleans


@cache
def compiled_equations(model_cls: type[NeuronModel], reset: str,
                       options: tuple[tuple[str, Any], ...]) -> CompiledEquations:
    """Compiled once per model class (not name: a class redefined in a notebook recompiles)."""
    return CompiledEquations(model_cls().equations(reset=reset, **dict(options)))


def parameter_value(owner: str, name: str, value: Any, learnable: bool = False) -> float | torch.Tensor:
    """A neuron parameter as a float, or as a tensor when it is per-neuron or learnable.

    ``nn.Parameter`` (or ``learnable``) values stay parameters; arrays and tensors with more than one
    element become float tensors; NaN or Inf is refused, naming ``owner`` and the parameter.
    """
    if isinstance(value, nn.Parameter) or learnable:
        t = value if isinstance(value, nn.Parameter) else nn.Parameter(
            torch.as_tensor(np.asarray(value, np.float32) if not torch.is_tensor(value) else value,
                            dtype=torch.float32).clone())
    elif torch.is_tensor(value) or isinstance(value, (np.ndarray, list, tuple)):
        t = torch.as_tensor(value).detach().clone()
        t = t if t.is_floating_point() else t.to(torch.get_default_dtype())
        if t.ndim == 0:
            return _finite_float(owner, name, t.item())
    else:
        return _finite_float(owner, name, value)
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{owner}: parameter {name!r} has NaN or Inf values")
    return t


def _finite_float(owner: str, name: str, value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: parameter {name!r} must be a number or a per-neuron tensor/array, got "
                        f"{type(value).__name__}") from None
    if not np.isfinite(f):
        raise ValueError(f"{owner}: parameter {name!r} is {f}")
    return f


class Neuron(StepModule):
    """A spiking neuron layer running ``model``'s equations (see ``snnir.neurons``).

    Args:
        model: the ``NeuronModel`` (built-in subclasses fix it).
        v_threshold: firing threshold (model default if omitted).
        v_reset: hard-reset potential; ``None`` selects soft reset (subtract the threshold).
        surrogate: surrogate gradient of the spike (default ``ATan(alpha=2)``).
        detach_reset: stop gradients through the reset.
        step_mode: ``'s'`` (``[N, ...]`` per call) or ``'m'`` (``[T, N, ...]`` per call).
        store_v_seq: in multi-step mode keep ``v_seq`` (``[T, N, ...]``, after reset).
        fused: run all time steps as one fused, generated kernel (CPU, float32/float64; the
            default). ``False`` selects the per-step reference path (torch ops per step).
        **kwargs: the model's parameters and options (e.g. ``tau``, ``decay_input``).

    Parameters (``v_threshold``, ``v_reset`` and the model's) are numbers or per-neuron tensors /
    arrays broadcastable to one sample's neurons: per channel ``(C, 1, 1)`` for a ``(C, H, W)``
    layer, or the full shape. An ``nn.Parameter`` is learned (the model's ``learnable`` ones, such
    as ParametricLIF's ``w``, always are); other tensors are buffers.
    State variables are attributes (``self.v``, ``self.i``, ...), ``None`` until the first step
    and after ``reset()``.

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> lif = snn.LIF(tau=2.0, step_mode="m")
        >>> lif(torch.full((3, 1, 1), 1.5)).flatten().tolist()   # v: 0.75, 1.125 -> spike, ...
        [0.0, 1.0, 0.0]
        >>> per_channel = snn.LIF(tau=torch.tensor([2.0, 4.0]).view(2, 1), step_mode="m")
        >>> per_channel(torch.full((3, 1, 2, 1), 1.5)).squeeze().tolist()   # channel 1 charges slower
        [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]
    """

    model: NeuronModel | None = None

    def __init__(self, model: NeuronModel | None = None, *, v_threshold: ParamValue = _DEFAULT,
                 v_reset: ParamValue | None = _DEFAULT, surrogate: Surrogate | None = None,
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False,
                 fused: bool = True, **kwargs: Any) -> None:
        super().__init__()
        model = model if model is not None else type(self).model
        if model is None:
            raise TypeError("Neuron needs a NeuronModel, e.g. snn.Neuron(snnir.neurons.LIF())")
        self.model = model
        owner = type(self).__name__
        defaults = model.all_params()
        self.surrogate = surrogate if surrogate is not None else ATan()
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(f"surrogate must be a snnir.surrogate.Surrogate (e.g. snn.surrogate.ATan()), "
                            f"got {self.surrogate!r}")
        self.detach_reset = bool(detach_reset)
        self.step_mode = check_step_mode(step_mode)
        self.store_v_seq = bool(store_v_seq)
        self.fused = bool(fused)
        self.options = {k: kwargs.pop(k) for k in list(kwargs) if k in model.options}
        params = model.user_params(**kwargs)
        unknown = set(params) - set(model.params)
        if unknown:
            raise TypeError(f"{owner} got unknown arguments {sorted(unknown)}; model "
                            f"{model.name} takes {sorted([*model.params, *model.options])}")
        self.params: dict[str, float] = {}
        self._tensor_params: tuple[str, ...] = ()
        self._set_param("v_threshold", defaults["v_threshold"] if v_threshold is _DEFAULT else v_threshold)
        v_reset = defaults["v_reset"] if v_reset is _DEFAULT else v_reset
        if v_reset is None:
            self.v_reset = None
        else:
            self._set_param("v_reset", v_reset)
        for name, default in model.params.items():
            self._set_param(name, params.get(name, default), learnable=name in model.learnable)
        model.check_params({**self.parameter_values(), "v_reset": self.v_reset}, who=type(self).__name__)
        for name in model.state:
            self.register_buffer(name, None, persistent=False)
        self.v_seq: torch.Tensor | None = None
        self._checked_shape: tuple[int, ...] | None = None
        self.equations()  # lower now: an unsupported function is an error here, naming model and function
        if self.fused:  # registered before any call, so torch.compile finds it (tracing cannot run sympy)
            self._config_key()

    # per-call caches (kernel handles, plans, the last state rows): not copied, not pickled
    _CACHES = ("_plan", "_plan_affine", "_rows", "_equations_cache")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._CACHES}

    def _set_param(self, name: str, value: Any, learnable: bool = False) -> None:
        value = parameter_value(type(self).__name__, name, value, learnable)
        if isinstance(value, nn.Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, torch.Tensor):
            self.register_buffer(name, value)
        elif name in ("v_threshold", "v_reset"):
            setattr(self, name, value)
            return
        else:
            self.params[name] = value
            return
        self._tensor_params = (*self._tensor_params, name)

    @property
    def learnable(self) -> tuple[str, ...]:
        """Names of the learned parameters (``nn.Parameter``s), in equation order."""
        return tuple(n for n in self._tensor_params if isinstance(getattr(self, n), nn.Parameter))

    @property
    def reset_kind(self) -> str:
        return "soft" if self.v_reset is None else "hard"

    def equations(self) -> CompiledEquations:
        """The compiled equations for this module's reset kind and options (cached per model)."""
        sig = (type(self.model), self.v_reset is None, tuple(self.options.items()))
        cached = self.__dict__.get("_equations_cache")
        if cached is None or cached[0] != sig:
            eqs = compiled_equations(type(self.model), self.reset_kind, tuple(sorted(self.options.items())))
            cached = self.__dict__["_equations_cache"] = (sig, eqs)
        return cached[1]

    def parameter_values(self) -> dict[str, float | torch.Tensor]:
        """Every equation parameter: floats, or tensors (per-neuron or learnable)."""
        env: dict[str, Any] = {"v_threshold": self.v_threshold,
                               "v_reset": 0.0 if self.v_reset is None else self.v_reset, **self.params}
        for name in self._tensor_params:
            env[name] = getattr(self, name)
        return env

    def _param_env(self, x_seq: torch.Tensor) -> dict[str, Any]:
        """Parameter values for input ``x_seq`` (``[T, N, ...]``): tensors checked against one
        sample's neurons and cast to the input's dtype."""
        env = self.parameter_values()
        if not self._tensor_params:
            return env
        sample = tuple(x_seq.shape[2:])
        if self._checked_shape != sample:
            for name in self._tensor_params:
                _check_broadcast(type(self).__name__, name, tuple(env[name].shape), sample)
            self._checked_shape = sample
        for name in self._tensor_params:  # rounded to the input's dtype, as a module cast to it would be
            env[name] = env[name].to(x_seq.dtype)
        return env

    def state(self) -> dict[str, torch.Tensor | None]:
        """The current state tensors by name (``None`` before the first step)."""
        return {k: getattr(self, k) for k in self.model.state}

    def reset(self) -> None:
        """Forget the state (call between sequences)."""
        buffers = self._buffers  # direct writes: nn.Module.__setattr__ costs microseconds per call
        for k in self.model.state:
            buffers[k] = None
        self.__dict__["v_seq"] = None
        self.__dict__["_rows"] = None

    def _current_state(self, x: torch.Tensor, params: dict[str, Any]) -> list[torch.Tensor]:
        buffers = self._buffers
        v = buffers["v"]
        if v is None:
            return self.equations().initial_state(x, params)
        if v.shape != x.shape:
            raise ValueError(f"{type(self).__name__}: input shape {tuple(x.shape)} differs from the state "
                             f"shape {tuple(v.shape)}; call snn.reset(net) between sequences")
        return [buffers[k].to(x.dtype) for k in self.model.state]

    def _store(self, state: list[torch.Tensor]) -> None:
        buffers = self._buffers  # the state buffers, written directly (nn.Module.__setattr__ is slow)
        for k, value in zip(self.model.state, state):
            buffers[k] = value

    def _uniforms(self, x: torch.Tensor, params: dict[str, Any]) -> list[Any]:
        """The uniforms, tensors rounded to the state dtype (floats are rounded by the ops)."""
        dtype = compute_dtype(x.dtype)
        return [u.to(dtype) if isinstance(u, torch.Tensor) else u for u in self.equations().uniforms(params)]

    # --- fused path ---------------------------------------------------------------------------------
    def _config_key(self, input_affine: bool = False) -> str:
        """This module's fused configuration (registered on first use: ``fused.config_key``)."""
        per_neuron = frozenset(n for n in self._tensor_params if getattr(self, n).numel() > 1)
        return config_key(type(self.model), self.reset_kind, tuple(sorted(self.options.items())), type(self.surrogate),
                          self.detach_reset, self.learnable, per_neuron, input_affine)

    def _fused_key(self, x: torch.Tensor) -> str | None:
        """The fused configuration for ``x``, or ``None`` for the per-step path (cached per module)."""
        sig = (x.device.type, x.dtype, self.fused, self.v_reset is None, self.detach_reset, type(self.surrogate),
               tuple(self.options.values()), self._tensor_params,
               tuple(getattr(self, n).numel() > 1 for n in self._tensor_params))
        cached = self.__dict__.get("_fused_cache")
        if cached is not None and cached[0] == sig:
            return cached[1] if x.shape[0] else None
        key = None
        if self.fused and has_fused_kernels(x.device.type):
            key = self._config_key()
            if x.device.type == "cpu" and not cpu_kernel_available(key, x.dtype):
                key = None
        self.__dict__["_fused_cache"] = (sig, key)
        return key if x.shape[0] else None

    def _run_fused(self, key: str, x_seq: torch.Tensor, params: dict[str, Any],
                   affine: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """All steps of ``x_seq`` in one kernel call, in the input's memory layout (see
        ``fused_call``). ``affine``: per-channel ``(scale, shift)`` applied to the input inside the
        kernel (configurations with ``input_affine``; channels: the sample's first axis)."""
        plan = self._fused_plan(key, x_seq, params, "_plan" if affine is None else "_plan_affine")
        rows = None if affine is None else fused_call.per_channel_rows(affine, plan)
        return fused_call.run_plan(self, plan, x_seq, params, rows)

    def _fused_plan(self, key: str, x_seq: torch.Tensor, params: dict[str, Any],
                    slot: str = "_plan") -> fused_call.Plan:
        """The plan for ``x_seq`` (cached in attribute ``slot``; rebuilt when its signature changes)."""
        if torch.compiler.is_compiling():  # traced once per compilation: nothing to cache
            return fused_call.make_plan(self, key, x_seq, params, ())
        sig = fused_call.signature(self, x_seq) + (key,)
        plan = self.__dict__.get(slot)
        if plan is None or plan.sig != sig:
            plan = self.__dict__[slot] = fused_call.make_plan(self, key, x_seq, params, sig)
        return plan

    def _pack(self, cfg: Any, params: dict[str, Any], dtype: torch.dtype, sample: tuple[int, ...],
              order: tuple[int, ...] | None = None):
        """The kernel's uniforms (``Config.pack``); with tensor parameters, reused while none of this
        module's tensors has changed (same object, storage and version counter)."""
        raw = {**{f"p_{k}": v.detach() if isinstance(v, torch.Tensor) else v for k, v in params.items()},
               **{f"p_sg_{k}": v for k, v in self.surrogate.values.items()}}
        if not self._tensor_params or torch.compiler.is_compiling():
            return cfg.pack(raw, dtype, sample, order)
        own = [getattr(self, n) for n in self._tensor_params]
        key = (cfg.key, dtype, sample, order, tuple((id(t), t._version, t.data_ptr()) for t in own),
               tuple(v for v in raw.values() if not isinstance(v, torch.Tensor)))
        cached = self.__dict__.get("_pack_cache")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_pack_cache"] = (key, *cfg.pack(raw, dtype, sample, order))
        return cached[1], cached[2]

    # --- stepping ------------------------------------------------------------------------------------
    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.__dict__.get("_plan")
        if plan is not None and plan.step_sig is not None and not torch.compiler.is_compiling() and \
                plan.step_sig == fused_call.signature(self, x):  # streaming: no unsqueeze, no [0] per step
            out = fused_call.infer(self, plan, x)
            if out is not None:
                return out
        return self.multi_step(x.unsqueeze(0), single=True)[0]

    def reference_step(self, x: torch.Tensor) -> torch.Tensor:
        """One step through torch ops generated from the equations (the unfused reference)."""
        params = self._param_env(x.unsqueeze(0))
        return self._reference_step(x, params, self._uniforms(x, params))

    def _reference_step(self, x: torch.Tensor, params: dict[str, Any], uniforms: list[Any]) -> torch.Tensor:
        eqs = self.equations()
        dtype = x.dtype
        x = x.to(compute_dtype(dtype))  # 16-bit inputs: float32 states and arithmetic, like the kernels
        state = self._current_state(x, params)
        spikes, state = eqs.step(x, state, uniforms, self.surrogate, self.detach_reset)
        self._store(state)
        return spikes.to(dtype)

    def multi_step(self, x_seq: torch.Tensor, single: bool = False) -> torch.Tensor:
        plan = self.__dict__.get("_plan")
        if plan is not None and not torch.compiler.is_compiling() and x_seq.shape[0] and \
                plan.head == fused_call.signature(self, x_seq):  # the plan of the last call still holds
            out = fused_call.infer(self, plan, x_seq)
            return out if out is not None else fused_call.run_plan(self, plan, x_seq, None)
        params = self._param_env(x_seq)
        key = self._fused_key(x_seq)
        if key is not None:
            return self._run_fused(key, x_seq, params)
        uniforms = self._uniforms(x_seq, params)
        spikes, v_seq = [], []
        for x in x_seq.unbind(0):  # unbind, not x_seq[t]: indexing costs O(T^2) in backward
            spikes.append(self._reference_step(x, params, uniforms))
            if self.store_v_seq and not single:
                v_seq.append(self.v)
        if self.store_v_seq and not single and v_seq:
            self.v_seq = torch.stack(v_seq)
        return torch.stack(spikes) if spikes else x_seq.clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single_step(x) if self.step_mode == "s" else self.multi_step(x)

    def extra_repr(self) -> str:
        def show(v: Any) -> str:
            return f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else str(v)
        values = {k: v for k, v in self.parameter_values().items() if k not in ("v_threshold", "v_reset")}
        opts = [f"{k}={show(v)}" for k, v in {**values, **self.options}.items()]
        return ", ".join([*opts, f"v_threshold={show(self.v_threshold)}", f"v_reset={show(self.v_reset)}",
                          f"detach_reset={self.detach_reset}", f"surrogate={self.surrogate}",
                          f"step_mode={self.step_mode}"])


def _check_broadcast(owner: str, name: str, shape: tuple[int, ...], sample: tuple[int, ...]) -> None:
    """A per-neuron parameter must broadcast to one sample's neurons (never over the batch)."""
    ok = len(shape) <= len(sample) and all(p in (1, s) for p, s in zip(reversed(shape), reversed(sample)))
    if not ok:
        raise ValueError(f"{owner}: parameter {name!r} of shape {shape} does not broadcast to the layer's "
                         f"neurons {sample} (per channel: (C, 1, 1); per neuron: the full shape)")


def neuron_class(model: type[NeuronModel] | NeuronModel, name: str | None = None) -> type[Neuron]:
    """A ``Neuron`` subclass bound to ``model``: the module class for a user-defined model.

    Example:
        >>> from snnir.neurons import NeuronModel
        >>> from snnir import nn as snn
        >>> class Doubler(NeuronModel):
        ...     def charge(self, s, **options):
        ...         return {"v": s.v + 2 * s.x}
        >>> DoublerNeuron = snn.neuron_class(Doubler)
        >>> DoublerNeuron(v_threshold=1.0)(torch.tensor([0.6])).tolist()
        [1.0]
    """
    instance = model() if isinstance(model, type) else model
    cls = type(name or instance.name, (Neuron,), {"model": instance, "__doc__": type(instance).__doc__,
                                                  "__module__": __name__})
    cls.__signature__ = neuron_signature(cls)  # help() shows the model's defaults, not **kwargs
    return cls


def _builtin(model: type[NeuronModel]) -> type[Neuron]:
    return neuron_class(model)


IF = _builtin(models.IF)
LIF = _builtin(models.LIF)
QIF = _builtin(models.QIF)
EIF = _builtin(models.EIF)
Izhikevich = _builtin(models.Izhikevich)
CubaLIF = _builtin(models.CubaLIF)
AdaptiveLIF = _builtin(models.AdaptiveLIF)


class ParametricLIF(Neuron):
    __doc__ = models.ParametricLIF.__doc__
    model = models.ParametricLIF()

    def __init__(self, init_tau: float = 2.0, **kwargs: Any) -> None:
        super().__init__(init_tau=init_tau, **kwargs)

    @property
    def tau(self) -> torch.Tensor:
        """The current time constant ``1 / sigmoid(w)``."""
        return 1.0 / torch.sigmoid(self.w.detach())


ParametricLIF.__signature__ = neuron_signature(ParametricLIF)  # type: ignore[attr-defined]


BUILTIN_NEURONS: dict[str, type[Neuron]] = {c.model.name: c for c in  # type: ignore[union-attr]
                                            (IF, LIF, ParametricLIF, QIF, EIF, Izhikevich, CubaLIF, AdaptiveLIF)}


def neuron_for(model_name: str) -> Callable[..., Neuron]:
    """The module class for a registered model name (built-in or user-defined)."""
    if model_name in BUILTIN_NEURONS:
        return BUILTIN_NEURONS[model_name]
    return neuron_class(models.get_model(model_name))

"""The fused multi-step neuron as ``torch.library`` custom ops, dispatched by device.

Two ops, both opaque to ``torch.compile`` (one node each in the graph, no graph break):

``snnir::neuron_forward(x[T, N], state0[S, N], prm[U], arrays[A, M], learn[L, M], kernel, want_v)
-> (spikes[T, N], state[S, N], v_seq[T, N] or [0])``

``snnir::neuron_backward(grad_spikes, grad_state?, x, state0, prm, arrays, kernel, n_learn, neurons)
-> (grad_x, grad_state0, grad_learn[L, neurons])``

``kernel`` names a configuration (model, reset, options, surrogate, detach_reset, learnable and
per-neuron uniforms) registered by ``config_key``; ``prm`` holds the scalar uniforms (float64),
``arrays`` the per-neuron ones (``N`` = batch x ``M``). ``learn`` is the learnable parameters
expanded to ``[L, M]``: the kernels do not read it (their values reach them through the uniforms),
it carries the gradient back, and autograd's expand-backward sums it over the parameter's
broadcast axes. Autograd is registered on the forward op (it saves only the input and the initial
state; the backward kernel recomputes the rest).

Implementations: ``CPU`` runs the C kernels (``cpu_kernel``), built per dtype on first use; every
other device (``CompositeExplicitAutograd``) runs the kernels a backend installs for it with
``register_device_kernels`` (the CUDA backend: ``register_device_kernels("cuda", ...)``), else the
same lowered step printed as torch ops (``torch_loop``). The fake (meta) implementations give
shapes for ``torch.compile``. Neuron modules call the op on the devices of ``fused_devices()``
(CPU, and those with installed kernels: ``has_fused_kernels`` installs a device's on its first
tensor, CUDA's from ``snnir.backends.cupy``) and take the per-step reference path elsewhere.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import math
import sys
import threading
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch

from snnir.lowering import LoweredStep, lower_step
from snnir.neurons.adjoint import step_program
from snnir.neurons.model import NeuronModel
from snnir.surrogate import Surrogate

from . import buffers
from .cpu_kernel import TILE_MAX, KernelBuildError, build_neuron, generate_source
from .lowered import Prologue

_DTYPES = {torch.float32: "float", torch.float64: "double"}


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _tile(N: int) -> int:
    """Neurons per tile: as large as TILE_MAX, yet at least two tiles per thread when N allows."""
    per_thread = -(-N // (2 * max(1, torch.get_num_threads())))
    return int(min(TILE_MAX, max(16, -(-per_thread // 16) * 16)))


class Config:
    """One fused configuration: its lowered step, and which uniforms are per-neuron arrays (those
    that depend on a per-neuron parameter, ``per_neuron_params``, through the prologue)."""

    def __init__(self, step: LoweredStep, per_neuron_params: frozenset[str]) -> None:
        self.step = step
        varying = {f"p_{n}" for n in per_neuron_params}
        for op in step.prologue.ops:
            if any(isinstance(a, str) and a in varying for a in op.args):
                varying.add(op.out)
        self.per_neuron = frozenset(n for n in step.uniforms if n in varying)
        self.array_uniforms = tuple(n for n in step.uniforms if n in varying)
        text = f"{step}\n{sorted(self.per_neuron)}\n{step.learnable}\n{step.kept}"
        self.key = f"{step.model}.{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        self._prm_cache: dict[tuple, torch.Tensor] = {}
        self._no_arrays: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self.prologue = Prologue(step.prologue, step.uniforms)

    def pack(self, params: dict[str, Any], dtype: torch.dtype, sample: tuple[int, ...]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's uniforms from raw parameter values (``p_<name>`` -> float or tensor):
        ``prm`` (float64, one per uniform; 0 for per-neuron ones) and ``arrays[A, M]`` (in the
        compute type of ``dtype``, ``compute_dtype``), the per-neuron uniforms broadcast to one
        sample's ``M`` neurons."""
        M = math.prod(sample)
        dtype = compute_dtype(dtype)
        if not any(isinstance(v, torch.Tensor) for v in params.values()):
            key = tuple(params.items())
            prm = self._prm_cache.get(key) if not torch.compiler.is_compiling() else None
            if prm is None:
                values = self.prologue(params)
                prm = torch.tensor([float(values[n]) for n in self.step.uniforms], dtype=torch.float64)
                if not torch.compiler.is_compiling():
                    if len(self._prm_cache) > 256:  # parameters swept by the user: keep the cache small
                        self._prm_cache.clear()
                    self._prm_cache[key] = prm
            return prm, self._empty(M, dtype)
        values = self.prologue(params)
        rows = [values[n].detach().to(dtype).expand(sample).reshape(M) for n in self.array_uniforms]
        arrays = torch.stack(rows) if rows else self._empty(M, dtype)
        scalars = [0.0 if n in self.per_neuron else values[n] for n in self.step.uniforms]
        if torch.compiler.is_compiling():  # traceable: no .item()
            prm = torch.stack([v.detach().reshape(()).to(torch.float64) if isinstance(v, torch.Tensor) else
                               torch.tensor(v, dtype=torch.float64) for v in scalars]) if scalars else \
                torch.empty(0, dtype=torch.float64)
        else:
            prm = torch.tensor([v.item() if isinstance(v, torch.Tensor) else v for v in scalars], dtype=torch.float64)
        return prm, arrays

    def _empty(self, M: int, dtype: torch.dtype) -> torch.Tensor:
        """``[0, M]``: no per-neuron uniforms (no storage, so one tensor serves every call)."""
        if torch.compiler.is_compiling():
            return torch.empty(0, M, dtype=dtype)
        t = self._no_arrays.get((M, dtype))
        if t is None:
            t = self._no_arrays[(M, dtype)] = torch.empty(0, M, dtype=dtype)
        return t


class CpuKernel:
    """The compiled C forward/backward of one configuration and dtype."""

    def __init__(self, config: Config, dtype: torch.dtype) -> None:
        self.config = config
        self.lib = build_neuron(generate_source(config.step, _DTYPES[dtype], config.per_neuron))

    def forward(self, x, state0, prm, arrays, want_v):
        x, state0, prm, arrays = _abi(self.config, x, state0, prm, arrays)
        T, N = x.shape
        spikes = buffers.empty(x.shape, x.dtype)
        state = state0.clone()
        v_seq = buffers.empty(x.shape, x.dtype) if want_v else x.new_empty(0)
        M = arrays.shape[1] if arrays.numel() else N
        self.lib.snnir_forward(T, N, M, _tile(N), _ptr(x), _ptr(spikes), _ptr(state), _ptr(v_seq) if want_v else None,
                               _ptr(prm), _ptr(arrays), torch.get_num_threads())
        return spikes, state, v_seq

    def backward(self, g_spikes, g_state, x, state0, prm, arrays, n_learn):
        x, state0, prm, arrays = _abi(self.config, x, state0, prm, arrays)
        g_state = None if g_state is None else g_state.to(x.dtype).contiguous()
        T, N = g_spikes.shape
        grad_x = buffers.empty((T, N), g_spikes.dtype)
        grad_state0 = torch.empty_like(state0)
        # each tile re-runs its forward into a local buffer of T * kept values: keep it near 2 MiB
        per_neuron = T * max(1, len(self.config.step.kept)) * g_spikes.element_size()
        tile = int(min(_tile(N), max(16, (2 << 20) // per_neuron // 16 * 16)))
        grad_learn = torch.empty(n_learn, N, dtype=torch.float64) if n_learn else None
        # a broadcast scalar gradient (loss = spikes.sum()) is read as one value, not materialized
        scalar = g_spikes.stride() == (0, 0)
        g_spikes = g_spikes.to(x.dtype) if scalar else g_spikes.to(x.dtype).contiguous()
        M = arrays.shape[1] if arrays.numel() else N
        failed = self.lib.snnir_backward(T, N, M, tile, _ptr(g_spikes), int(scalar), _ptr(g_state), _ptr(x),
                                         _ptr(state0), _ptr(grad_x), _ptr(grad_state0), _ptr(grad_learn), _ptr(prm),
                                         _ptr(arrays), torch.get_num_threads())
        if failed:
            raise MemoryError(f"fused neuron backward: could not allocate a {tile}-neuron recompute buffer")
        return grad_x, grad_state0, grad_learn


def _abi(config: Config, x, state0, prm, arrays):
    """The kernel ABI's inputs, checked (a wrong shape or type would read out of bounds) and contiguous."""
    step = config.step
    if x.dim() != 2 or state0.shape != (len(step.states), x.shape[1]):
        raise ValueError(f"snnir::neuron_forward ({step.model}): x must be [T, N] and state0 [{len(step.states)}, N], "
                         f"got {tuple(x.shape)} and {tuple(state0.shape)}")
    if prm.shape != (len(step.uniforms),) or prm.dtype != torch.float64:
        raise ValueError(f"snnir::neuron_forward ({step.model}): prm must be float64 [{len(step.uniforms)}], got "
                         f"{prm.dtype} {tuple(prm.shape)}")
    A = len(config.array_uniforms)
    if arrays.dim() != 2 or arrays.shape[0] != A or (A and x.shape[1] % arrays.shape[1]):
        raise ValueError(f"snnir::neuron_forward ({step.model}): arrays must be [{A}, M] with M dividing N = "
                         f"{x.shape[1]}, got {tuple(arrays.shape)}")
    return x.contiguous(), state0.to(x.dtype).contiguous(), prm.contiguous(), arrays.to(x.dtype).contiguous()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The type kernels compute in for tensors of ``dtype``: float32 for the 16-bit types (whose
    kernels load, compute in float32 and round what they store), else ``dtype``. Uniforms are
    rounded to it, as any parameter."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


# --- configurations and kernels -------------------------------------------------------------------------
# One registry per process, shared by every copy of this module (pytest's doctest collection imports
# the file a second time as ``backends.torch.fused``): the ops are defined once and find their
# configurations here whichever copy registered them.
_STATE = sys.modules.setdefault("snnir.backends.torch._fused_state", types.ModuleType("_fused_state"))
if not hasattr(_STATE, "configs"):
    _STATE.configs = {}          # key -> Config
    _STATE.by_spec = {}          # (model class, reset, ...) -> key
    _STATE.cpu_kernels = {}      # (key, dtype) -> CpuKernel
    _STATE.unavailable = set()   # (key, dtype) whose C kernel failed to build
    _STATE.device_kernels = {}   # device type -> (forward, backward)
    _STATE.probed = set()        # device types whose kernel backend was asked to install itself
    _STATE.lock = threading.Lock()
    _STATE.defined = False


def config_key(model_cls: type[NeuronModel], reset: str, options: tuple, surrogate_cls: type[Surrogate],
               detach_reset: bool, learnable: tuple[str, ...], per_neuron_params: frozenset[str]) -> str:
    """Register (once) and name the fused configuration: the ``kernel`` argument of the ops.
    ``per_neuron_params``: the parameters given as per-neuron arrays (the rest are scalars)."""
    spec = (model_cls, reset, options, surrogate_cls, detach_reset, learnable, per_neuron_params)
    key = _STATE.by_spec.get(spec)
    if key is None:
        eq = model_cls().equations(reset=reset, **dict(options))
        config = Config(lower_step(step_program(eq, surrogate_cls, detach_reset, learnable), eq), per_neuron_params)
        with _STATE.lock:
            _STATE.configs[config.key] = config
            _STATE.by_spec[spec] = key = config.key
    return key


def config(key: str) -> Config:
    try:
        return _STATE.configs[key]
    except KeyError:
        raise RuntimeError(f"snnir fused neuron: unknown kernel configuration {key!r} (configurations are "
                           "registered by the neuron module in this process)") from None


def cpu_kernel(key: str, dtype: torch.dtype) -> CpuKernel | None:
    """The C kernel of configuration ``key`` for ``dtype``, or ``None`` (one warning) if it cannot be built."""
    k = (key, dtype)
    kernel = _STATE.cpu_kernels.get(k)
    if kernel is not None or k in _STATE.unavailable or dtype not in _DTYPES:
        return kernel
    try:
        kernel = _STATE.cpu_kernels[k] = CpuKernel(config(key), dtype)
    except KernelBuildError as e:
        _STATE.unavailable.add(k)
        warnings.warn(f"{e}\nFalling back to the per-step torch path for {config(key).step.model}.", RuntimeWarning,
                      stacklevel=3)
        return None
    return kernel


# Kernels per device type other than CPU: name -> (forward, backward) with the CPU kernel's signatures,
# taking the Config first. A GPU backend registers its own; absent one, the torch loop runs.
def register_device_kernels(device_type: str, forward: Callable, backward: Callable) -> None:
    """Install the fused kernels for ``device_type`` (e.g. ``'cuda'``): ``forward(config, x, state0,
    prm, arrays, want_v) -> (spikes, state, v_seq)`` and ``backward(config, grad_spikes, grad_state,
    x, state0, prm, arrays, n_learn) -> (grad_x, grad_state0, grad_learn[L, N] or None)``."""
    _STATE.device_kernels[device_type] = (forward, backward)


def fused_devices() -> set[str]:
    """Device types on which neuron modules take the fused path by default."""
    return {"cpu", *_STATE.device_kernels}


# Backends that install the kernels of a device type, imported on the first tensor of that type a
# fused neuron sees (so CuPy loads only when a CUDA tensor arrives); each has ``install() -> bool``.
DEVICE_BACKENDS = {"cuda": "snnir.backends.cupy"}


def has_fused_kernels(device_type: str) -> bool:
    """Whether neuron modules take the fused path on ``device_type``; the first call for a device
    type asks its backend (``DEVICE_BACKENDS``) to install its kernels."""
    if device_type == "cpu" or device_type in _STATE.device_kernels:
        return True
    backend = DEVICE_BACKENDS.get(device_type)
    if backend is not None and device_type not in _STATE.probed:
        _STATE.probed.add(device_type)
        importlib.import_module(backend).install()
    return device_type in _STATE.device_kernels


# --- the ops -------------------------------------------------------------------------------------------


def _reduce_learn(grad_learn: torch.Tensor | None, n_learn: int, M: int, like: torch.Tensor) -> torch.Tensor:
    """Per-neuron gradients ``[L, N]`` summed over the batch: ``[L, M]``."""
    if grad_learn is None or n_learn == 0:
        return like.new_zeros(n_learn, M)
    return grad_learn.view(n_learn, -1, M).sum(1).to(like.dtype)


def _forward_cpu(x, state0, prm, arrays, learn, kernel, want_v):
    k = cpu_kernel(kernel, x.dtype)
    if k is None:
        from .torch_loop import forward as loop_forward
        return loop_forward(config(kernel), x, state0, prm, arrays, want_v)
    return k.forward(x, state0, prm, arrays, want_v)


def _backward_cpu(grad_spikes, grad_state, x, state0, prm, arrays, kernel, n_learn, neurons):
    k = cpu_kernel(kernel, x.dtype)
    if k is None:
        from .torch_loop import backward as loop_backward
        gx, gs, gl = loop_backward(config(kernel), grad_spikes, grad_state, x, state0, prm, arrays, n_learn)
    else:
        gx, gs, gl = k.backward(grad_spikes, grad_state, x, state0, prm, arrays, n_learn)
    return gx, gs, _reduce_learn(gl, n_learn, neurons, x)


def _forward_device(x, state0, prm, arrays, learn, kernel, want_v):
    impl = _STATE.device_kernels.get(x.device.type)
    if impl is None:
        from .torch_loop import forward as impl_forward
    else:
        impl_forward = impl[0]
    return impl_forward(config(kernel), x, state0, prm, arrays, want_v)


def _backward_device(grad_spikes, grad_state, x, state0, prm, arrays, kernel, n_learn, neurons):
    impl = _STATE.device_kernels.get(x.device.type)
    if impl is None:
        from .torch_loop import backward as impl_backward
    else:
        impl_backward = impl[1]
    gx, gs, gl = impl_backward(config(kernel), grad_spikes, grad_state, x, state0, prm, arrays, n_learn)
    return gx, gs, _reduce_learn(gl, n_learn, neurons, x)


def _forward_fake(x, state0, prm, arrays, learn, kernel, want_v):
    return torch.empty_like(x), torch.empty_like(state0), x.new_empty(x.shape if want_v else (0,))


def _backward_fake(grad_spikes, grad_state, x, state0, prm, arrays, kernel, n_learn, neurons):
    return torch.empty_like(x), torch.empty_like(state0), x.new_empty(n_learn, neurons)


class _NeuronAutograd(torch.autograd.Function):
    """Autograd of ``neuron_forward``: saves the input and the initial state (plus the uniforms);
    the backward op recomputes the rest. (A hand-written Autograd kernel: ``register_autograd``
    re-reads the op schema on every call, several microseconds per call.)"""

    @staticmethod
    def forward(ctx, x, state0, prm, arrays, learn, kernel, want_v):  # type: ignore[override]
        with torch._C._AutoDispatchBelowAutograd():
            out = neuron_forward(x, state0, prm, arrays, learn, kernel, want_v)
        ctx.save_for_backward(x, state0, prm, arrays)
        ctx.kernel, ctx.n_learn, ctx.neurons = kernel, learn.shape[0], learn.shape[1]
        ctx.mark_non_differentiable(out[2])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_spikes, g_state, g_v):  # type: ignore[override]
        x, state0, prm, arrays = ctx.saved_tensors
        if g_spikes is None:
            g_spikes = torch.zeros_like(x)
        gx, gs0, gl = neuron_backward(g_spikes, g_state, x, state0, prm, arrays, ctx.kernel, ctx.n_learn, ctx.neurons)
        return gx, gs0, None, None, gl if ctx.n_learn else None, None, None


def _forward_autograd(x, state0, prm, arrays, learn, kernel, want_v):
    if torch.is_grad_enabled() and (x.requires_grad or state0.requires_grad or learn.requires_grad):
        return _NeuronAutograd.apply(x, state0, prm, arrays, learn, kernel, want_v)
    with torch._C._AutoDispatchBelowAutograd():
        return neuron_forward(x, state0, prm, arrays, learn, kernel, want_v)


def _define_ops() -> None:
    lib = _STATE.library = torch.library.Library("snnir", "DEF")
    lib.define("neuron_forward(Tensor x, Tensor state0, Tensor prm, Tensor arrays, Tensor learn, str kernel, "
               "bool want_v) -> (Tensor, Tensor, Tensor)")
    lib.define("neuron_backward(Tensor grad_spikes, Tensor? grad_state, Tensor x, Tensor state0, Tensor prm, "
               "Tensor arrays, str kernel, int n_learn, int neurons) -> (Tensor, Tensor, Tensor)")
    lib.impl("neuron_forward", _forward_cpu, "CPU")
    lib.impl("neuron_backward", _backward_cpu, "CPU")
    lib.impl("neuron_forward", _forward_device, "CompositeExplicitAutograd")
    lib.impl("neuron_backward", _backward_device, "CompositeExplicitAutograd")
    lib.impl("neuron_forward", _forward_autograd, "Autograd")
    torch.library.register_fake("snnir::neuron_forward", _forward_fake, lib=lib)
    torch.library.register_fake("snnir::neuron_backward", _backward_fake, lib=lib)
    _STATE.defined = True


if not _STATE.defined:
    _define_ops()
neuron_forward = torch.ops.snnir.neuron_forward.default
neuron_backward = torch.ops.snnir.neuron_backward.default


def fused_steps(key: str, x_seq: torch.Tensor, state0: list[torch.Tensor], prm: torch.Tensor, arrays: torch.Tensor,
                learn: torch.Tensor, want_v: bool) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """Run ``x_seq`` ([T, ...]) through the op; returns spikes, the final states, v_seq (or None)."""
    T, shape = x_seq.shape[0], x_seq.shape[1:]
    x2 = x_seq.reshape(T, -1).contiguous()
    s0 = state0[0].reshape(1, -1) if len(state0) == 1 else torch.stack([s.reshape(-1) for s in state0])
    spikes, state, v_seq = neuron_forward(x2, s0, prm, arrays, learn, key, want_v)
    states = [state.view(shape)] if len(state0) == 1 else [s.view(shape) for s in state.unbind(0)]
    return spikes.view(x_seq.shape), states, (v_seq.view(x_seq.shape) if want_v else None)


__all__ = ["DEVICE_BACKENDS", "Config", "compute_dtype", "config_key", "fused_devices", "fused_steps",
           "has_fused_kernels", "neuron_backward", "neuron_forward", "register_device_kernels"]

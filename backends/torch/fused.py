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

``x`` may be float32/float64 or bfloat16/float16; the states, ``v_seq`` and the learnable
gradients are then in ``compute_dtype(x.dtype)`` (float32: 16-bit sequences are computed in
float32). ``state0`` may be broadcast over the neurons (``expand``: read as one value per state).

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
from .threads import kernel_threads

_DTYPES = {torch.float32: "float", torch.float64: "double", torch.bfloat16: "bfloat16", torch.float16: "half"}


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _tile(N: int) -> int:
    """Neurons per tile: as large as TILE_MAX, yet at least two tiles per thread when N allows."""
    per_thread = -(-N // (2 * max(1, torch.get_num_threads())))
    return int(min(TILE_MAX, max(16, -(-per_thread // 16) * 16)))


class Config:
    """One fused configuration: its lowered step, and which uniforms are per-neuron arrays (those
    that depend on a per-neuron parameter, ``per_neuron_params``, through the prologue).
    ``input_affine``: the input is ``x * in_scale + in_shift``, two more per-neuron rows of
    ``arrays`` after the uniforms' (a BatchNorm run inside the neuron pass); the backward's input
    gradient is then the gradient of that affine output."""

    def __init__(self, step: LoweredStep, per_neuron_params: frozenset[str], input_affine: bool = False) -> None:
        self.step = step
        self.input_affine = bool(input_affine)
        varying = {f"p_{n}" for n in per_neuron_params}
        for op in step.prologue.ops:
            if any(isinstance(a, str) and a in varying for a in op.args):
                varying.add(op.out)
        self.per_neuron = frozenset(n for n in step.uniforms if n in varying)
        self.array_uniforms = tuple(n for n in step.uniforms if n in varying)
        self.n_arrays = len(self.array_uniforms) + 2 * self.input_affine  # rows of ``arrays``
        text = f"{step}\n{sorted(self.per_neuron)}\n{step.learnable}\n{step.kept}\naffine={self.input_affine}"
        self.key = f"{step.model}.{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        self._prm_cache: dict[tuple, torch.Tensor] = {}
        self._no_arrays: dict[tuple[int, torch.dtype], torch.Tensor] = {}
        self.prologue = Prologue(step.prologue, step.uniforms)

    def pack(self, params: dict[str, Any], dtype: torch.dtype, sample: tuple[int, ...],
             order: tuple[int, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel's uniforms from raw parameter values (``p_<name>`` -> float or tensor):
        ``prm`` (float64, one per uniform; 0 for per-neuron ones) and ``arrays[A, M]`` (``dtype``),
        the per-neuron uniforms broadcast to one sample's ``M`` neurons, in the memory order of
        the sample's axes ``order`` (a permutation; ``None``: as they are, i.e. contiguous)."""
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
        rows = [_in_order(values[n].detach().to(dtype).expand(sample), order).reshape(M) for n in self.array_uniforms]
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


def _in_order(t: torch.Tensor, order: tuple[int, ...] | None) -> torch.Tensor:
    return t if order is None else t.permute(order)


class CpuKernel:
    """The compiled C forward/backward of one configuration and input dtype (16-bit inputs:
    float32 states and arrays). ``forward``/``backward`` check their inputs (the op's
    implementation); ``run_forward``/``run_backward`` take them checked and prepared (``_abi``)."""

    def __init__(self, config: Config, dtype: torch.dtype) -> None:
        self.config = config
        self.dtype, self.state_dtype = dtype, compute_dtype(dtype)
        self.n_states = len(config.step.states)
        self.lib = build_neuron(generate_source(config.step, _DTYPES[dtype], config.per_neuron, config.input_affine))
        self._fwd, self._bwd = self.lib.snnir_forward, self.lib.snnir_backward
        # each backward tile re-runs its forward into a local buffer of T * kept values: near 2 MiB
        self._recompute_bytes = max(1, len(config.step.kept)) * self.state_dtype.itemsize

    def forward(self, x, state0, prm, arrays, want_v):
        x, s0, prm, arrays = _abi(self.config, x, state0, prm, arrays, self.state_dtype)
        return self.run_forward(x, s0, prm, arrays, want_v)

    def run_forward(self, x, s0, prm, arrays, want_v, M: int = 0, tile: int = 0):
        T, N = x.shape
        spikes = buffers.empty((T, N), x.dtype)
        state = torch.empty(self.n_states, N, dtype=self.state_dtype)
        v_seq = buffers.empty((T, N), self.state_dtype) if want_v else _EMPTY
        M = M or (arrays.shape[1] if arrays.numel() else N)
        tile = tile or _tile(N)
        self._fwd(T, N, M, tile, x.data_ptr(), spikes.data_ptr(), s0[0].data_ptr(), s0[1], s0[2],
                  state.data_ptr(), v_seq.data_ptr() if want_v else None, prm.data_ptr(), arrays.data_ptr(),
                  kernel_threads(T * N, -(-N // tile)))
        return spikes, state, v_seq

    def backward(self, g_spikes, g_state, x, state0, prm, arrays, n_learn, want_grad_state0: bool = True):
        x, s0, prm, arrays = _abi(self.config, x, state0, prm, arrays, self.state_dtype)
        return self.run_backward(g_spikes, g_state, x, s0, prm, arrays, n_learn, want_grad_state0)

    def backward_tile(self, T: int, N: int) -> int:
        """Neurons per backward tile: each re-runs its forward into a local buffer of T * kept values."""
        return int(min(_tile(N), max(16, (2 << 20) // (T * self._recompute_bytes) // 16 * 16)))

    def run_backward(self, g_spikes, g_state, x, s0, prm, arrays, n_learn, want_grad_state0, M: int = 0,
                     tile: int = 0):
        g_state = None if g_state is None else g_state.to(self.state_dtype).contiguous()
        T, N = x.shape
        grad_x = buffers.empty((T, N), x.dtype)
        grad_state0 = torch.empty(self.n_states, N, dtype=self.state_dtype) if want_grad_state0 else None
        tile = tile or self.backward_tile(T, N)
        grad_learn = torch.empty(n_learn, N, dtype=torch.float64) if n_learn else None
        # a broadcast scalar gradient (loss = spikes.sum()) is read as one value, not materialized
        scalar = g_spikes.stride() == (0, 0)
        if g_spikes.dtype != x.dtype:
            g_spikes = g_spikes.to(x.dtype)
        if not scalar:
            g_spikes = g_spikes.contiguous()
        M = M or (arrays.shape[1] if arrays.numel() else N)
        failed = self._bwd(T, N, M, tile, g_spikes.data_ptr(), int(scalar), _ptr(g_state), x.data_ptr(),
                           s0[0].data_ptr(), s0[1], s0[2], grad_x.data_ptr(), _ptr(grad_state0), _ptr(grad_learn),
                           prm.data_ptr(), arrays.data_ptr(), kernel_threads(T * N, -(-N // tile)))
        if failed:
            raise MemoryError(f"fused neuron backward: could not allocate a {tile}-neuron recompute buffer")
        return grad_x, grad_state0, grad_learn


_EMPTY = torch.empty(0)


def initial_rows(state0: torch.Tensor, sdtype: torch.dtype) -> tuple[torch.Tensor, int, int]:
    """The initial state ``[S, N]`` as the kernels read it, ``(tensor, row stride, column stride)``:
    a state broadcast over the neurons (``expand``, stride 0) is one value per state, never
    materialized."""
    if state0.shape[1] > 1 and state0.stride(1) == 0:
        return state0[:, 0].to(sdtype).contiguous(), 1, 0
    return state0.to(sdtype).contiguous(), state0.shape[1], 1


def _abi(config: Config, x, state0, prm, arrays, sdtype):
    """The kernel ABI's inputs, checked (a wrong shape or type would read out of bounds) and
    contiguous; the initial state as ``(tensor, row stride, column stride)``: a state broadcast
    over the neurons (``expand``, stride 0) is read as one value per state, never materialized."""
    step = config.step
    S = len(step.states)
    if x.dim() != 2 or state0.shape != (S, x.shape[1]):
        raise ValueError(f"snnir::neuron_forward ({step.model}): x must be [T, N] and state0 [{S}, N], "
                         f"got {tuple(x.shape)} and {tuple(state0.shape)}")
    if prm.shape != (len(step.uniforms),) or prm.dtype != torch.float64:
        raise ValueError(f"snnir::neuron_forward ({step.model}): prm must be float64 [{len(step.uniforms)}], got "
                         f"{prm.dtype} {tuple(prm.shape)}")
    A = config.n_arrays
    if arrays.dim() != 2 or arrays.shape[0] != A or (A and x.shape[1] % arrays.shape[1]):
        raise ValueError(f"snnir::neuron_forward ({step.model}): arrays must be [{A}, M] with M dividing N = "
                         f"{x.shape[1]}, got {tuple(arrays.shape)}")
    return x.contiguous(), initial_rows(state0, sdtype), prm.contiguous(), arrays.to(sdtype).contiguous()


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


@torch._dynamo.assume_constant_result  # sympy work at trace time, its key a constant of the graph
def config_key(model_cls: type[NeuronModel], reset: str, options: tuple, surrogate_cls: type[Surrogate],
               detach_reset: bool, learnable: tuple[str, ...], per_neuron_params: frozenset[str],
               input_affine: bool = False) -> str:
    """Register (once) and name the fused configuration: the ``kernel`` argument of the ops.
    ``per_neuron_params``: the parameters given as per-neuron arrays (the rest are scalars);
    ``input_affine``: see ``Config``."""
    spec = (model_cls, reset, options, surrogate_cls, detach_reset, learnable, per_neuron_params, input_affine)
    key = _STATE.by_spec.get(spec)
    if key is None:
        eq = model_cls().equations(reset=reset, **dict(options))
        config = Config(lower_step(step_program(eq, surrogate_cls, detach_reset, learnable), eq), per_neuron_params,
                        input_affine)
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


@torch._dynamo.assume_constant_result  # built (or found missing) at trace time
def cpu_kernel_available(key: str, dtype: torch.dtype) -> bool:
    """Whether the C kernel of ``key`` for ``dtype`` exists or can be built (warns once if not)."""
    return cpu_kernel(key, dtype) is not None


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
    """Per-neuron gradients ``[L, N]`` summed over the batch: ``[L, M]`` (in the state dtype)."""
    dtype = compute_dtype(like.dtype)
    if grad_learn is None or n_learn == 0:
        return like.new_zeros(n_learn, M, dtype=dtype)
    return grad_learn.view(n_learn, -1, M).sum(1).to(dtype)


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
        return impl_forward(config(kernel), x, state0, prm, arrays, want_v)
    # an installed kernel gets what it always got: the state materialized, in the input's dtype
    sdtype = compute_dtype(x.dtype)
    spikes, state, v_seq = impl[0](config(kernel), x, state0.to(x.dtype).contiguous(), prm, arrays.to(sdtype), want_v)
    return spikes, state.to(sdtype), v_seq.to(sdtype)


def _backward_device(grad_spikes, grad_state, x, state0, prm, arrays, kernel, n_learn, neurons):
    impl = _STATE.device_kernels.get(x.device.type)
    if impl is None:
        from .torch_loop import backward as impl_backward
        gx, gs, gl = impl_backward(config(kernel), grad_spikes, grad_state, x, state0, prm, arrays, n_learn)
    else:
        g_state = None if grad_state is None else grad_state.to(x.dtype)
        gx, gs, gl = impl[1](config(kernel), grad_spikes, g_state, x, state0.to(x.dtype).contiguous(), prm,
                             arrays.to(compute_dtype(x.dtype)), n_learn)
        gs = gs.to(compute_dtype(x.dtype))
    return gx, gs, _reduce_learn(gl, n_learn, neurons, x)


def _forward_fake(x, state0, prm, arrays, learn, kernel, want_v):
    sdtype = compute_dtype(x.dtype)
    return (torch.empty_like(x, memory_format=torch.contiguous_format), state0.new_empty(state0.shape, dtype=sdtype),
            x.new_empty(x.shape if want_v else (0,), dtype=sdtype))


def _backward_fake(grad_spikes, grad_state, x, state0, prm, arrays, kernel, n_learn, neurons):
    sdtype = compute_dtype(x.dtype)
    return (torch.empty_like(x, memory_format=torch.contiguous_format), state0.new_empty(state0.shape, dtype=sdtype),
            x.new_empty(n_learn, neurons, dtype=sdtype))


class _NeuronAutograd(torch.autograd.Function):
    """Autograd of ``neuron_forward``: saves the input and the initial state (plus the uniforms);
    the backward op recomputes the rest. (A hand-written Autograd kernel: ``register_autograd``
    re-reads the op schema on every call, several microseconds per call.)

    ``spec = (kernel, want_v, direct)``: ``direct`` is the ``CpuKernel`` to call without the
    dispatcher (eager calls on plain CPU tensors, where a round trip through the op's Python
    implementations costs more than a small layer's kernel; inputs prepared by ``fused_call``),
    or ``None``: the ops (what ``torch.compile`` traces)."""

    @staticmethod
    def forward(ctx, x, state0, prm, arrays, learn, spec):  # type: ignore[override]
        kernel, want_v, direct = spec
        ctx.set_materialize_grads(False)
        ctx.spec, ctx.n_learn, ctx.neurons = spec, learn.shape[0], learn.shape[1]
        if direct is not None:
            s0 = initial_rows(state0, direct.state_dtype)
            out = direct.run_forward(x, s0, prm, arrays, want_v)
            ctx.s0_strides = s0[1:]
            ctx.save_for_backward(x, s0[0], prm, arrays)
        else:
            with torch._C._AutoDispatchBelowAutograd():
                out = neuron_forward(x, state0, prm, arrays, learn, kernel, want_v)
            ctx.save_for_backward(x, state0, prm, arrays)
        ctx.mark_non_differentiable(out[2])
        return out

    @staticmethod
    def backward(ctx, g_spikes, g_state, g_v):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: the kernels' gradients are not differentiable
            return _NeuronAutograd._backward_once(ctx, g_spikes, g_state)
        return _NeuronAutograd._backward(ctx, g_spikes, g_state)

    @staticmethod
    def _backward(ctx, g_spikes, g_state):
        x, state0, prm, arrays = ctx.saved_tensors
        kernel, _, direct = ctx.spec
        if g_spikes is None:
            g_spikes = torch.zeros_like(x)
        if direct is not None:
            gx, gs0, gl = direct.run_backward(g_spikes, g_state, x, (state0, *ctx.s0_strides), prm, arrays,
                                              ctx.n_learn, ctx.needs_input_grad[1])
            if ctx.n_learn:
                gl = _reduce_learn(gl, ctx.n_learn, ctx.neurons, x)
        else:
            gx, gs0, gl = neuron_backward(g_spikes, g_state, x, state0, prm, arrays, kernel, ctx.n_learn, ctx.neurons)
        return gx, gs0, None, None, gl if ctx.n_learn else None, None

    _backward_once = staticmethod(torch.autograd.function.once_differentiable(_backward.__func__))


def _forward_autograd(x, state0, prm, arrays, learn, kernel, want_v):
    if torch.is_grad_enabled() and (x.requires_grad or state0.requires_grad or learn.requires_grad):
        return _NeuronAutograd.apply(x, state0, prm, arrays, learn, (kernel, want_v, None))
    with torch._C._AutoDispatchBelowAutograd():
        return neuron_forward(x, state0, prm, arrays, learn, kernel, want_v)


def run(key: str, x: torch.Tensor, state0: torch.Tensor, prm: torch.Tensor, arrays: torch.Tensor,
        learn: torch.Tensor, want_v: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``neuron_forward`` (differentiable), calling the CPU kernel directly where that is the same
    thing: plain CPU tensors, not under ``torch.compile`` (which must see the op)."""
    direct = None
    if x.device.type == "cpu" and type(x) is torch.Tensor and not torch.compiler.is_compiling():
        direct = cpu_kernel(key, x.dtype)
    if direct is None:
        return neuron_forward(x, state0, prm, arrays, learn, key, want_v)
    if torch.is_grad_enabled() and (x.requires_grad or state0.requires_grad or learn.requires_grad):
        return _NeuronAutograd.apply(x, state0, prm, arrays, learn, (key, want_v, direct))
    return direct.forward(x, state0, prm, arrays, want_v)


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


__all__ = ["DEVICE_BACKENDS", "Config", "compute_dtype", "config_key", "fused_devices", "has_fused_kernels",
           "neuron_backward", "neuron_forward", "register_device_kernels", "run"]

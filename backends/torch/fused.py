"""The fused multi-step neuron: one ``autograd.Function`` over all T steps, CPU kernel inside.

Only the input and the initial state are saved for backward (both usually alive anyway, and no
new buffer is written); the backward kernel recomputes each tile's charged values before walking
time in reverse.

``FusedKernel`` wraps the compiled forward/backward for one (model, reset, options, surrogate,
detach_reset, dtype); ``fused_steps`` runs a sequence and returns spikes, the final state and
optionally the post-reset voltage sequence. Gradients flow to the input, the initial state (so
single steps chain and truncated BPTT works) and the learnable scalar parameters.
"""

from __future__ import annotations

import ctypes
import warnings
from functools import cache
from typing import Any

import torch

from snnir.neurons.adjoint import StepProgram, step_program
from snnir.neurons.model import NeuronModel
from snnir.surrogate import Surrogate

from . import buffers
from .cpu_kernel import TILE_MAX, KernelBuildError, build_neuron, generate_source

_DTYPES = {torch.float32: "float", torch.float64: "double"}


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _tile(N: int) -> int:
    """Neurons per tile: as large as TILE_MAX, yet at least two tiles per thread when N allows."""
    per_thread = -(-N // (2 * max(1, torch.get_num_threads())))
    return int(min(TILE_MAX, max(16, -(-per_thread // 16) * 16)))


class FusedKernel:
    """Compiled forward/backward of one neuron configuration."""

    def __init__(self, prog: StepProgram, dtype: torch.dtype) -> None:
        self.prog = prog
        self.dtype = dtype
        self.lib = build_neuron(generate_source(prog, _DTYPES[dtype]))

    def forward(self, x: torch.Tensor, state0: torch.Tensor, prm: torch.Tensor, want_v: bool):
        T, N = x.shape
        spikes = buffers.empty(x.shape, x.dtype)
        state = state0.clone()
        v_seq = buffers.empty(x.shape, x.dtype) if want_v else None
        self.lib.snnir_forward(T, N, _tile(N), _ptr(x), _ptr(spikes), _ptr(state), None, _ptr(v_seq),
                               _ptr(prm), torch.get_num_threads())
        return spikes, state, v_seq

    def backward(self, g_spikes: torch.Tensor, g_state: torch.Tensor | None, x: torch.Tensor,
                 state0: torch.Tensor, prm: torch.Tensor):
        T, N = g_spikes.shape
        grad_x = buffers.empty((T, N), g_spikes.dtype)
        grad_state0 = torch.empty_like(state0)
        n_learn = len(self.prog.learnable)
        # each tile re-runs its forward into a local buffer of T * kept values: keep it near 2 MiB
        per_neuron = T * max(1, len(self.prog.kept)) * g_spikes.element_size()
        tile = int(min(_tile(N), max(16, (2 << 20) // per_neuron // 16 * 16)))
        grad_params = torch.zeros((N + tile - 1) // tile, max(n_learn, 1), dtype=torch.float64)
        # a broadcast scalar gradient (loss = spikes.sum()) is read as one value, not materialized
        scalar = g_spikes.stride() == (0, 0)
        g_spikes = g_spikes if scalar else g_spikes.contiguous()
        failed = self.lib.snnir_backward(T, N, tile, _ptr(g_spikes), int(scalar), _ptr(g_state), _ptr(x),
                                         _ptr(state0), _ptr(grad_x), _ptr(grad_state0), _ptr(grad_params),
                                         _ptr(prm), torch.get_num_threads())
        if failed:
            raise MemoryError(f"fused neuron backward: could not allocate a {tile}-neuron recompute buffer")
        return grad_x, grad_state0, grad_params.sum(0)[:n_learn]


class _FusedNeuron(torch.autograd.Function):
    """Saves the input and the initial state only; the backward recomputes the rest per tile."""

    @staticmethod
    def forward(ctx, x, state0, learnable, kernel, prm, keep, want_v):  # type: ignore[override]
        spikes, state, v_seq = kernel.forward(x, state0, prm, want_v)
        ctx.kernel, ctx.prm = kernel, prm
        ctx.learnable_dtype = learnable.dtype
        if keep:
            ctx.save_for_backward(x, state0)
        if v_seq is None:
            return spikes, state
        ctx.mark_non_differentiable(v_seq)
        return spikes, state, v_seq

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_spikes, g_state, *unused):  # type: ignore[override]
        if not ctx.saved_tensors:
            raise RuntimeError("fused neuron: forward ran without keeping its input for backward")
        x, state0 = ctx.saved_tensors
        gx, gs0, gp = ctx.kernel.backward(g_spikes, None if g_state is None else g_state.contiguous(),
                                          x, state0, ctx.prm)
        return gx, gs0, gp.to(ctx.learnable_dtype), None, None, None, None


_UNAVAILABLE: set[Any] = set()


@cache
def _kernel(model_cls: type[NeuronModel], reset: str, options: tuple, surrogate_cls: type[Surrogate],
            detach_reset: bool, dtype: torch.dtype) -> FusedKernel:
    model = model_cls()
    eq = model.equations(reset=reset, **dict(options))
    prog = step_program(eq, surrogate_cls, detach_reset, tuple(model.learnable))
    return FusedKernel(prog, dtype)


def get_kernel(model: NeuronModel, reset: str, options: dict, surrogate: Surrogate, detach_reset: bool,
               dtype: torch.dtype) -> FusedKernel | None:
    """The fused kernel for this configuration, or ``None`` (with one warning) if it cannot be built."""
    key = (type(model), reset, tuple(sorted(options.items())), type(surrogate), detach_reset, dtype)
    if key in _UNAVAILABLE or dtype not in _DTYPES:
        return None
    try:
        return _kernel(*key)
    except KernelBuildError as e:
        _UNAVAILABLE.add(key)
        warnings.warn(f"{e}\nFalling back to the per-step torch path for {model.name}.", RuntimeWarning,
                      stacklevel=3)
        return None


def fused_steps(kernel: FusedKernel, x_seq: torch.Tensor, state0: dict[str, torch.Tensor],
                params: dict[str, Any], surrogate: Surrogate, learnable: list[torch.Tensor],
                want_v: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """Run ``x_seq`` ([T, ...]) through the kernel; returns spikes, final state, v_seq (or None)."""
    prog = kernel.prog
    T, shape = x_seq.shape[0], x_seq.shape[1:]
    x2 = x_seq.reshape(T, -1).contiguous()
    s0 = torch.stack([state0[k].reshape(-1) for k in prog.states]).contiguous()
    values = {**params, **{f"sg_{k}": v for k, v in surrogate.values.items()}}
    prm = torch.tensor([float(v.detach()) if torch.is_tensor(v) else float(v) for v in
                        (values[name] for name in prog.params)], dtype=torch.float64)
    learn = torch.stack([p.reshape(()) for p in learnable]) if learnable else x2.new_zeros(0)
    keep = torch.is_grad_enabled() and (x2.requires_grad or s0.requires_grad or learn.requires_grad)
    out = _FusedNeuron.apply(x2, s0, learn, kernel, prm, keep, want_v)
    spikes, state = out[0], out[1]
    final = {k: state[i].view(shape) for i, k in enumerate(prog.states)}
    return spikes.view(x_seq.shape), final, (out[2].view(x_seq.shape) if want_v else None)

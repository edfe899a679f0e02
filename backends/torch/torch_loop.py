"""The fused ops' loop template in torch: the lowered step (forward, recompute, adjoint) as torch ops.

The implementation of ``snnir::neuron_forward``/``neuron_backward`` on devices without a compiled
kernel (and where the C compiler is missing): the same blocks the C and CUDA kernels print, run
as torch operations over ``[batch, neurons]`` with the kernel ABI (``prm``, ``arrays``). It keeps
only what the C kernel keeps and recomputes the rest, so it also checks the kernels' recompute
logic on any device.
"""

from __future__ import annotations

import torch

from snnir.lowering import Block

from .fused import compute_dtype
from .lowered import join, step_function

_cache: dict[tuple[int, str, torch.dtype], object] = {}


def _fn(config, name: str, block: Block, inputs: tuple[str, ...], outputs: tuple[str, ...], dtype: torch.dtype):
    key = (id(config), name, dtype)
    if key not in _cache:
        _cache[key] = step_function(Block(block.inputs, block.ops, outputs, block.booleans), dtype, inputs, name)
    return _cache[key]


def _uniforms(config, prm: torch.Tensor, arrays: torch.Tensor) -> list:
    rows = dict(zip(config.array_uniforms, arrays.unbind(0))) if arrays.numel() else {}
    values = prm.tolist()
    return [rows[n] if n in rows else values[i] for i, n in enumerate(config.step.uniforms)]


def _compute(config, x: torch.Tensor, arrays: torch.Tensor) -> torch.Tensor:
    """The input the step reads, as the kernels compute it: 16-bit widened to float32, and the
    input affine (``x * in_scale + in_shift``, the last two rows of ``arrays``) applied."""
    x = x.to(compute_dtype(x.dtype))
    if config.input_affine:
        B, M = x.shape[-1] // arrays.shape[1], arrays.shape[1]
        scale, shift = arrays[-2].to(x.dtype), arrays[-1].to(x.dtype)
        x = (x.reshape(*x.shape[:-1], B, M) * scale + shift).reshape(x.shape)
    return x


def _shape(x: torch.Tensor, arrays: torch.Tensor) -> tuple[int, int]:
    N = x.shape[-1]
    M = arrays.shape[1] if arrays.numel() else N
    return N // M, M


def _spike(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (z >= 0).to(like.dtype)


def _forward_fns(config, dtype):
    step = config.step
    S = tuple(f"s_{k}" for k in step.states)
    U = step.uniforms
    cf = join(step.charge, step.fire)
    charge_fire = _fn(config, "charge_fire", cf, ("x", *S, *U), (*S, "z"), dtype)
    reset = _fn(config, "reset", step.reset, ("spike", *S, *U), S, dtype)
    return charge_fire, reset


def _run_forward(config, x3, states, u, keep_h: bool):
    step = config.step
    charge_fire, reset = _forward_fns(config, x3.dtype)
    kept = [step.states.index(k) for k in step.kept]
    iv = step.states.index("v")
    spikes, v_seq, h_seq = [], [], []
    for xt in x3.unbind(0):
        *charged, z = charge_fire(xt, *states, *u)
        if keep_h:
            h_seq.append([charged[i] for i in kept])
        spike = _spike(z, xt)
        states = list(reset(spike, *charged, *u))
        spikes.append(spike)
        v_seq.append(states[iv])
    return spikes, states, v_seq, h_seq


def forward(config, x: torch.Tensor, state0: torch.Tensor, prm: torch.Tensor, arrays: torch.Tensor, want_v: bool):
    T, N = x.shape
    B, M = _shape(x, arrays)
    xc = _compute(config, x, arrays)
    u = _uniforms(config, prm, arrays.to(xc.dtype))  # arrays: the compute type
    states = [s.to(xc.dtype).reshape(B, M) for s in state0.unbind(0)]
    spikes, states, v_seq, _ = _run_forward(config, xc.reshape(T, B, M), states, u, False)
    out_v = torch.stack(v_seq).reshape(T, N) if want_v and T else xc.new_empty(x.shape if want_v else (0,))
    out_s = torch.stack(spikes).reshape(T, N).to(x.dtype) if T else torch.empty_like(x)
    return out_s, torch.stack([torch.broadcast_to(s, (B, M)).reshape(N) for s in states]), out_v


def backward(config, g_spikes, g_state, x, state0, prm, arrays, n_learn):
    step = config.step
    T, N = x.shape
    B, M = _shape(x, arrays)
    S = tuple(f"s_{k}" for k in step.states)
    H = tuple(f"h_{k}" for k in step.kept)
    G = tuple(f"g_{k}" for k in step.states)
    U = step.uniforms
    out_dtype = x.dtype
    x = _compute(config, x, arrays)
    u = _uniforms(config, prm, arrays.to(x.dtype))  # arrays: the compute type
    g_spikes = g_spikes.to(x.dtype)
    dtype = x.dtype
    x3 = x.reshape(T, B, M)
    state0_3 = [s.to(dtype).reshape(B, M) for s in state0.unbind(0)]
    _, _, _, h_seq = _run_forward(config, x3, state0_3, u, True)
    fire_h = _fn(config, "fire_h", step.fire_h, (*H, *U), ("z",), dtype)
    prev = _fn(config, "prev_state", step.prev_state, ("spike", *H, *U), S, dtype) if step.needs_prev else None
    outs = ("gx", *(f"gprev_{k}" for k in step.states), *(f"gp_{n}" for n in step.learnable))
    bwd = _fn(config, "backward", step.backward, ("x", "g_spike", "spike", *H, *G, *S, *U), outs, dtype)
    g3 = g_spikes.reshape(T, B, M)
    g = [s.to(dtype).reshape(B, M) for s in g_state.unbind(0)] if g_state is not None else \
        [x.new_zeros(B, M)] * len(S)
    acc = [torch.zeros(B, M, dtype=torch.float64, device=x.device) for _ in range(n_learn)]
    grad_x = []
    zero = x.new_zeros(B, M)
    for t in range(T - 1, -1, -1):
        h = h_seq[t]
        spike = _spike(fire_h(*h, *u)[0], x3[t])
        if step.needs_prev and t == 0:
            s_prev = state0_3
        elif step.needs_prev:
            hp = h_seq[t - 1]
            s_prev = list(prev(_spike(fire_h(*hp, *u)[0], x3[t]), *hp, *u))
        else:
            s_prev = [zero] * len(S)
        gx, *rest = bwd(x3[t], g3[t], spike, *h, *g, *s_prev, *u)
        g = [torch.broadcast_to(torch.as_tensor(v, dtype=dtype, device=x.device), (B, M)) for v in rest[:len(S)]]
        for i, gp in enumerate(rest[len(S):]):
            acc[i] += torch.as_tensor(gp, device=x.device).to(torch.float64)
        grad_x.append(torch.broadcast_to(torch.as_tensor(gx, dtype=dtype, device=x.device), (B, M)))
    grad_x.reverse()
    gx_out = torch.stack(grad_x).reshape(T, N).to(out_dtype) if T else torch.empty_like(x, dtype=out_dtype)
    gs_out = torch.stack([gi.reshape(N) for gi in g])
    gl = torch.stack([a.reshape(N) for a in acc]) if n_learn else None
    return gx_out, gs_out, gl

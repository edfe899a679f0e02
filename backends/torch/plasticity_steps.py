"""Running a lowered plasticity rule over recorded steps: the torch reference and the fused kernel.

Both take the same canonical tensors (``plasticity_geometry``): pre spikes ``[T, B, C, H, W]``,
post spikes ``[T, B, J, Ho, Wo]``, the state ``{"pre": [NP, B, C, H, W], "post": [NQ, B, J, Ho,
Wo], "synapse": [NS, B, J, I]}`` (updated in place), the weight ``[J, I]`` (updated in place when
``apply``), modulators ``[T, NM, B]``; both return ``delta = sum over steps of dw`` (``[J, I]``,
the rule's increments before the bounds).

The reference prints each block as torch ops (``lowered.step_function``) and computes pairings
with ``Geometry.pair`` (einsum over unfolded patches); the fused path runs all steps in one call
of the C kernel printed from the same blocks (``plasticity_kernel``).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch

from snnir.learning.rule import PlasticityRule
from snnir.lowering import evaluate
from snnir.lowering.plasticity import LoweredRule, lower_rule

from .lowered import step_function
from .plasticity_geometry import Geometry
from .plasticity_kernel import library, post_factors, pre_factors

_C_TYPES = {torch.float32: "float", torch.float64: "double"}


class CompiledRule:
    """A rule instance's lowered blocks and uniform values (float64, from the prologue)."""

    def __init__(self, rule: PlasticityRule) -> None:
        self.rule = rule
        self.lowered: LoweredRule = lower_rule(rule.equations())
        raw = {f"p_{k}": v for k, v in rule.params_values().items()}
        values = {**raw, **evaluate(self.lowered.prologue, raw)}
        self.uniforms: dict[str, float] = {n: float(values[n]) for n in self.lowered.uniforms}

    def init_value(self, name: str) -> float:
        return dict(self.lowered.init)[name]


def _call(block_fn: Any, block: Any, values: dict[str, Any]) -> dict[str, Any]:
    return dict(zip(block.outputs, block_fn(*[values[n] for n in block.inputs])))


def _full(value: Any, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``value`` (a tensor that broadcasts, or a number) as a tensor of ``shape``."""
    t = value if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=like.dtype, device=like.device)
    return torch.broadcast_to(t, shape)


def reference_steps(cr: CompiledRule, geo: Geometry, pre: torch.Tensor, post: torch.Tensor,
                    state: dict[str, torch.Tensor], weight: torch.Tensor, mods: torch.Tensor, apply: bool
                    ) -> torch.Tensor:
    """Run the rule step by step with torch ops (see the module docstring)."""
    lr, dtype = cr.lowered, weight.dtype
    fns = {k: step_function(b, dtype, None, f"plasticity_{k}") for k, b in lr.blocks().items()}
    T, B = pre.shape[:2]
    batched = lr.batched
    syn_shape = (B, *weight.shape) if batched else tuple(weight.shape)
    delta = torch.zeros_like(weight)
    for t in range(T):
        values: dict[str, Any] = {**cr.uniforms, "pre": pre[t], "post": post[t], "n_samples": float(B)}
        values.update({f"s_{k}": state["pre"][i] for i, k in enumerate(lr.pre_traces)})
        values.update({f"s_{k}": state["post"][i] for i, k in enumerate(lr.post_traces)})
        out = {**_call(fns["pre"], lr.pre, values), **_call(fns["post"], lr.post, values)}
        for i, k in enumerate(lr.pre_traces):
            state["pre"][i].copy_(_full(out[f"s_{k}"], state["pre"][i].shape, weight))
        for i, k in enumerate(lr.post_traces):
            state["post"][i].copy_(_full(out[f"s_{k}"], state["post"][i].shape, weight))
        values = {**cr.uniforms, "w": weight, "n_samples": float(B)}
        for k, p in enumerate(lr.pairings):
            a = out[p.pre] if isinstance(p.pre, str) else p.pre
            b = out[p.post] if isinstance(p.post, str) else p.post
            values[f"pair_{k}"] = geo.pair(_full(a, pre[t].shape, weight) if isinstance(p.pre, str) else a,
                                           _full(b, post[t].shape, weight) if isinstance(p.post, str) else b, batched)
        values.update({f"s_{k}": state["synapse"][i] for i, k in enumerate(lr.synapse_states)})
        values.update({f"m_{m}": mods[t, i].view(B, 1, 1) for i, m in enumerate(lr.modulators)})
        syn = _call(fns["synapse"], lr.synapse, values)
        for i, k in enumerate(lr.synapse_states):
            state["synapse"][i].copy_(_full(syn[f"s_{k}"], syn_shape, weight))
        dw = _full(syn["dw"], syn_shape, weight)
        if batched:
            dw = dw.sum(0)
        delta += dw
        new_w = _call(fns["apply"], lr.apply, {**cr.uniforms, "w": weight, "dw": dw})["w"]
        if apply:
            weight.copy_(_full(new_w, tuple(weight.shape), weight))
    return delta


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def fused_available(weight: torch.Tensor) -> bool:
    """Whether the fused kernel can run on ``weight``'s device and dtype (a C compiler aside)."""
    return weight.device.type == "cpu" and weight.dtype in _C_TYPES


def fused_steps(cr: CompiledRule, geo: Geometry, pre: torch.Tensor, post: torch.Tensor,
                state: dict[str, torch.Tensor], weight: torch.Tensor, mods: torch.Tensor, apply: bool
                ) -> torch.Tensor:
    """Run the rule over all steps in one call of the fused CPU kernel (same contract as
    ``reference_steps``; ``KernelBuildError`` without a C compiler)."""
    lr, dtype = cr.lowered, weight.dtype
    lib = library(lr, _C_TYPES[dtype])
    pre, post = pre.contiguous(), post.contiguous()
    T, B, C, H, W = pre.shape
    J, Ho, Wo = post.shape[2:]
    for key in ("pre", "post", "synapse"):
        if not state[key].is_contiguous():
            raise AssertionError(f"plasticity state {key!r} must be contiguous")
    if not weight.is_contiguous():
        raise AssertionError("the weight must be contiguous")
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    geometry = torch.tensor([T, B, C, H, W, J, Ho, Wo, kh, kw, sh, sw, dh, dw, geo.groups], dtype=torch.int64)
    a_buf = torch.empty(max(len(pre_factors(lr)), 1), B * C * H * W, dtype=dtype)
    b_buf = torch.empty(max(len(post_factors(lr)), 1), B * J * Ho * Wo, dtype=dtype)
    threads = torch.get_num_threads()
    work = torch.empty(threads, (max(len(lr.pairings), 1) + 1) * geo.fan_in, dtype=dtype)
    delta = torch.zeros_like(weight)
    prm = torch.tensor([cr.uniforms[n] for n in lr.uniforms] or [0.0], dtype=torch.float64)
    mods = mods.to(dtype).contiguous()
    lib.snnir_plasticity(_ptr(geometry), _ptr(pre), _ptr(post), _ptr(state["pre"]), _ptr(state["post"]),
                         _ptr(state["synapse"]), _ptr(weight), _ptr(delta), _ptr(mods), _ptr(a_buf), _ptr(b_buf),
                         _ptr(work), _ptr(prm), int(apply), threads)
    return delta


__all__ = ["CompiledRule", "fused_available", "fused_steps", "reference_steps"]

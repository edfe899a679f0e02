"""Torch functions printed from the lowering (``snnir.lowering``): the torch printer.

``step_function(block, dtype)`` is a block printed as Python over a torch namespace: per-step
neuron updates, surrogate functions, integrators all run through it. ``Prologue`` runs a prologue
the one way every backend does: float64 (Python floats through ``math``, tensors as float64 torch
tensors, so learnable parameters keep their autograd graph), before the result is rounded to the
compute type where it is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch

from snnir.lowering import Block, python_function
from snnir.lowering.lower import block_inputs


def _both(fn_tensor: Callable, fn_float: Callable) -> Callable:
    def apply(*args: Any) -> Any:
        if any(isinstance(a, torch.Tensor) for a in args):
            return fn_tensor(*args)
        return fn_float(*args)
    return apply


def _minmax(pick: Callable, clamp_kw: str, builtin: Callable) -> Callable:
    def apply(a: Any, b: Any) -> Any:
        ta, tb = isinstance(a, torch.Tensor), isinstance(b, torch.Tensor)
        if ta and tb:
            return pick(a, b)
        if ta or tb:
            t, s = (a, b) if ta else (b, a)
            return torch.clamp(t, **{clamp_kw: s})
        return builtin(a, b)
    return apply


def _sign(a: float) -> float:
    return math.copysign(1.0, a) if a != 0 else a


def _namespace(dtype: torch.dtype | None) -> SimpleNamespace:
    """Torch operations for tensors, ``math`` for Python floats (float64). ``where`` with two
    number branches gives a tensor of ``dtype`` (so float64 gradients stay float64)."""
    def where(c: Any, a: Any, b: Any) -> Any:
        if not isinstance(c, torch.Tensor):
            return a if c else b
        if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
            a = torch.tensor(a, dtype=dtype or torch.get_default_dtype(), device=c.device)
        return torch.where(c, a, b)

    def logical(fn_tensor: Callable, fn_bool: Callable) -> Callable:
        return _both(fn_tensor, fn_bool)

    f = {name: _both(getattr(torch, name), getattr(math, name)) for name in
         ("exp", "log", "sqrt", "floor", "ceil", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
          "tanh", "erf", "erfc")}
    return SimpleNamespace(
        nan=math.nan, inf=math.inf, **f, abs=_both(torch.abs, abs), sign=_both(torch.sign, _sign),
        sigmoid=_both(torch.sigmoid, lambda a: 1.0 / (1.0 + math.exp(-a))),
        min=_minmax(torch.minimum, "max", min), max=_minmax(torch.maximum, "min", max), where=where,
        and_=logical(torch.logical_and, lambda a, b: a and b), or_=logical(torch.logical_or, lambda a, b: a or b),
        not_=logical(torch.logical_not, lambda a: not a))


NAMESPACES = {None: _namespace(None), torch.float64: _namespace(torch.float64)}


def namespace(dtype: torch.dtype) -> SimpleNamespace:
    if dtype not in NAMESPACES:
        NAMESPACES[dtype] = _namespace(dtype)
    return NAMESPACES[dtype]


def join(*blocks: Block) -> Block:
    """Blocks run one after the other as one block (their temporaries have distinct names)."""
    ops = tuple(op for b in blocks for op in b.ops)
    outputs = tuple(dict.fromkeys(o for b in blocks for o in b.outputs))
    return Block(block_inputs(ops), ops, outputs, frozenset().union(*(b.booleans for b in blocks)))


_FUNCTIONS: dict[tuple, Callable[..., tuple]] = {}


def step_function(block: Block, dtype: torch.dtype, inputs: tuple[str, ...] | None = None,
                  name: str = "step") -> Callable[..., tuple]:
    """``block`` as a torch function of ``inputs`` (default: the block's) returning its outputs.

    Printed and compiled once per block, dtype and signature. Under ``torch.compile`` take the
    functions from objects built beforehand (``Prologue``, ``CompiledEquations``): this cache is
    not traceable."""
    key = (block, dtype, inputs, name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        fn = _FUNCTIONS[key] = python_function(block, namespace(dtype), name, inputs)
    return fn


class Prologue:
    """A prologue compiled for float64 evaluation: raw parameter values -> uniforms."""

    def __init__(self, prologue: Block, uniforms: Sequence[str]) -> None:
        self.block = prologue
        self.uniforms = tuple(uniforms)
        self.fn = step_function(prologue, torch.float64, None, "prologue") if prologue.ops else None

    def __call__(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The uniforms from raw parameter values ``params`` (``p_<name>`` -> float or tensor), in
        float64; tensors stay tensors (float64, differentiable), floats stay floats."""
        out = {}
        if self.fn is not None:
            args = [v.to(torch.float64) if isinstance(v, torch.Tensor) else float(v)
                    for v in (params[n] for n in self.block.inputs)]
            out = dict(zip(self.block.outputs, self.fn(*args)))
        return {n: out[n] if n in out else params[n] for n in self.uniforms}


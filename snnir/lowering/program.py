"""Lowered neuron programs: a model's equations (and their adjoint) as ``Block``s.

``lower_equations(eq)`` gives the forward a backend runs step by step (the torch reference path,
ONNX export); ``lower_step(prog)`` adds what a fused kernel's backward needs (``StepProgram``:
the charged values it keeps, the previous state it recomputes, the adjoint).

Names follow ``StepProgram``: ``x``, ``spike``, ``s_<state>``, ``h_<state>`` (charged value),
``p_<param>`` (``p_sg_<name>`` surrogate parameters, ``p_k_<i>`` hoisted constants), ``g_*``
gradients. Every value that does not change over time (a parameter, a constant such as
``sigmoid(w)``, any operation on those alone) is a *uniform*: the ``prologue`` computes them once
per call from the parameters, in float64, and every backend then rounds them to its compute type
as it does a parameter. Uniforms are scalars or per-neuron arrays; the per-step blocks read them
by name and need not know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from snnir.neurons.adjoint import StepProgram, prefixed_symbols, rename
from snnir.neurons.model import Equations

from .lower import Block, Op, block_inputs, hoist_uniform, lower_assignments

_PREFIX = {"charge": "c", "fire": "f", "reset": "r", "fire_h": "z", "prev_state": "w", "backward": "b"}


@dataclass(frozen=True)
class LoweredEquations:
    """The forward of one neuron configuration (see the module docstring).

    ``params``: runtime parameter names (unprefixed: ``tau``, ``v_threshold``, ``sg_alpha``);
    ``prologue``: ``p_<param>`` -> every non-parameter uniform; ``uniforms``: the names the
    per-step blocks read that do not change over time, in the order kernels take them;
    ``init``: ``p_<param>`` -> ``s_<state>`` initial values; ``charge``: ``x, s_*`` -> ``s_*``
    (charged); ``fire``: charged ``s_*`` -> ``z`` (spike = ``z >= 0``); ``reset``: ``spike, s_*``
    -> ``s_*``.
    """

    model: str
    states: tuple[str, ...]
    params: tuple[str, ...]
    prologue: Block
    uniforms: tuple[str, ...]
    init: Block
    charge: Block
    fire: Block
    reset: Block

    def blocks(self) -> dict[str, Block]:
        """The per-step blocks by name."""
        return {"charge": self.charge, "fire": self.fire, "reset": self.reset}

    def __str__(self) -> str:
        parts = [("prologue", self.prologue), ("init", self.init), *self.blocks().items()]
        return "\n".join(f"## {name}\n{block}" for name, block in parts)


@dataclass(frozen=True)
class LoweredStep(LoweredEquations):
    """``LoweredEquations`` plus a fused kernel's backward (from a ``StepProgram``).

    ``fire_h``: kept ``h_*`` -> ``z`` (the spike recomputed in backward); ``prev_state``: ``h_*``
    and ``spike`` of step t-1 -> ``s_*`` before step t; ``backward``: ``g_spike``, ``g_*``,
    ``h_*``, ``spike`` (and ``x``, ``s_*`` when ``needs_x``/``needs_prev``) -> ``gx``,
    ``gprev_<state>``, ``gp_<learnable>``.
    """

    learnable: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    needs_x: bool = False
    needs_prev: bool = False
    fire_h: Block | None = None
    prev_state: Block | None = None
    backward: Block | None = None

    def blocks(self) -> dict[str, Block]:
        out = super().blocks()
        out.update({k: b for k, b in (("fire_h", self.fire_h), ("prev_state", self.prev_state),
                                       ("backward", self.backward)) if b is not None})
        return out


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _assigned(states: list[str], assignments: list[tuple[str, sp.Expr]]) -> list[str]:
    """The states an ordered list of assignments writes, in state order."""
    targets = {k for k, _ in assignments}
    return [k for k in states if k in targets]


def _state_block(assignments: list[tuple[str, sp.Expr]], states: list[str], who: str, prefix: str) -> Block:
    return lower_assignments(assignments, _assigned(states, assignments), who, prefix)


def _finish(model: str, params: tuple[str, ...], constants: list[tuple[str, sp.Expr]],
            blocks: dict[str, Block]) -> tuple[Block, tuple[str, ...], dict[str, Block]]:
    """Hoist the uniform operations of ``blocks`` into one prologue after the constants."""
    raw = [f"p_{k}" for k in params]
    const_block = lower_assignments(constants, [k for k, _ in constants], model, "k")
    hoisted, blocks = hoist_uniform(blocks, [*raw, *(k for k, _ in constants)])
    uniform = {*raw, *(k for k, _ in constants), *(op.out for op in hoisted)}
    uniforms = tuple(dict.fromkeys(n for b in blocks.values() for n in b.inputs if n in uniform))
    ops = (*const_block.ops, *hoisted)
    prologue = Block(block_inputs(ops), ops, tuple(n for n in uniforms if n not in raw))
    return prologue, uniforms, blocks


@cache
def lower_equations(eq: Equations) -> LoweredEquations:
    """The forward of ``eq`` as blocks (cached: ``Equations`` are immutable)."""
    names = prefixed_symbols(eq)
    who = f"neuron model {eq.model}"
    states = [f"s_{k}" for k in eq.states]
    blocks = {"charge": _state_block([(f"s_{k}", rename(e, names)) for k, e in eq.charge], states, who, "c"),
              "fire": lower_assignments([("z", rename(eq.fire, names))], ["z"], who, "f"),
              "reset": _state_block([(f"s_{k}", rename(e, names)) for k, e in eq.reset], states, who, "r")}
    constants = [(f"p_{k}", rename(e, names)) for k, e in eq.constants]
    prologue, uniforms, blocks = _finish(who, eq.params, constants, blocks)
    init = lower_assignments([(f"s_{k}", rename(e, names)) for k, e in eq.init], states, who, "i")
    return LoweredEquations(eq.model, eq.states, eq.params, prologue, uniforms, init, **blocks)


@cache
def lower_step(prog: StepProgram, eq: Equations) -> LoweredStep:
    """The forward and backward of a fused kernel for ``prog`` (derived from ``eq``)."""
    who = f"neuron model {prog.model}"
    states = [f"s_{k}" for k in prog.states]
    h_of_s = {_sym(f"s_{k}"): _sym(f"h_{k}") for k in prog.states}
    kept_h = {_sym(f"h_{k}") for k in prog.kept}
    blocks = {"charge": _state_block([(f"s_{k}", e) for k, e in prog.charge], states, who, "c"),
              "fire": lower_assignments([("z", prog.fire)], ["z"], who, "f"),
              "reset": _state_block([(f"s_{k}", e) for k, e in prog.reset], states, who, "r"),
              "fire_h": lower_assignments([("z", rename(prog.fire, h_of_s))], ["z"], who, "z")}
    prev = [(f"s_{k}", e) for k, e in prog.prev_state]
    unread = {h for _, e in prev for h in e.free_symbols if h.name.startswith("h_")} - kept_h
    if prog.needs_prev and unread:  # the prev-state recompute only reads kept values (by construction)
        raise AssertionError(f"{who}: previous state reads {sorted(map(str, unread))}, which are not kept")
    blocks["prev_state"] = lower_assignments(prev if prog.needs_prev else [], states if prog.needs_prev else [],
                                             who, "w")
    outs = [name for name, _ in prog.backward if not name.startswith("c_")]
    blocks["backward"] = lower_assignments(prog.backward, outs, who, "b")
    prologue, uniforms, blocks = _finish(who, prog.params, list(prog.constants), blocks)
    init = lower_equations(eq).init
    return LoweredStep(prog.model, prog.states, prog.params, prologue, uniforms, init, blocks["charge"], blocks["fire"],
                       blocks["reset"], learnable=prog.learnable, kept=prog.kept, needs_x=prog.needs_x,
                       needs_prev=prog.needs_prev, fire_h=blocks["fire_h"], prev_state=blocks["prev_state"],
                       backward=blocks["backward"])


def lower_expression(expr: sp.Expr, args: tuple[str, ...], varying: tuple[str, ...], who: str
                     ) -> tuple[Block, tuple[str, ...], Block]:
    """A single expression of ``args`` as ``(prologue, uniforms, body)``: the body computes ``out``
    from the ``varying`` arguments and the uniforms; the prologue computes the uniforms that are
    not arguments (operations on the other arguments alone) once. Used for surrogate functions.
    """
    body = lower_assignments([("out", expr)], ["out"], who, "t")
    fixed = [a for a in args if a not in varying]
    hoisted, blocks = hoist_uniform({"body": body}, fixed)
    body = blocks["body"]
    uniforms = tuple(n for n in body.inputs if n not in varying)
    return Block(block_inputs(hoisted), tuple(hoisted), tuple(n for n in uniforms if n not in fixed)), uniforms, body


__all__ = ["Block", "LoweredEquations", "LoweredStep", "Op", "lower_equations", "lower_expression", "lower_step"]

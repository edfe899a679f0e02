"""One neuron time step and its adjoint (backpropagation through time), derived symbolically.

Given a model's ``Equations``, ``step_program`` returns sympy expressions a backend prints into
a fused kernel:

forward, per step (as in ``Equations``): charge assignments, ``z = fire``, ``spike = H(z)``,
reset assignments.

backward, per step, from the charged values ``h_k`` kept by the forward (and the state before the
step, recomputed from the previous step's ``h`` and spike), with ``g_k = dL/dS_new_k`` coming
from step ``t+1`` and ``g_spike = dL/dspike_t``:

    dsig  = g_spike + sum_k g_k dS_new_k/dspike          (second term dropped if detach_reset)
    gh_j  = sum_k g_k dS_new_k/dh_j + dsig * sg'(z) * dz/dh_j
    gx    = sum_j gh_j dH_j/dx
    gprev_i = sum_j gh_j dH_j/dS_prev_i                   (becomes g for step t-1)
    gP_p += sum_j gh_j dH_j/dP_p + sum_k g_k dS_new_k/dP_p + dsig sg'(z) dz/dP_p   (learnable P)

Only the ``h_k`` the backward reads are kept (LIF keeps one voltage sequence; spikes are
recomputed from it), which is what makes the fused path light on memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from snnir.neurons.model import Equations
from snnir.surrogate import Surrogate


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def rename(expr: sp.Expr, mapping: dict[sp.Symbol, sp.Expr]) -> sp.Expr:
    """``expr.xreplace(mapping)`` without re-evaluation, so the written grouping survives."""
    with sp.evaluate(False):
        return expr.xreplace(mapping)


def prefixed_symbols(eq: Equations) -> dict[sp.Symbol, sp.Symbol]:
    """The renaming of ``eq``'s symbols into names safe to print in any language: ``x``,
    ``spike``, ``s_<state>``, ``p_<param>`` (constants ``k_i`` become ``p_k_i``)."""
    names = {**{k: f"s_{k}" for k in eq.states}, **{k: f"p_{k}" for k in eq.params},
             **{k: f"p_{k}" for k, _ in eq.constants}}
    return {**{_sym(k): _sym(v) for k, v in names.items()}, eq.x: _sym("x"), eq.spike: _sym("spike")}


@dataclass(frozen=True)
class StepProgram:
    """Forward and adjoint of one step, over prefixed symbols safe to print in any language.

    Symbols: ``x`` input, ``s_<k>`` state before the step (and the working variable of the
    forward), ``h_<k>`` charged value, ``p_<name>`` parameters (surrogate ones ``p_sg_<name>``,
    constants ``p_k_<i>``), ``spike``; backward inputs ``g_spike``, ``g_<k>``.
    """

    model: str
    states: tuple[str, ...]
    params: tuple[str, ...]               # runtime parameters: the model's and the surrogate's (sg_<name>)
    constants: tuple[tuple[str, sp.Expr], ...]  # p_k_i <- expression of the p_<param> (hoisted)
    learnable: tuple[str, ...]            # parameters that get gradients
    charge: tuple[tuple[str, sp.Expr], ...]   # sequential: s_k <- expr (forward)
    fire: sp.Expr                         # z as a function of the charged s_k
    reset: tuple[tuple[str, sp.Expr], ...]    # sequential: s_k <- expr(spike, s)
    kept: tuple[str, ...]                 # states whose charged value h_k the backward reads
    prev_state: tuple[tuple[str, sp.Expr], ...]  # s_k before step t, from h(t-1) and spike(t-1)
    needs_x: bool
    needs_prev: bool                      # the backward reads the state before the step
    backward: tuple[tuple[str, sp.Expr], ...]    # gx, gprev_<k>, gp_<name>, with cse temps first


def step_program(eq: Equations, surrogate: type[Surrogate], detach_reset: bool,
                 learnable: tuple[str, ...] = ()) -> StepProgram:
    """Derive the fused step of ``eq`` with ``surrogate``'s derivative (see the module docstring)."""
    states = eq.states
    s = {k: _sym(f"s_{k}") for k in states}
    h = {k: _sym(f"h_{k}") for k in states}
    consts = tuple(k for k, _ in eq.constants)
    p = {k: _sym(f"p_{k}") for k in (*eq.params, *consts)}
    sg_names = tuple(surrogate.params)
    sg = {k: _sym(f"p_sg_{k}") for k in sg_names}
    x, spike = _sym("x"), _sym("spike")
    raw = prefixed_symbols(eq)

    # forward: printed as written, constants as symbols
    charge = tuple((k, rename(e, raw)) for k, e in eq.charge)
    fire = rename(eq.fire, raw)
    reset = tuple((k, rename(e, raw)) for k, e in eq.reset)
    # derivatives see through the constants (a learnable w inside sigmoid(w)), then re-hoist them
    const_exprs = {p[k]: rename(e, raw) for k, e in eq.constants}
    hoist = {e: sym for sym, e in const_exprs.items()}

    def unhoist(e: sp.Expr) -> sp.Expr:
        return e.xreplace(const_exprs)

    # H_k(x, S_prev, P): compose the sequential charge assignments
    current: dict[sp.Symbol, sp.Expr] = {v: v for v in s.values()}
    for k, e in charge:
        current[s[k]] = unhoist(e).xreplace(current)
    H = {k: sp.sympify(current[s[k]]).doit() for k in states}
    # S_new_k(h, spike, P): compose the reset assignments starting from the charged values
    post: dict[sp.Symbol, sp.Expr] = {s[k]: h[k] for k in states}
    for k, e in reset:
        post[s[k]] = unhoist(e).xreplace(post)
    S_new = {k: sp.sympify(post[s[k]]).doit() for k in states}
    z = sp.sympify(unhoist(fire).xreplace({s[k]: h[k] for k in states})).doit()

    g_spike = _sym("g_spike")
    g = {k: _sym(f"g_{k}") for k in states}
    dsig = g_spike if detach_reset else g_spike + sum(g[k] * sp.diff(S_new[k], spike) for k in states)
    sgp = surrogate.derivative_expr().xreplace({_sym(n): sg[n] for n in sg_names}).xreplace({_sym("x"): z})
    gh = {j: sum(g[k] * sp.diff(S_new[k], h[j]) for k in states) + dsig * sgp * sp.diff(z, h[j]) for j in states}
    out: list[tuple[str, sp.Expr]] = [("gx", sum(gh[j] * sp.diff(H[j], x) for j in states))]
    out += [(f"gprev_{i}", sum(gh[j] * sp.diff(H[j], s[i]) for j in states)) for i in states]
    for name in learnable:
        q = p[name]
        grad = (sum(gh[j] * sp.diff(H[j], q) for j in states) + sum(g[k] * sp.diff(S_new[k], q) for k in states)
                + dsig * sgp * sp.diff(z, q))
        out.append((f"gp_{name}", grad))

    out = [(name, e.xreplace(hoist)) for name, e in out]
    free = set().union(*(e.free_symbols for _, e in out))
    needs_prev = bool(free & set(s.values()))
    prev_exprs = tuple((k, S_new[k].xreplace(hoist)) for k in states)
    read = set(free) | z.free_symbols  # the spike is recomputed from h: z's inputs are kept
    if needs_prev:  # S_prev(t) is recomputed from h(t-1) and spike(t-1)
        read |= set().union(*(e.free_symbols for _, e in prev_exprs))
    kept = {k for k in states if h[k] in read}
    temps, reduced = sp.cse([e for _, e in out], symbols=sp.numbered_symbols("c_", real=True), optimizations="basic")
    backward = tuple([(str(t), e) for t, e in temps] + [(name, e) for (name, _), e in zip(out, reduced)])
    constants = tuple((f"p_{k}", rename(e, raw)) for k, e in eq.constants)
    return StepProgram(eq.model, states, (*eq.params, *(f"sg_{k}" for k in sg_names)), constants,
                       tuple(learnable), charge, fire, reset, tuple(k for k in states if k in kept),
                       prev_exprs, x in free, needs_prev, backward)

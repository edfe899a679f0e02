"""Lowered plasticity rules: a rule's step (``RuleEquations``) as ``Block``s.

The synaptic expressions (per-synapse state updates and ``dw``) are first separated into sums of
``coefficient x pre factor x post factor``: each distinct ``(pre factor, post factor)`` pair
becomes a *pairing* ``pair_<k> = sum over positions of a_<k> * b_<k>``, which a backend computes
as a matrix product (linear) or the correlation of unfolded pre patches with post values (conv);
the coefficient, which may read ``w``, per-synapse states and modulators, stays in the synaptic
block. Four blocks, printed by every backend from the same lowering as the neurons:

- ``pre``: ``pre``, ``s_<pre trace>`` -> updated ``s_<pre trace>``, the pre factors ``a_<k>``;
- ``post``: ``post``, ``s_<post trace>`` -> updated ``s_<post trace>``, the post factors ``b_<k>``;
- ``synapse``: ``w``, ``s_<state>``, ``m_<modulator>``, ``pair_<k>``, ``n_samples`` ->
  updated ``s_<state>``, ``dw``. Per sample when the rule is ``batched`` (it has per-synapse
  states or modulators), else once, on pairings summed over the batch too, where a term without
  pairing counts ``n_samples`` times (``dw`` is a sum over samples either way);
- ``apply``: ``w``, ``dw`` (summed) -> ``w = min(max(w + dw, w_min), w_max)``.

Parameters are ``p_<name>``; operations on parameters alone are hoisted into the ``prologue``
(float64, once per call) exactly as for neurons.

Example:
    >>> from snnir.learning import STDP
    >>> lowered = lower_rule(STDP().equations())
    >>> [(p.pre, p.post) for p in lowered.pairings]
    [('a_0', 'b_0'), ('a_1', 'b_1')]
    >>> print(lowered.synapse)
    # in: p_a_plus, pair_0, p_a_minus, pair_1  out: dw
    y0 = mul(p_a_plus, pair_0)
    y1 = mul(p_a_minus, pair_1)
    dw = sub(y0, y1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from snnir.learning.rule import RuleEquations

from .lower import Block, lower_assignments
from .program import _finish
from .table import LoweringError

Factor = str | float  # a block output name, or a literal


@dataclass(frozen=True)
class Pairing:
    """``pair_<k> = sum over positions (and, unbatched, samples) of pre * post`` (names or literals)."""

    pre: Factor
    post: Factor


@dataclass(frozen=True)
class LoweredRule:
    """The blocks of one rule configuration (see the module docstring)."""

    rule: str
    pre_traces: tuple[str, ...]
    post_traces: tuple[str, ...]
    synapse_states: tuple[str, ...]
    modulators: tuple[str, ...]
    params: tuple[str, ...]
    batched: bool
    pairings: tuple[Pairing, ...]
    prologue: Block
    uniforms: tuple[str, ...]
    init: tuple[tuple[str, float], ...]
    pre: Block
    post: Block
    synapse: Block
    apply: Block

    def blocks(self) -> dict[str, Block]:
        return {"pre": self.pre, "post": self.post, "synapse": self.synapse, "apply": self.apply}

    def __str__(self) -> str:
        pairs = ", ".join(f"pair_{k} = sum({p.pre} * {p.post})" for k, p in enumerate(self.pairings))
        parts = [("prologue", self.prologue), *self.blocks().items()]
        return f"## pairings: {pairs or '-'}\n" + "\n".join(f"## {name}\n{block}" for name, block in parts)


def _sym(name: str) -> sp.Symbol:
    return sp.Symbol(name, real=True)


def _flat(e: sp.Basic, cls: type) -> list[sp.Basic]:
    """The operands of nested ``cls`` nodes (unevaluated sums/products nest), in written order."""
    if isinstance(e, cls):
        return [f for a in e.args for f in _flat(a, cls)]
    return [e]


def _product(factors: list[sp.Basic]) -> sp.Basic | None:
    if not factors:
        return None
    return factors[0] if len(factors) == 1 else sp.Mul(*factors, evaluate=False)


class _Separator:
    """Splits synaptic expressions into ``coefficient x pre x post`` terms and numbers the
    distinct ``(pre, post)`` pairs."""

    def __init__(self, eq: RuleEquations) -> None:
        self.who = f"plasticity rule {eq.rule}"
        self.pre = {_sym("pre"), *(_sym(k) for k in eq.pre_traces)}
        self.post = {_sym("post"), *(_sym(k) for k in eq.post_traces)}
        self.synaptic = {_sym("w"), *(_sym(k) for k in (*eq.synapse_states, *eq.modulators))}
        self.pairs: dict[tuple[sp.Basic | None, sp.Basic | None], int] = {}

    def _split(self, term: sp.Basic) -> tuple[list, list, list] | None:
        coef, pre, post = [], [], []
        for f in _flat(term, sp.Mul):
            syms = f.free_symbols
            on_pre, on_post, on_syn = bool(syms & self.pre), bool(syms & self.post), bool(syms & self.synaptic)
            if on_pre + on_post + on_syn > 1:
                return None
            (pre if on_pre else post if on_post else coef).append(f)
        return coef, pre, post

    def _pairing(self, coef: list, pre: sp.Basic | None, post: sp.Basic | None) -> sp.Basic:
        key = (pre, post)
        if key not in self.pairs:
            self.pairs[key] = len(self.pairs)
        return _product([*coef, _sym(f"pair_{self.pairs[key]}")])  # type: ignore[return-value]

    def _term(self, term: sp.Basic, what: str, batched: bool) -> sp.Basic:
        split = self._split(term)
        if split is not None:
            coef, pre, post = split
            if not pre and not post:  # no pairing: once per sample; unbatched, count the samples
                return term if batched else sp.Mul(term, _sym("n_samples"), evaluate=False)
            return self._pairing(coef, _product(pre), _product(post))
        expanded = sp.expand(term)  # (w - x_pre) * post: a product of sums; try it term by term
        parts = [self._split(t) for t in sp.Add.make_args(expanded)] if expanded != term else [None]
        if any(p is None for p in parts):
            raise LoweringError(f"{self.who}: the term {term} of {what} mixes pre-synaptic, post-synaptic and "
                                "per-synapse quantities in one factor. Write it as a sum of products "
                                "(pre factor) * (post factor) * (synapse factor): that is what lets it run as "
                                "a matrix product")
        return sp.Add(*(self._term(t, what, batched) for t in sp.Add.make_args(expanded)), evaluate=False)

    def rewrite(self, expr: sp.Basic, what: str, batched: bool) -> sp.Basic:
        """``expr`` with every pairing replaced by its ``pair_<k>`` symbol; sums keep their
        written nesting (so their order of additions)."""
        if isinstance(expr, sp.Add):
            return sp.Add(*(self.rewrite(a, what, batched) for a in expr.args), evaluate=False)
        return self._term(expr, what, batched)


def _renaming(eq: RuleEquations) -> dict[sp.Symbol, sp.Symbol]:
    names = {**{k: f"s_{k}" for k in (*eq.pre_traces, *eq.post_traces, *eq.synapse_states)},
             **{k: f"m_{k}" for k in eq.modulators}, **{k: f"p_{k}" for k in eq.params}}
    return {_sym(k): _sym(v) for k, v in names.items()}


def _rename(expr: sp.Basic, mapping: dict) -> sp.Basic:
    with sp.evaluate(False):
        return expr.xreplace(mapping)


def _factor(expr: sp.Basic | None, name: str, assignments: list) -> Factor:
    if expr is None:
        return 1.0
    assignments.append((name, expr))
    return name


@cache
def lower_rule(eq: RuleEquations) -> LoweredRule:
    """The blocks of ``eq`` (cached: ``RuleEquations`` are immutable)."""
    who = f"plasticity rule {eq.rule}"
    sep = _Separator(eq)
    batched = eq.batched
    synaptic = [(k, sep.rewrite(e, f"the update of {k!r}", batched)) for k, e in eq.synapse_updates]
    synaptic.append(("dw", sep.rewrite(eq.dw, "dw", batched)))
    names = _renaming(eq)
    pre_assign = [(f"s_{k}", _rename(e, names)) for k, e in eq.trace_updates if k in eq.pre_traces]
    post_assign = [(f"s_{k}", _rename(e, names)) for k, e in eq.trace_updates if k in eq.post_traces]
    pre_out, post_out = [f"s_{k}" for k in eq.pre_traces], [f"s_{k}" for k in eq.post_traces]
    pairings = []
    for (pre, post), k in sep.pairs.items():
        a = _factor(None if pre is None else _rename(pre, names), f"a_{k}", pre_assign)
        b = _factor(None if post is None else _rename(post, names), f"b_{k}", post_assign)
        pairings.append(Pairing(a, b))
    pre_out += [p.pre for p in pairings if isinstance(p.pre, str)]
    post_out += [p.post for p in pairings if isinstance(p.post, str)]
    syn_assign = [(f"s_{k}" if k != "dw" else k, _rename(e, names)) for k, e in synaptic]
    w, dw = _sym("w"), _sym("dw")
    bounded = sp.Min(sp.Max(w + dw, _sym("p_w_min")), _sym("p_w_max"))
    blocks = {"pre": lower_assignments(pre_assign, pre_out, who, "u"),
              "post": lower_assignments(post_assign, post_out, who, "v"),
              "synapse": lower_assignments(syn_assign, [*(f"s_{k}" for k in eq.synapse_states), "dw"], who, "y"),
              "apply": lower_assignments([("w", bounded)], ["w"], who, "z")}
    prologue, uniforms, blocks = _finish(who, eq.params, [], blocks)
    return LoweredRule(eq.rule, eq.pre_traces, eq.post_traces, eq.synapse_states, eq.modulators, eq.params, batched,
                       tuple(pairings), prologue, uniforms, eq.init, **blocks)


__all__ = ["LoweredRule", "Pairing", "lower_rule"]

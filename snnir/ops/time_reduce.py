"""``time_reduce``: a reduction over the time axis (``x.mean(0)`` / ``x.sum(0)`` on ``[T, N, ...]``).

The graph runs one step at a time, so a reduction over time is a stateful op whose output at
step ``t`` is the reduction over the steps seen so far::

    s[t] = s[t-1] + x[t]            (s[-1] = 0; state ``sum``)
    y[t] = s[t] / (t + 1)   (mode "mean", the step count is state ``count``)
    y[t] = s[t]             (mode "sum")

Its value at the final step is the model's result. The nodes reading it (with offset-0 edges)
and everything computed from them form the graph's *final-step* part: per step they compute on
the running value (what a streaming, single-step run returns), and a whole-sequence run needs
them once, at the final step, so a compiled multi-step module returns ``[N, ...]`` for an output
there, as the traced model did (``head(x.mean(0))``). ``check_time_reductions`` states what is
legal after a reduction over time, and ``final_step_nodes`` which nodes those are.

Example:
    >>> import snnir
    >>> g = snnir.Graph(); x = g.add_input((3,))
    >>> s = g.add_node("neuron", [x], attrs={"model": "IF"})
    >>> r = g.add_node("time_reduce", [s], attrs={"mode": "mean"}, id="rate")
    >>> out = g.add_output(g.add_node("scale", [r], attrs={"factor": 2.0}, id="head"))
    >>> sorted(g.validate().final_step_nodes())
    ['head', 'output']
"""

from __future__ import annotations

from typing import Any

from snnir.errors import TimeReductionError
from snnir.ops.registry import OpSpec, Shape, register_op
from snnir.ops.rules import Rule, declare_rules

MODES = ("mean", "sum")


def _shape(attrs: dict[str, Any], params: dict, in_shapes: list[Shape]) -> Shape:
    return in_shapes[0]


def _state(attrs: dict[str, Any], shape: Shape, in_shape: Shape) -> dict[str, Shape]:
    # the count is per sample and broadcasts against the sum (all size-1 axes)
    return {"sum": shape, "count": (1,) * len(shape)} if attrs["mode"] == "mean" else {"sum": shape}


register_op(OpSpec("time_reduce", _shape, attrs={"mode": "mean"}, state=_state,
                   doc="Reduction over time steps so far: s[t] = s[t-1] + x[t]; y = s / (t+1) (mean) or s (sum). "
                       "Nodes after it are evaluated at the final step by whole-sequence runs."))
declare_rules("time_reduce", {"mode": Rule(f"one of {MODES}", lambda v: v in MODES)})


def _describe(g: Any, node_id: str) -> str:
    node = g.node(node_id)
    return f"{node_id!r} ({node.op}" + (f":{node.attrs['model']}" if node.op == "neuron" else "") + ")"


def final_step_nodes(g: Any) -> set[str]:
    """Nodes downstream of a ``time_reduce`` (the reductions themselves excluded): their values
    are wanted at the final step only. Follows every edge; ``check_time_reductions`` refuses the
    graphs where that is not a closed, stateless part."""
    reducers = [n.id for n in g if n.op == "time_reduce"]
    found: set[str] = set()
    stack = [v for r in reducers for v in g.successors(r)]
    while stack:
        n = stack.pop()
        if n not in found:
            found.add(n)
            stack.extend(g.successors(n))
    return found


def _time_varying(g: Any, after: set[str]) -> set[str]:
    """Nodes whose value changes from step to step (reachable from an input), outside ``after``
    and the reductions themselves."""
    seen: set[str] = set()
    stack = list(g.inputs)
    while stack:
        n = stack.pop()
        if n not in seen and n not in after:
            seen.add(n)
            stack.extend(g.successors(n))
    return seen


def check_time_reductions(g: Any) -> set[str]:
    """Check what follows each ``time_reduce`` and return ``final_step_nodes(g)``.

    After a reduction over time only stateless ops may follow (a head ``linear``, ``softmax``,
    ...): a stateful op (a neuron, a filter, a second reduction over time) would need the reduced
    value at every step, but the model computes it once, from all steps. The part after a
    reduction may read other values only if they do not change over time (constants), and no
    edge into or out of it may read the previous step.
    """
    after = final_step_nodes(g)
    if not after:
        return after
    reducers = {n.id for n in g if n.op == "time_reduce"}
    varying = _time_varying(g, after) - reducers
    for node_id in sorted(after):
        source = _reducer_of(g, node_id, reducers)
        for e in g.in_edges(node_id):
            if e.offset:
                raise TimeReductionError(
                    f"node {_describe(g, node_id)} runs after the reduction over time {source!r} and reads "
                    f"{e.src!r} with time offset 1; after a reduction over time there is no previous step to read")
    for node_id in sorted(after):
        node = g.node(node_id)
        source = _reducer_of(g, node_id, reducers)
        where = f"node {_describe(g, node_id)}"
        if node.op == "time_reduce":
            raise TimeReductionError(
                f"{where} reduces over time a value already reduced over time by {source!r}: after a reduction "
                "over time there is one value per sample, no time axis left to reduce")
        if node.stateful:
            raise TimeReductionError(
                f"{where} is stateful but runs after the reduction over time {source!r}, which produces its value "
                "once, from all steps; only stateless ops (e.g. a head linear) may follow a reduction over time. "
                "Move the reduction after the last stateful node")
        for e in g.in_edges(node_id):
            if e.src in varying:
                raise TimeReductionError(
                    f"{where} combines the reduction over time {source!r} with {e.src!r}, a value of every time "
                    "step; the reduced value exists once per sequence, so it cannot be mixed with per-step values "
                    "(reduce both over time)")
    return after


def _reducer_of(g: Any, node_id: str, reducers: set[str]) -> str:
    """The (first) ``time_reduce`` upstream of ``node_id``, for messages."""
    stack, seen = [node_id], set()
    while stack:
        n = stack.pop()
        for p in g.predecessors(n):
            if p in reducers:
                return p
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return "?"


def final_step_outputs(g: Any) -> list[str]:
    """The graph outputs taken at the final step only (after a reduction over time)."""
    after = final_step_nodes(g)
    return [o for o in g.outputs if o in after]


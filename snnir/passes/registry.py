"""Pass registry: a pass is a function ``Graph -> Graph`` that returns a new graph."""

from __future__ import annotations

from collections.abc import Callable

from snnir.graph import Graph

Pass = Callable[[Graph], Graph]
_PASSES: dict[str, Pass] = {}


def register_pass(name: str) -> Callable[[Pass], Pass]:
    """Register ``fn`` as pass ``name`` (usable in ``snnir.optimize(g, passes=[name])``)."""
    def wrap(fn: Pass) -> Pass:
        _PASSES[name] = fn
        return fn
    return wrap


def get_pass(name: str) -> Pass:
    try:
        return _PASSES[name]
    except KeyError:
        raise ValueError(f"unknown pass {name!r}; registered: {', '.join(sorted(_PASSES))}") from None


def registered_passes() -> list[str]:
    return sorted(_PASSES)

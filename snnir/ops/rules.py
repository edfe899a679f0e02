"""Types and valid ranges of op attributes and parameter arrays, declared as data.

The registry (``registry.py``) says which attributes an op takes and their defaults; this table
says what values make sense, so a graph built in code or read from a file is refused with the
node, the attribute and the valid range named before shape inference or a backend divides by a
zero stride. An op without an entry gets the generic checks only (JSON-able, finite); a new op
declares its rules with ``declare_rules``. Neuron parameters are declared on the neuron models
(``NeuronModel.ranges``).

Example:
    >>> import snnir, numpy as np
    >>> g = snnir.Graph(); x = g.add_input((1, 8))
    >>> try:
    ...     g.add_node("conv1d", [x], attrs={"stride": 0}, params={"weight": np.ones((1, 1, 3), np.float32)})
    ... except snnir.GraphError as e:
    ...     print(e)
    node 'conv1d' (conv1d): attribute stride=0 is out of range: expected an int >= 1 or a tuple of 1 such ints
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from snnir.errors import GraphError

MAX_INT = 2**31 - 1  # sizes, strides, steps: what every backend indexes with 32-bit ints
MAX_RANK = 8


@dataclass(frozen=True)
class Rule:
    """A check of one value: ``problem(value)`` is ``None`` when valid, else what was expected."""

    describe: str
    test: Callable[[Any], bool]

    def problem(self, value: Any) -> str | None:
        try:
            ok = self.test(value)
        except (TypeError, ValueError, OverflowError):
            ok = False
        return None if ok else self.describe


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def Int(lo: int = -MAX_INT, hi: int = MAX_INT) -> Rule:
    return Rule(f"an int in [{lo}, {hi}]" if lo > -MAX_INT and hi < MAX_INT else
                f"an int >= {lo}" if lo > -MAX_INT else "an int", lambda v: _is_int(v) and lo <= v <= hi)


FLOAT32_MAX = 3.4028234663852886e38  # backends compute in float32: larger values become inf


def Float(lo: float = -FLOAT32_MAX, hi: float = FLOAT32_MAX, lo_open: bool = False) -> Rule:
    op = ">" if lo_open else ">="
    if lo > -FLOAT32_MAX and hi < FLOAT32_MAX:
        text = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    elif lo > -FLOAT32_MAX:
        text = f"a number {op} {lo:g} (and within float32's range)"
    else:
        text = "a finite number within float32's range"
    return Rule(text, lambda v: _is_num(v) and (v > lo if lo_open else v >= lo) and v <= hi)


BOOL = Rule("True or False", lambda v: isinstance(v, bool))


def Ints(n: int | None, lo: int = 0) -> Rule:
    """An int, or a tuple of ``n`` ints (any length up to MAX_RANK when ``n`` is None), each >= lo."""
    each = Int(lo)
    count = f"{n} such ints" if n is not None else "such ints"

    def test(v: Any) -> bool:
        if _is_int(v):
            return n is not None and each.problem(v) is None
        return (isinstance(v, (tuple, list)) and (len(v) == n if n is not None else len(v) <= MAX_RANK)
                and all(each.problem(x) is None for x in v))

    return Rule(f"{each.describe} or a tuple of {count}", test)


def Shape() -> Rule:
    return Rule(f"a tuple of at most {MAX_RANK} ints >= 1",
                lambda v: isinstance(v, (tuple, list)) and len(v) <= MAX_RANK and all(Int(1).problem(x) is None
                                                                                    for x in v))


def Optional(rule: Rule) -> Rule:
    return Rule(f"None or {rule.describe}", lambda v: v is None or rule.problem(v) is None)


def _quant_ok(q: Any) -> bool:
    if q is None:
        return True
    if not isinstance(q, dict) or set(q) != {"bits", "scale", "per_channel", "power_of_two"}:
        return False
    scale = q["scale"] if isinstance(q["scale"], (list, tuple)) else [q["scale"]]
    return (q["bits"] in (2, 3, 4, 5, 6, 7, 8, 16) and not isinstance(q["bits"], bool)
            and isinstance(q["per_channel"], bool) and isinstance(q["power_of_two"], bool)
            and len(scale) >= 1 and all(_is_num(s) and s > 0 for s in scale))


QUANT = Rule("None or {'bits': 2..8 or 16, 'scale': positive number(s), 'per_channel': bool, "
             "'power_of_two': bool}", _quant_ok)

# --- the table ---------------------------------------------------------------------------------------
# op -> attribute -> rule
ATTRS: dict[str, dict[str, Rule]] = {
    "input": {"shape": Shape()},
    "linear": {"quant": QUANT},
    "batchnorm": {"eps": Float(0.0, lo_open=True), "momentum": Optional(Float(0.0, 1.0))},
    "flatten": {"start": Int(-MAX_RANK, MAX_RANK), "end": Int(-MAX_RANK, MAX_RANK)},
    "dropout": {"p": Float(0.0, 1.0), "channelwise": BOOL},
    "cat": {"axis": Int(-MAX_RANK, MAX_RANK)},
    "scale": {"factor": Float()},
    "clip": {"min": Optional(Float()), "max": Optional(Float())},
    "delay": {"steps": Int(1)},
    "synapse_filter": {"tau": Float(1.0)},
}
for _n in (1, 2):
    ATTRS[f"conv{_n}d"] = {"stride": Ints(_n, 1), "padding": Ints(_n, 0), "dilation": Ints(_n, 1),
                           "groups": Int(1), "quant": QUANT}
    ATTRS[f"maxpool{_n}d"] = {"kernel_size": Ints(_n, 1), "stride": Optional(Ints(_n, 1)), "padding": Ints(_n, 0),
                              "dilation": Ints(_n, 1), "ceil_mode": BOOL}
    ATTRS[f"avgpool{_n}d"] = {"kernel_size": Ints(_n, 1), "stride": Optional(Ints(_n, 1)), "padding": Ints(_n, 0),
                              "ceil_mode": BOOL, "count_include_pad": BOOL}
    ATTRS[f"adaptive_avgpool{_n}d"] = {"output_size": Ints(_n, 1)}
ATTRS["spiking_maxpool2d"] = dict(ATTRS["maxpool2d"])

# op -> param -> allowed ranks (numbers of axes)
PARAM_RANKS: dict[str, dict[str, tuple[int, ...]]] = {
    "linear": {"weight": (2,), "bias": (1,)},
    "conv1d": {"weight": (3,), "bias": (1,)},
    "conv2d": {"weight": (4,), "bias": (1,)},
    "batchnorm": {"running_mean": (1,), "running_var": (1,), "weight": (1,), "bias": (1,)},
    "affine": {"weight": (0, 1), "bias": (0, 1)},
}


def _pool_padding(attrs: dict[str, Any]) -> str | None:
    """torch (and ONNX runtimes) refuse a pooling pad above half the (dilated) kernel."""
    n = 2 if isinstance(attrs["kernel_size"], (tuple, list)) and len(attrs["kernel_size"]) == 2 else 1
    k = attrs["kernel_size"] if not _is_int(attrs["kernel_size"]) else (attrs["kernel_size"],) * n
    pad = attrs["padding"] if not _is_int(attrs["padding"]) else (attrs["padding"],) * len(k)
    dil = attrs.get("dilation", 1)
    dil = dil if not _is_int(dil) else (dil,) * len(k)
    if any(p > (d * (kk - 1) + 1) // 2 for p, kk, d in zip(pad, k, dil)):
        return f"padding {attrs['padding']} must be at most half the kernel size {attrs['kernel_size']}"
    return None


def _clip_order(attrs: dict[str, Any]) -> str | None:
    lo, hi = attrs["min"], attrs["max"]
    if lo is not None and hi is not None and lo > hi:
        return f"min {lo} is above max {hi}"
    return None


# op -> checks across attributes (each returns a problem or None)
CROSS: dict[str, list[Callable[[dict[str, Any]], str | None]]] = {
    **{op: [_pool_padding] for n in (1, 2) for op in (f"maxpool{n}d", f"avgpool{n}d")},
    "spiking_maxpool2d": [_pool_padding],
    "clip": [_clip_order],
}


def declare_rules(op: str, attrs: dict[str, Rule] | None = None, param_ranks: dict[str, tuple[int, ...]] | None = None,
                  cross: list[Callable[[dict[str, Any]], str | None]] | None = None) -> None:
    """Declare (or extend) the valid values of ``op``'s attributes and the ranks of its params."""
    ATTRS.setdefault(op, {}).update(attrs or {})
    PARAM_RANKS.setdefault(op, {}).update(param_ranks or {})
    CROSS.setdefault(op, []).extend(cross or [])


def check_attrs(op: str, attrs: dict[str, Any]) -> None:
    """Raise ``GraphError`` naming the first attribute of ``op`` outside its declared range."""
    for name, rule in ATTRS.get(op, {}).items():
        if name in attrs:
            problem = rule.problem(attrs[name])
            if problem is not None:
                raise GraphError(f"attribute {name}={_short(attrs[name])} is out of range: expected {problem}")
    for check in CROSS.get(op, []):
        problem = check(attrs)
        if problem is not None:
            raise GraphError(problem)


def check_param_ranks(op: str, params: dict[str, Any]) -> None:
    """Raise ``GraphError`` if a parameter array of ``op`` has a rank the op does not take."""
    for name, ranks in PARAM_RANKS.get(op, {}).items():
        if name in params and params[name].ndim not in ranks:
            raise GraphError(f"param {name!r} has shape {params[name].shape}; {op} takes "
                             f"{' or '.join(str(r) for r in ranks)}-axis arrays")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

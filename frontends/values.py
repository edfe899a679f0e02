"""What a traced tensor is in IR terms, and the context that function mappers emit nodes through.

A traced tensor (``Value``) is an IR node's per-sample output plus its *lead*: the time/batch axes
the model's code sees around the sample, by name. ``("T", "N")`` is a multi-step tensor
``[T, N, ...]``, ``("N",)`` a single step ``[N, ...]``, ``("T*N",)`` the two merged
(``x.flatten(0, 1)``, as SpikingJelly's ``SeqToANNContainer`` does), and ``()`` a constant (a
parameter or buffer the model reads), which has no batch axis. ``pos`` says where the lead sits:
after how many per-sample axes (0 unless a ``permute`` moved the batch behind some, as attention
code does with ``qkv.permute(2, 0, 3, 1, 4)`` before ``q, k, v = qkv[0], qkv[1], qkv[2]``).
The IR holds per-sample shapes only, so an op that moves data between the lead and the sample (a
reshape that merges the batch into features, a softmax over time) has no IR form and is refused
by name. A mean or sum over the time axis is the exception: it becomes a ``time_reduce`` node (a
running reduction whose final step is the model's value) and leaves a value with lead ``("N",)``.

``fold`` (the ONNX importer's) says how many per-sample axes share one model axis with the batch:
``(1, 0)`` on shape ``(L, E)`` with ``pos=1`` is ``[L*N, E]``, ``(0, 1)`` on ``(H, L, d)`` with
``pos=0`` is ``[N*H, L, d]`` (torch's multi-head attention folds heads into the batch that way).
Such a value is still per-sample data in the IR; only ops over the folded axis are refused.

The tracer hands the model concrete shapes: ``x.shape`` is ``(T, N, *sample)`` with the lead sizes
as ``LeadDim`` ints that remember which axis they came from, so ``x.view(x.shape[0], -1)`` and
``T, N, C, L = x.shape; x.reshape(T, N, 3, h, C // 3 // h, L)`` resolve without guessing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from snnir.errors import GraphError, ShapeError, SnnirError, TraceError
from snnir.graph import Graph
from snnir.ops.tensor import broadcast_shapes

LEAD_AXES = {"T": "time", "N": "batch", "T*N": "time*batch"}
_CONSTANT_GROWTH = 1 << 16  # elements a computation on constants may make beyond its inputs


def lead_words(lead: tuple[str, ...]) -> str:
    """``("T", "N")`` -> ``"time and batch axes"``, ``("N",)`` -> ``"batch axis"``."""
    return " and ".join(LEAD_AXES[n] for n in lead) + (" axes" if len(lead) > 1 else " axis")


class LeadDim(int):
    """A leading (time or batch) size as the traced model reads it from ``x.shape``; ``name`` says
    which. Arithmetic on it gives plain ints (the reshape resolver then matches sizes)."""

    name: str

    def __new__(cls, value: int, name: str) -> LeadDim:
        obj = super().__new__(cls, value)
        obj.name = name
        return obj

    def __repr__(self) -> str:
        return f"{self.name}={int(self)}"


class TracedShape(tuple):
    """``x.shape`` during tracing: a tuple of ints (lead sizes are ``LeadDim``s), like ``torch.Size``."""

    def numel(self) -> int:
        return math.prod(self)


@dataclass(frozen=True)
class Value:
    """A traced tensor: ``lead`` axes (names) + per-sample ``shape``; an IR ``node`` or a ``const``.
    The model sees ``shape[:pos] + lead + shape[pos:]``, where ``fold = (before, after)`` per-sample
    axes next to the lead (0 or 1 each) are merged with it into one axis."""

    lead: tuple[str, ...]
    shape: tuple[int, ...]
    node: str | None = None
    const: np.ndarray | None = None
    pos: int = 0
    fold: tuple[int, int] = (0, 0)

    def moved(self, pos: int) -> Value:
        return Value(self.lead, self.shape, self.node, self.const, pos, self.fold)

    def with_fold(self, fold: tuple[int, int]) -> Value:
        return Value(self.lead, self.shape, self.node, self.const, self.pos, tuple(fold))

    @property
    def lead_dim(self) -> int:
        """The model-view dim of the (first) lead axis, folded axes merged."""
        return self.pos - self.fold[0]

    @property
    def is_const(self) -> bool:
        return self.node is None

    @property
    def rank(self) -> int:
        """The rank the model's code sees (lead axes included, folded axes merged)."""
        return len(self.lead) + len(self.shape) - sum(self.fold)


def constant(array: Any) -> Value:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.float32)
    elif a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    return Value((), tuple(a.shape), None, a)


class TraceContext:
    """Emits IR nodes for one traced call; errors name the fx node (``where``)."""

    def __init__(self, g: Graph, sizes: dict[str, int], error: type[SnnirError] = TraceError,
                 invalid: type[SnnirError] = TraceError) -> None:
        # error: what cannot be mapped; invalid: what is malformed (an ONNX file's bad shapes)
        self.g, self.sizes, self.error_type, self.invalid_type = g, sizes, error, invalid
        self.where = ""
        self.name = "node"  # id base of the nodes the current call emits
        self.offset = 1  # lead length of the current module's input (for module mappers)
        self.target: object = None  # the function or method name being mapped
        self.label = ""  # its name, for messages
        self.inputs: list = []  # a module mapper's inputs (Values) and keyword arguments
        self.kwargs: dict = {}

    def error(self, msg: str) -> SnnirError:
        return self.error_type(f"{self.where}: {msg}")

    # --- sizes -------------------------------------------------------------------------------------
    def lead_sizes(self, lead: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(self.sizes["T"] * self.sizes["N"] if n == "T*N" else self.sizes[n] for n in lead)

    def traced_shape(self, v: Value) -> TracedShape:
        lead = tuple(LeadDim(s, n) for s, n in zip(self.lead_sizes(v.lead), v.lead))
        return TracedShape((*v.shape[:v.pos], *lead, *v.shape[v.pos:]))

    def axis(self, v: Value, dim: int, what: str) -> int:
        """The per-sample axis (>= 0) of torch ``dim`` on ``v``; lead axes are refused."""
        if not isinstance(dim, int):
            raise self.error(f"{what}: dim must be an int, got {dim!r}")
        if not -v.rank <= dim < v.rank:
            raise self.error(f"{what}: dim {dim} is out of range for a tensor of rank {v.rank}")
        dim %= v.rank
        if dim < v.lead_dim:
            return dim
        if any(v.fold) and dim == v.lead_dim:
            raise self.error(f"{what} over dim {dim} of {self._describe(v)}: that axis holds the batch folded "
                             "with per-sample axes; snnir ops act per sample, so only reshapes that keep the "
                             "batch whole, transposes and ops over other axes can use it")
        if dim < v.lead_dim + len(v.lead):
            if v.lead[dim - v.pos] == "T":
                raise self.error(f"{what} over dim {dim} works across time steps, but a graph runs one step at a "
                                 "time; of the ops over the time axis only a mean or sum (x.mean(0), x.sum(0)) has "
                                 "an IR form (time_reduce). Trace the per-step computation and do the rest on the "
                                 "compiled module's [T, N, ...] output")
            axes = lead_words(v.lead)
            raise self.error(f"{what} over dim {dim} touches the {axes}; snnir ops act per sample, the time and "
                             "batch axes cannot be reduced, moved or mixed with the sample's")
        return dim - len(v.lead) + sum(v.fold)

    def is_time_dim(self, v: Value, dim: Any) -> bool:
        """Whether torch ``dim`` of ``v`` is its time axis (``T`` alone, not merged with the batch)."""
        if not isinstance(dim, int) or isinstance(dim, bool) or not -v.rank <= dim < v.rank:
            return False
        i = dim % v.rank - v.pos
        return 0 <= i < len(v.lead) and v.lead[i] == "T"

    def folded(self, what: str, out_shape: tuple[int, ...], *inputs: np.ndarray) -> None:
        """Refuse computing a constant larger than its inputs allow (broadcasting, products): a file
        could otherwise make the importer allocate gigabytes."""
        size, bound = math.prod(out_shape), max(sum(a.size for a in inputs), _CONSTANT_GROWTH)
        if size > bound:
            raise self.error(f"{what} of constants would make {size} values (shape {tuple(out_shape)})")

    # --- nodes -------------------------------------------------------------------------------------
    def node(self, v: Value) -> str:
        """The IR node holding ``v``; a constant becomes a ``constant`` node on first use."""
        if v.node is not None:
            return v.node
        return self.g.add_node("constant", [], params={"value": np.asarray(v.const, np.float32)},
                               id=self.g._new_id(f"{self.name}_const"))

    def emit(self, op: str, inputs: list[Value], attrs: dict | None = None, params: dict | None = None,
             lead: tuple[str, ...] | None = None, suffix: str = "", pos: int | None = None) -> Value:
        """Add node ``op`` fed by ``inputs``; returns its ``Value`` (lead and pos: the first tensor
        input's unless given)."""
        first = next((v for v in inputs if not v.is_const), None)
        if lead is None:
            lead = first.lead if first is not None else ()
        if pos is None:
            pos = first.pos if first is not None else 0
        fold = first.fold if first is not None else (0, 0)
        ids = [self.node(v) for v in inputs]
        try:
            node_id = self.g.add_node(op, ids, attrs=attrs, params=params, id=self.g._new_id(self.name + suffix))
        except GraphError as e:
            raise self.invalid_type(f"{self.where}: {e}") from None
        node = self.g.node(node_id)
        try:
            shape = tuple(int(d) for d in node.spec.infer_shape(node.attrs, node.params, [v.shape for v in inputs]))
        except (ShapeError, GraphError) as e:
            self.g.remove_node(node_id)
            raise self.invalid_type(f"{self.where}: {op}: {e}") from None
        return Value(lead, shape, node_id, None, min(pos, len(shape)), fold)

    def reshape(self, v: Value, shape: tuple[int, ...], suffix: str = "_reshape", pos: int | None = None) -> Value:
        """``v`` with per-sample ``shape`` (no node when nothing changes; a constant is reshaped);
        ``pos``: where the lead sits afterwards (default: where it was)."""
        shape = tuple(int(s) for s in shape)
        pos = v.pos if pos is None else pos
        if v.is_const:
            return Value((), shape, None, np.asarray(v.const).reshape(shape))
        if shape == v.shape:
            return v.moved(pos)
        flat = _as_flatten(v.shape, shape)
        if flat is not None:
            return self.emit("flatten", [v], {"start": flat[0], "end": flat[1]}, suffix=suffix, pos=pos)
        return self.emit("reshape", [v], {"shape": shape}, suffix=suffix, pos=pos)

    # --- broadcasting ------------------------------------------------------------------------------
    def sample_of_const(self, c: Value, ref: Value) -> Value:
        """Constant ``c`` as torch broadcasts it against tensor ``ref``: right-aligned on the model's
        view, the axes that fall on the lead dropped (they must be size 1), then padded with size-1
        axes to ``ref``'s per-sample rank."""
        a = np.asarray(c.const)
        view_rank = ref.rank
        if a.ndim > view_rank:
            raise self.error(f"a constant of shape {a.shape} broadcast against {self._describe(ref)} would add "
                             "leading axes")
        start = view_rank - a.ndim  # the model-view dim of a's axis 0
        lead_dims = set(range(ref.lead_dim, ref.lead_dim + len(ref.lead)))
        on_lead = [j for j in range(a.ndim) if start + j in lead_dims]
        if any(a.shape[j] != 1 for j in on_lead):
            raise self.error(f"a constant of shape {a.shape} varies along the {lead_words(ref.lead)}; constants "
                             "are per sample")
        # the folded sample axes (merged with the lead) see size 1
        shape = [[1] * sum(ref.fold) if j in on_lead else [d] for j, d in enumerate(a.shape)]
        a = a.reshape([d for ds in shape for d in ds])
        a = a.reshape((1,) * (len(ref.shape) - a.ndim) + a.shape)
        return Value((), tuple(a.shape), None, a)

    def align(self, values: list[Value], what: str) -> tuple[list[Value], Value | None]:
        """Inputs of a broadcasting op as per-sample values of one rank; returns them and the tensor
        whose layout the result has (None if all are constants). Tensors must share their layout."""
        tensors = [v for v in values if not v.is_const]
        if not tensors:
            rank = max(len(v.shape) for v in values)
            return [self.reshape(v, (1,) * (rank - len(v.shape)) + v.shape) for v in values], None
        ref = tensors[0]
        for v in tensors[1:]:
            if ("T" in v.lead) != ("T" in ref.lead):
                timed, reduced = (v, ref) if "T" in v.lead else (ref, v)
                raise self.error(f"{what} of {self._describe(reduced)} and {self._describe(timed)}: one was "
                                 "reduced over time (x.mean(0)), the other has a value per time step; broadcasting "
                                 "them needs all steps at once. Reduce both over time, or combine them before "
                                 "the reduction")
            if (v.lead, v.pos, len(v.shape), v.fold) != (ref.lead, ref.pos, len(ref.shape), ref.fold):
                raise self.error(f"{what} of {self._describe(ref)} and {self._describe(v)}: torch would broadcast "
                                 f"the {lead_words(ref.lead)} against per-sample axes; give both one layout")
        return [self.sample_of_const(v, ref) if v.is_const else v for v in values], ref

    # --- reshape resolution ------------------------------------------------------------------------
    def split_target(self, v: Value, target: list[Any], what: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """``(lead, per-sample shape)`` of ``v`` viewed as ``target`` (torch sizes, one may be -1)."""
        if v.pos:
            raise self.error(f"{what} of {self._describe(v)} whose {lead_words(v.lead)} is not in front; "
                             "permute it back first")
        lead_sizes = self.lead_sizes(v.lead)
        lead_numel = math.prod(lead_sizes)
        total = lead_numel * math.prod(v.shape)
        dims = [int(d) if isinstance(d, (int, np.integer)) else d for d in target]
        if any(not isinstance(d, int) or (d < 0 and d != -1) for d in dims) or dims.count(-1) > 1:
            raise self.error(f"{what} to {tuple(target)}: sizes must be ints, at most one -1")
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            if known == 0 or total % known:
                raise self.error(f"{what}: cannot view {self._describe(v)} as {tuple(target)}")
            dims[dims.index(-1)] = total // known
        if math.prod(dims) != total:
            raise self.error(f"{what}: cannot view {self._describe(v)} ({total} values) as {tuple(target)}")
        tagged = [i for i, d in enumerate(target) if isinstance(d, LeadDim)]
        if tagged:
            k = tagged[-1] + 1
        else:
            k = next((i for i in range(1, len(dims) + 1) if math.prod(dims[:i]) == lead_numel), None)
        if not v.lead:  # a constant: no lead to keep
            return (), tuple(dims)
        if k is None or math.prod(dims[:k]) != lead_numel:
            raise self.error(f"{what} to {tuple(target)} mixes the {lead_words(v.lead)} "
                             f"({'x'.join(map(str, lead_sizes))}) with per-sample axes; snnir shapes are per "
                             "sample, so keep the leading axes as they are")
        names = [target[i].name for i in range(k) if isinstance(target[i], LeadDim)]
        if k == len(v.lead) and tuple(dims[:k]) == lead_sizes and (not names or tuple(names) == v.lead):
            lead = v.lead
        elif k == 1 and v.lead in (("T", "N"), ("T*N",)):
            lead = ("T*N",)
        elif k == 2 and v.lead == ("T*N",) and tuple(dims[:2]) == self.lead_sizes(("T", "N")) \
                and names in ([], ["T", "N"]):
            lead = ("T", "N")
        else:
            raise self.error(f"{what} to {tuple(target)} reorders the {lead_words(v.lead)}")
        return lead, tuple(dims[k:])

    def _describe(self, v: Value) -> str:
        if any(v.fold):
            before, after = v.shape[:v.lead_dim], v.shape[v.pos + v.fold[1]:]
            merged = "*".join([*map(str, v.shape[v.lead_dim:v.pos]), *v.lead,
                               *map(str, v.shape[v.pos:v.pos + v.fold[1]])])
            return f"a tensor of shape ({', '.join([*map(str, before), merged, *map(str, after)])})"
        return f"a tensor of shape {tuple(self.traced_shape(v))}"


# --- builders shared by the torch tracer and the ONNX importer --------------------------------------
class Results(tuple):
    """Several results (``chunk``, ``split``, attention weights): each is emitted on first use, so
    an ignored piece leaves no node behind."""

    def __new__(cls, makers: list[Callable[[], Value | None]]) -> Results:
        obj = super().__new__(cls, makers)
        obj._done = {}
        return obj

    def get(self, i: int) -> Value | None:
        i = operator.index(i) % len(self)
        if i not in self._done:
            self._done[i] = tuple.__getitem__(self, i)()
        return self._done[i]


def _is_number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _is_power_of_two(c: float) -> bool:
    m, _ = math.frexp(c)
    return c != 0 and abs(m) == 0.5


def _per_channel(ctx: TraceContext, c: Value, x: Value) -> np.ndarray | None:
    """``c`` as one value per channel (axis 0 of ``x``'s sample), if that is all it is."""
    a = np.asarray(ctx.sample_of_const(c, x).const)
    if not x.shape or a.shape[0] != x.shape[0] or any(d != 1 for d in a.shape[1:]):
        return None
    return a.reshape(-1).astype(np.float32)


def _as_number(v: Any, other: Any) -> Any:
    """A one-element constant that does not widen the other operand is a number."""
    if isinstance(v, Value) and v.is_const and v.const.size == 1 and isinstance(other, Value) \
            and not other.is_const and v.const.ndim <= other.rank:
        return float(np.asarray(v.const).reshape(()))
    return v


def arith(ctx: TraceContext, kind: str, a: Any, b: Any) -> Value:
    """``a <kind> b`` for tensors and numbers (scale/affine for numbers and per-channel constants)."""
    for v in (a, b):
        if not isinstance(v, Value) and not _is_number(v):
            raise ctx.error(f"{kind} with {type(v).__name__} {v!r} is not supported")
    if not any(isinstance(v, Value) and not v.is_const for v in (a, b)):  # constants and numbers: numpy
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[kind]
        x, y = (np.asarray(v.const if isinstance(v, Value) else v) for v in (a, b))
        ctx.folded(kind, np.broadcast_shapes(x.shape, y.shape), x, y)
        return constant(fn(x, y))
    a, b = _as_number(a, b), _as_number(b, a)
    x_first = isinstance(a, Value) and not a.is_const
    x, other = (a, b) if x_first else (b, a)
    if _is_number(other):
        c = float(other)
        if kind == "mul":
            return ctx.emit("scale", [x], {"factor": c})
        if kind in ("add", "sub"):
            sign, bias = (1.0, c) if kind == "add" else ((1.0, -c) if x_first else (-1.0, c))
            return ctx.emit("affine", [x], {}, {"weight": np.array(sign, np.float32),
                                                "bias": np.array(bias, np.float32)})
        if x_first and _is_power_of_two(c):  # x / 2**k == x * 2**-k exactly
            return ctx.emit("scale", [x], {"factor": 1.0 / c})
        other = constant(np.array(c, np.float32))
        a, b = (x, other) if x_first else (other, x)
    if other.is_const:
        per_channel = _per_channel(ctx, other, x)
        if per_channel is not None and (kind in ("add", "mul") or (kind == "sub" and x_first)):
            one, zero = np.array(1.0, np.float32), np.zeros_like(per_channel)
            if kind == "mul":
                return ctx.emit("affine", [x], {}, {"weight": per_channel, "bias": zero})
            return ctx.emit("affine", [x], {}, {"weight": one, "bias": per_channel if kind == "add" else -per_channel})
        if kind == "add":
            c = ctx.sample_of_const(other, x)
            try:
                full = np.broadcast_to(np.asarray(c.const, np.float32), x.shape).copy()
            except ValueError:
                raise ctx.error(f"add of a tensor of per-sample shape {x.shape} and a constant of shape "
                                f"{c.shape} changes the tensor's shape; not supported") from None
            return ctx.emit("add", [x, constant(full)])
    values, _ = ctx.align([a, b], kind)
    if kind == "add":  # snnir's add sums inputs of one shape: broadcast explicitly first
        full = broadcast_shapes([v.shape for v in values], "add")
        values = [v if v.shape == full else ctx.emit("expand", [v], {"shape": full}, suffix="_expand")
                  for v in values]
        return ctx.emit("add", values)
    return ctx.emit(kind, values)


def matmul(ctx: TraceContext, a: Value, b: Value) -> Value:
    """torch.matmul / ONNX MatMul: a constant matrix on the right is a ``linear`` layer; otherwise ``matmul`` of
    two per-sample matrices (a constant vector operand is promoted and its axis dropped after)."""
    if a.is_const and b.is_const:
        x, y = np.asarray(a.const), np.asarray(b.const)
        ctx.folded("matmul", (*np.broadcast_shapes(x.shape[:-2], y.shape[:-2]), *x.shape[-2:-1], *y.shape[-1:]), x, y)
        return constant(np.matmul(x, y))
    if b.is_const and b.const.ndim == 2:
        if not a.is_const and a.pos + a.fold[1] >= len(a.shape):
            raise ctx.error(f"matmul of {ctx._describe(a)}: its last axis must be per-sample (the "
                            f"{lead_words(a.lead)} cannot be a matrix axis)")
        return ctx.emit("linear", [a], {}, {"weight": np.ascontiguousarray(np.asarray(b.const).T, np.float32)})
    vec_a, vec_b = a.is_const and a.const.ndim == 1, b.is_const and b.const.ndim == 1
    if vec_a:
        a = constant(np.asarray(a.const)[None, :])
    if vec_b:
        b = constant(np.asarray(b.const)[:, None])
    (a, b), x = ctx.align([a, b], "matmul")
    if len(x.shape) < 2 or x.pos + x.fold[1] > len(x.shape) - 2:
        raise ctx.error(f"matmul of {ctx._describe(x)}: its last two axes must be per-sample (the "
                        f"{lead_words(x.lead)} cannot be a matrix axis)")
    y = ctx.emit("matmul", [a, b])
    if vec_a or vec_b:
        shape = y.shape[:-2] + (() if vec_a else y.shape[-2:-1]) + (() if vec_b else y.shape[-1:])
        y = ctx.reshape(y, shape, suffix="_squeeze")
    return y


def transpose(ctx: TraceContext, x: Value, perm: tuple[int, ...], pos: int | None = None) -> Value:
    """Per-sample axes permuted (``pos``: where the lead sits afterwards)."""
    if x.is_const:
        return constant(np.transpose(x.const, perm))
    if perm == tuple(range(len(perm))):
        return x.moved(x.pos if pos is None else pos)
    return ctx.emit("transpose", [x], {"perm": perm}, suffix="", pos=pos)


def split(ctx: TraceContext, x: Value, axis: int, bounds: list[tuple[int, int]]) -> Results:
    def piece(start: int, stop: int) -> Callable[[], Value]:
        def make() -> Value:
            if x.is_const:
                return constant(np.take(x.const, range(start, stop), axis=axis))
            if (start, stop) == (0, x.shape[axis]):
                return x
            return ctx.emit("slice", [x], {"axis": axis, "start": start, "stop": stop}, suffix=f"_{start}")
        return make
    return Results([piece(a, b) for a, b in bounds])



def _as_flatten(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, int] | None:
    """``(start, end)`` if ``dst`` merges one contiguous run of ``src``'s axes, else None."""
    if not dst or len(dst) >= len(src):
        return None
    start = 0
    while start < len(dst) and src[start] == dst[start]:
        start += 1
    merged = len(src) - len(dst) + 1  # src axes start .. start + merged - 1 become dst[start]
    if start >= len(dst) or src[start + merged:] != dst[start + 1:]:
        return None
    if math.prod(src[start:start + merged]) != dst[start]:
        return None
    return start, start + merged - 1

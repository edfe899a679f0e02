"""What a traced tensor is in IR terms, and the context that function mappers emit nodes through.

A traced tensor (``Value``) is an IR node's per-sample output plus its *lead*: the leading axes the
model's code sees before the sample, by name. ``("T", "N")`` is a multi-step tensor ``[T, N, ...]``,
``("N",)`` a single step ``[N, ...]``, ``("T*N",)`` the two merged (``x.flatten(0, 1)`` as
SpikingJelly's ``SeqToANNContainer`` does), and ``()`` a constant (a parameter or buffer the model
reads), which has no batch axis. The IR holds per-sample shapes only, so an op that moves data
between the lead and the sample (a reshape that merges the batch into features, a reduction over
time) has no IR form and is refused by name.

The tracer hands the model concrete shapes: ``x.shape`` is ``(T, N, *sample)`` with the lead sizes
as ``LeadDim`` ints that remember which axis they came from, so ``x.view(x.shape[0], -1)`` and
``T, N, C, L = x.shape; x.reshape(T, N, 3, h, C // 3 // h, L)`` resolve without guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from snnir.errors import GraphError, ShapeError, TraceError
from snnir.graph import Graph

LEAD_AXES = {"T": "time", "N": "batch", "T*N": "time*batch"}


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
    """A traced tensor: ``lead`` axes (names) + per-sample ``shape``; an IR ``node`` or a ``const``."""

    lead: tuple[str, ...]
    shape: tuple[int, ...]
    node: str | None = None
    const: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.node is None

    @property
    def rank(self) -> int:
        """The rank the model's code sees (lead axes included)."""
        return len(self.lead) + len(self.shape)


def constant(array: Any) -> Value:
    a = np.asarray(array)
    if a.dtype.kind == "b":
        a = a.astype(np.float32)
    elif a.dtype.kind == "f" and a.dtype != np.float32:
        a = a.astype(np.float32)
    return Value((), tuple(a.shape), None, a)


class TraceContext:
    """Emits IR nodes for one traced call; errors name the fx node (``where``)."""

    def __init__(self, g: Graph, sizes: dict[str, int]) -> None:
        self.g, self.sizes = g, sizes
        self.where = ""
        self.name = "node"  # id base of the nodes the current call emits
        self.offset = 1  # lead length of the current module's input (for module mappers)
        self.target: object = None  # the function or method name being mapped
        self.label = ""  # its name, for messages
        self.inputs: list = []  # a module mapper's inputs (Values) and keyword arguments
        self.kwargs: dict = {}

    def error(self, msg: str) -> TraceError:
        return TraceError(f"{self.where}: {msg}")

    # --- sizes -------------------------------------------------------------------------------------
    def lead_sizes(self, lead: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(self.sizes["T"] * self.sizes["N"] if n == "T*N" else self.sizes[n] for n in lead)

    def traced_shape(self, v: Value) -> TracedShape:
        lead = tuple(LeadDim(s, n) for s, n in zip(self.lead_sizes(v.lead), v.lead))
        return TracedShape((*lead, *v.shape))

    def axis(self, v: Value, dim: int, what: str) -> int:
        """The per-sample axis (>= 0) of torch ``dim`` on ``v``; lead axes are refused."""
        if not isinstance(dim, int):
            raise self.error(f"{what}: dim must be an int, got {dim!r}")
        if not -v.rank <= dim < v.rank:
            raise self.error(f"{what}: dim {dim} is out of range for a tensor of rank {v.rank}")
        dim %= v.rank
        if dim < len(v.lead):
            axes = lead_words(v.lead)
            raise self.error(f"{what} over dim {dim} touches the {axes}; snnir ops act per sample "
                             f"(the {axes} lead every tensor and cannot be reduced, moved or mixed)")
        return dim - len(v.lead)

    # --- nodes -------------------------------------------------------------------------------------
    def node(self, v: Value) -> str:
        """The IR node holding ``v``; a constant becomes a ``constant`` node on first use."""
        if v.node is not None:
            return v.node
        return self.g.add_node("constant", [], params={"value": np.asarray(v.const, np.float32)},
                               id=self.g._new_id(f"{self.name}_const"))

    def emit(self, op: str, inputs: list[Value], attrs: dict | None = None, params: dict | None = None,
             lead: tuple[str, ...] | None = None, suffix: str = "") -> Value:
        """Add node ``op`` fed by ``inputs``; returns its ``Value`` (lead: the inputs' unless given)."""
        if lead is None:
            leads = [v.lead for v in inputs if not v.is_const]
            lead = leads[0] if leads else ()
        ids = [self.node(v) for v in inputs]
        try:
            node_id = self.g.add_node(op, ids, attrs=attrs, params=params, id=self.g._new_id(self.name + suffix))
        except GraphError as e:
            raise self.error(str(e)) from None
        node = self.g.node(node_id)
        try:
            shape = tuple(int(d) for d in node.spec.infer_shape(node.attrs, node.params, [v.shape for v in inputs]))
        except (ShapeError, GraphError) as e:
            self.g.remove_node(node_id)
            raise self.error(f"{op}: {e}") from None
        return Value(lead, shape, node_id)

    def reshape(self, v: Value, shape: tuple[int, ...], suffix: str = "_reshape") -> Value:
        """``v`` with per-sample ``shape`` (no node when nothing changes; a constant is reshaped)."""
        shape = tuple(int(s) for s in shape)
        if shape == v.shape:
            return v
        if v.is_const:
            return Value((), shape, None, np.asarray(v.const).reshape(shape))
        flat = _as_flatten(v.shape, shape)
        if flat is not None:
            return self.emit("flatten", [v], {"start": flat[0], "end": flat[1]}, suffix=suffix)
        return self.emit("reshape", [v], {"shape": shape}, suffix=suffix)

    # --- broadcasting ------------------------------------------------------------------------------
    def sample_of_const(self, c: Value, lead: tuple[str, ...], rank: int) -> Value:
        """A constant as torch broadcasts it against a tensor with ``lead`` and per-sample ``rank``:
        axes right-aligned; axes that fall on the lead must be size 1 and are dropped."""
        a = np.asarray(c.const)
        extra = a.ndim - rank
        if extra > len(lead):
            raise self.error(f"a constant of shape {a.shape} broadcast against a tensor of rank "
                             f"{len(lead) + rank} would add leading axes")
        if extra > 0:
            if any(d != 1 for d in a.shape[:extra]):
                raise self.error(f"a constant of shape {a.shape} varies along the "
                                 f"{lead_words(lead)}; constants are per sample")
            a = a.reshape(a.shape[extra:])
        return Value((), tuple(a.shape), None, a)

    def align(self, values: list[Value], what: str) -> tuple[list[Value], tuple[str, ...]]:
        """Inputs of a broadcasting op made per-sample and of one rank (leading size-1 axes)."""
        leads = {v.lead for v in values if not v.is_const}
        if len(leads) > 1:
            raise self.error(f"{what} of tensors with different leading axes {sorted(leads)}: "
                             "reshape them to one layout first")
        lead = leads.pop() if leads else ()
        if lead:
            rank = max(len(v.shape) for v in values if not v.is_const)
            values = [self.sample_of_const(v, lead, rank) if v.is_const else v for v in values]
        rank = max(len(v.shape) for v in values)
        out = [self.reshape(v, (1,) * (rank - len(v.shape)) + v.shape, suffix="_align") for v in values]
        return out, lead

    # --- reshape resolution ------------------------------------------------------------------------
    def split_target(self, v: Value, target: list[Any], what: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """``(lead, per-sample shape)`` of ``v`` viewed as ``target`` (torch sizes, one may be -1)."""
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
        return f"a tensor of shape {tuple(self.traced_shape(v))}"


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

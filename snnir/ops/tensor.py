"""Tensor-manipulation ops: reshape, transpose, slice, reductions and matrix products.

Every attribute speaks of per-sample axes (no batch, no time axis): ``transpose(perm=(1, 0))`` on
a ``(L, D)`` sample is ``x.transpose(1, 2)`` on the ``[N, L, D]`` batch. Frontends resolve torch's
and ONNX's dims (and ``-1`` sizes) before they build these nodes, so backends never guess.

Broadcasting ops (``matmul`` here, ``mul``/``sub``/``div`` in ``elementwise``) take inputs of one
per-sample *rank*; a size-1 axis broadcasts. Frontends insert the ``reshape`` that aligns ranks,
so a backend's tensors ``[lead..., *sample]`` broadcast exactly as the samples do.
"""

from __future__ import annotations

import math

from snnir.errors import ShapeError
from snnir.ops.registry import REQUIRED, OpSpec, Shape, register_op
from snnir.ops.rules import BOOL, MAX_RANK, Int, Ints, declare_rules
from snnir.ops.rules import Shape as ShapeRule


def _axis(axis: int, rank: int, what: str) -> int:
    if not isinstance(axis, int) or not -rank <= axis < rank:
        raise ShapeError(f"{what} axis {axis!r} is out of range for a per-sample shape of rank {rank}")
    return axis % rank


def broadcast_shapes(shapes: list[Shape], what: str) -> Shape:
    """Shape of equal-rank ``shapes`` broadcast together (size-1 axes stretch), or ``ShapeError``."""
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise ShapeError(f"{what} needs inputs of one per-sample rank (a size-1 axis broadcasts), got {shapes}")
    out = []
    for sizes in zip(*shapes):
        big = {s for s in sizes if s != 1}
        if len(big) > 1:
            raise ShapeError(f"{what} cannot broadcast shapes {shapes}")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _reshape_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    target = tuple(attrs["shape"])
    if any(not isinstance(d, int) or d < 1 for d in target):
        raise ShapeError(f"reshape target {target} must be positive ints (frontends resolve -1)")
    if math.prod(target) != math.prod(shape):
        raise ShapeError(f"cannot reshape a sample of shape {shape} ({math.prod(shape)} values) to {target}")
    return target


def _expand_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    target = tuple(attrs["shape"])
    if broadcast_shapes([shape, target], "expand") != target:
        raise ShapeError(f"cannot expand a sample of shape {shape} to {target} (only size-1 axes stretch)")
    return target


def _transpose_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    perm = tuple(attrs["perm"])
    if sorted(perm) != list(range(len(shape))):
        raise ShapeError(f"transpose perm {perm} is not a permutation of the {len(shape)} per-sample axes")
    return tuple(shape[p] for p in perm)


def _slice_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    axis = _axis(attrs["axis"], len(shape), "slice")
    start, stop, step = attrs["start"], attrs["stop"], attrs["step"]
    if not (isinstance(step, int) and step >= 1 and 0 <= start < stop <= shape[axis]):
        raise ShapeError(f"slice [{start}:{stop}:{step}] along axis {axis} must satisfy 0 <= start < stop <= "
                         f"{shape[axis]} and step >= 1")
    return (*shape[:axis], len(range(start, stop, step)), *shape[axis + 1:])


def _reduce_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    (shape,) = in_shapes
    axes = tuple(attrs["axes"])
    if not axes:
        raise ShapeError("a reduction needs at least one axis")
    axes = {_axis(a, len(shape), "reduction") for a in axes}
    if attrs["keepdim"]:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _matmul_shape(attrs: dict, params: dict, in_shapes: list[Shape]) -> Shape:
    a, b = in_shapes
    if len(a) < 2 or len(a) != len(b):
        raise ShapeError(f"matmul needs two inputs of one per-sample rank >= 2 (frontends reshape vectors), "
                         f"got {a} and {b}")
    if a[-1] != b[-2]:
        raise ShapeError(f"matmul of {a} by {b}: inner sizes {a[-1]} and {b[-2]} differ")
    return (*broadcast_shapes([a[:-2], b[:-2]], "matmul"), a[-2], b[-1])


register_op(OpSpec("reshape", _reshape_shape, attrs={"shape": REQUIRED},
                   doc="The sample's values in row-major order, laid out as ``shape`` (no -1: resolved)."))
register_op(OpSpec("expand", _expand_shape, attrs={"shape": REQUIRED},
                   doc="The sample broadcast to ``shape`` (same rank; size-1 axes repeat), as torch.expand."))
register_op(OpSpec("transpose", _transpose_shape, attrs={"perm": REQUIRED},
                   doc="Per-sample axes reordered: output axis i is input axis perm[i] (torch.permute)."))
register_op(OpSpec("slice", _slice_shape, attrs={"axis": REQUIRED, "start": REQUIRED, "stop": REQUIRED, "step": 1},
                   doc="x[start:stop:step] along one per-sample axis (chunk, split and indexing)."))
for _kind in ("mean", "sum"):
    register_op(OpSpec(_kind, _reduce_shape, attrs={"axes": REQUIRED, "keepdim": False},
                       doc=f"The {_kind} over per-sample ``axes`` (kept as size 1 with ``keepdim``)."))
register_op(OpSpec("matmul", _matmul_shape, arity=2,
                   doc="Batched matrix product of two inputs of one rank: (..., n, k) @ (..., k, m); the "
                       "leading axes broadcast (torch.matmul / ONNX MatMul)."))

declare_rules("reshape", {"shape": ShapeRule()})
declare_rules("expand", {"shape": ShapeRule()})
declare_rules("transpose", {"perm": Ints(None, 0)})
declare_rules("slice", {"axis": Int(-MAX_RANK, MAX_RANK), "start": Int(0), "stop": Int(1), "step": Int(1)})
for _kind in ("mean", "sum"):
    declare_rules(_kind, {"axes": Ints(None, -MAX_RANK), "keepdim": BOOL})

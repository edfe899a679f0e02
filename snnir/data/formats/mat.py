"""ASL-DVS samples: MATLAB ``.mat`` files with the variables ``x``, ``y``, ``ts``, ``pol``.

Source: the ASL-DVS release (Bi et al., ICCV 2019, "Graph-based Object Classification for
Neuromorphic Vision Sensing"; github.com/PIX2NVS/NVS2Graph): 24 letter folders ``a``..``y``
(no ``j``, no ``z``), 4200 ``.mat`` files each, recorded with a 240x180 DAVIS240c. Each file
holds column vectors ``x``, ``y`` (sensor pixel, origin at the bottom-left), ``ts``
(microseconds) and ``pol`` (0/1).

Decoder: ``scipy.io.loadmat`` (MAT level 5). Before calling it, the top-level data-element tags of
the level-5 file are walked (128-byte header, then 8-byte tags ``(type, nbytes)``; see MathWorks'
"MAT-File Format" document) so a truncated file is reported with the offset of the element that
runs past the end instead of scipy's generic message.

Example:
    >>> import os, tempfile
    >>> import numpy as np, scipy.io
    >>> from snnir.data.formats import read_asl_dvs_mat
    >>> path = os.path.join(tempfile.mkdtemp(), "a_0001.mat")
    >>> scipy.io.savemat(path, {"x": [[3], [4]], "y": [[5], [6]], "ts": [[10], [20]], "pol": [[1], [0]]})
    >>> read_asl_dvs_mat(path).tolist()
    [(10, 3, 5, 1), (20, 4, 6, 0)]
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from snnir.data.formats._common import EventFormatError, PathLike, columns_to_events

MAT5_HEADER = 128
MI_COMPRESSED = 15


MI_MATRIX = 14
MI_INT8, MI_UINT32, MI_INT32 = 1, 6, 5
MI_SIZES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # numeric data types -> bytes
NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS
CLASS_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse"}


def check_mat5_elements(path: PathLike) -> None:
    """Check a MAT level-5 file's structure before scipy reads it (scipy.io can crash on corrupted
    array headers): every top-level element is a numeric array (``miMATRIX``, possibly inside
    ``miCOMPRESSED``, inflated in bounded pieces within ``snnir.limits``) whose flags, dimensions,
    name and data sub-elements are well formed and whose data size matches its dimensions.
    Raises EventFormatError with the byte offset, or LimitError."""
    from snnir import limits
    from snnir.data.formats._common import read_bytes

    data = read_bytes(path)
    budget = limits.Budget(str(path))
    if len(data) < MAT5_HEADER or data[126:128] not in (b"IM", b"MI"):
        raise EventFormatError(path, min(len(data), 126), "not a MATLAB level-5 file (no 128-byte header "
                                                          "with the 'IM'/'MI' endian mark)")
    order = "<" if data[126:128] == b"IM" else ">"
    pos = MAT5_HEADER
    while pos < len(data):
        if len(data) - pos < 8:
            raise EventFormatError(path, pos, "file ends inside a data-element tag; truncated?")
        mtype, nbytes = struct.unpack_from(order + "II", data, pos)
        if pos + 8 + nbytes > len(data):
            raise EventFormatError(path, pos, f"data element of {nbytes} bytes runs past the end of the "
                                              f"file ({len(data)} bytes); truncated?")
        what = f"data element at byte {pos}"
        body = data[pos + 8:pos + 8 + nbytes]
        if mtype == MI_COMPRESSED:
            inner = _inflate(body, path, pos, limits.current().max_bytes)
            limits.check_inflation(str(path), what, len(inner), nbytes)
            budget.take(what, len(inner))
            if len(inner) < 8:
                raise EventFormatError(path, pos, "compressed element holds no data element")
            itype, inbytes = struct.unpack_from(order + "II", inner, 0)
            if itype != MI_MATRIX or 8 + inbytes > len(inner):
                raise EventFormatError(path, pos, f"compressed element holds type {itype} of {inbytes} bytes in "
                                                  f"{len(inner)}; expected a matrix")
            _check_matrix(inner[8:8 + inbytes], order, path, pos)
            pos += 8 + nbytes
        elif mtype == MI_MATRIX:
            budget.take(what, nbytes)
            _check_matrix(body, order, path, pos)
            pos += 8 + nbytes + (-nbytes % 8)  # uncompressed elements are padded to 8 bytes
        else:
            raise EventFormatError(path, pos, f"top-level data element of type {mtype & 0xFFFF}; a MAT file's "
                                              "variables are matrices (type 14) or compressed (type 15)")


def _sub(body: bytes, i: int, order: str, path: PathLike, at: int) -> tuple[int, bytes, int]:
    """The sub-element at ``body[i:]``: (type, data, index of the next one); small format included."""
    if len(body) - i < 8:
        raise EventFormatError(path, at + 8 + i, "matrix ends inside a sub-element tag")
    word, nbytes = struct.unpack_from(order + "II", body, i)
    if word >> 16:  # small data element: size in the upper half, data in the next 4 bytes
        size = word >> 16
        if size > 4:
            raise EventFormatError(path, at + 8 + i, f"small data element claims {size} bytes (at most 4)")
        return word & 0xFFFF, body[i + 4:i + 4 + size], i + 8
    if i + 8 + nbytes > len(body):
        raise EventFormatError(path, at + 8 + i, f"sub-element of {nbytes} bytes runs past its matrix")
    return word, body[i + 8:i + 8 + nbytes], i + 8 + nbytes + (-nbytes % 8)


def _check_matrix(body: bytes, order: str, path: PathLike, at: int) -> None:
    kind, flags, i = _sub(body, 0, order, path, at)
    if kind != MI_UINT32 or len(flags) != 8:
        raise EventFormatError(path, at, "matrix has no array-flags sub-element")
    word = struct.unpack_from(order + "I", flags)[0]
    cls, complex_ = word & 0xFF, bool(word & 0x800)
    kind, dims_raw, i = _sub(body, i, order, path, at)
    if kind != MI_INT32 or len(dims_raw) % 4 or len(dims_raw) < 8:
        raise EventFormatError(path, at, "matrix dimensions must be at least two int32 values")
    dims = struct.unpack(order + f"{len(dims_raw) // 4}i", dims_raw)
    if min(dims) < 0:
        raise EventFormatError(path, at, f"matrix has negative dimensions {dims}")
    kind, name, i = _sub(body, i, order, path, at)
    if kind != MI_INT8:
        raise EventFormatError(path, at, "matrix has no name sub-element")
    label = name.decode("latin-1")[:40]
    if cls not in NUMERIC_CLASSES:
        raise EventFormatError(path, at, f"variable {label!r} is a MATLAB {CLASS_NAMES.get(cls, f'class {cls}')} "
                                         "array; the event readers take numeric arrays")
    count = 1
    for d in dims:
        count *= d
    for part in ("real", "imaginary")[:1 + complex_]:
        kind, values, i = _sub(body, i, order, path, at)
        if kind not in MI_SIZES or len(values) != count * MI_SIZES[kind]:
            raise EventFormatError(path, at, f"variable {label!r}: {part} part of type {kind} holds {len(values)} "
                                             f"bytes, its dimensions {dims} need {count} values")


def _inflate(body: bytes, path: PathLike, pos: int, cap: int) -> bytes:
    """A zlib element inflated in bounded pieces (a LimitError once above ``cap``, before allocating more)."""
    from snnir import limits

    inflate, out, total = zlib.decompressobj(), [], 0
    try:
        piece = inflate.decompress(body, 1 << 20)
        while True:
            total += len(piece)
            limits.check_bytes(str(path), f"compressed element at byte {pos}", total)
            out.append(piece)
            if not inflate.unconsumed_tail:
                break
            piece = inflate.decompress(inflate.unconsumed_tail, 1 << 20)
    except zlib.error as err:
        raise EventFormatError(path, pos, f"compressed data element is corrupted ({err})") from None
    return b"".join(out)


def read_asl_dvs_mat(path: PathLike, sensor_size: tuple[int, int] | None = None,
                     safe: bool | None = None) -> np.ndarray:
    """Decode an ASL-DVS ``.mat`` sample into an EVENT_DTYPE array (file order, sensor coordinates).

    ``safe=True`` (default: ``snnir.limits.current().safe``) runs ``scipy.io.loadmat`` in a child
    process with memory and time limits (``snnir.isolation``): a crash becomes an error.
    """
    from snnir.isolation import run_isolated, use_safe_mode

    if use_safe_mode(safe):
        cols = run_isolated(_mat_columns, path, where=str(path), what="MATLAB reader (scipy.io)")
    else:
        cols = _mat_columns(path)
    return columns_to_events(path, cols, sensor_size)


def _mat_columns(path: PathLike) -> dict[str, np.ndarray]:
    """The t, x, y, p columns of an ASL-DVS file (numbers only), checked before scipy reads it."""
    import scipy.io  # scipy is imported only when a .mat file is read

    check_mat5_elements(path)
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, TypeError, zlib.error... on a damaged file
        problem = f"scipy.io.loadmat could not read it ({type(err).__name__}: {err})"
        raise EventFormatError(path, None, problem) from None
    missing = [k for k in ("x", "y", "ts", "pol") if k not in mat]
    if missing:
        raise EventFormatError(path, None, f"missing the variables {missing} (an ASL-DVS file has x, y, ts, pol)")
    cols = {}
    for k, name in (("t", "ts"), ("x", "x"), ("y", "y"), ("p", "pol")):
        a = np.asarray(mat[name])
        if a.dtype.kind not in "biuf" or a.dtype.fields is not None:
            raise EventFormatError(path, None, f"variable {name!r} has type {a.dtype}; expected a numeric column")
        cols[k] = a.reshape(-1)
    return cols

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

import os
import struct
import zlib

import numpy as np

from snnir.data.formats._common import EventFormatError, PathLike, columns_to_events

MAT5_HEADER = 128
MI_COMPRESSED = 15


def check_mat5_elements(path: PathLike) -> None:
    """Raise EventFormatError if a top-level MAT level-5 data element runs past the end of the file,
    or LimitError if the elements (compressed ones once inflated, counted without keeping the
    output) declare more than ``snnir.limits`` allows."""
    from snnir import limits

    size = os.path.getsize(path)
    budget = limits.Budget(str(path))
    with open(path, "rb") as f:
        head = f.read(MAT5_HEADER)
        if len(head) < MAT5_HEADER or head[126:128] not in (b"IM", b"MI"):
            raise EventFormatError(path, min(size, 126), "not a MATLAB level-5 file (no 128-byte header "
                                                         "with the 'IM'/'MI' endian mark)")
        order = "<" if head[126:128] == b"IM" else ">"
        pos = MAT5_HEADER
        while pos < size:
            f.seek(pos)
            tag = f.read(8)
            if len(tag) < 8:
                raise EventFormatError(path, pos, "file ends inside a data-element tag; truncated?")
            mtype, nbytes = struct.unpack(order + "II", tag)
            if mtype >> 16:  # small data element: type, size and data packed in these 8 bytes
                pos += 8
                continue
            end = pos + 8 + nbytes
            if mtype != MI_COMPRESSED:
                end += -nbytes % 8  # uncompressed elements are padded to 8 bytes
            if pos + 8 + nbytes > size:
                raise EventFormatError(path, pos, f"data element of {nbytes} bytes runs past the end of the "
                                                  f"file ({size} bytes); truncated?")
            what = f"data element at byte {pos}"
            if mtype == MI_COMPRESSED:
                inflated = _inflated_size(f, path, pos, nbytes, limits.current().max_bytes)
                limits.check_inflation(str(path), what, inflated, nbytes)
                budget.take(what, inflated)
            else:
                budget.take(what, nbytes)
            pos = end


def _inflated_size(f, path: PathLike, pos: int, nbytes: int, cap: int) -> int:
    """Bytes a zlib element inflates to, counted in bounded pieces (stops once above ``cap``)."""
    inflate, total, left = zlib.decompressobj(), 0, nbytes
    f.seek(pos + 8)
    try:
        while left > 0 and total <= cap:
            piece = f.read(min(left, 1 << 16))
            if not piece:
                break
            left -= len(piece)
            data = inflate.decompress(piece, 1 << 20)
            total += len(data)
            while inflate.unconsumed_tail and total <= cap:
                total += len(inflate.decompress(inflate.unconsumed_tail, 1 << 20))
    except zlib.error as err:
        raise EventFormatError(path, pos, f"compressed data element is corrupted ({err})") from None
    return total


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

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

import numpy as np

from snnir.data.formats._common import EventFormatError, PathLike, columns_to_events

MAT5_HEADER = 128
MI_COMPRESSED = 15


def check_mat5_elements(path: PathLike) -> None:
    """Raise EventFormatError if a top-level MAT level-5 data element runs past the end of the file."""
    size = os.path.getsize(path)
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
            pos = end


def read_asl_dvs_mat(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an ASL-DVS ``.mat`` sample into an EVENT_DTYPE array (file order, sensor coordinates)."""
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
    cols = {k: np.asarray(mat[name]).reshape(-1) for k, name in (("t", "ts"), ("x", "x"), ("y", "y"), ("p", "pol"))}
    return columns_to_events(path, cols, sensor_size)

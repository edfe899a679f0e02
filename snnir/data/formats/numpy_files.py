"""Event datasets distributed as numpy files: DVS-Lip (``.npy``), HARDVS and ES-ImageNet (``.npz``).

Sources: the DVS-Lip release (Tan et al., CVPR 2022, "Multi-grained spatio-temporal features
perceived network for event-based lip-reading"; github.com/tgc1997/event-based-lip-reading): each
sample is a ``.npy`` structured array with fields ``t`` (int32 microseconds), ``x``, ``y``, ``p``
(int8), 128x128 DVS. HARDVS (Wang et al., AAAI 2024; github.com/Event-AHU/HARDVS), the
MINI_HARDVS release: one ``.npz`` per sample holding arrays ``t``, ``x``, ``y``, ``p`` from a
346x260 DAVIS346. ES-ImageNet (Lin et al., Frontiers in Neuroscience 2021; its loader on
github.com/lyh983012/ES-imagenet-master): one ``.npz`` per image with integer arrays ``pos`` and
``neg`` of shape [N, 3], columns (row, column, time step), for ON and OFF events; the time is
the index of the simulated saccade step (0..7), not microseconds.

All layouts are specified by numpy's own NPY/NPZ format (numpy.org, "NEP 1 / numpy.lib.format"),
so numpy itself is the decoder; files are always loaded with ``allow_pickle=False``. Before
loading, the NPY header is read to check the data really is all there, so a truncated file is
reported with the byte where it ends instead of numpy's reshape error.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from snnir.data.formats import read_npz_events
    >>> path = os.path.join(tempfile.mkdtemp(), "dvSave-0.npz")
    >>> np.savez(path, t=np.array([5, 9]), x=np.array([1, 2]), y=np.array([3, 4]), p=np.array([1, 0]))
    >>> read_npz_events(path).tolist()
    [(5, 1, 3, 1), (9, 2, 4, 0)]
"""

from __future__ import annotations

import io
import lzma
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from snnir.data.formats._common import EventFormatError, PathLike, columns_to_events

_FIELDS = ("t", "x", "y", "p")


def _read_npy_stream(f: io.BufferedIOBase, size: int, path: PathLike, base: int, name: str) -> np.ndarray:
    """An array from an open NPY stream of ``size`` bytes; errors report ``base`` + the stream offset.

    The header (a Python literal numpy parses with ``ast.literal_eval``, never ``eval``) is checked
    before any data is read: no objects, a non-zero item size, and a declared size within the
    stream and ``snnir.limits``.
    """
    try:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except Exception as err:  # noqa: BLE001 - ValueError, SyntaxError, tokenize errors, RecursionError...
        raise EventFormatError(path, base, f"{name}: not an NPY array header ({type(err).__name__}: {err})") \
            from None
    if dtype.hasobject:
        raise EventFormatError(path, base, f"{name}: holds Python objects; refused (loading would run pickle)")
    if dtype.itemsize == 0:
        raise EventFormatError(path, base, f"{name}: dtype {dtype} has zero-byte items")
    start = f.tell()
    need = math.prod(shape) * dtype.itemsize
    from snnir import limits

    limits.check_bytes(str(path), f"{name} (array {shape} of {dtype})", need)
    if size - start < need:
        raise EventFormatError(path, base + size, f"{name}: data ends {need - (size - start)} bytes early "
                                                  f"(array {shape} of {dtype} needs {need} bytes from byte "
                                                  f"{base + start}); truncated?")
    try:
        arr = np.frombuffer(f.read(need), dtype=dtype)
        return arr.reshape(shape, order="F" if fortran else "C")
    except (ValueError, TypeError) as err:
        raise EventFormatError(path, base + start, f"{name}: data does not fit {shape} of {dtype} ({err})") from None


def read_npy(path: PathLike) -> np.ndarray:
    """One ``.npy`` array, never unpickling; a short file raises EventFormatError with the offset."""
    with open(path, "rb") as f:
        return _read_npy_stream(f, os.fstat(f.fileno()).st_size, path, 0, os.path.basename(path))


def read_npz(path: PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named members of an ``.npz`` archive, each checked like :func:`read_npy`."""
    from snnir import limits

    try:
        archive = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise EventFormatError(path, os.path.getsize(path), "no zip directory at the end of the file; "
                                                            "truncated or not an .npz archive") from None
    out = {}
    budget = limits.Budget(str(path))
    with archive:
        names = {n[:-4] if n.endswith(".npy") else n: n for n in archive.namelist()}
        for key in keys:
            if key not in names:
                raise EventFormatError(path, None, f"has no array {key!r} (found {sorted(names)}), expected {keys}")
            info = archive.getinfo(names[key])
            what = f"member {info.filename!r}"
            budget.take(what, info.file_size)  # the declared size, before inflating anything
            if info.compress_type != zipfile.ZIP_STORED:
                limits.check_inflation(str(path), what, info.file_size, info.compress_size)
            try:
                with archive.open(info) as member:
                    raw = member.read(info.file_size + 1)  # never more than declared (a lying header)
            except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, struct.error) as err:
                problem = f"{what} is corrupted ({type(err).__name__}: {err})"
                raise EventFormatError(path, info.header_offset, problem) from None
            except (RuntimeError, NotImplementedError) as err:  # encrypted, or an unsupported compression
                raise EventFormatError(path, info.header_offset, f"{what} cannot be read ({err}); numpy writes "
                                                                 "plain or deflated members") from None
            if len(raw) != info.file_size:
                more = "more than " if len(raw) > info.file_size else ""
                raise EventFormatError(path, info.header_offset, f"{what} holds {more}{len(raw)} bytes, its header "
                                                                 f"says {info.file_size}")
            out[key] = _read_npy_stream(io.BytesIO(raw), len(raw), path, info.header_offset, info.filename)
    return out


def read_npy_events(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """A DVS-Lip sample: a structured ``.npy`` array with fields t, x, y, p -> EVENT_DTYPE."""
    arr = read_npy(path)
    if arr.dtype.names is None or not set(_FIELDS) <= set(arr.dtype.names):
        raise EventFormatError(path, 0, f"expected a structured array with fields {_FIELDS}, found dtype {arr.dtype}")
    return columns_to_events(path, {k: arr[k] for k in _FIELDS}, sensor_size)


def read_npz_events(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """A HARDVS sample: an ``.npz`` with 1-D arrays t, x, y, p -> EVENT_DTYPE."""
    return columns_to_events(path, read_npz(path, _FIELDS), sensor_size)


def read_es_imagenet(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """An ES-ImageNet sample: ``pos``/``neg`` [N, 3] (row, column, step) arrays -> EVENT_DTYPE, sorted by step."""
    arrays = read_npz(path, ("pos", "neg"))
    for name, a in arrays.items():
        if a.ndim != 2 or a.shape[1] != 3:
            problem = f"array {name!r} has shape {a.shape}, expected [N, 3] (row, column, step)"
            raise EventFormatError(path, None, problem)
        if a.dtype.kind not in "biu" or a.dtype.fields is not None:
            raise EventFormatError(path, None, f"array {name!r} has dtype {a.dtype}, expected integers")
    pos, neg = arrays["pos"], arrays["neg"]
    both = np.concatenate([pos, neg]).astype(np.int64)
    cols = {"t": both[:, 2], "x": both[:, 1], "y": both[:, 0],
            "p": np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])}
    ev = columns_to_events(path, cols, sensor_size)
    return ev[np.argsort(ev["t"], kind="stable")]

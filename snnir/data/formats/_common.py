"""What every decoder shares: the error type, reading a file whole, and the text header skip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from snnir.errors import FormatError

PathLike = Union[str, "os.PathLike[str]"]


class EventFormatError(FormatError, ValueError):
    """An event file is truncated, corrupted or not in the expected format.

    The message names the file and the byte offset where the decoder stopped making sense of it.
    """

    def __init__(self, path: PathLike, offset: int | None = None, problem: str | None = None):
        if problem is None:  # rebuilt from its message alone (e.g. re-raised from a DataLoader worker)
            self.path, self.offset = None, None
            super().__init__(str(path))
            return
        self.path, self.offset = Path(path), offset
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {problem}")


def read_bytes(path: PathLike) -> bytes:
    """The whole file, its size checked against ``snnir.limits`` first; a missing file raises
    FileNotFoundError naming it."""
    from snnir import limits

    with open(path, "rb") as f:
        limits.check_bytes(str(path), "the file", os.fstat(f.fileno()).st_size)
        return f.read()


def read_text(path: PathLike) -> str:
    """A text file (labels, split lists) as UTF-8; anything else is an EventFormatError with the offset."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EventFormatError(path, err.start, f"not UTF-8 text ({err.reason}); corrupted or not a text file") \
            from None


def skip_text_header(data: bytes, marker: bytes) -> int:
    """Offset of the first byte after the leading lines that start with ``marker``."""
    pos = 0
    while data.startswith(marker, pos):
        end = data.find(b"\n", pos)
        if end < 0:
            return len(data)
        pos = end + 1
    return pos


def check_whole_records(path: PathLike, data_len: int, start: int, record: int, what: str) -> int:
    """Number of ``record``-byte records after ``start``; a partial last record is a truncation."""
    n, rest = divmod(data_len - start, record)
    if rest:
        raise EventFormatError(path, start + n * record,
                               f"file ends inside a {record}-byte {what} ({rest} bytes left); truncated?")
    return n


def check_in_sensor(path: PathLike, x: np.ndarray, y: np.ndarray | None, sensor_size: tuple[int, ...] | None,
                    offsets: np.ndarray | None = None) -> None:
    """Refuse the first event outside ``sensor_size``: (H, W) for pixels, (C,) for audio channels.

    ``offsets`` holds each event's byte offset in the file, where the format has one.
    """
    if sensor_size is None:
        return
    if y is None:
        bad = np.flatnonzero((x < 0) | (x >= sensor_size[0]))
        where = "channel {x}, outside the {c} channels".format
    else:
        h, w = sensor_size
        bad = np.flatnonzero((x < 0) | (x >= w) | (y < 0) | (y >= h))
        where = "pixel x={x}, y={y}, outside the {h}x{w} sensor".format
    if bad.size:
        i = int(bad[0])
        text = where(x=int(x[i]), y=None if y is None else int(y[i]), c=sensor_size[0], h=sensor_size[0],
                     w=sensor_size[-1])
        raise EventFormatError(path, None if offsets is None else int(offsets[i]),
                               f"event {i} at {text}; corrupted file?")


def columns_to_events(path: PathLike, cols: dict[str, np.ndarray], sensor_size: tuple[int, int] | None) -> np.ndarray:
    """An EVENT_DTYPE array from 1-D ``t, x, y, p`` columns of a container format (npz, mat).

    Coordinates are checked before the cast to int16 (so a corrupted value cannot wrap into range);
    polarities may be 0/1 or -1/1 (-1 becomes 0); anything else is refused.
    """
    from snnir.data.events import EVENT_DTYPE

    shapes = {k: np.shape(v) for k, v in cols.items()}
    if len({np.size(v) for v in cols.values()}) != 1 or any(len(s) != 1 for s in shapes.values()):
        raise EventFormatError(path, None, f"event columns must be 1-D and of equal length, found shapes {shapes}")
    for k, v in cols.items():
        v = np.asarray(v)
        if v.dtype.kind not in "biuf" or v.dtype.fields is not None:
            raise EventFormatError(path, None, f"column {k!r} has dtype {v.dtype}; expected numbers")
        if v.dtype.kind == "f" and v.size and not np.isfinite(v).all():
            raise EventFormatError(path, None, f"column {k!r} holds NaN or Inf")
        if v.size and (v.min() < -(2**62) or v.max() > 2**62):
            raise EventFormatError(path, None, f"column {k!r} holds values beyond +-2**62; corrupted?")
    for k in ("x", "y", "p"):
        if cols[k].size and not np.issubdtype(cols[k].dtype, np.integer) and np.any(cols[k] != np.round(cols[k])):
            raise EventFormatError(path, None, f"column {k!r} holds non-integer values ({cols[k].dtype})")
    x, y, p = (np.asarray(cols[k]).astype(np.int64) for k in ("x", "y", "p"))
    if sensor_size is not None:
        check_in_sensor(path, x, y, sensor_size)
    limit = np.iinfo(EVENT_DTYPE["x"]).max
    bad = np.flatnonzero((x < 0) | (x > limit) | (y < 0) | (y > limit))
    if bad.size:  # would wrap around in the int16 columns
        i = int(bad[0])
        raise EventFormatError(path, None, f"event {i} at x={x[i]}, y={y[i]} is outside [0, {limit}]; corrupted?")
    bad = np.flatnonzero((p != 0) & (p != 1) & (p != -1))
    if bad.size:
        raise EventFormatError(path, None, f"event {bad[0]} has polarity {p[bad[0]]}; expected 0/1 or -1/1")
    ev = np.empty(x.size, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = cols["t"], x, y, p > 0
    return ev

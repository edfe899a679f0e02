"""ATIS "td" ``.dat`` files of NavGesture (kAER / Prophesee's early DAT layout, 304x240 ATIS sensor).

Sources: the NavGesture release notes (Maro, Ieng, Benosman 2020, "Event-based gesture recognition
with dynamic background suppression using smartphone computational capabilities") and the
``load_atis_data`` reader shipped with it. A file starts with optional ASCII header lines beginning
with ``%``; when a header is present it is followed by two bytes, the event type and the event
size (8). Then 8-byte **little-endian** events, as one uint64::

    bits  0-31  timestamp (microseconds)
    bits 32-40  x (9 bits)
    bits 41-48  y (8 bits, origin at the bottom row)
    bit  49     polarity (1 = ON)

Decoder: numpy. ``expelliarmus`` (the maintained Prophesee decoder) reads the later DAT layout
with 14-bit x / 14-bit y / 4-bit polarity fields, which decodes these files wrongly.

Example:
    >>> import os, struct, tempfile
    >>> from snnir.data.formats import read_atis_td_dat
    >>> path = os.path.join(tempfile.mkdtemp(), "user01_le_0_td.dat")
    >>> word = 500 | (7 << 32) | (11 << 41) | (1 << 49)      # t=500us x=7 y=11 ON
    >>> _ = open(path, "wb").write(b"% Data file containing TD events.\\n" + bytes([0, 8]) + struct.pack("<Q", word))
    >>> read_atis_td_dat(path).tolist()
    [(500, 7, 11, 1)]
"""

from __future__ import annotations

import numpy as np

from snnir.data.events import EVENT_DTYPE
from snnir.data.formats._common import (
    EventFormatError,
    PathLike,
    check_in_sensor,
    check_whole_records,
    read_bytes,
    skip_text_header,
)

EVENT_SIZE = 8


def read_atis_td_dat(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a NavGesture ``*_td.dat`` file into an EVENT_DTYPE array (file order, sensor y)."""
    data = read_bytes(path)
    start = skip_text_header(data, b"%")
    if start:
        if len(data) < start + 2:
            raise EventFormatError(path, start, "file ends before the event type/size bytes after the header")
        if data[start + 1] != EVENT_SIZE:
            raise EventFormatError(path, start + 1, f"event size byte is {data[start + 1]}, expected 8")
        start += 2
    n = check_whole_records(path, len(data), start, EVENT_SIZE, "TD event")
    word = np.frombuffer(data, dtype="<u8", count=n, offset=start)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"] = (word & 0xFFFFFFFF).astype(np.int64)
    ev["x"] = (word >> 32) & 0x1FF
    ev["y"] = (word >> 41) & 0xFF
    ev["p"] = (word >> 49) & 1
    check_in_sensor(path, ev["x"], ev["y"], sensor_size, start + EVENT_SIZE * np.arange(n))
    return ev

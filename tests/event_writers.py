"""Writers of the real byte layouts, from each format's documentation (struct.pack, bit by bit).

They never call snnir's decoders, so a test that writes with these and reads with snnir checks the
decoder against the documented layout (cited in each decoder module's docstring).
"""

from __future__ import annotations

import struct

import h5py
import numpy as np


def atis_event(x: int, y: int, p: int, t: int) -> bytes:
    """One 40-bit N-MNIST event: x, y, polarity bit 7 + t bits 22-16, t bits 15-8, t bits 7-0."""
    return struct.pack("BBBBB", x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF)


def atis_bin(events) -> bytes:
    return b"".join(atis_event(x, y, p, t) for t, x, y, p in events)


AEDAT31_HEADER = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#Start-Time: 2017-01-01\r\n#!END-HEADER\r\n"


def aedat31_packet(etype: int, events, overflow: int = 0, capacity: int | None = None,
                   number: int | None = None) -> bytes:
    """A 28-byte little-endian cAER packet header + 8-byte polarity events (data word, timestamp).

    ``events`` are ``(t, x, y, p, valid)``; the data word is x << 17 | y << 2 | p << 1 | valid.
    """
    capacity = len(events) if capacity is None else capacity
    number = len(events) if number is None else number
    body = b"".join(struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | v, t) for t, x, y, p, v in events)
    return struct.pack("<hhiiiiii", etype, 1, 8, 4, overflow, capacity, number, len(events)) + body


def aedat31(events) -> bytes:
    """An AEDAT 3.1 file with all ``(t, x, y, p)`` events valid, in one polarity packet."""
    return AEDAT31_HEADER + aedat31_packet(1, [(t, x, y, p, 1) for t, x, y, p in events])


AEDAT2_HEADER = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n")


def dvs128_address(x: int, y: int, p: int) -> int:
    """jAER DVS128: bits 8-14 y, bits 1-7 x, bit 0 set for OFF."""
    return (y << 8) | (x << 1) | (1 - p)


def aedat2(events) -> bytes:
    """An AEDAT 2.0 file of DVS128 ``(t, x_sensor, y_sensor, p)`` events, big-endian records."""
    return AEDAT2_HEADER + b"".join(struct.pack(">II", dvs128_address(x, y, p), t) for t, x, y, p in events)


TD_HEADER = b"% Data file containing TD events.\n% Version 2\n% Height 240\n% Width 304\n"


def td_word(t: int, x: int, y: int, p: int) -> bytes:
    """One ATIS td event, uint64 little-endian: t bits 0-31, x 32-40, y 41-48, p 49."""
    return struct.pack("<Q", t | (x << 32) | (y << 41) | (p << 49))


def td_dat(events, header: bool = True) -> bytes:
    body = b"".join(td_word(*e) for e in events)
    return TD_HEADER + bytes([0, 8]) + body if header else body


def shd_h5(path, samples, labels) -> None:
    """An SHD/SSC file: vlen float32 spikes/times (seconds), vlen uint16 spikes/units, labels."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = t, u
        f["labels"] = np.asarray(labels, np.uint16)


def random_events(rng: np.random.Generator, n: int, w: int, h: int, t_max: int) -> list[tuple[int, int, int, int]]:
    """``n`` events ``(t, x, y, p)`` as Python ints, sorted by t."""
    t = np.sort(rng.integers(0, t_max, n))
    return [(int(t[i]), int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(0, 2))) for i in range(n)]


def as_tuples(ev) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in e) for e in ev.tolist()]

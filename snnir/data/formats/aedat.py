"""jAER / cAER AEDAT files: version 2.0 (CIFAR10-DVS) and 3.1 (DVS128 Gesture, some CIFAR10-DVS copies).

Sources: iniVation's "AEDAT file formats" documentation (docs.inivation.com, sections AEDAT 2.0 and
AEDAT 3.1), jAER's DVS128 address layout (``DVS128.java``), and the DVS128 Gesture README
(Amir et al., CVPR 2017). Both versions open with ASCII header lines starting with ``#``; the first
names the version (``#!AER-DAT2.0`` / ``#!AER-DAT3.1``).

AEDAT 2.0: after the header, 8-byte records of a **big-endian** 32-bit address and a big-endian
32-bit timestamp (microseconds). The address layout belongs to the sensor; for the DVS128 of
CIFAR10-DVS (:func:`decode_dvs128_address`): bit 0 polarity (0 = ON, jAER's convention), bits 1-7
x, bits 8-14 y, bit 15 set for external (non-pixel) events.

AEDAT 3.1: the header ends with the line ``#!END-HEADER``; then packets, each a 28-byte
**little-endian** header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by
``eventCapacity * eventSize`` bytes. Polarity packets (eventType 1, eventSize 8) hold a uint32 data
word (bit 0 valid, bit 1 polarity 1 = ON, bits 2-16 y, bits 17-31 x) and an int32 timestamp; the
full time is ``eventTSOverflow << 31 | timestamp``. Other packet types (special, frame, IMU) are
skipped, as are events whose valid bit is clear.

DVS128 Gesture ships one ``userNN_<lighting>.aedat`` recording per trial with a
``userNN_<lighting>_labels.csv`` (header ``class,startTime_usec,endTime_usec``; classes 1..11) and
``trials_to_train.txt`` / ``trials_to_test.txt`` listing the ``.aedat`` names of each split:
:func:`read_gesture_labels` and :func:`read_trials` read those.

Decoder: numpy (``np.frombuffer`` with explicit ``>u4`` / ``<u4`` dtypes). The maintained AEDAT
packages on PyPI (``aedat``, ``dv-processing``, ``dv``) read AEDAT 4 only, which none of these
datasets uses.

Example:
    >>> import os, struct, tempfile
    >>> from snnir.data.formats import decode_dvs128_address, read_aedat2
    >>> path = os.path.join(tempfile.mkdtemp(), "cifar10_cat_0.aedat")
    >>> addr = (5 << 8) | (9 << 1) | 0               # y=5, x=9, ON
    >>> _ = open(path, "wb").write(b"#!AER-DAT2.0\\r\\n" + struct.pack(">II", addr, 1234))
    >>> t, a = read_aedat2(path)
    >>> t.tolist(), decode_dvs128_address(a)
    ([1234], (array([9]), array([5]), array([1])))
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
    read_text,
    skip_text_header,
)

AEDAT2_MAGIC = b"#!AER-DAT2.0"
AEDAT31_MAGIC = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER"
PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                          ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])
POLARITY_TYPE = 1
POLARITY_SIZE = 8


def aedat_version(path: PathLike) -> str:
    """``"2.0"`` or ``"3.1"`` from the first header line; anything else is a format error."""
    with open(path, "rb") as f:
        first = f.readline(256)
    for magic, version in ((AEDAT2_MAGIC, "2.0"), (AEDAT31_MAGIC, "3.1")):
        if first.startswith(magic):
            return version
    raise EventFormatError(path, 0, f"expected an AEDAT header line '#!AER-DAT2.0' or '#!AER-DAT3.1', "
                                    f"found {first[:40]!r}")


def read_aedat2(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps (int64 microseconds) and raw 32-bit addresses (uint32) of an AEDAT 2.0 file."""
    data = read_bytes(path)
    if not data.startswith(AEDAT2_MAGIC):
        raise EventFormatError(path, 0, f"expected the header line '#!AER-DAT2.0', found {data[:40]!r}")
    start = skip_text_header(data, b"#")
    n = check_whole_records(path, len(data), start, 8, "AEDAT 2.0 event (address, timestamp)")
    rec = np.frombuffer(data, dtype=np.dtype([("a", ">u4"), ("t", ">u4")]), count=n, offset=start)
    return rec["t"].astype(np.int64), rec["a"].astype(np.uint32)


def decode_dvs128_address(addr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """jAER DVS128 pixel address -> (x, y, p) in sensor coordinates, p = 1 for ON (address bit 0 clear)."""
    addr = np.asarray(addr, dtype=np.int64)
    return (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, 1 - (addr & 1)


def dvs128_pixel_events(addr: np.ndarray) -> np.ndarray:
    """Mask of addresses that are pixel events (bit 15, jAER's external-event flag, clear)."""
    return (np.asarray(addr, dtype=np.int64) & (1 << 15)) == 0


def read_aedat31(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Valid polarity events of an AEDAT 3.1 file as an EVENT_DTYPE array (file order)."""
    data = read_bytes(path)
    if not data.startswith(AEDAT31_MAGIC):
        raise EventFormatError(path, 0, f"expected the header line '#!AER-DAT3.1', found {data[:40]!r}")
    end = data.find(END_HEADER)
    if end < 0:
        raise EventFormatError(path, len(data), "the header has no '#!END-HEADER' line; truncated?")
    newline = data.find(b"\n", end)
    pos = newline + 1 if newline >= 0 else len(data)
    chunks, offsets = [], []
    while pos < len(data):
        if len(data) - pos < PACKET_HEADER.itemsize:
            raise EventFormatError(path, pos, f"file ends inside a 28-byte packet header "
                                              f"({len(data) - pos} bytes left); truncated?")
        head = np.frombuffer(data, dtype=PACKET_HEADER, count=1, offset=pos)[0]
        size, capacity, number = int(head["size"]), int(head["capacity"]), int(head["number"])
        if size <= 0 or capacity < 0 or not 0 <= number <= capacity:
            raise EventFormatError(path, pos, f"corrupted packet header (eventSize={size}, "
                                              f"eventCapacity={capacity}, eventNumber={number})")
        body = pos + PACKET_HEADER.itemsize
        if body + capacity * size > len(data):
            raise EventFormatError(path, body, f"packet declares {capacity} events of {size} bytes but only "
                                               f"{len(data) - body} bytes remain; truncated?")
        if head["type"] == POLARITY_TYPE:
            if size != POLARITY_SIZE:
                raise EventFormatError(path, pos, f"polarity packet with eventSize={size}, expected 8")
            rec = np.frombuffer(data, dtype=np.dtype([("d", "<u4"), ("t", "<u4")]), count=number, offset=body)
            t = (int(head["ts_overflow"]) << 31) | rec["t"].astype(np.int64)
            chunks.append((rec["d"].astype(np.int64), t))
            offsets.append(body + POLARITY_SIZE * np.arange(number))
        pos = body + capacity * size
    word = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
    t = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, np.int64)
    valid = (word & 1) == 1
    ev = np.empty(int(valid.sum()), dtype=EVENT_DTYPE)
    w = word[valid]
    ev["t"], ev["x"], ev["y"], ev["p"] = t[valid], (w >> 17) & 0x7FFF, (w >> 2) & 0x7FFF, (w >> 1) & 1
    if sensor_size is not None and ev.size:
        check_in_sensor(path, ev["x"], ev["y"], sensor_size, np.concatenate(offsets)[valid])
    return ev


def read_gesture_labels(path: PathLike) -> np.ndarray:
    """A DVS128 Gesture ``*_labels.csv``: rows ``(class, start_us, end_us)`` with classes 0..10."""
    rows = []
    lines = read_text(path).splitlines()
    if not lines or lines[0].replace(" ", "").lower() != "class,starttime_usec,endtime_usec":
        raise EventFormatError(path, 0, "expected the header 'class,startTime_usec,endTime_usec'")
    offset = len(lines[0]) + 1
    for line in lines[1:]:
        if line.strip():
            try:
                cls, start, stop = (int(v) for v in line.split(","))
            except ValueError:
                raise EventFormatError(path, offset, f"expected 'class,start,end' integers, found {line[:80]!r}") \
                    from None
            if not 1 <= cls <= 11 or not 0 <= start <= stop < 2**62:
                raise EventFormatError(path, offset, f"bad label row {line[:80]!r} (class 1..11, "
                                                     "0 <= start <= end < 2**62 microseconds)")
            rows.append((cls - 1, start, stop))
        offset += len(line) + 1
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def read_trials(path: PathLike) -> list[str]:
    """The ``.aedat`` names listed in ``trials_to_train.txt`` / ``trials_to_test.txt``."""
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]

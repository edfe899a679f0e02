"""ATIS binary event files of N-MNIST and N-Caltech101 (``*.bin``, 40 bits per event).

Layout (Orchard et al. 2015, "Converting Static Image Datasets to Spiking Neuromorphic Datasets
Using Saccades", and the ``Read_Ndataset.m`` reader distributed with the datasets): the file is a
plain sequence of 5-byte events, no header::

    byte 0      x address (pixels)
    byte 1      y address (pixels)
    byte 2      bit 7: polarity (1 = ON), bits 6..0: timestamp bits 22..16
    byte 3      timestamp bits 15..8
    byte 4      timestamp bits 7..0      (microseconds)

An event with ``y == 240`` is not a pixel event but a timestamp-overflow marker: every later event's
time grows by 2**13 microseconds (the datasets' own reader does exactly this; N-MNIST recordings
are short enough never to need it, some N-Caltech101 ones do). Markers are dropped from the output.

Decoder: a few numpy bit operations over ``np.frombuffer``; no maintained package reads this
format without pulling a heavy dependency, and the layout is five bytes.

Example:
    >>> import tempfile, os
    >>> from snnir.data.formats import read_atis_bin
    >>> path = os.path.join(tempfile.mkdtemp(), "00002.bin")
    >>> _ = open(path, "wb").write(bytes([3, 4, 0x80, 0x01, 0x02]))  # x=3 y=4 ON t=258us
    >>> read_atis_bin(path).tolist()
    [(258, 3, 4, 1)]
"""

from __future__ import annotations

import numpy as np

from snnir.data.events import EVENT_DTYPE
from snnir.data.formats._common import PathLike, check_in_sensor, check_whole_records, read_bytes

OVERFLOW_Y = 240
OVERFLOW_STEP_US = 1 << 13


def read_atis_bin(path: PathLike, sensor_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an N-MNIST / N-Caltech101 ``.bin`` file into an EVENT_DTYPE array (file order).

    ``sensor_size=(H, W)``, when given, makes a pixel outside the sensor an error (a corrupted file).
    """
    data = read_bytes(path)
    n = check_whole_records(path, len(data), 0, 5, "ATIS event")
    raw = np.frombuffer(data, dtype=np.uint8, count=n * 5).reshape(n, 5).astype(np.int64)
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = raw[:, 1] == OVERFLOW_Y
    t = t + np.cumsum(overflow) * OVERFLOW_STEP_US
    keep = ~overflow
    ev = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t[keep], raw[keep, 0], raw[keep, 1], raw[keep, 2] >> 7
    check_in_sensor(path, ev["x"], ev["y"], sensor_size, np.flatnonzero(keep) * 5)
    return ev

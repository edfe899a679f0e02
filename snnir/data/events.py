"""Event streams as structured numpy arrays.

Vision events have fields ``t, x, y, p`` (time in microseconds, pixel column, pixel row, polarity
0/1); audio events (SHD/SSC) have ``t, x`` (time, channel). A stream is sorted by ``t``.

Example:
    >>> import numpy as np
    >>> from snnir.data.events import make_events
    >>> ev = make_events(t=[3, 1], x=[0, 1], y=[2, 2], p=[1, 0])
    >>> ev["t"].tolist(), ev.dtype.names
    ([1, 3], ('t', 'x', 'y', 'p'))
"""

from __future__ import annotations

from typing import Any

import numpy as np

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
AUDIO_EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16)])


def make_events(t: Any, x: Any, y: Any = None, p: Any = None, sort: bool = True) -> np.ndarray:
    """A structured event array from field columns (audio events when ``y`` and ``p`` are None)."""
    audio = y is None and p is None
    t = np.asarray(t)
    ev = np.empty(t.shape[0], dtype=AUDIO_EVENT_DTYPE if audio else EVENT_DTYPE)
    ev["t"], ev["x"] = t, x
    if not audio:
        ev["y"], ev["p"] = y, p
    if sort:
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev

"""Event streams as structured numpy arrays.

Vision events have fields ``t, x, y, p`` (time in microseconds, pixel column, pixel row, polarity
0/1); audio events (SHD/SSC) have ``t, x`` (time, channel). A stream is sorted by ``t``.
``sensor_size`` is ``(H, W)`` for vision events and ``(C,)`` for audio events.

Example:
    >>> import numpy as np
    >>> from snnir.data.events import check_events, make_events
    >>> ev = make_events(t=[3, 1], x=[0, 1], y=[2, 2], p=[1, 0])
    >>> ev["t"].tolist(), ev.dtype.names
    ([1, 3], ('t', 'x', 'y', 'p'))
    >>> check_events(ev, sensor_size=(3, 2)) is ev
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from snnir.errors import SnnirError

EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
AUDIO_EVENT_DTYPE = np.dtype([("t", np.int64), ("x", np.int16)])


class EventError(SnnirError, ValueError):
    """An event array has the wrong dtype, is not sorted by ``t``, or lies outside the sensor."""


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


def is_audio(events: np.ndarray) -> bool:
    """True for audio events (fields ``t, x`` only), False for vision events (``t, x, y, p``)."""
    names = events.dtype.names or ()
    return "y" not in names and "p" not in names


def check_events(events: Any, sensor_size: tuple[int, ...] | None = None, what: str = "events") -> np.ndarray:
    """Validate an event array and return it unchanged; raise :class:`EventError` naming the defect.

    Checks: a 1-D structured array with integer ``x`` (and ``y``, ``p``) and numeric ``t`` fields;
    ``t`` non-decreasing; polarities 0 or 1; with ``sensor_size`` (``(H, W)`` for vision, ``(C,)``
    for audio), every coordinate inside the sensor.

    >>> check_events(np.zeros(3, dtype=[("t", "f8"), ("x", "f8")]))
    Traceback (most recent call last):
    ...
    snnir.data.events.EventError: events: field 'x' must be an integer type, got float64
    """
    if not isinstance(events, np.ndarray) or events.dtype.names is None:
        raise EventError(f"{what}: expected a structured numpy array with fields t, x, y, p (vision) or t, x "
                         f"(audio), e.g. snnir.data.EVENT_DTYPE; got {type(events).__name__}"
                         + (f" of dtype {events.dtype}" if isinstance(events, np.ndarray) else ""))
    if events.ndim != 1:
        raise EventError(f"{what}: expected a 1-D event array, got shape {events.shape}")
    names = events.dtype.names
    audio = is_audio(events)
    needed = ("t", "x") if audio else ("t", "x", "y", "p")
    missing = [n for n in needed if n not in names]
    if missing:
        raise EventError(f"{what}: missing field(s) {missing}; vision events need t, x, y, p and audio events t, x "
                         f"(got fields {names})")
    if events.dtype["t"].kind not in "iuf":
        raise EventError(f"{what}: field 't' must be numeric, got {events.dtype['t']}")
    for name in needed[1:]:
        if events.dtype[name].kind not in "iu":
            raise EventError(f"{what}: field {name!r} must be an integer type, got {events.dtype[name]}")
    t = events["t"]
    if t.size > 1:
        bad = np.flatnonzero(t[1:] < t[:-1])
        if bad.size:
            i = int(bad[0])
            raise EventError(f"{what}: not sorted by t: event {i + 1} has t={t[i + 1]} < t={t[i]} of event {i} "
                             "(sort with events[np.argsort(events['t'], kind='stable')])")
    if not audio and events.size:
        p = events["p"]
        if not np.all((p == 0) | (p == 1)):
            raise EventError(f"{what}: polarity must be 0 or 1, got values {np.unique(p)[:5].tolist()} "
                             "(map -1/1 polarities with p = (p > 0))")
    if sensor_size is not None:
        _check_inside(events, tuple(int(s) for s in sensor_size), audio, what)
    return events


def _check_inside(events: np.ndarray, sensor_size: tuple[int, ...], audio: bool, what: str) -> None:
    if audio and len(sensor_size) != 1:
        raise EventError(f"{what}: audio events (fields t, x) need sensor_size=(C,), got {sensor_size}")
    if not audio and len(sensor_size) != 2:
        raise EventError(f"{what}: vision events need sensor_size=(H, W), got {sensor_size}")
    if any(s <= 0 for s in sensor_size):
        raise EventError(f"{what}: sensor_size must be positive, got {sensor_size}")
    if not events.size:
        return
    fields = (("x", sensor_size[0]),) if audio else (("y", sensor_size[0]), ("x", sensor_size[1]))
    for name, size in fields:
        v = events[name]
        bad = np.flatnonzero((v < 0) | (v >= size))
        if bad.size:
            i = int(bad[0])
            raise EventError(f"{what}: event {i} has {name}={v[i]} outside the sensor (0 <= {name} < {size} for "
                             f"sensor_size={sensor_size}); {bad.size} event(s) outside")

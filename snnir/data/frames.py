"""Integrate an event stream into frames: by event count, by equal time windows, or by fixed duration.

``to_frames(events, sensor_size, frames_number=T, split_by='number'|'time')`` gives exactly ``T``
frames; ``to_frames(events, sensor_size, duration=d)`` gives one frame per window of ``d`` time
units (variable length). Vision events (``sensor_size=(H, W)``) give ``[T, 2, H, W]`` float32 event
counts, channel = polarity; audio events (``sensor_size=(C,)``) give ``[T, C]``.

Segmentation follows SpikingJelly 2.0 (``spikingjelly.datasets.integrate_events_by_fixed_frames_number``
and ``integrate_events_by_fixed_duration``), which is what most published results used:

- ``split_by='number'``: with ``N`` events, frame ``j`` holds events ``[j*(N//T), (j+1)*(N//T))``;
  the last frame also takes the remainder, up to ``N``. With fewer events than frames (``N < T``),
  ``N//T`` is 0 and every event lands in the last frame.
- ``split_by='time'``: ``dt = (t[-1] - t[0]) // T`` (floor; for float ``t``, e.g. seconds, the
  exact quotient, as SpikingJelly's SHD reader does); frame ``j`` holds events with
  ``t[0] + j*dt <= t < t[0] + (j+1)*dt``; the last frame takes everything from ``t[0] + (T-1)*dt``.
- ``duration=d``: ``t`` is shifted to start at 0, ``T = ceil(t[-1] / d)`` frames, event ``t`` goes
  to frame ``t // d``; the last frame also takes events at exactly ``t = T*d``.

Where SpikingJelly raises instead, snnir returns frames (differences, all at edge cases):
an empty time window (``split_by='time'``, including ``dt == 0`` when all timestamps are equal)
is an all-zero frame (SpikingJelly raises IndexError); ``duration`` with all timestamps equal gives
one frame (SpikingJelly raises IndexError); an empty stream gives ``T`` zero frames with
``frames_number`` and zero frames (shape ``[0, 2, H, W]``) with ``duration``. snnir returns
float32 (SpikingJelly float64) and requires polarities 0/1 (SpikingJelly maps every non-zero
polarity to channel 1).

Example:
    >>> from snnir.data import make_events, to_frames
    >>> ev = make_events(t=[0, 1, 2, 3, 4], x=[0, 1, 0, 1, 0], y=[0, 0, 1, 1, 0], p=[1, 0, 1, 1, 0])
    >>> f = to_frames(ev, (2, 2), frames_number=2)            # 2 events, then 3 (the remainder)
    >>> f.shape, f.sum(axis=(1, 2, 3)).tolist()
    ((2, 2, 2, 2), [2.0, 3.0])
    >>> to_frames(ev, (2, 2), duration=2).sum(axis=(1, 2, 3)).tolist()   # t in [0,2), [2,4]
    [2.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from snnir.data.events import EventError, check_events, is_audio

#: ``integrate(events_slice, sensor_size) -> np.ndarray``: one frame from the events of one window.
Integrator = Callable[[np.ndarray, tuple], np.ndarray]

SPLIT_BY = ("number", "time")


def frame_index(t: np.ndarray, frames_number: int | None = None, split_by: str = "number",
                duration: Any = None) -> tuple[np.ndarray, int]:
    """Each event's frame index and the number of frames, from the timestamps ``t`` (sorted).

    >>> frame_index(np.array([0, 0, 5, 9, 10]), frames_number=2, split_by="time")   # dt = 5
    (array([0, 0, 1, 1, 1]), 2)
    """
    _check_setting(frames_number, split_by, duration)
    n = t.shape[0]
    if duration is not None:
        if n == 0:
            return np.zeros(0, dtype=np.int64), 0
        elapsed = t - t[0]
        count = max(1, int(np.ceil(elapsed[-1] / duration)))
        return np.minimum(elapsed // duration, count - 1).astype(np.int64), count
    last = frames_number - 1
    if split_by == "number":
        per_frame = n // frames_number
        index = np.arange(n) // per_frame if per_frame else np.full(n, last)
        return np.minimum(index, last).astype(np.int64), frames_number
    if n == 0:
        return np.zeros(0, dtype=np.int64), frames_number
    span = t[-1] - t[0]
    # Integer time (microseconds): floor, as SpikingJelly's vision datasets. Float time (e.g. seconds):
    # the exact quotient, as SpikingJelly's SHD reader; a floor there would put everything in one frame.
    dt = span / frames_number if t.dtype.kind == "f" else span // frames_number
    if not dt:
        return np.full(n, last, dtype=np.int64), frames_number
    return np.minimum((t - t[0]) // dt, last).astype(np.int64), frames_number


def to_frames(events: np.ndarray, sensor_size: tuple[int, ...], frames_number: int | None = None,
              split_by: str = "number", duration: Any = None, integrate: Integrator | None = None) -> np.ndarray:
    """Frames ``[T, 2, H, W]`` (vision) or ``[T, C]`` (audio) from a sorted event array.

    Give exactly one of ``frames_number`` (with ``split_by='number'`` or ``'time'``) or
    ``duration`` (in the unit of ``t``; ``split_by`` is then unused). ``integrate`` replaces the
    default event counting: it is called as ``integrate(events_slice, sensor_size)`` once per frame
    (also for empty windows) and the results are stacked along a new first axis.
    See the module docstring for the exact segmentation rules.

    >>> from snnir.data import make_events
    >>> ev = make_events(t=[0, 5, 10], x=[0, 1, 2])                    # audio: 3 channels
    >>> to_frames(ev, (3,), frames_number=3, split_by="time").tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> on = lambda ev, size: np.array([ev.size > 0])                  # a custom integration
    >>> to_frames(ev, (3,), duration=4, integrate=on).ravel().tolist()  # windows [0,4) [4,8) [8,10]
    [True, True, True]
    """
    sensor_size = _check_sensor_size(sensor_size)
    check_events(events, sensor_size)
    index, count = frame_index(events["t"], frames_number, split_by, duration)
    if integrate is not None:
        return _integrate_custom(events, sensor_size, index, count, integrate)
    if is_audio(events):
        flat = index * sensor_size[0] + events["x"].astype(np.int64)
    else:
        h, w = sensor_size
        flat = ((index * 2 + events["p"].astype(np.int64)) * h + events["y"].astype(np.int64)) * w \
            + events["x"].astype(np.int64)
    shape = (count, *sensor_size) if is_audio(events) else (count, 2, *sensor_size)
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    return counts.reshape(shape).astype(np.float32)


def _integrate_custom(events: np.ndarray, sensor_size: tuple[int, ...], index: np.ndarray, count: int,
                      integrate: Integrator) -> np.ndarray:
    # index is non-decreasing, so each frame's events are one contiguous slice.
    bounds = np.searchsorted(index, np.arange(count + 1), side="left")
    frames = [np.asarray(integrate(events[bounds[j]:bounds[j + 1]], sensor_size)) for j in range(count)]
    if not frames:
        return np.empty((0, *np.asarray(integrate(events[:0], sensor_size)).shape))
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"to_frames: integrate={getattr(integrate, '__name__', integrate)!r} returned frames of "
                         f"different shapes {sorted(shapes)}; every frame must have the same shape")
    return np.stack(frames)


def _check_sensor_size(sensor_size: Any) -> tuple[int, ...]:
    try:
        size = tuple(int(s) for s in sensor_size)
    except TypeError:
        raise EventError(f"to_frames: sensor_size must be (H, W) for vision or (C,) for audio events, "
                         f"got {sensor_size!r}") from None
    if len(size) not in (1, 2) or any(s <= 0 for s in size):
        raise EventError(f"to_frames: sensor_size must be (H, W) for vision or (C,) for audio events with positive "
                         f"sizes, got {sensor_size!r}")
    return size


def _check_setting(frames_number: Any, split_by: str, duration: Any) -> None:
    if (frames_number is None) == (duration is None):
        raise ValueError("to_frames: give exactly one of frames_number (a fixed number of frames) or duration "
                         f"(fixed time windows); got frames_number={frames_number!r}, duration={duration!r}")
    if frames_number is not None:
        if isinstance(frames_number, bool) or not isinstance(frames_number, (int, np.integer)) or frames_number <= 0:
            raise ValueError(f"to_frames: frames_number must be a positive integer, got {frames_number!r}")
        if split_by not in SPLIT_BY:
            raise ValueError(f"to_frames: split_by must be 'number' or 'time', got {split_by!r}")
    elif isinstance(duration, bool) or not isinstance(duration, (int, float, np.number)) or not duration > 0:
        raise ValueError(f"to_frames: duration must be a positive number (in the unit of t), got {duration!r}")

"""Transforms of event streams: each a small callable on a structured event array, composable.

Every transform takes a sorted event array (:data:`~snnir.data.EVENT_DTYPE`, or audio events with
fields ``t, x`` where that makes sense), returns a new sorted array of the same dtype, and never
modifies its input. ``output_size(sensor_size)`` tells the sensor size after the transform, so a
pipeline knows what to pass to :func:`~snnir.data.to_frames`.

- :class:`Denoise`: the background-activity filter (tonic's ``Denoise``).
- :class:`Downsample`: integer spatial (and optionally temporal) down-scaling.
- :class:`Crop`, :class:`CenterCrop`: keep a box, shift coordinates to its origin.
- :class:`RandomTimeDrop`: drop a random time window, or a random fraction of events.
- :class:`TimeReversal`: play the stream backwards (polarity flipped).
- :class:`MergePolarity`: all events on polarity 0.
- :class:`ToFrames`: :func:`~snnir.data.to_frames` as the last step of a pipeline.
- :class:`Compose`: apply several in order.

Example:
    >>> import numpy as np
    >>> from snnir.data import make_events, to_frames
    >>> from snnir.data.transforms import CenterCrop, Compose, Downsample, MergePolarity
    >>> ev = make_events(t=[0, 10, 20], x=[1, 3, 5], y=[2, 3, 4], p=[0, 1, 1])
    >>> pipeline = Compose([CenterCrop((8, 8), (4, 4)), Downsample(2), MergePolarity()])
    >>> out = pipeline(ev)
    >>> out[["x", "y", "p"]].tolist(), pipeline.output_size((8, 8))
    ([(0, 0, 0), (1, 1, 0)], (2, 2))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from snnir.data.events import check_events, is_audio
from snnir.data.frames import Integrator, to_frames


class EventTransform:
    """Base class: ``__call__(events) -> events`` and ``output_size(sensor_size) -> sensor_size``."""

    def __call__(self, events: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_size(self, sensor_size: Sequence[int]) -> tuple[int, ...]:
        """The sensor size of the transformed events (unchanged unless the transform rescales or crops)."""
        return tuple(int(s) for s in sensor_size)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Compose(EventTransform):
    """Apply transforms in order.

    >>> Compose([MergePolarity(), TimeReversal()])
    Compose([MergePolarity(), TimeReversal()])
    """

    def __init__(self, transforms: Iterable[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            events = transform(events)
        return events

    def output_size(self, sensor_size: Sequence[int]) -> tuple[int, ...]:
        size = tuple(int(s) for s in sensor_size)
        for transform in self.transforms:
            size = transform.output_size(size) if hasattr(transform, "output_size") else size
        return size

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Denoise(EventTransform):
    """Background-activity filter: keep an event only if a neighbouring pixel fired shortly before.

    An event at ``(x, y, t)`` survives when an *earlier* event (earlier in the stream, so at most
    ``t``) at one of its 4 neighbours ``(x±1, y)``, ``(x, y±1)`` (or 8 with ``neighbours=8``) has a
    timestamp ``t' > t - filter_time``. The pixel itself does not count (a hot pixel cannot keep
    itself alive) and polarity is ignored. This is tonic's ``Denoise`` (``functional.denoise_numpy``),
    except at the very start: tonic initialises every pixel's memory as if it had fired at ``t = 0``,
    so it keeps every event with ``t < filter_time`` that has an in-bounds neighbour; here a pixel
    that never fired never supports a neighbour. For audio events the neighbours are channels ``x±1``.

    >>> from snnir.data import make_events
    >>> ev = make_events(t=[0, 5, 100, 300], x=[3, 4, 9, 4], y=[3, 3, 9, 3], p=[1, 1, 0, 1])
    >>> Denoise(filter_time=50)(ev)["t"].tolist()   # (4,3) follows (3,3) within 50; the rest is isolated
    [5]
    """

    def __init__(self, filter_time: float, neighbours: int = 4) -> None:
        if not filter_time > 0:
            raise ValueError(f"Denoise: filter_time must be positive, got {filter_time!r}")
        if neighbours not in (4, 8):
            raise ValueError(f"Denoise: neighbours must be 4 or 8, got {neighbours!r}")
        self.filter_time = filter_time
        self.neighbours = neighbours

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="Denoise")
        n = events.size
        if n == 0:
            return events.copy()
        audio = is_audio(events)
        x = events["x"].astype(np.int64) + 1  # one pixel of margin on each side: neighbours never wrap
        y = np.zeros(n, dtype=np.int64) if audio else events["y"].astype(np.int64) + 1
        width = int(x.max()) + 2
        order = np.arange(n, dtype=np.int64)
        # Key (pixel, stream position): the latest earlier event at pixel q before event i is the
        # predecessor of q*n + i among the sorted keys.
        keys = np.sort((y * width + x) * n + order)
        if audio:
            offsets = [(0, -1), (0, 1)]
        elif self.neighbours == 4:
            offsets = [(0, -1), (0, 1), (-1, 0), (1, 0)]
        else:
            offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        t = events["t"]
        keep = np.zeros(n, dtype=bool)
        for dy, dx in offsets:
            neighbour = (y + dy) * width + (x + dx)
            pos = np.searchsorted(keys, neighbour * n + order, side="left") - 1
            found = keys[np.maximum(pos, 0)]
            same_pixel = (pos >= 0) & (found // n == neighbour)
            earlier = found % n
            keep |= same_pixel & (t - t[earlier] < self.filter_time)
        return events[keep]


class Downsample(EventTransform):
    """Integer down-scaling: ``x' = x // fx``, ``y' = y // fy``, and ``t' = t // time_factor``.

    ``spatial_factor`` is one integer or ``(fy, fx)``; the sensor shrinks to
    ``(ceil(H / fy), ceil(W / fx))``. Events are kept (one output pixel then counts the events of
    its ``fy x fx`` block). ``time_factor`` changes the time unit (1000: microseconds to
    milliseconds). For audio events ``spatial_factor`` divides the channel.

    >>> from snnir.data import make_events
    >>> Downsample(2, time_factor=10)(make_events([15, 27], [3, 4], [1, 5], [0, 1]))[["t", "x", "y"]].tolist()
    [(1, 1, 0), (2, 2, 2)]
    """

    def __init__(self, spatial_factor: int | Sequence[int] = 1, time_factor: int = 1) -> None:
        factors = (spatial_factor, spatial_factor) if np.ndim(spatial_factor) == 0 else tuple(spatial_factor)
        if len(factors) != 2 or any(not _positive_int(f) for f in factors):
            raise ValueError("Downsample: spatial_factor must be a positive integer or (fy, fx), "
                             f"got {spatial_factor!r}")
        if not _positive_int(time_factor):
            raise ValueError(f"Downsample: time_factor must be a positive integer, got {time_factor!r}")
        self.spatial_factor = tuple(int(f) for f in factors)
        self.time_factor = int(time_factor)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="Downsample")
        out = events.copy()
        fy, fx = self.spatial_factor
        out["x"] //= fy if is_audio(events) else fx
        if not is_audio(events):
            out["y"] //= fy
        if self.time_factor != 1:
            out["t"] //= self.time_factor
        return out

    def output_size(self, sensor_size: Sequence[int]) -> tuple[int, ...]:
        if len(sensor_size) == 1:
            return (math.ceil(sensor_size[0] / self.spatial_factor[0]),)
        return tuple(math.ceil(s / f) for s, f in zip(sensor_size, self.spatial_factor))


class Crop(EventTransform):
    """Keep the events inside the box ``origin`` (``(y0, x0)``) + ``size`` (``(h, w)``) and shift
    them to the box: ``x' = x - x0``, ``y' = y - y0``. Audio: ``origin=(c0,)``, ``size=(c,)``.

    >>> from snnir.data import make_events
    >>> Crop(origin=(1, 2), size=(2, 2))(make_events([0, 1, 2], [2, 3, 4], [1, 2, 1], [1, 1, 1]))[["x", "y"]].tolist()
    [(0, 0), (1, 1)]
    """

    def __init__(self, origin: Sequence[int], size: Sequence[int]) -> None:
        origin, size = tuple(origin), tuple(size)
        if len(origin) != len(size) or len(size) not in (1, 2):
            raise ValueError(f"Crop: origin and size must both be (y0, x0)/(h, w) or (c0,)/(c,), got {origin}, {size}")
        if any(not _positive_int(s) for s in size) or any(int(o) < 0 for o in origin):
            raise ValueError(f"Crop: size must be positive and origin non-negative, got origin={origin}, size={size}")
        self.origin = tuple(int(o) for o in origin)
        self.size = tuple(int(s) for s in size)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="Crop")
        fields = ("x",) if is_audio(events) else ("y", "x")
        if len(fields) != len(self.size):
            kind = "audio" if len(fields) == 1 else "vision"
            raise ValueError(f"Crop: a {len(self.size)}-D box {self.size} does not fit {kind} events "
                             f"(fields {events.dtype.names})")
        inside = np.ones(events.size, dtype=bool)
        for name, start, length in zip(fields, self.origin, self.size):
            inside &= (events[name] >= start) & (events[name] < start + length)
        out = events[inside]
        for name, start in zip(fields, self.origin):
            out[name] -= start
        return out

    def output_size(self, sensor_size: Sequence[int]) -> tuple[int, ...]:
        return self.size


class CenterCrop(Crop):
    """:class:`Crop` of ``size`` centred on a sensor of ``sensor_size`` (origin ``(S - s) // 2``).

    >>> CenterCrop((128, 128), (64, 64)).origin
    (32, 32)
    """

    def __init__(self, sensor_size: Sequence[int], size: Sequence[int]) -> None:
        sensor_size, size = tuple(int(s) for s in sensor_size), tuple(int(s) for s in size)
        if len(sensor_size) != len(size) or any(s > full for s, full in zip(size, sensor_size)):
            raise ValueError(f"CenterCrop: size {size} must fit in sensor_size {sensor_size}")
        super().__init__([(full - s) // 2 for full, s in zip(sensor_size, size)], size)
        self.sensor_size = sensor_size


class RandomTimeDrop(EventTransform):
    """Drop events at random, from a seeded ``numpy.random.Generator`` (an int seeds a new one).

    ``duration_ratio=r``: drop every event in one window of length ``r * (t[-1] - t[0])`` starting
    at ``t[0] + u * (span - length)``, ``u = rng.random()`` (tonic's ``DropEventByTime``).
    ``fraction=f``: drop ``round(f * N)`` events chosen by ``rng.choice(N, ..., replace=False)``
    (tonic's ``DropEvent``). Give exactly one. Each call draws anew.

    >>> from snnir.data import make_events
    >>> ev = make_events(t=range(10), x=[0] * 10, y=[0] * 10, p=[0] * 10)
    >>> RandomTimeDrop(fraction=0.3, rng=0)(ev).size
    7
    """

    def __init__(self, duration_ratio: float | None = None, fraction: float | None = None,
                 rng: np.random.Generator | int | None = None) -> None:
        if (duration_ratio is None) == (fraction is None):
            raise ValueError("RandomTimeDrop: give exactly one of duration_ratio (drop a time window) or fraction "
                             f"(drop random events); got duration_ratio={duration_ratio!r}, fraction={fraction!r}")
        for name, value in (("duration_ratio", duration_ratio), ("fraction", fraction)):
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"RandomTimeDrop: {name} must be in [0, 1], got {value!r}")
        self.duration_ratio = duration_ratio
        self.fraction = fraction
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="RandomTimeDrop")
        n = events.size
        if n == 0:
            return events.copy()
        if self.fraction is not None:
            keep = np.ones(n, dtype=bool)
            keep[self.rng.choice(n, size=round(self.fraction * n), replace=False)] = False
            return events[keep]
        t = events["t"]
        span = float(t[-1] - t[0])
        length = self.duration_ratio * span
        start = float(t[0]) + self.rng.random() * (span - length)
        return events[(t < start) | (t >= start + length)]


class TimeReversal(EventTransform):
    """Play the stream backwards: ``t' = t_max + t_min - t`` (same time range), events in reverse
    order (so ``t'`` stays sorted), and polarity flipped ``p' = 1 - p`` (an ON edge played backwards
    is an OFF edge; tonic does the same with ``t' = t_max - t`` and ±1 polarities).

    >>> from snnir.data import make_events
    >>> TimeReversal()(make_events([10, 12, 20], [0, 1, 2], [0, 0, 0], [1, 0, 1]))[["t", "x", "p"]].tolist()
    [(10, 2, 0), (18, 1, 1), (20, 0, 0)]
    """

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="TimeReversal")
        out = events[::-1].copy()
        if out.size:
            out["t"] = events["t"][-1] + events["t"][0] - out["t"]
        if not is_audio(events):
            out["p"] = 1 - out["p"]
        return out


class MergePolarity(EventTransform):
    """Every event on polarity 0 (frames then fill channel 0 only). Audio events, which have no
    polarity, pass through unchanged (as a copy).

    >>> from snnir.data import make_events
    >>> MergePolarity()(make_events([0, 1], [0, 0], [0, 0], [1, 0]))["p"].tolist()
    [0, 0]
    """

    def __call__(self, events: np.ndarray) -> np.ndarray:
        check_events(events, what="MergePolarity")
        out = events.copy()
        if not is_audio(events):
            out["p"] = 0
        return out


class ToFrames:
    """``to_frames(events, sensor_size, ...)`` as a callable, to end a :class:`Compose` pipeline.

    >>> from snnir.data import make_events
    >>> pipeline = Compose([MergePolarity(), ToFrames((1, 2), frames_number=2)])
    >>> pipeline(make_events([0, 1, 2], [0, 1, 1], [0, 0, 0], [1, 1, 0]))[:, 0].tolist()
    [[[1.0, 0.0]], [[0.0, 2.0]]]
    """

    def __init__(self, sensor_size: Sequence[int], frames_number: int | None = None, split_by: str = "number",
                 duration: Any = None, integrate: Integrator | None = None) -> None:
        self.sensor_size = tuple(int(s) for s in sensor_size)
        self.frames_number, self.split_by, self.duration, self.integrate = frames_number, split_by, duration, integrate

    def __call__(self, events: np.ndarray) -> np.ndarray:
        return to_frames(events, self.sensor_size, self.frames_number, self.split_by, self.duration, self.integrate)

    def __repr__(self) -> str:
        return EventTransform.__repr__(self)


def _positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0

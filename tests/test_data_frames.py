"""to_frames against a hand-written per-event loop and against SpikingJelly's integrators."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sj_datasets import spikingjelly_datasets

from snnir.data import EventError, make_events, to_frames


def random_events(rng, n, h=5, w=7, t_max=1000, audio=False):
    t = np.sort(rng.integers(0, t_max, n))
    if audio:
        return make_events(t, rng.integers(0, w, n))
    return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def reference_frames(events, sensor_size, frames_number=None, split_by="number", duration=None):
    """The rules written out per event, in plain Python (float64 counts)."""
    t = [int(v) for v in events["t"]]
    n = len(t)
    if duration is not None:
        count = 0 if n == 0 else max(1, math.ceil((t[-1] - t[0]) / duration))
    else:
        count = frames_number
    audio = "y" not in events.dtype.names
    out = np.zeros((count, *sensor_size) if audio else (count, 2, *sensor_size))
    for k in range(n):
        if duration is not None:
            j = (t[k] - t[0]) // duration
        elif split_by == "number":
            per = n // frames_number
            j = k // per if per else frames_number - 1
        else:
            dt = (t[-1] - t[0]) // frames_number
            j = (t[k] - t[0]) // dt if dt else frames_number - 1
        j = min(j, count - 1)
        if audio:
            out[j, int(events["x"][k])] += 1
        else:
            out[j, int(events["p"][k]), int(events["y"][k]), int(events["x"][k])] += 1
    return out


def sj_events(ev):
    return {k: ev[k] for k in ev.dtype.names}


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n,frames_number", [(200, 7), (50, 50), (1000, 3), (31, 1)])
def test_fixed_frames_number_matches_reference_and_spikingjelly(rng, split_by, n, frames_number):
    integrate_events_by_fixed_frames_number = spikingjelly_datasets().integrate_events_by_fixed_frames_number

    ev = random_events(rng, n)
    frames = to_frames(ev, (5, 7), frames_number=frames_number, split_by=split_by)
    assert frames.dtype == np.float32 and frames.shape == (frames_number, 2, 5, 7)
    np.testing.assert_array_equal(frames, reference_frames(ev, (5, 7), frames_number, split_by))
    assert frames.sum() == n
    if split_by == "time" and (frames.sum(axis=(1, 2, 3)) == 0).any():
        with pytest.raises(IndexError):  # SpikingJelly fails on an empty time window; snnir gives a zero frame
            integrate_events_by_fixed_frames_number(sj_events(ev), split_by, frames_number, 5, 7)
    else:
        np.testing.assert_array_equal(frames, integrate_events_by_fixed_frames_number(
            sj_events(ev), split_by, frames_number, 5, 7))


@pytest.mark.parametrize("duration", [1, 37, 100, 999, 5000])
def test_fixed_duration_matches_reference_and_spikingjelly(rng, duration):
    integrate_events_by_fixed_duration = spikingjelly_datasets().integrate_events_by_fixed_duration

    ev = random_events(rng, 300)
    ev["t"] += 12345  # the windows start at the first event, not at 0
    frames = to_frames(ev, (5, 7), duration=duration)
    span = int(ev["t"][-1] - ev["t"][0])
    assert frames.shape[0] == math.ceil(span / duration)
    np.testing.assert_array_equal(frames, reference_frames(ev, (5, 7), duration=duration))
    np.testing.assert_array_equal(frames, integrate_events_by_fixed_duration(sj_events(ev), duration, 5, 7))


@settings(max_examples=150, deadline=None)
@given(t=st.lists(st.integers(0, 60), max_size=40), frames_number=st.integers(1, 12),
       split_by=st.sampled_from(["number", "time"]), duration=st.integers(1, 25))
def test_any_small_stream_matches_reference(t, frames_number, split_by, duration):
    """Small streams with many ties, empty windows and fewer events than frames."""
    t, n = sorted(t), len(t)
    ev = make_events(t, np.arange(n) % 3, np.arange(n) % 2, np.arange(n) % 2)
    sj = spikingjelly_datasets()
    by_count = to_frames(ev, (2, 3), frames_number=frames_number, split_by=split_by)
    np.testing.assert_array_equal(by_count, reference_frames(ev, (2, 3), frames_number, split_by))
    try:
        np.testing.assert_array_equal(by_count, sj.integrate_events_by_fixed_frames_number(
            sj_events(ev), split_by, frames_number, 2, 3))
    except IndexError:  # SpikingJelly fails exactly when a nominal window [t0 + j dt, t0 + (j+1) dt) is empty
        assert split_by == "time"
        if n:
            dt = (t[-1] - t[0]) // frames_number
            assert any(not any(t[0] + j * dt <= v < t[0] + (j + 1) * dt for v in t) for j in range(frames_number))
    by_duration = to_frames(ev, (2, 3), duration=duration)
    np.testing.assert_array_equal(by_duration, reference_frames(ev, (2, 3), duration=duration))
    if n and t[-1] > t[0]:  # SpikingJelly fails on an empty stream and on a zero time span
        np.testing.assert_array_equal(by_duration, sj.integrate_events_by_fixed_duration(sj_events(ev), duration, 2, 3))


def test_duration_boundary_event_goes_to_the_last_frame():
    ev = make_events(t=[0, 5, 10], x=[0, 0, 0], y=[0, 0, 0], p=[0, 0, 0])
    frames = to_frames(ev, (1, 1), duration=5)
    assert frames[:, 0, 0, 0].tolist() == [1, 2]  # t=10 is exactly 2 windows: SpikingJelly's rule


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_audio_matches_reference_and_spikingjelly_shd(rng, split_by):
    _integrate_events_by_fixed_frames_number = spikingjelly_datasets().shd._integrate_events_by_fixed_frames_number

    ev = random_events(rng, 400, w=11, audio=True)
    frames = to_frames(ev, (11,), frames_number=9, split_by=split_by)
    assert frames.shape == (9, 11)
    np.testing.assert_array_equal(frames, reference_frames(ev, (11,), 9, split_by))
    if split_by == "number":  # for time splits SpikingJelly's SHD reader takes float seconds
        np.testing.assert_array_equal(frames, _integrate_events_by_fixed_frames_number(sj_events(ev), split_by, 9, 11))


def test_float_time_uses_the_exact_window_like_spikingjelly_shd(rng):
    sj_shd = spikingjelly_datasets().shd._integrate_events_by_fixed_frames_number
    n = 300
    ev = np.zeros(n, dtype=[("t", "f8"), ("x", "i2")])  # SHD-like: seconds as floats
    ev["t"] = np.sort(rng.uniform(0.0, 0.9, n))
    ev["x"] = rng.integers(0, 11, n)
    frames = to_frames(ev, (11,), frames_number=12, split_by="time")
    np.testing.assert_array_equal(frames, sj_shd(sj_events(ev), "time", 12, 11))
    dt = (ev["t"][-1] - ev["t"][0]) / 12
    index = np.minimum(np.floor((ev["t"] - ev["t"][0]) / dt), 11).astype(int)
    np.testing.assert_array_equal(frames.sum(1), np.bincount(index, minlength=12))


def test_audio_duration(rng):
    ev = random_events(rng, 100, w=4, audio=True)
    np.testing.assert_array_equal(to_frames(ev, (4,), duration=60), reference_frames(ev, (4,), duration=60))


def test_fewer_events_than_frames_go_to_the_last_frame(rng):
    integrate_events_by_fixed_frames_number = spikingjelly_datasets().integrate_events_by_fixed_frames_number

    ev = random_events(rng, 3)
    frames = to_frames(ev, (5, 7), frames_number=5)
    assert frames[:4].sum() == 0 and frames[4].sum() == 3
    np.testing.assert_array_equal(frames, integrate_events_by_fixed_frames_number(sj_events(ev), "number", 5, 5, 7))


def test_identical_timestamps(rng):
    ev = random_events(rng, 20)
    ev["t"] = 77
    by_time = to_frames(ev, (5, 7), frames_number=4, split_by="time")  # dt == 0: SpikingJelly raises here
    assert by_time[:3].sum() == 0 and by_time[3].sum() == 20
    by_number = to_frames(ev, (5, 7), frames_number=4)
    assert by_number.sum(axis=(1, 2, 3)).tolist() == [5, 5, 5, 5]
    by_duration = to_frames(ev, (5, 7), duration=10)  # one window: SpikingJelly raises here
    np.testing.assert_array_equal(by_duration, reference_frames(ev, (5, 7), duration=10))
    assert by_duration.shape[0] == 1


def test_empty_time_window_is_a_zero_frame():
    ev = make_events(t=[0, 1, 2, 98, 99, 100], x=[0] * 6, y=[0] * 6, p=[1] * 6)
    frames = to_frames(ev, (1, 1), frames_number=4, split_by="time")  # dt = 25: windows 1, 2 are empty
    assert frames[:, 1, 0, 0].tolist() == [3, 0, 0, 3]


def test_empty_input():
    ev = make_events([], [], [], [])
    assert to_frames(ev, (3, 4), frames_number=5).shape == (5, 2, 3, 4)
    assert to_frames(ev, (3, 4), frames_number=5, split_by="time").sum() == 0
    assert to_frames(ev, (3, 4), duration=10).shape == (0, 2, 3, 4)
    assert to_frames(make_events([], []), (6,), duration=10).shape == (0, 6)
    hook = to_frames(ev, (3, 4), duration=10, integrate=lambda e, s: np.zeros(s))
    assert hook.shape == (0, 3, 4)


def test_custom_integration_sees_each_window(rng):
    ev = random_events(rng, 100)
    seen = []

    def last_polarity(window, sensor_size):
        seen.append(window["t"].copy())
        frame = np.zeros(sensor_size)
        frame[window["y"], window["x"]] = np.where(window["p"] == 1, 1.0, -1.0)
        return frame

    frames = to_frames(ev, (5, 7), frames_number=6, split_by="time", integrate=last_polarity)
    assert frames.shape == (6, 5, 7)
    np.testing.assert_array_equal(np.concatenate(seen), ev["t"])
    # A custom integration summing both polarities equals the default counts summed over channels.
    counts = to_frames(ev, (5, 7), frames_number=6, split_by="time",
                       integrate=lambda w, s: np.bincount(w["y"] * s[1] + w["x"], minlength=35).reshape(s))
    np.testing.assert_array_equal(counts, to_frames(ev, (5, 7), frames_number=6, split_by="time").sum(1))


def test_custom_integration_with_varying_shapes_is_refused(rng):
    with pytest.raises(ValueError, match="different shapes"):
        to_frames(random_events(rng, 10), (5, 7), frames_number=3, integrate=lambda w, s: np.zeros(len(w)))


@pytest.mark.parametrize("kwargs,match", [
    ({}, "exactly one"),
    ({"frames_number": 3, "duration": 5}, "exactly one"),
    ({"frames_number": 0}, "positive integer"),
    ({"frames_number": -2}, "positive integer"),
    ({"frames_number": 2.5}, "positive integer"),
    ({"frames_number": 2, "split_by": "count"}, "split_by"),
    ({"duration": 0}, "duration must be a positive"),
    ({"duration": -1.0}, "duration must be a positive"),
])
def test_bad_arguments(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_frames(random_events(rng, 10), (5, 7), **kwargs)


def test_bad_events(rng):
    ev = random_events(rng, 10)
    with pytest.raises(EventError, match="x=7 outside the sensor"):
        to_frames(make_events([0], [7], [0], [0]), (5, 7), frames_number=1)
    with pytest.raises(EventError, match="y=5 outside"):
        to_frames(make_events([0], [0], [5], [0]), (5, 7), frames_number=1)
    with pytest.raises(EventError, match="not sorted by t: event 1"):
        to_frames(make_events([5, 1], [0, 0], [0, 0], [0, 0], sort=False), (5, 7), frames_number=1)
    with pytest.raises(EventError, match="structured numpy array"):
        to_frames(np.zeros((10, 4)), (5, 7), frames_number=1)
    with pytest.raises(EventError, match="polarity must be 0 or 1"):
        to_frames(make_events([0], [0], [0], [-1]), (5, 7), frames_number=1)
    with pytest.raises(EventError, match=r"need sensor_size=\(C,\)"):
        to_frames(make_events([0], [0]), (5, 7), frames_number=1)
    with pytest.raises(EventError, match=r"need sensor_size=\(H, W\)"):
        to_frames(ev, (7,), frames_number=1)
    with pytest.raises(EventError, match="sensor_size"):
        to_frames(ev, 7, frames_number=1)
    with pytest.raises(EventError, match="missing field"):
        to_frames(np.zeros(3, dtype=[("t", "i8"), ("x", "i2"), ("y", "i2")]), (5, 7), frames_number=1)

"""Event transforms against hand-written per-event loops."""

import math

import numpy as np
import pytest

from snnir.data import (
    CenterCrop,
    Compose,
    Crop,
    Denoise,
    Downsample,
    EventError,
    MergePolarity,
    RandomTimeDrop,
    TimeReversal,
    ToFrames,
    make_events,
    to_frames,
)


def random_events(rng, n=500, h=12, w=16, t_max=20_000, audio=False):
    t = np.sort(rng.integers(0, t_max, n))
    if audio:
        return make_events(t, rng.integers(0, w, n))
    return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))


def rows(ev):
    return [tuple(int(v) for v in e) for e in ev]


def reference_denoise(ev, filter_time, neighbours=4, audio=False):
    """The background-activity filter as a loop over events with a per-pixel memory of the last time."""
    if audio:
        offsets = [(-1, 0), (1, 0)]
    elif neighbours == 4:
        offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    else:
        offsets = [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy]
    last_time, kept = {}, []
    for e in ev:
        x, y, t = int(e["x"]), 0 if audio else int(e["y"]), int(e["t"])
        if any((x + dx, y + dy) in last_time and t - last_time[(x + dx, y + dy)] < filter_time for dx, dy in offsets):
            kept.append(e)
        last_time[(x, y)] = t
    return rows(kept)


@pytest.mark.parametrize("neighbours", [4, 8])
@pytest.mark.parametrize("filter_time", [1, 300, 2000])
def test_denoise_matches_loop(rng, neighbours, filter_time):
    ev = random_events(rng, 800, h=6, w=7)
    ev["t"][::3] = ev["t"][1::3][: len(ev["t"][::3])]  # many equal timestamps
    ev = ev[np.argsort(ev["t"], kind="stable")]
    out = Denoise(filter_time, neighbours)(ev)
    assert rows(out) == reference_denoise(ev, filter_time, neighbours)
    assert 0 < out.size < ev.size


def test_denoise_audio_matches_loop(rng):
    ev = random_events(rng, 400, w=20, audio=True)
    assert rows(Denoise(500)(ev)) == reference_denoise(ev, 500, audio=True)


def test_denoise_keeps_a_moving_edge_and_drops_isolated_noise(rng):
    edge = make_events(t=np.arange(20) * 100, x=np.arange(20), y=np.full(20, 5), p=np.ones(20))
    noise = make_events(t=rng.integers(0, 2000, 10) * 1000 + 50_000, x=rng.integers(0, 64, 10) * 3,
                        y=rng.integers(30, 60, 10) * 3, p=np.zeros(10))
    ev = np.concatenate([edge, noise])
    ev = ev[np.argsort(ev["t"], kind="stable")]
    out = Denoise(filter_time=150)(ev)
    assert rows(out) == rows(edge[1:])  # the first edge event has no earlier neighbour


def test_denoise_ignores_the_pixel_itself():
    hot = make_events(t=np.arange(10), x=np.full(10, 3), y=np.full(10, 3), p=np.ones(10))
    assert Denoise(100)(hot).size == 0


def test_downsample_matches_loop(rng):
    ev = random_events(rng)
    out = Downsample((3, 4), time_factor=1000)(ev)
    expected = [(int(e["t"]) // 1000, int(e["x"]) // 4, int(e["y"]) // 3, int(e["p"])) for e in ev]
    assert rows(out) == expected and out.dtype == ev.dtype
    assert Downsample((3, 4)).output_size((12, 16)) == (4, 4)
    assert Downsample(5).output_size((12, 16)) == (3, 4)  # ceil: the last block is partial
    frames = to_frames(Downsample(5)(ev), Downsample(5).output_size((12, 16)), frames_number=2)
    assert frames.sum() == ev.size
    audio = random_events(rng, audio=True)
    assert rows(Downsample(4)(audio)) == [(int(e["t"]), int(e["x"]) // 4) for e in audio]


def test_crop_matches_loop(rng):
    ev = random_events(rng)
    out = Crop(origin=(2, 5), size=(6, 8))(ev)
    expected = [(int(e["t"]), int(e["x"]) - 5, int(e["y"]) - 2, int(e["p"])) for e in ev
                if 2 <= e["y"] < 8 and 5 <= e["x"] < 13]
    assert rows(out) == expected
    to_frames(out, (6, 8), frames_number=1)  # inside the new sensor
    center = CenterCrop((12, 16), (4, 6))
    assert center.origin == (4, 5) and center.output_size((12, 16)) == (4, 6)
    assert rows(center(ev)) == rows(Crop((4, 5), (4, 6))(ev))
    audio = random_events(rng, audio=True)
    assert rows(Crop((3,), (4,))(audio)) == [(int(e["t"]), int(e["x"]) - 3) for e in audio if 3 <= e["x"] < 7]


def test_random_time_drop_window_matches_loop(rng):
    ev = random_events(rng, 1000)
    out = RandomTimeDrop(duration_ratio=0.25, rng=np.random.default_rng(7))(ev)
    u = np.random.default_rng(7).random()
    t0, t1 = int(ev["t"][0]), int(ev["t"][-1])
    start = t0 + u * ((t1 - t0) * 0.75)
    expected = [e for e in rows(ev) if not start <= e[0] < start + 0.25 * (t1 - t0)]
    assert rows(out) == expected
    assert 0.6 < out.size / ev.size < 0.9


def test_random_time_drop_fraction(rng):
    ev = random_events(rng, 1000)
    drop = RandomTimeDrop(fraction=0.3, rng=3)
    first, second = drop(ev), drop(ev)
    assert first.size == second.size == 700
    assert rows(first) != rows(second)  # each call draws anew
    assert rows(RandomTimeDrop(fraction=0.3, rng=3)(ev)) == rows(first)  # seeded: reproducible
    dropped = set(np.random.default_rng(3).choice(1000, size=300, replace=False).tolist())
    assert rows(first) == [e for i, e in enumerate(rows(ev)) if i not in dropped]
    assert np.all(np.diff(first["t"]) >= 0)
    assert RandomTimeDrop(fraction=0.0)(ev).size == 1000 and RandomTimeDrop(fraction=1.0)(ev).size == 0


def test_time_reversal_matches_loop(rng):
    ev = random_events(rng)
    out = TimeReversal()(ev)
    t_min, t_max = int(ev["t"].min()), int(ev["t"].max())
    expected = [(t_max + t_min - int(e["t"]), int(e["x"]), int(e["y"]), 1 - int(e["p"])) for e in ev][::-1]
    assert rows(out) == expected
    assert rows(TimeReversal()(out)) == rows(ev)
    # Equal time windows (no event on a window boundary): reversed frames with swapped polarities.
    span_events = make_events([0, 12, 25, 40], [0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 1, 0])
    f = to_frames(span_events, (1, 4), frames_number=4, split_by="time")
    np.testing.assert_array_equal(to_frames(TimeReversal()(span_events), (1, 4), frames_number=4, split_by="time"),
                                  f[::-1, ::-1])


def test_merge_polarity_and_compose(rng):
    ev = random_events(rng)
    merged = MergePolarity()(ev)
    assert rows(merged) == [(e[0], e[1], e[2], 0) for e in rows(ev)]
    frames = to_frames(merged, (12, 16), frames_number=3)
    np.testing.assert_array_equal(frames[:, 0], to_frames(ev, (12, 16), frames_number=3).sum(1))
    pipeline = Compose([Crop((2, 2), (8, 12)), Downsample(2), MergePolarity()])
    assert rows(pipeline(ev)) == rows(MergePolarity()(Downsample(2)(Crop((2, 2), (8, 12))(ev))))
    assert pipeline.output_size((12, 16)) == (4, 6)
    assert "Downsample(spatial_factor=(2, 2)" in repr(pipeline)
    plain = Compose([lambda e: e[e["x"] < 8], MergePolarity()])  # plain functions compose too
    assert rows(plain(ev)) == rows(MergePolarity()(ev[ev["x"] < 8])) and plain.output_size((12, 16)) == (12, 16)
    audio = random_events(rng, audio=True)
    assert rows(MergePolarity()(audio)) == rows(audio)
    to_tensor = Compose([Downsample(2), ToFrames((6, 8), duration=1000)])
    np.testing.assert_array_equal(to_tensor(ev), to_frames(Downsample(2)(ev), (6, 8), duration=1000))
    assert "ToFrames(sensor_size=(6, 8), frames_number=None" in repr(to_tensor)


def test_transforms_do_not_modify_their_input(rng):
    ev = random_events(rng)
    before = ev.copy()
    for transform in (Denoise(100), Downsample(2, 10), Crop((1, 1), (5, 5)), RandomTimeDrop(0.5, rng=0),
                      RandomTimeDrop(fraction=0.5, rng=0), TimeReversal(), MergePolarity()):
        transform(ev)
        np.testing.assert_array_equal(ev, before)
        empty = transform(ev[:0])
        assert empty.size == 0 and empty.dtype == ev.dtype


def test_bad_arguments():
    with pytest.raises(ValueError, match="filter_time"):
        Denoise(0)
    with pytest.raises(ValueError, match="neighbours"):
        Denoise(10, neighbours=6)
    with pytest.raises(ValueError, match="spatial_factor"):
        Downsample(0)
    with pytest.raises(ValueError, match="time_factor"):
        Downsample(2, time_factor=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        RandomTimeDrop()
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        RandomTimeDrop(fraction=1.5)
    with pytest.raises(ValueError, match="must fit"):
        CenterCrop((10, 10), (12, 4))
    with pytest.raises(ValueError, match="does not fit audio"):
        Crop((0, 0), (2, 2))(make_events([0], [1]))
    with pytest.raises(EventError, match="Denoise: not sorted"):
        Denoise(10)(make_events([3, 1], [0, 0], [0, 0], [0, 0], sort=False))
    assert math.isfinite(Denoise(10).filter_time)

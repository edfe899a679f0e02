"""FrameCache: keyed by setting and sample, npz without pickle, corrupt files recomputed."""

import json
import zipfile

import numpy as np
import pytest

from snnir.data import CacheWarning, FrameCache, frames_setting, make_events, to_frames


def module_level_integration(events, sensor_size):
    return np.full(sensor_size, events.size, dtype=np.float32)


def counting(calls):
    def compute():
        calls.append(1)
        return np.arange(24, dtype=np.float32).reshape(2, 3, 4) * len(calls)
    return compute


def test_compute_once_then_read_back(tmp_path):
    cache, calls = FrameCache(tmp_path), []
    setting = frames_setting((3, 4), frames_number=2)
    first = cache.get("a", setting, counting(calls))
    again = cache.get("a", setting, counting(calls))
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    assert again.dtype == np.float32
    with np.load(cache.path("a", setting), allow_pickle=False) as data:  # a plain npz, key "frames"
        np.testing.assert_array_equal(data["frames"], first)
    assert json.loads((cache.directory(setting) / "setting.json").read_text()) == setting


def test_the_key_is_the_setting_and_the_sample(tmp_path):
    cache = FrameCache(tmp_path)
    settings = [frames_setting((3, 4), frames_number=2), frames_setting((3, 4), frames_number=3),
                frames_setting((3, 4), frames_number=2, split_by="time"), frames_setting((3, 4), duration=100),
                frames_setting((3, 5), frames_number=2),
                frames_setting((3, 4), frames_number=2, integrate=module_level_integration)]
    paths = {cache.path("s", s) for s in settings} | {cache.path("t", settings[0])}
    assert len(paths) == len(settings) + 1
    for i, setting in enumerate(settings):  # distinct settings never see each other's data
        assert cache.get("s", setting, lambda i=i: np.full(2, i))[0] == i
    # The same setting built twice (or with keys in another order) is the same key.
    assert cache.path("s", dict(reversed(list(settings[0].items())))) == cache.path("s", settings[0])
    assert frames_setting((3, 4), frames_number=np.int64(2)) == settings[0]
    assert frames_setting((3, 4), duration=100.0) == frames_setting((3, 4), duration=np.int32(100)) == settings[3]
    assert frames_setting((3, 4), duration=2.5)["duration"] == 2.5


def test_nested_sample_ids_and_bad_ids(tmp_path):
    cache = FrameCache(tmp_path)
    setting = frames_setting((2,), duration=5)
    cache.get("train/7/0001", setting, lambda: np.ones(3))
    assert cache.path("train/7/0001", setting).is_file()
    for bad in ("", "../x", "/abs", "a//b", "a/./b"):
        with pytest.raises(ValueError, match="sample_id"):
            cache.path(bad, setting)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_key", "bit_flip"])
def test_corrupt_file_is_recomputed_with_a_warning(tmp_path, damage):
    cache, calls = FrameCache(tmp_path, compress=False), []
    setting = frames_setting((3, 4), frames_number=2)
    good = cache.get("a", setting, counting(calls))
    path = cache.path("a", setting)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "wrong_key":
        np.savez(path.open("wb"), other=np.zeros(2))
    else:  # flip one byte inside the stored array: the zip CRC check catches it
        with zipfile.ZipFile(path) as z:
            offset = z.getinfo("frames.npy").header_offset + 30 + len("frames.npy") + 200
        path.write_bytes(raw[:offset] + bytes([raw[offset] ^ 0xFF]) + raw[offset + 1:])
    with pytest.warns(CacheWarning, match=str(path.name)):
        again = cache.get("a", setting, counting(calls))
    assert len(calls) == 2
    np.testing.assert_array_equal(again, good * 2)
    np.testing.assert_array_equal(cache.get("a", setting, counting(calls)), good * 2)  # rewritten, read back
    assert len(calls) == 2


def test_object_array_is_refused_not_pickled(tmp_path):
    cache = FrameCache(tmp_path)
    with pytest.raises(TypeError, match="pickle"):
        cache.get("a", frames_setting((2,), duration=1), lambda: np.array([{"a": 1}], dtype=object))
    # A pickled npz dropped into the cache is never unpickled: it is treated as corrupt.
    setting = frames_setting((2,), duration=1)
    path = cache.path("b", setting)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.open("wb"), frames=np.array([{"a": 1}], dtype=object))
    with pytest.warns(CacheWarning, match="pickle"):
        assert cache.get("b", setting, lambda: np.zeros(2)).tolist() == [0, 0]


def test_prepare_fills_missing_samples_with_a_progress_bar(tmp_path, rng, capsys):
    events = {f"s{i}": make_events(np.sort(rng.integers(0, 100, 50)), rng.integers(0, 4, 50),
                                   rng.integers(0, 3, 50), rng.integers(0, 2, 50)) for i in range(5)}
    setting = frames_setting((3, 4), frames_number=4, split_by="time")
    cache = FrameCache(tmp_path)
    cache.get("s0", setting, lambda: to_frames(events["s0"], (3, 4), frames_number=4, split_by="time"))
    computed = cache.prepare(events, setting, lambda sid: to_frames(events[sid], (3, 4), frames_number=4,
                                                                   split_by="time"), desc="test set")
    assert computed == 4
    assert "test set" in capsys.readouterr().err
    for sid, ev in events.items():
        np.testing.assert_array_equal(cache.get(sid, setting, lambda: 1 / 0),
                                      to_frames(ev, (3, 4), frames_number=4, split_by="time"))
    assert cache.prepare(events, setting, lambda sid: 1 / 0, progress=False) == 0


def test_setting_errors():
    with pytest.raises(ValueError, match="stable name"):
        frames_setting((3, 4), frames_number=2, integrate=lambda e, s: None)
    named = lambda e, s: None  # noqa: E731
    named.cache_name = "my-integration"
    assert frames_setting((3, 4), frames_number=2, integrate=named)["integrate"] == "my-integration"
    with pytest.raises(ValueError, match="exactly one"):
        frames_setting((3, 4))
    with pytest.raises(TypeError, match="JSON"):
        FrameCache("x").directory({"a": object()})

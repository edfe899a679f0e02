"""Dataset classes on tiny fake roots laid out like the real downloads, written in the real byte layouts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from event_writers import (
    AEDAT31_HEADER,
    aedat2,
    aedat31,
    aedat31_packet,
    as_tuples,
    atis_bin,
    random_events,
    shd_h5,
    td_dat,
)

from snnir.data import pad_sequence_collate, to_frames
from snnir.data.datasets import (
    ASLDVS,
    CIFAR10DVS,
    HARDVS,
    NMNIST,
    SHD,
    SSC,
    DatasetNotFoundError,
    DVS128Gesture,
    DVSLip,
    ESImageNet,
    NavGesture,
    NCaltech101,
)
from snnir.data.formats import EventFormatError

RNG = np.random.default_rng(11)


def _ev(n, w, h, t_max=100_000):
    return random_events(RNG, n, w, h, t_max)


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _check_frames(ds, index, expected_events):
    """Frame mode equals to_frames of the expected events, and the second access comes from the cache."""
    frames, _ = ds[index]
    ref = to_frames(expected_events, ds.sensor_size, **ds.frame_kwargs)
    np.testing.assert_array_equal(frames, ref)
    assert ds.cache.path(ds._cache_id(index), ds.setting).exists()
    ds._read = lambda sample_id: pytest.fail("frames were not served from the cache")
    np.testing.assert_array_equal(ds[index][0], ref)


def _structured(events):
    from snnir.data import make_events

    t, x, y, p = (np.array(c, dtype=np.int64) for c in zip(*events))
    return make_events(t, x, y, p)


def test_nmnist_event_and_frame_modes(tmp_path):
    samples = {("Train", "0", "00002"): _ev(30, 34, 34), ("Train", "3", "00001"): _ev(20, 34, 34),
               ("Test", "5", "00007"): _ev(10, 34, 34)}
    for (split, digit, name), ev in samples.items():
        _write(tmp_path / split / digit / f"{name}.bin", atis_bin(ev))
    train = NMNIST(tmp_path, train=True)
    assert len(train) == 2 and train.targets == [0, 3]
    assert as_tuples(train[1][0]) == samples["Train", "3", "00001"]
    test = NMNIST(tmp_path, train=False, data_type="frame", frames_number=4, split_by="time")
    assert len(test) == 1 and test[0][1] == 5 and test[0][0].shape == (4, 2, 34, 34)
    _check_frames(test, 0, _structured(samples["Test", "5", "00007"]))


def test_missing_root_prints_download_instructions(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        NMNIST(tmp_path / "nowhere", train=True)
    text = str(info.value)
    assert "https://www.garrickorchard.com/datasets" in text and "root/Train/<digit>/<id>.bin" in text
    assert isinstance(info.value, FileNotFoundError)
    for cls in (NCaltech101, DVS128Gesture, CIFAR10DVS, ASLDVS, DVSLip, HARDVS, ESImageNet, NavGesture, SHD, SSC):
        with pytest.raises(DatasetNotFoundError, match="https?://"):
            cls(tmp_path / "nowhere")


def test_bad_arguments_are_refused(tmp_path):
    _write(tmp_path / "Caltech101" / "airplanes" / "image_0001.bin", atis_bin(_ev(5, 240, 180)))
    with pytest.raises(ValueError, match="no train/test split"):
        NCaltech101(tmp_path, train=True)
    with pytest.raises(ValueError, match="data_type"):
        NCaltech101(tmp_path, data_type="video")
    with pytest.raises(ValueError, match="split must be one of"):
        NCaltech101(tmp_path, split="val")


def test_ncaltech101_labels_follow_sorted_folders(tmp_path):
    for cls in ("airplanes", "BACKGROUND_Google", "yin_yang"):
        _write(tmp_path / "Caltech101" / cls / "image_0001.bin", atis_bin(_ev(8, 240, 180)))
    ds = NCaltech101(tmp_path)
    assert ds.classes == ("BACKGROUND_Google", "airplanes", "yin_yang") and ds.targets == [0, 1, 2]
    _write(tmp_path / "Caltech101" / "yin_yang" / "image_0001.bin", atis_bin(_ev(8, 240, 180))[:-1])
    with pytest.raises(EventFormatError, match="image_0001.bin at byte 35"):
        ds[2]


def test_dvs128_gesture_cuts_trials_by_label_csv(tmp_path):
    ev = _ev(400, 128, 128, 10_000_000)
    _write(tmp_path / "user01_fluorescent.aedat", aedat31(ev))
    (tmp_path / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n3,1000000,4000000\n11,5000000,9000000\n3,9500000,9900000\n")
    _write(tmp_path / "user02_led.aedat", aedat31(ev[:50]))
    (tmp_path / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,10000000\n")
    (tmp_path / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (tmp_path / "trials_to_test.txt").write_text("user02_led.aedat\n")
    train = DVS128Gesture(tmp_path, train=True, progress=False)
    assert train.targets == [2, 2, 10]
    expected = {0: (1000000, 4000000), 1: (9500000, 9900000), 2: (5000000, 9000000)}
    for i, (lo, hi) in expected.items():
        assert as_tuples(train[i][0]) == [e for e in ev if lo <= e[0] < hi]
    test = DVS128Gesture(tmp_path, train=False, data_type="frame", frames_number=3, progress=False)
    assert test.targets == [0] and test[0][0].shape == (3, 2, 128, 128)
    _check_frames(test, 0, _structured(ev[:50]))
    (tmp_path / "user01_fluorescent.aedat").unlink()        # the cut samples are reused
    assert len(DVS128Gesture(tmp_path, train=True)) == 3


def test_cifar10_dvs_aedat2_orientation_and_split(tmp_path):
    for cls in CIFAR10DVS.classes:
        (tmp_path / cls).mkdir()
    sensor = {"cat_0": _ev(40, 128, 128), "cat_100": _ev(30, 128, 128), "ship_7": _ev(20, 128, 128)}
    for name, ev in sensor.items():
        _write(tmp_path / name.split("_")[0] / f"cifar10_{name}.aedat", aedat2(ev))
    ds = CIFAR10DVS(tmp_path)
    assert len(ds) == 3 and ds.targets == [3, 3, 8]
    # image x = 127 - sensor y, image y = 127 - sensor x (SpikingJelly's orientation)
    assert as_tuples(ds[0][0]) == [(t, 127 - y, 127 - x, p) for t, x, y, p in sensor["cat_0"]]
    assert [s for s, _ in CIFAR10DVS(tmp_path, split="test").samples] == ["cat/cifar10_cat_0.aedat",
                                                                          "ship/cifar10_ship_7.aedat"]
    assert [s for s, _ in CIFAR10DVS(tmp_path, train=True).samples] == ["cat/cifar10_cat_100.aedat"]
    image = _ev(25, 128, 128)
    _write(tmp_path / "dog" / "cifar10_dog_3.aedat", aedat31(image))  # AEDAT 3.1 copies: image coordinates
    ds = CIFAR10DVS(tmp_path)
    assert ds.targets == [3, 3, 5, 8] and as_tuples(ds[2][0]) == image


def test_asl_dvs_mat_rotated(tmp_path):
    letters = {"a": _ev(30, 240, 180), "y": _ev(20, 240, 180)}
    for letter, ev in letters.items():
        t, x, y, p = (np.array(c).reshape(-1, 1) for c in zip(*ev))
        (tmp_path / letter).mkdir()
        scipy.io.savemat(tmp_path / letter / f"{letter}_0001.mat", {"ts": t, "x": x, "y": y, "pol": p})
    ds = ASLDVS(tmp_path)
    assert ds.targets == [0, 23]
    assert as_tuples(ds[1][0]) == [(t, 239 - x, 179 - y, p) for t, x, y, p in letters["y"]]


def test_dvs_lip_npy(tmp_path):
    dtype = [("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")]
    files = {("train", "accused", "0"): _ev(20, 128, 128), ("train", "young", "3"): _ev(10, 128, 128),
             ("test", "young", "1"): _ev(15, 128, 128)}
    for (split, word, n), ev in files.items():
        (tmp_path / split / word).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / split / word / f"{n}.npy", np.array(ev, dtype=dtype))
    train, test = DVSLip(tmp_path, train=True), DVSLip(tmp_path, train=False)
    assert train.targets == [0, 1] and test.targets == [1] and test.classes == ("accused", "young")
    assert as_tuples(test[0][0]) == files["test", "young", "1"]


def test_hardvs_label_files(tmp_path):
    recs = {"action_001/dvSave-2021_10_15_19_18_02": _ev(20, 346, 260),
            "action_300/dvSave-2021_11_01_10_00_00": _ev(25, 346, 260)}
    for name, ev in recs.items():
        t, x, y, p = (np.array(c) for c in zip(*ev))
        (tmp_path / name).parent.mkdir(exist_ok=True)
        np.savez(tmp_path / f"{name}.npz", t=t, x=x, y=y, p=p)
    (tmp_path / "train_label.txt").write_text("action_300/dvSave-2021_11_01_10_00_00 299\n"
                                              "action_001/dvSave-2021_10_15_19_18_02 0\n")
    (tmp_path / "val_label.txt").write_text("action_001/dvSave-2021_10_15_19_18_02 0\n")
    train = HARDVS(tmp_path, split="train")
    assert train.targets == [299, 0] and as_tuples(train[0][0]) == recs["action_300/dvSave-2021_11_01_10_00_00"]
    assert len(HARDVS(tmp_path, split="val")) == 1
    with pytest.raises(DatasetNotFoundError, match="test_label.txt"):
        HARDVS(tmp_path, split="test")


def test_es_imagenet_train_and_val(tmp_path):
    def sample(path):
        pos, neg = RNG.integers(0, 224, (12, 3)), RNG.integers(0, 224, (9, 3))
        pos[:, 2], neg[:, 2] = RNG.integers(0, 8, 12), RNG.integers(0, 8, 9)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, pos=pos, neg=neg)
        rows = [(s, c, r, 1) for r, c, s in pos.tolist()] + [(s, c, r, 0) for r, c, s in neg.tolist()]
        return sorted(rows, key=lambda e: e[0])

    a = sample(tmp_path / "train" / "class0" / "n01440764_1.npz")
    sample(tmp_path / "train" / "class7" / "n01530575_2.npz")
    v = sample(tmp_path / "val" / "ILSVRC2012_val_00000001.npz")
    (tmp_path / "vallabel.txt").write_text("ILSVRC2012_val_00000001.npz 65\n")
    train = ESImageNet(tmp_path, train=True)
    assert train.targets == [0, 7] and as_tuples(train[0][0]) == a
    val = ESImageNet(tmp_path, train=False, data_type="frame", frames_number=8, split_by="time")
    assert val.targets == [65] and as_tuples(val.events(0)) == v
    _check_frames(val, 0, _structured(v))


def test_nav_gesture_labels_from_names(tmp_path):
    files = {"user01/user01_le_01_td.dat": _ev(20, 304, 240), "user02/user02_up_00_td.dat": _ev(15, 304, 240)}
    for name, ev in files.items():
        _write(tmp_path / name, td_dat(ev))
    ds = NavGesture(tmp_path)
    assert ds.targets == [2, 5]
    assert as_tuples(ds[1][0]) == [(t, x, 239 - y, p) for t, x, y, p in files["user02/user02_up_00_td.dat"]]


def test_shd_ssc_and_padded_batches(tmp_path):
    def samples(n):
        out = []
        for k in range(n):
            t = np.sort(RNG.random(5 + 3 * k)).astype(np.float32)
            out.append((t, RNG.integers(0, 700, t.size)))
        return out

    train = samples(3)
    shd_h5(tmp_path / "shd_train.h5", train, [4, 12, 19])
    shd_h5(tmp_path / "shd_test.h5", samples(1), [0])
    ds = SHD(tmp_path, train=True, data_type="frame", duration=100_000, cache_root=tmp_path / "cache")
    assert ds.targets == [4, 12, 19]
    events = ds.events(1)
    order = np.argsort(train[1][0], kind="stable")
    assert events["t"].tolist() == [round(float(v) * 1e6) for v in train[1][0][order]]
    assert events["x"].tolist() == train[1][1][order].tolist()
    _check_frames(ds, 1, events)
    loader = torch.utils.data.DataLoader(SHD(tmp_path, train=True, data_type="frame", duration=100_000,
                                             cache_root=tmp_path / "cache"), batch_size=3,
                                         collate_fn=pad_sequence_collate)
    frames, labels, lengths = next(iter(loader))
    assert frames.shape[0] == 3 and frames.shape[2] == 700 and labels.tolist() == [4, 12, 19]
    shd_h5(tmp_path / "ssc_valid.h5", samples(2), [30, 1])
    assert SSC(tmp_path, split="valid").targets == [30, 1]


def test_prepare_frames_and_transforms(tmp_path):
    for digit in ("1", "2"):
        _write(tmp_path / "Test" / digit / "00001.bin", atis_bin(_ev(12, 34, 34)))
    ds = NMNIST(tmp_path, train=False, data_type="frame", frames_number=2, progress=False,
                transform=lambda f: f.sum(), target_transform=lambda y: y * 10)
    assert ds.prepare_frames() == 2 and ds.prepare_frames() == 0
    assert [ds[i] for i in range(2)] == [(12.0, 10), (12.0, 20)]
    raw = NMNIST(tmp_path, train=False, data_type="frame", frames_number=2, cache_root=False)
    assert raw.cache is None and raw[0][0].sum() == 12.0


def test_damaged_file_in_a_dataset_names_it(tmp_path):
    _write(tmp_path / "user01_a.aedat", AEDAT31_HEADER + aedat31_packet(1, [(1, 2, 3, 1, 1)])[:-3])
    (tmp_path / "user01_a_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,10\n")
    (tmp_path / "trials_to_train.txt").write_text("user01_a.aedat\n")
    with pytest.raises(EventFormatError, match="user01_a.aedat at byte"):
        DVS128Gesture(tmp_path, progress=False)
    assert not (tmp_path / "snnir_events" / "train").exists()   # no half-prepared split left behind


def test_a_damaged_file_read_in_a_dataloader_worker_keeps_its_error_type(tmp_path):
    _write(tmp_path / "Train" / "4" / "00001.bin", atis_bin(_ev(6, 34, 34))[:-1])
    loader = torch.utils.data.DataLoader(NMNIST(tmp_path), num_workers=1, collate_fn=lambda b: b)
    with pytest.raises(EventFormatError, match="00001.bin at byte 25"):
        next(iter(loader))

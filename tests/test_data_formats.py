"""Each decoder against files written from the format's documented byte layout (struct.pack, bit by bit).

The writers below never call the decoders; they follow the layouts cited in each decoder's
docstring. Every decoded event is compared, and damaged files must name the file and offset.
"""

from __future__ import annotations

import pickle
import struct

import h5py
import numpy as np
import pytest
import scipy.io
from event_writers import (
    AEDAT31_HEADER,
    aedat2,
    aedat31_packet,
    as_tuples,
    atis_event,
    random_events,
    shd_h5,
    td_dat,
    td_word,
)

from snnir.data.formats import (
    EventFormatError,
    SpikeHDF5,
    aedat_version,
    decode_dvs128_address,
    dvs128_pixel_events,
    read_aedat2,
    read_aedat31,
    read_asl_dvs_mat,
    read_atis_bin,
    read_atis_td_dat,
    read_es_imagenet,
    read_gesture_labels,
    read_npy_events,
    read_npz_events,
    read_trials,
)
from snnir.errors import FormatError

RNG = np.random.default_rng(7)


def _events(n, w, h, t_max):
    return random_events(RNG, n, w, h, t_max)


def _raises_at(fn, path, offset):
    with pytest.raises(EventFormatError) as info:
        fn(path)
    assert str(path) in str(info.value) and info.value.offset == offset, str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FormatError)
    return info.value


# ---------------------------------------------------------------- ATIS .bin (N-MNIST, N-Caltech101)


def test_atis_bin_every_event_and_overflow_markers(tmp_path):
    first = _events(60, 34, 34, 1 << 23)
    later = _events(40, 34, 34, 1 << 23)
    path = tmp_path / "00004.bin"
    # Two overflow markers (y == 240) between the halves: later times grow by 2 * 2**13 us.
    path.write_bytes(b"".join(atis_event(x, y, p, t) for t, x, y, p in first)
                     + atis_event(0, 240, 0, 0) * 2
                     + b"".join(atis_event(x, y, p, t) for t, x, y, p in later))
    expected = first + [(t + 2 * 8192, x, y, p) for t, x, y, p in later]
    assert as_tuples(read_atis_bin(path, sensor_size=(34, 34))) == expected


def test_atis_bin_truncated_and_corrupted(tmp_path):
    good = b"".join(atis_event(x, y, p, t) for t, x, y, p in _events(10, 34, 34, 1000))
    path = tmp_path / "cut.bin"
    path.write_bytes(good[:-2])
    err = _raises_at(read_atis_bin, path, 45)
    assert "truncated" in str(err)
    path.write_bytes(good[:15] + atis_event(200, 3, 1, 5) + good[15:])
    _raises_at(lambda p: read_atis_bin(p, sensor_size=(34, 34)), path, 15)


# ---------------------------------------------------------------- AEDAT 3.1 (DVS128 Gesture)




def test_aedat31_every_valid_polarity_event(tmp_path):
    a = [(t, x, y, p, 1) for t, x, y, p in _events(50, 128, 128, 1 << 31)]
    b = [(t, x, y, p, int(RNG.random() < 0.8)) for t, x, y, p in _events(50, 128, 128, 1 << 31)]
    special = [(5, 0, 0, 0, 1)] * 3  # type 0 (special events) must be skipped
    path = tmp_path / "user01_fluorescent.aedat"
    packets = aedat31_packet(1, a) + aedat31_packet(0, special) + aedat31_packet(1, b, overflow=1)
    path.write_bytes(AEDAT31_HEADER + packets)
    expected = [(t, x, y, p) for t, x, y, p, _ in a] + [(t + (1 << 31), x, y, p) for t, x, y, p, v in b if v]
    assert as_tuples(read_aedat31(path, sensor_size=(128, 128))) == expected
    assert aedat_version(path) == "3.1"


def test_aedat31_damaged(tmp_path):
    a = [(t, x, y, p, 1) for t, x, y, p in _events(10, 128, 128, 1000)]
    good = AEDAT31_HEADER + aedat31_packet(1, a) + aedat31_packet(1, a)
    second = len(AEDAT31_HEADER) + 28 + 80
    path = tmp_path / "bad.aedat"
    path.write_bytes(good[:-4])                         # inside the second packet's events
    _raises_at(read_aedat31, path, second + 28)
    path.write_bytes(good[: second + 10])               # inside the second packet's header
    _raises_at(read_aedat31, path, second)
    path.write_bytes(AEDAT31_HEADER + aedat31_packet(1, a, number=11))  # eventNumber > eventCapacity
    _raises_at(read_aedat31, path, len(AEDAT31_HEADER))
    path.write_bytes(AEDAT31_HEADER[:30])               # header never ends
    _raises_at(read_aedat31, path, 30)
    path.write_bytes(b"#!AER-DAT4.0\r\n" + good[14:])
    _raises_at(read_aedat31, path, 0)
    _raises_at(aedat_version, path, 0)
    path.write_bytes(AEDAT31_HEADER + aedat31_packet(1, [(1, 300, 5, 1, 1)]))
    _raises_at(lambda p: read_aedat31(p, sensor_size=(128, 128)), path, len(AEDAT31_HEADER) + 28)


def test_gesture_labels_and_trials(tmp_path):
    csv = tmp_path / "user01_fluorescent_labels.csv"
    csv.write_text("class,startTime_usec,endTime_usec\n1,80048239,85092709\n11,89431170,95199335\n")
    assert read_gesture_labels(csv).tolist() == [[0, 80048239, 85092709], [10, 89431170, 95199335]]
    csv.write_text("class,startTime_usec,endTime_usec\n1,80048239,85092709\n12,5,6\n")
    _raises_at(read_gesture_labels, csv, 54)
    csv.write_text("label,start\n")
    _raises_at(read_gesture_labels, csv, 0)
    trials = tmp_path / "trials_to_train.txt"
    trials.write_text("user01_fluorescent.aedat\nuser01_lab.aedat\n\n")
    assert read_trials(trials) == ["user01_fluorescent.aedat", "user01_lab.aedat"]


# ---------------------------------------------------------------- AEDAT 2.0 (CIFAR10-DVS)
def test_aedat2_every_event_dvs128_address(tmp_path):
    ev = _events(80, 128, 128, 1 << 32)
    records = b""
    for t, x, y, p in ev:
        records += struct.pack(">II", (y << 8) | (x << 1) | (1 - p), t)  # jAER: bit 0 clear = ON
    records += struct.pack(">II", 1 << 15, 7)                               # external event
    path = tmp_path / "cifar10_cat_0.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                     b"# Data format is int32 address, int32 timestamp (8 bytes total)\r\n" + records)
    t, addr = read_aedat2(path)
    pixel = dvs128_pixel_events(addr)
    assert pixel.tolist() == [True] * 80 + [False] and t[-1] == 7
    x, y, p = decode_dvs128_address(addr[pixel])
    assert list(zip(t[pixel].tolist(), x.tolist(), y.tolist(), p.tolist())) == ev
    assert aedat_version(path) == "2.0"


def test_aedat2_damaged(tmp_path):
    header = b"#!AER-DAT2.0\r\n"
    path = tmp_path / "bad.aedat"
    path.write_bytes(header + struct.pack(">II", 3, 4) * 3 + b"\x00\x01\x02")
    _raises_at(read_aedat2, path, len(header) + 24)
    path.write_bytes(b"not an aedat file")
    _raises_at(read_aedat2, path, 0)


# ---------------------------------------------------------------- ATIS td.dat (NavGesture)


def test_atis_td_dat_every_event(tmp_path):
    ev = _events(70, 304, 240, 1 << 32)
    header = b"% Data file containing TD events.\n% Version 2\n% Date 2017-01-01 10:00:00\n% Height 240\n% Width 304\n"
    path = tmp_path / "user01_le_01_td.dat"
    path.write_bytes(header + bytes([0, 8]) + b"".join(td_word(*e) for e in ev))
    assert as_tuples(read_atis_td_dat(path, sensor_size=(240, 304))) == ev
    path.write_bytes(b"".join(td_word(*e) for e in ev))  # no header: no type/size bytes either
    assert as_tuples(read_atis_td_dat(path)) == ev


def test_atis_td_dat_damaged(tmp_path):
    header = b"% Data file containing TD events.\n"
    path = tmp_path / "bad_td.dat"
    path.write_bytes(header + bytes([0, 8]) + td_word(1, 2, 3, 1) * 4 + b"\x01\x02")
    _raises_at(read_atis_td_dat, path, len(header) + 2 + 32)
    path.write_bytes(header + bytes([0, 12]) + td_word(1, 2, 3, 1))
    _raises_at(read_atis_td_dat, path, len(header) + 1)
    path.write_bytes(header + bytes([0, 8]) + td_word(1, 2, 3, 1) + td_word(2, 400, 3, 1))
    _raises_at(lambda p: read_atis_td_dat(p, sensor_size=(240, 304)), path, len(header) + 10)


# ---------------------------------------------------------------- MATLAB .mat (ASL-DVS)
@pytest.mark.parametrize("compress", [False, True])
def test_asl_dvs_mat_every_event(tmp_path, compress):
    ev = _events(90, 240, 180, 10_000_000)
    t, x, y, p = (np.array(c).reshape(-1, 1) for c in zip(*ev))
    path = tmp_path / "a_0001.mat"
    scipy.io.savemat(path, {"ts": t, "x": x.astype(np.uint8), "y": y.astype(np.uint8), "pol": p.astype(np.uint8)},
                     do_compression=compress)
    assert as_tuples(read_asl_dvs_mat(path, sensor_size=(180, 240))) == ev


def test_asl_dvs_mat_damaged(tmp_path):
    path = tmp_path / "a_0002.mat"
    scipy.io.savemat(path, {"ts": np.arange(50).reshape(-1, 1), "x": np.ones((50, 1)), "y": np.ones((50, 1)),
                            "pol": np.ones((50, 1))})
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    err = _raises_at(read_asl_dvs_mat, path, _last_element_offset(data))
    assert "truncated" in str(err)
    path.write_bytes(data[:60])
    _raises_at(read_asl_dvs_mat, path, 60)
    scipy.io.savemat(path, {"ts": np.arange(3), "x": np.ones(3)})
    assert "missing the variables" in str(_raises_at(read_asl_dvs_mat, path, None))


def _last_element_offset(data: bytes) -> int:
    """Offset of the last top-level element of a little-endian MAT-5 file, walking tags by hand."""
    pos, last = 128, 128
    while pos < len(data):
        last = pos
        _, nbytes = struct.unpack("<II", data[pos:pos + 8])
        pos += 8 + nbytes + (-nbytes % 8)
    return last


# ---------------------------------------------------------------- numpy files (DVS-Lip, HARDVS, ES-ImageNet)
def test_dvs_lip_npy_every_event(tmp_path):
    ev = _events(40, 128, 128, 1 << 20)
    arr = np.array(ev, dtype=[("t", "<i4"), ("x", "i1"), ("y", "i1"), ("p", "i1")])  # DVS-Lip's own dtype
    path = tmp_path / "0.npy"
    np.save(path, arr)
    assert as_tuples(read_npy_events(path, sensor_size=(128, 128))) == [(t, x, y, p) for t, x, y, p in arr.tolist()]
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert "truncated" in str(_raises_at(read_npy_events, path, len(data) - 5))
    # an object array: an .npy header with descr '|O' followed by a pickle (never unpickled here)
    header = np.lib.format.header_data_from_array_1_0(np.empty(1, dtype=object))
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(pickle.dumps([{"t": 1}]))
    assert "pickle" in str(_raises_at(read_npy_events, path, 0))


def test_hardvs_npz_every_event(tmp_path):
    ev = _events(40, 346, 260, 1 << 30)
    t, x, y, p = (np.array(c) for c in zip(*ev))
    path = tmp_path / "dvSave-2021_10_15_19_18_02.npz"
    np.savez_compressed(path, t=t, x=x.astype(np.uint16), y=y.astype(np.uint16), p=p.astype(np.uint8))
    assert as_tuples(read_npz_events(path, sensor_size=(260, 346))) == ev
    data = path.read_bytes()
    path.write_bytes(data[:-40])
    _raises_at(read_npz_events, path, len(data) - 40)
    np.savez(path, t=t, x=x)
    assert "has no array 'y'" in str(_raises_at(read_npz_events, path, None))


def test_npz_corrupted_member_names_its_offset(tmp_path):
    path = tmp_path / "s.npz"
    np.savez(path, t=np.arange(100), x=np.arange(100), y=np.arange(100), p=np.arange(100) % 2)
    data = bytearray(path.read_bytes())
    i = data.index(b"y.npy") + 200        # inside y's stored data: the CRC no longer matches
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    err = _raises_at(read_npz_events, path, data.rfind(b"PK\x03\x04", 0, i))
    assert "y.npy" in str(err)


def test_es_imagenet_every_event(tmp_path):
    pos = RNG.integers(0, 224, (30, 3))
    neg = RNG.integers(0, 224, (20, 3))
    pos[:, 2], neg[:, 2] = RNG.integers(0, 8, 30), RNG.integers(0, 8, 20)
    path = tmp_path / "n01440764_10026.npz"
    np.savez(path, pos=pos.astype(np.uint8), neg=neg.astype(np.uint8))
    rows = [(r, c, s, 1) for r, c, s in pos.tolist()] + [(r, c, s, 0) for r, c, s in neg.tolist()]
    expected = [(s, c, r, pol) for r, c, s, pol in sorted(rows, key=lambda e: e[2])]  # stable by step
    assert as_tuples(read_es_imagenet(path, sensor_size=(256, 256))) == expected
    np.savez(path, pos=pos[:, :2], neg=neg)
    _raises_at(read_es_imagenet, path, None)


# ---------------------------------------------------------------- HDF5 (SHD, SSC)


def test_shd_every_spike(tmp_path):
    samples = []
    for n in (5, 0, 33):
        t = np.sort(RNG.random(n).astype(np.float32))
        samples.append((t, RNG.integers(0, 700, n)))
    path = tmp_path / "shd_train.h5"
    shd_h5(path, samples, [3, 19, 0])
    shd = SpikeHDF5(path)
    assert len(shd) == 3 and shd.labels.tolist() == [3, 19, 0]
    for i, (t, u) in enumerate(samples):
        ev = shd.events(i)
        assert ev["t"].tolist() == [round(float(v) * 1e6) for v in t] and ev["x"].tolist() == u.tolist()


def test_shd_damaged(tmp_path):
    path = tmp_path / "shd_test.h5"
    shd_h5(path, [(np.array([0.1], np.float32), np.array([800]))], [1])
    assert "outside the 700 channels" in str(_raises_at(lambda p: SpikeHDF5(p).events(0), path, None))
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated" in str(_raises_at(SpikeHDF5, cut, len(data) // 2))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["labels"] = np.zeros(2)
    assert "missing the datasets" in str(_raises_at(SpikeHDF5, tmp_path / "other.h5", None))


# ---------------------------------------------------------------- a peer reader: SpikingJelly 2.0
def test_decoders_agree_with_spikingjelly(tmp_path):
    """Same files through SpikingJelly's readers (which the published results used) and snnir's."""
    from sj_datasets import spikingjelly_datasets

    from snnir.data.datasets import read_cifar10_dvs

    sjd = spikingjelly_datasets()
    import spikingjelly.datasets.cifar10_dvs as sj_cifar
    import spikingjelly.datasets.nav_gesture as sj_nav

    def same(ours, theirs):
        for k in ("t", "x", "y", "p"):
            np.testing.assert_array_equal(ours[k].astype(np.int64), np.asarray(theirs[k]).astype(np.int64), err_msg=k)

    ev = _events(200, 34, 34, 1 << 23)
    (tmp_path / "n.bin").write_bytes(b"".join(atis_event(x, y, p, t) for t, x, y, p in ev))
    same(read_atis_bin(tmp_path / "n.bin"), sjd.utils.load_ATIS_bin(tmp_path / "n.bin"))

    ev = [(t, x, y, p, 1) for t, x, y, p in _events(200, 128, 128, 1 << 31)]
    (tmp_path / "g.aedat").write_bytes(AEDAT31_HEADER + aedat31_packet(1, ev) + aedat31_packet(1, ev, overflow=1))
    same(read_aedat31(tmp_path / "g.aedat"), sjd.utils.load_aedat_v3(tmp_path / "g.aedat"))

    ev = _events(200, 128, 128, 1 << 32)
    (tmp_path / "c.aedat").write_bytes(aedat2(ev))
    same(read_cifar10_dvs(tmp_path / "c.aedat"), sj_cifar._load_origin_data(tmp_path / "c.aedat"))

    ev = _events(200, 304, 240, 1 << 32)
    (tmp_path / "u_le_td.dat").write_bytes(td_dat(ev))
    t, xy, p, _ = sj_nav._readATIS_tddat(str(tmp_path / "u_le_td.dat"), orig_at_zero=False, drop_negative_dt=False)
    same(read_atis_td_dat(tmp_path / "u_le_td.dat"), {"t": t, "x": xy[:, 0], "y": xy[:, 1], "p": p})


def test_container_columns_are_checked_before_the_int16_cast(tmp_path):
    path = tmp_path / "s.npz"
    t = np.arange(4)
    np.savez(path, t=t, x=np.array([1, 2, 70_000, 3]), y=np.zeros(4, int), p=np.ones(4, int))
    assert "x=70000" in str(_raises_at(lambda p: read_npz_events(p, sensor_size=(260, 346)), path, None))
    np.savez(path, t=t, x=np.ones(4, int), y=np.ones(4, int), p=np.array([1, -1, -1, 1]))   # -1/1 polarity
    assert read_npz_events(path)["p"].tolist() == [1, 0, 0, 1]
    np.savez(path, t=t, x=np.ones(4, int), y=np.ones(4, int), p=np.array([1, 0, 2, 1]))
    assert "polarity 2" in str(_raises_at(read_npz_events, path, None))
    np.savez(path, t=t, x=np.array([0.5, 1, 2, 3]), y=np.ones(4), p=np.ones(4))
    assert "non-integer" in str(_raises_at(read_npz_events, path, None))

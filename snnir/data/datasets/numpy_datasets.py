"""Datasets released as numpy files: DVS-Lip (``.npy``), HARDVS and ES-ImageNet (``.npz``)."""

from __future__ import annotations

import numpy as np

from snnir.data.datasets.base import DatasetNotFoundError, EventDataset, files_by_class
from snnir.data.formats import read_es_imagenet, read_npy_events, read_npz_events


class DVSLip(EventDataset):
    """DVS-Lip: 100 spoken words (label order: sorted word folders of ``train``), 128x128 pixels,
    ``train=True|False``.

    Tan et al., "Multi-grained Spatio-Temporal Features Perceived Network for Event-based Lip-Reading",
    CVPR 2022. Root layout (``DVS-Lip.zip`` extracted)::

        root/train/<word>/<n>.npy
        root/test/<word>/<n>.npy
    """

    name = "DVS-Lip"
    sensor_size = (128, 128)
    download = "https://sites.google.com/view/event-based-lipreading (DVS-Lip.zip), then unzip into root"
    layout = "  root/train/<word>/<n>.npy\n  root/test/<word>/<n>.npy"

    def _required(self):
        return [self.root / "train", self.root / self.split]

    def _index(self):
        self.classes = tuple(sorted(d.name for d in (self.root / "train").iterdir() if d.is_dir()))
        return [(f"{self.split}/{sid}", label) for sid, label in files_by_class(self.root / self.split, ".npy",
                                                                                 self.classes)]

    def _read(self, sample_id: str) -> np.ndarray:
        return read_npy_events(self.root / sample_id, self.sensor_size)


class HARDVS(EventDataset):
    """HARDVS: 300 human activities, 346x260 DAVIS346, ``split="train"|"val"|"test"``.

    Wang et al., "HARDVS: Revisiting Human Activity Recognition with Dynamic Vision Sensors",
    AAAI 2024. Each line of ``<split>_label.txt`` starts with ``action_<nnn>/<recording>``; the label
    is ``nnn - 1``. Root layout (``MINI_HARDVS_files.zip`` and its per-action zips extracted)::

        root/{train,val,test}_label.txt
        root/action_<nnn>/<recording>.npz      (arrays t, x, y, p)
    """

    name = "HARDVS"
    sensor_size = (260, 346)
    classes = tuple(f"action_{i:03d}" for i in range(1, 301))
    splits = ("train", "val", "test")
    download = ("https://github.com/Event-AHU/HARDVS (MINI_HARDVS_files.zip, train_label.txt, val_label.txt, "
                "test_label.txt); unzip the archive and the action zips inside it into root")
    layout = "  root/{train,val,test}_label.txt\n  root/action_<nnn>/<recording>.npz"

    def _required(self):
        return [self.root / f"{self.split}_label.txt"]

    def _index(self):
        out = []
        with open(self.root / f"{self.split}_label.txt") as f:
            for line in f:
                if line.strip():
                    name = line.split()[0]
                    action = name.split("/")[0]
                    if action not in self.classes:
                        raise DatasetNotFoundError(self._missing_message(f"{self.split}_label.txt names {name!r}, "
                                                                         "not an action_<001-300> sample"))
                    out.append((f"{name}.npz", self.classes.index(action)))
        return out

    def _read(self, sample_id: str) -> np.ndarray:
        return read_npz_events(self.root / sample_id, self.sensor_size)


class ESImageNet(EventDataset):
    """ES-ImageNet: ImageNet-1K converted to events by simulated saccades, 1000 classes, 8 time
    steps (``t`` is the step 0..7: use ``frames_number=8, split_by="time"`` or ``duration=1``),
    coordinates inside 256x256, ``train=True|False`` (test = the ``val`` set).

    Lin et al., "ES-ImageNet: A Million Event-Stream Classification Dataset for Spiking Neural
    Networks", Frontiers in Neuroscience 2021. Root layout (the ``ES-imagenet-0.18`` folder of the
    extracted rar parts)::

        root/train/class<k>/<image>.npz        (arrays pos, neg)
        root/val/<image>.npz
        root/vallabel.txt                       (lines "<image>.npz <k>")
    """

    name = "ES-ImageNet"
    sensor_size = (256, 256)
    classes = tuple(f"class{k}" for k in range(1000))
    download = ("https://cloud.tsinghua.edu.cn/d/94873ab4ec2a4eb497b3/ (ES-imagenet-0.18.part01.rar ... "
                "part25.rar); extract them and pass the ES-imagenet-0.18 folder as root")
    layout = "  root/train/class<k>/<image>.npz\n  root/val/<image>.npz\n  root/vallabel.txt"

    def _required(self):
        return [self.root / "train"] if self.split == "train" else [self.root / "val", self.root / "vallabel.txt"]

    def _index(self):
        if self.split == "train":
            return [(f"train/{sid}", label) for sid, label in files_by_class(self.root / "train", ".npz",
                                                                              self.classes)]
        out = []
        with open(self.root / "vallabel.txt") as f:
            for line in f:
                if line.strip():
                    name, label = line.split()[:2]
                    out.append((f"val/{name}", int(label)))
        return out

    def _read(self, sample_id: str) -> np.ndarray:
        return read_es_imagenet(self.root / sample_id, self.sensor_size)

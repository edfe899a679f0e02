"""CIFAR10-DVS: 10 000 CIFAR-10 images moved on a monitor in front of a DVS128 (AEDAT 2.0, some copies 3.1).

Li, Liu, Ji, Li, Shi, "CIFAR10-DVS: An Event-Stream Dataset for Object Classification", Frontiers
in Neuroscience 2017. Files: figshare.com/articles/dataset/CIFAR10-DVS_New/4724671.
"""

from __future__ import annotations

import re

import numpy as np

from snnir.data.datasets.base import EventDataset, files_by_class
from snnir.data.events import EVENT_DTYPE
from snnir.data.formats import (
    aedat_version,
    decode_dvs128_address,
    dvs128_pixel_events,
    read_aedat2,
    read_aedat31,
)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar10_dvs(path) -> np.ndarray:
    """One CIFAR10-DVS recording in image coordinates.

    AEDAT 2.0 files hold jAER DVS128 addresses; they are mapped as ``x = 127 - y_sensor``,
    ``y = 127 - x_sensor`` (the recordings are transposed and flipped relative to the image shown),
    which is the orientation SpikingJelly and events-tfds use, so frames match models trained there.
    AEDAT 3.1 copies already store image coordinates.
    """
    if aedat_version(path) == "3.1":
        return read_aedat31(path, (128, 128))
    t, addr = read_aedat2(path)
    keep = dvs128_pixel_events(addr)
    xs, ys, p = decode_dvs128_address(addr[keep])
    ev = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t[keep], 127 - ys, 127 - xs, p
    return ev


class CIFAR10DVS(EventDataset):
    """CIFAR10-DVS: 10 classes x 1 000 recordings, 128x128 pixels.

    ``split="all"`` (default, no official split) or ``"train"``/``"test"``: the 9:1 split of
    SpikingJelly's ``CIFAR10DVSTEBNSplit`` (files numbered 0-99 of each class are the test set).
    Root layout (the ten ``<class>.zip`` files extracted)::

        root/<class>/cifar10_<class>_<n>.aedat      n = 0..999
    """

    name = "CIFAR10-DVS"
    sensor_size = (128, 128)
    classes = CLASSES
    splits = ("all", "train", "test")
    download = ("https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (airplane.zip ... truck.zip), "
                "then unzip each into root")
    layout = "  root/<class>/cifar10_<class>_<n>.aedat   (class = airplane ... truck, n = 0..999)"

    def _required(self):
        return [self.root / c for c in self.classes]

    def _index(self):
        out = []
        for sid, label in files_by_class(self.root, ".aedat", self.classes):
            n = int(m.group(1)) if (m := re.search(r"_(\d+)\.aedat$", sid)) else -1
            if self.split == "all" or (self.split == "test") == (0 <= n < 100):
                out.append((sid, label))
        return out

    def _read(self, sample_id: str) -> np.ndarray:
        return read_cifar10_dvs(self.root / sample_id)

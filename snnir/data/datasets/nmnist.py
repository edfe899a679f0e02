"""N-MNIST and N-Caltech101: ATIS saccade recordings of MNIST and Caltech101 (``.bin`` files).

Orchard, Jayawant, Cohen, Thakor, "Converting Static Image Datasets to Spiking Neuromorphic Datasets
Using Saccades", Frontiers in Neuroscience 2015. Files: garrickorchard.com/datasets.
"""

from __future__ import annotations

import numpy as np

from snnir.data.datasets.base import EventDataset, files_by_class
from snnir.data.formats import read_atis_bin

_URL = "https://www.garrickorchard.com/datasets"


class NMNIST(EventDataset):
    """N-MNIST: 10 digits, 60 000 train / 10 000 test samples, 34x34 pixels, ``train=True|False``.

    Root layout (``Train.zip`` and ``Test.zip`` extracted)::

        root/Train/<digit 0-9>/<id>.bin
        root/Test/<digit 0-9>/<id>.bin
    """

    name = "N-MNIST"
    sensor_size = (34, 34)
    classes = tuple(str(d) for d in range(10))
    download = f"{_URL}/n-mnist (Train.zip, Test.zip), then unzip both into root"
    layout = "  root/Train/<digit>/<id>.bin\n  root/Test/<digit>/<id>.bin"

    def _folder(self):
        return self.root / ("Train" if self.split == "train" else "Test")

    def _required(self):
        return [self._folder()]

    def _index(self):
        return [(f"{self._folder().name}/{sid}", label)
                for sid, label in files_by_class(self._folder(), ".bin", self.classes)]

    def _read(self, sample_id: str) -> np.ndarray:
        return read_atis_bin(self.root / sample_id, self.sensor_size)


class NCaltech101(EventDataset):
    """N-Caltech101: 101 object classes and ``BACKGROUND_Google`` (label order: sorted folder names),
    8 709 samples, 180x240 pixels. There is no official split (``split="all"``); use
    ``torch.utils.data.random_split``.

    Root layout (``Caltech101.zip`` extracted)::

        root/Caltech101/<class>/image_<nnnn>.bin
    """

    name = "N-Caltech101"
    sensor_size = (180, 240)
    splits = ("all",)
    download = f"{_URL}/n-caltech101 (Caltech101.zip), then unzip into root"
    layout = "  root/Caltech101/<class>/image_<nnnn>.bin"

    def _required(self):
        return [self.root / "Caltech101"]

    def _index(self):
        folder = self.root / "Caltech101"
        self.classes = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
        return [(f"Caltech101/{sid}", label) for sid, label in files_by_class(folder, ".bin", self.classes)]

    def _read(self, sample_id: str) -> np.ndarray:
        return read_atis_bin(self.root / sample_id, self.sensor_size)

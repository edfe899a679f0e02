"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): 700-channel cochlea spikes (HDF5).

Cramer, Stradmann, Schemmel, Zenke, "The Heidelberg Spiking Data Sets for the Systematic Evaluation
of Spiking Neural Networks", IEEE TNNLS 2020. Files: zenkelab.org/datasets.
"""

from __future__ import annotations

import numpy as np

from snnir.data.datasets.base import EventDataset
from snnir.data.formats import SpikeHDF5

_URL = "https://zenkelab.org/datasets/"


class SHD(EventDataset):
    """SHD: spoken digits 0-9 in English (labels 0-9) and German (10-19), 8 156 train / 2 264 test,
    700 channels (audio events, frames ``[T, 700]``), ``train=True|False``. Root layout (the
    ``.h5.zip`` files unzipped)::

        root/shd_train.h5, root/shd_test.h5
    """

    name = "SHD"
    prefix = "shd"
    sensor_size = (700,)
    classes = tuple(f"english-{d}" for d in range(10)) + tuple(f"german-{d}" for d in range(10))
    download = f"{_URL} (shd_train.h5.zip, shd_test.h5.zip), then unzip into root"
    layout = "  root/shd_train.h5, root/shd_test.h5"

    def _file(self):
        return self.root / f"{self.prefix}_{self.split}.h5"

    def _required(self):
        return [self._file()]

    def _index(self):
        self._h5 = SpikeHDF5(self._file(), channels=self.sensor_size[0])
        return [(f"{self.split}/{i}", int(label)) for i, label in enumerate(self._h5.labels)]

    def _read(self, sample_id: str) -> np.ndarray:
        return self._h5.events(int(sample_id.rsplit("/", 1)[1]))


class SSC(SHD):
    """SSC: 35 Speech Commands words, 75 466 train / 9 981 valid / 20 382 test, 700 channels,
    ``split="train"|"valid"|"test"`` (``train=True|False`` picks train or test). Root layout::

        root/ssc_train.h5, root/ssc_valid.h5, root/ssc_test.h5
    """

    name = "SSC"
    prefix = "ssc"
    classes = tuple(str(k) for k in range(35))
    splits = ("train", "valid", "test")
    download = f"{_URL} (ssc_train.h5.zip, ssc_valid.h5.zip, ssc_test.h5.zip), then unzip into root"
    layout = "  root/ssc_train.h5, root/ssc_valid.h5, root/ssc_test.h5"

"""ASL-DVS: 24 American Sign Language letters recorded with a DAVIS240c (MATLAB ``.mat`` files).

Bi, Chadha, Abbas, Bourtsoulatze, Andreopoulos, "Graph-based Object Classification for
Neuromorphic Vision Sensing", ICCV 2019. Files: github.com/PIX2NVS/NVS2Graph.
"""

from __future__ import annotations

import numpy as np

from snnir.data.datasets.base import EventDataset, files_by_class
from snnir.data.formats import read_asl_dvs_mat


class ASLDVS(EventDataset):
    """ASL-DVS: letters a..y without j (24 classes), 100 800 samples, 180x240 pixels, ``split="all"``.

    Events are rotated by 180 degrees (``x = 239 - x``, ``y = 179 - y``), the orientation
    SpikingJelly uses, so frames match models trained there. Root layout (``ICCV2019_DVS_dataset.zip``
    and the per-letter zips inside it extracted)::

        root/<letter>/<letter>_<nnnn>.mat
    """

    name = "ASL-DVS"
    sensor_size = (180, 240)
    classes = tuple("abcdefghiklmnopqrstuvwxy")
    splits = ("all",)
    download = ("https://github.com/PIX2NVS/NVS2Graph (Dropbox link to ICCV2019_DVS_dataset.zip; an OpenI "
                "mirror: OpenI/ASLDVS); unzip it and the letter zips inside into root")
    layout = "  root/<letter a..y, no j>/<letter>_<nnnn>.mat"

    def _index(self):
        return files_by_class(self.root, ".mat", self.classes)

    def _read(self, sample_id: str) -> np.ndarray:
        ev = read_asl_dvs_mat(self.root / sample_id, self.sensor_size)
        ev["x"], ev["y"] = 239 - ev["x"], 179 - ev["y"]
        return ev

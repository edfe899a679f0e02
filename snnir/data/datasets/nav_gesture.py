"""NavGesture: 6 smartphone navigation gestures seen by an ATIS sensor (``_td.dat`` files).

Maro, Ieng, Benosman, "Event-Based Gesture Recognition With Dynamic Background Suppression Using
Smartphone Computational Capabilities", Frontiers in Neuroscience 2020. Two variants, recorded
sitting (navgesture-sit) and walking (navgesture-walk); each is used with its own root.
"""

from __future__ import annotations

import numpy as np

from snnir.data.datasets.base import EventDataset
from snnir.data.formats import read_atis_td_dat


class NavGesture(EventDataset):
    """NavGesture (sit or walk): gestures ``do``wn, ``ho``me, ``le``ft, ``ri``ght, ``se``lect, ``up``
    (labels in that order), 240x304 pixels, ``split="all"`` (no official split).

    The label is the second ``_``-separated field of the file name. The sensor's y axis points up;
    events are flipped to image rows (``y = 239 - y``, as SpikingJelly does). Root layout (the
    dataset zip and the per-user zips inside it extracted)::

        root/<user>/<user>_<gesture>_<n>_td.dat
    """

    name = "NavGesture"
    sensor_size = (240, 304)
    classes = ("do", "ho", "le", "ri", "se", "up")
    splits = ("all",)
    download = ("https://www.neuromorphic-vision.com/public/downloads/navgesture/ (navgesture-sit.zip or "
                "navgesture-walk.zip); unzip it and the user zips inside into root")
    layout = "  root/<user>/<user>_<gesture>_<n>_td.dat"

    def _index(self):
        out = []
        for path in sorted(self.root.glob("*/*.dat")):
            fields = path.stem.split("_")
            if len(fields) > 1 and fields[1] in self.classes:
                out.append((f"{path.parent.name}/{path.name}", self.classes.index(fields[1])))
        return out

    def _read(self, sample_id: str) -> np.ndarray:
        ev = read_atis_td_dat(self.root / sample_id, self.sensor_size)
        ev["y"] = 239 - ev["y"]
        return ev

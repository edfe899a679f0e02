"""DVS128 Gesture: 11 hand and arm gestures by 29 subjects under 5 lighting conditions (AEDAT 3.1).

Amir et al., "A Low Power, Fully Event-Based Gesture Recognition System", CVPR 2017.
Files: research.ibm.com/interactive/dvsgesture (``DvsGesture.tar.gz``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
from tqdm.auto import tqdm

from snnir.data.datasets.base import EventDataset, files_by_class
from snnir.data.formats import read_aedat31, read_gesture_labels, read_npz_events, read_trials


class DVS128Gesture(EventDataset):
    """DVS128 Gesture: 1 176 train / 288 test gestures, 128x128 pixels, ``train=True|False``.

    Each recording ``userNN_<light>.aedat`` holds a whole trial; its ``_labels.csv`` gives every
    gesture's class (1..11, here 0..10) and time range ``[start, end)``. On first use the trials
    of the split are cut into one ``.npz`` per gesture under ``root/snnir_events/<split>/<label>/``
    (with a tqdm bar); later uses read those. Root layout (the extracted ``DvsGesture`` folder)::

        root/trials_to_train.txt, root/trials_to_test.txt
        root/userNN_<light>.aedat, root/userNN_<light>_labels.csv
    """

    name = "DVS128 Gesture"
    sensor_size = (128, 128)
    classes = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
               "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
               "air_drums", "air_guitar", "other_gestures")
    download = ("https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz, via the IBM Box "
                "folder linked there); extract it and pass the DvsGesture folder as root")
    layout = ("  root/trials_to_train.txt, root/trials_to_test.txt\n"
              "  root/userNN_<lighting>.aedat, root/userNN_<lighting>_labels.csv")

    def _required(self):
        return [self.root / f"trials_to_{self.split}.txt"]

    def _prepared(self):
        return self.root / "snnir_events" / self.split

    def _index(self):
        if not self._prepared().is_dir():
            self._cut_trials()
        return [(f"snnir_events/{self.split}/{sid}", label)
                for sid, label in files_by_class(self._prepared(), ".npz", tuple(map(str, range(11))))]

    def _cut_trials(self) -> None:
        """Cut every trial of the split into gesture samples, written to a temp folder then renamed."""
        trials = read_trials(self.root / f"trials_to_{self.split}.txt")
        self._prepared().parent.mkdir(exist_ok=True)
        tmp = tempfile.mkdtemp(dir=self._prepared().parent, prefix=f".{self.split}-")
        try:
            for trial in tqdm(trials, desc=f"{self.name} {self.split}: cutting trials", unit="trial",
                              disable=not self.progress):
                stem = trial[: -len(".aedat")] if trial.endswith(".aedat") else trial
                events = read_aedat31(self.root / f"{stem}.aedat", self.sensor_size)
                for row, (label, start, stop) in enumerate(read_gesture_labels(self.root / f"{stem}_labels.csv")):
                    sample = events[(events["t"] >= start) & (events["t"] < stop)]
                    os.makedirs(os.path.join(tmp, str(label)), exist_ok=True)
                    np.savez(os.path.join(tmp, str(label), f"{stem}_{row}.npz"),
                             **{k: sample[k] for k in ("t", "x", "y", "p")})
            try:
                os.replace(tmp, self._prepared())
            except OSError:
                if not self._prepared().is_dir():  # else another process (a DDP rank) finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _read(self, sample_id: str) -> np.ndarray:
        return read_npz_events(self.root / sample_id, self.sensor_size)

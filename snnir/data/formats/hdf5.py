"""Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC): HDF5 files.

Source: Cramer, Stradmann, Schemmel, Zenke, "The Heidelberg Spiking Data Sets for the Systematic
Evaluation of Spiking Neural Networks" (IEEE TNNLS 2020) and zenkelab.org/datasets. Each split is
one file (``shd_train.h5``, ``shd_test.h5``; ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``)
holding, per sample ``i``: ``spikes/times[i]`` (variable-length float, seconds),
``spikes/units[i]`` (variable-length uint16, cochlea channel 0..699) and ``labels[i]``
(SHD: 20 classes, SSC: 35). Times become int64 microseconds (rounded) in AUDIO_EVENT_DTYPE.

Decoder: ``h5py`` (the reference HDF5 library binding). The file is opened lazily and once per
process, so a :class:`SpikeHDF5` can be used by DataLoader workers.

Example:
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from snnir.data.formats import SpikeHDF5
    >>> path = os.path.join(tempfile.mkdtemp(), "shd_test.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float32))[0] = [0.5, 0.25]
    ...     f.create_dataset("spikes/units", (1,), dtype=h5py.vlen_dtype(np.uint16))[0] = [7, 3]
    ...     f["labels"] = np.array([4], np.uint16)
    >>> shd = SpikeHDF5(path)
    >>> len(shd), shd.labels.tolist(), shd.events(0).tolist()
    (1, [4], [(500000, 7), (250000, 3)])
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from snnir.data.events import AUDIO_EVENT_DTYPE
from snnir.data.formats._common import EventFormatError, PathLike, check_in_sensor

KEYS = ("spikes/times", "spikes/units", "labels")


class SpikeHDF5:
    """Per-sample access to an SHD/SSC file; ``channels`` (700) bounds the unit ids.

    The datasets' types and declared sizes are checked (``snnir.limits``) before the labels are
    read. ``safe=True`` (default: ``snnir.limits.current().safe``) first reads every sample once in
    a child process with memory and time limits (``snnir.isolation``), so a file that would crash
    h5py or exhaust memory is refused before this process reads it.
    """

    def __init__(self, path: PathLike, channels: int | None = 700, safe: bool | None = None):
        from snnir.isolation import run_isolated, use_safe_mode

        self.path, self.channels = Path(path), channels
        self._file, self._pid = None, None
        if use_safe_mode(safe):
            run_isolated(_scan, str(path), channels, where=str(path), what="HDF5 reader (h5py)")
        f = self._open()
        try:
            self._check_layout(f)
            self.labels = np.asarray(f["labels"][()], dtype=np.int64)
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as err:
            raise EventFormatError(self.path, None, f"cannot read the labels ({type(err).__name__}: {err}); "
                                                    "corrupted?") from None

    def _check_layout(self, f) -> None:
        import h5py

        from snnir.hdf5_tree import dataset_nbytes

        spikes = f.get("spikes")
        found = {k: f.get(k) if isinstance(spikes, h5py.Group) or k == "labels" else None for k in KEYS}
        missing = [k for k, v in found.items() if not isinstance(v, h5py.Dataset)]
        if missing:
            raise EventFormatError(self.path, None, f"missing the datasets {missing} (an SHD/SSC file has {KEYS})")
        for k in ("spikes/times", "spikes/units"):
            base = h5py.check_vlen_dtype(found[k].dtype)
            if not isinstance(base, np.dtype) or base.kind not in "iuf" or len(found[k].shape or ()) != 1:
                raise EventFormatError(self.path, None, f"dataset {k!r} has type {found[k].dtype}, shape "
                                                        f"{found[k].shape}; expected 1-D variable-length numbers")
        labels = found["labels"]
        if labels.dtype.kind not in "iu" or len(labels.shape or ()) != 1:
            raise EventFormatError(self.path, None, f"dataset 'labels' has type {labels.dtype}, shape {labels.shape}; "
                                                    "expected 1-D integers")
        dataset_nbytes(labels, str(self.path), "labels", os.path.getsize(self.path))
        sizes = {k: v.shape[0] for k, v in found.items()}
        if len(set(sizes.values())) != 1:
            raise EventFormatError(self.path, None, f"datasets differ in length: {sizes}")

    def _open(self):
        import h5py  # only when an HDF5 dataset is used

        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                raise
            except (OSError, RuntimeError, ValueError) as err:
                # HDF5 reports a short file as "truncated file: eof = <end>, ..., stored_eof = <size>".
                eof = re.search(r"\beof = (\d+)", str(err))
                raise EventFormatError(self.path, int(eof.group(1)) if eof else None,
                                       f"h5py cannot open it as HDF5 ({err}); truncated?") from None
            self._pid = os.getpid()
        return self._file

    def __len__(self) -> int:
        return len(self.labels)

    def events(self, index: int) -> np.ndarray:
        """Sample ``index`` as AUDIO_EVENT_DTYPE (t microseconds, x channel), in file order."""
        f = self._open()
        try:
            times, units = f["spikes/times"][index], f["spikes/units"][index]
        except (OSError, RuntimeError, ValueError, TypeError) as err:
            raise EventFormatError(self.path, None, f"sample {index} cannot be read ({err}); corrupted?") from None
        if len(times) != len(units):
            raise EventFormatError(self.path, None, f"sample {index} has {len(times)} times but {len(units)} units")
        seconds = np.asarray(times, dtype=np.float64)
        units = np.asarray(units)
        if not np.isfinite(seconds).all() or (seconds.size and np.abs(seconds).max() > 1e9):
            raise EventFormatError(self.path, None, f"sample {index} has spike times that are NaN, Inf or beyond "
                                                    "1e9 s; corrupted?")
        if units.size and (units.min() < 0 or units.max() > np.iinfo(np.int16).max):
            raise EventFormatError(self.path, None, f"sample {index} has unit ids outside [0, 32767]; corrupted?")
        ev = np.empty(len(times), dtype=AUDIO_EVENT_DTYPE)
        ev["t"] = np.rint(seconds * 1e6)
        ev["x"] = units
        if self.channels is not None:
            check_in_sensor(self.path, ev["x"], None, (self.channels,))
        return ev

    def close(self) -> None:
        """Close the HDF5 handle (it is reopened on the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        return {**self.__dict__, "_file": None, "_pid": None}


def _scan(path: str, channels: int | None) -> int:
    """Read every sample once (in safe mode's child process); returns the number of samples."""
    data = SpikeHDF5(path, channels, safe=False)
    for i in range(len(data)):
        data.events(i)
    data.close()
    return len(data)

"""The base of every dataset class: root checks, splits, event or frame samples, the frame cache.

A dataset lists its samples once (``(sample_id, label)`` pairs, from the folder layout) and decodes
a sample's file only when it is indexed. In ``data_type='frame'`` mode the events go through
:func:`snnir.data.to_frames` with the given setting, and the frames are stored in a
:class:`snnir.data.FrameCache` (``cache_root``, by default ``<root>/snnir_frames``), so each sample
is integrated once per setting; :meth:`EventDataset.prepare_frames` fills the cache up front with a
progress bar. Nothing here touches the network: a missing root raises :class:`DatasetNotFoundError`
whose message says where to download the files and which layout is expected.

Importing this package imports torch (the classes are ``torch.utils.data.Dataset``s);
``import snnir`` and ``import snnir.data`` do not.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch.utils.data

from snnir.data.cache import FrameCache, frames_setting
from snnir.data.frames import Integrator, to_frames

DATA_TYPES = ("event", "frame")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not under ``root``; the message holds the download instructions."""


class EventDataset(torch.utils.data.Dataset):
    """Base class: subclasses set the class attributes and implement ``_index`` and ``_read``.

    Args:
        root: the dataset folder (layout in each subclass's docstring).
        train: ``True``/``False`` for the train/test split of datasets that have those two; ignored
            when ``split`` is given.
        split: the split by name (``cls.splits``); ``"all"`` for datasets without an official split.
        data_type: ``"event"`` (a structured event array, sorted by time) or ``"frame"``
            (``to_frames`` output: ``[T, 2, H, W]`` or ``[T, C]`` float32).
        frames_number, split_by, duration, integrate: the frame setting, passed to ``to_frames``.
        cache_root: where integrated frames are stored (default ``<root>/snnir_frames``); ``False``
            integrates on every access without storing.
        transform, target_transform: applied to the sample and to the label.
        progress: show tqdm bars while preparing.
    """

    #: name used in messages; sensor (H, W) or (C,); class names in label order
    name: str = ""
    sensor_size: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    #: accepted split names; the first is the default when neither train nor split is given
    splits: tuple[str, ...] = ("train", "test")
    #: where to get the files (text, never fetched) and the expected layout under root
    download: str = ""
    layout: str = ""

    def __init__(self, root: str | os.PathLike, train: bool | None = None, split: str | None = None,
                 data_type: str = "event", frames_number: int | None = None, split_by: str = "number",
                 duration: Any = None, integrate: Integrator | None = None,
                 cache_root: str | os.PathLike | bool | None = None, transform: Callable | None = None,
                 target_transform: Callable | None = None, progress: bool = True) -> None:
        self.root = Path(root)
        self.split = self._choose_split(train, split)
        if data_type not in DATA_TYPES:
            raise ValueError(f"{self.name}: data_type must be one of {DATA_TYPES}, got {data_type!r}")
        self.data_type = data_type
        self.frame_kwargs = dict(frames_number=frames_number, split_by=split_by, duration=duration,
                                 integrate=integrate)
        self.setting = frames_setting(self.sensor_size, **self.frame_kwargs) if data_type == "frame" else None
        if cache_root is False or data_type == "event":
            self.cache = None
        else:
            self.cache = FrameCache(self.root / "snnir_frames" if cache_root in (None, True) else cache_root)
        self.transform, self.target_transform, self.progress = transform, target_transform, progress
        self._check_root()
        self.samples: list[tuple[str, int]] = self._index()
        if not self.samples:
            raise DatasetNotFoundError(self._missing_message(f"no {self.split!r} samples found under {self.root}"))

    # -- what a subclass provides -------------------------------------------------------------
    def _required(self) -> list[Path]:
        """Paths that must exist under root (default: root itself)."""
        return [self.root]

    def _index(self) -> list[tuple[str, int]]:
        """The split's ``(sample_id, label)`` pairs, in a fixed order."""
        raise NotImplementedError

    def _read(self, sample_id: str) -> np.ndarray:
        """Decode one sample's events (EVENT_DTYPE or AUDIO_EVENT_DTYPE)."""
        raise NotImplementedError

    # -- the Dataset protocol -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        sample_id, label = self.samples[index]
        data = self.frames(index) if self.data_type == "frame" else self.events(index)
        if self.transform is not None:
            data = self.transform(data)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return data, label

    @property
    def targets(self) -> list[int]:
        """Every sample's label, in index order (for samplers and class counts)."""
        return [label for _, label in self.samples]

    def events(self, index: int) -> np.ndarray:
        """Sample ``index`` as an event array sorted by time (stable, so file order breaks ties)."""
        ev = self._read(self.samples[index][0])
        if ev.size > 1 and np.any(np.diff(ev["t"]) < 0):
            ev = ev[np.argsort(ev["t"], kind="stable")]
        return ev

    def frames(self, index: int) -> np.ndarray:
        """Sample ``index`` integrated with this dataset's frame setting (cached when a cache is set)."""
        if self.setting is None:
            raise ValueError(f"{self.name}: frames need data_type='frame' and a frames_number or duration")
        compute = functools.partial(self._integrate, index)
        if self.cache is None:
            return compute()
        return self.cache.get(self._cache_id(index), self.setting, compute)

    def prepare_frames(self) -> int:
        """Integrate and cache every sample of the split now (tqdm bar); returns how many were computed."""
        if self.cache is None:
            raise ValueError(f"{self.name}: prepare_frames needs data_type='frame' and a cache_root")
        ids = {self._cache_id(i): i for i in range(len(self))}
        return self.cache.prepare(ids, self.setting, lambda sid: self._integrate(ids[sid]),
                                  desc=f"{self.name} {self.split}: integrating frames", progress=self.progress)

    def _integrate(self, index: int) -> np.ndarray:
        return to_frames(self.events(index), self.sensor_size, **self.frame_kwargs)

    def _cache_id(self, index: int) -> str:
        return f"{type(self).__name__}/{self.samples[index][0]}"

    # -- helpers --------------------------------------------------------------------------------
    def _choose_split(self, train: bool | None, split: str | None) -> str:
        if split is None:
            if train is None:
                split = self.splits[0]
            elif set(self.splits) >= {"train", "test"}:
                split = "train" if train else "test"
            else:
                raise ValueError(f"{self.name} has no train/test split (splits: {self.splits}); "
                                 f"use split=... or torch.utils.data.random_split")
        if split not in self.splits:
            raise ValueError(f"{self.name}: split must be one of {self.splits}, got {split!r}")
        return split

    def _check_root(self) -> None:
        missing = [p for p in self._required() if not p.exists()]
        if missing:
            raise DatasetNotFoundError(self._missing_message(f"missing {', '.join(map(str, missing))}"))

    def _missing_message(self, problem: str) -> str:
        return (f"{self.name}: {problem}.\nDownload (by hand; snnir never downloads): {self.download}\n"
                f"Expected layout under root:\n{self.layout}")

    def __repr__(self) -> str:
        mode = self.data_type if self.setting is None else f"frame {self.frame_kwargs}"
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} samples, {mode})"


def files_by_class(folder: Path, suffix: str, classes: tuple[str, ...] | None = None) -> list[tuple[str, int]]:
    """``(relative path, label)`` for every ``folder/<class>/*<suffix>``, classes in order (sorted by default)."""
    if classes is None:
        classes = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    out = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if class_dir.is_dir():
            out += [(f"{name}/{f.name}", label) for f in sorted(class_dir.iterdir()) if f.name.endswith(suffix)]
    return out

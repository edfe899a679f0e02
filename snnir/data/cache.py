"""An on-disk cache of integrated frames: one ``.npz`` file per sample and setting, never pickled.

API (three names):

- ``frames_setting(sensor_size, frames_number=..., split_by=..., duration=..., integrate=...)``:
  the canonical, JSON-serializable setting of a :func:`~snnir.data.to_frames` call; the cache key.
- ``FrameCache(root)``: ``get(sample_id, setting, compute)`` returns the cached array, or calls
  ``compute()`` once, stores its result and returns it; ``prepare(sample_ids, setting, compute)``
  fills the cache for a whole dataset with a progress bar (``compute(sample_id)`` per missing
  sample); ``path(sample_id, setting)`` is where a sample's file lives.

Layout: ``root/<setting slug>-<hash>/<sample_id>.npz`` holding one array under the key ``frames``,
beside ``setting.json`` (the setting in clear). The directory name hashes the setting's canonical
JSON, so any change of setting (frames number, split, duration, integration, sensor size) selects
other files. ``sample_id`` may contain ``/`` (sub-directories) but no ``..``.

Files are written atomically (a temporary file renamed into place), so parallel DataLoader workers
and interrupted runs never leave half-written files. A cached file that cannot be read (truncated,
not a zip, CRC mismatch, missing ``frames`` key, or an object array, which would need pickle) is
**recomputed and overwritten**, with a :class:`CacheWarning` naming the file and the defect.

Example:
    >>> import tempfile, numpy as np
    >>> from snnir.data import FrameCache, frames_setting, make_events, to_frames
    >>> ev = make_events(t=[0, 1, 2], x=[0, 1, 0], y=[0, 0, 1], p=[1, 0, 1])
    >>> setting = frames_setting((2, 2), frames_number=3)
    >>> cache = FrameCache(tempfile.mkdtemp())
    >>> f = cache.get("train/0", setting, lambda: to_frames(ev, (2, 2), frames_number=3))
    >>> f.shape, cache.path("train/0", setting).name
    ((3, 2, 2, 2), '0.npz')
    >>> cache.get("train/0", setting, lambda: 1 / 0).sum()   # cached: compute is not called
    np.float32(3.0)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from snnir.data.frames import Integrator, _check_sensor_size, _check_setting

#: Bumped whenever to_frames' semantics change, so old caches are not reused.
FRAMES_VERSION = 1


class CacheWarning(UserWarning):
    """A cached file was unreadable and has been recomputed."""


def integration_name(integrate: Integrator | None) -> str:
    """The cache name of an integration function: ``"count"`` for the default event counting,
    else its ``cache_name`` attribute, else ``module.qualname`` (lambdas and nested functions
    must set ``cache_name``, since their names do not identify them).

    >>> integration_name(None), integration_name(np.sum)
    ('count', 'numpy.sum')
    """
    if integrate is None:
        return "count"
    name = getattr(integrate, "cache_name", None)
    if name is not None:
        return str(name)
    module = getattr(integrate, "__module__", None) or type(integrate).__module__
    qualname = getattr(integrate, "__qualname__", None) or type(integrate).__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise ValueError(f"frames_setting: integrate={qualname!r} has no stable name to key the cache with; define "
                         "it at module level or set a unique `integrate.cache_name = '...'`")
    return f"{module}.{qualname}"


def frames_setting(sensor_size: Sequence[int], frames_number: int | None = None, split_by: str = "number",
                   duration: Any = None, integrate: Integrator | None = None) -> dict[str, Any]:
    """The cache key of ``to_frames(events, sensor_size, frames_number, split_by, duration, integrate)``.

    >>> frames_setting((128, 128), frames_number=16, split_by="time")
    {'frames': 1, 'sensor_size': [128, 128], 'integrate': 'count', 'frames_number': 16, 'split_by': 'time'}
    >>> frames_setting((700,), duration=10_000)["duration"]
    10000
    """
    _check_setting(frames_number, split_by, duration)
    setting: dict[str, Any] = {"frames": FRAMES_VERSION, "sensor_size": list(_check_sensor_size(sensor_size)),
                               "integrate": integration_name(integrate)}
    if duration is not None:
        duration = duration.item() if isinstance(duration, np.generic) else duration
        # 10000 and 10000.0 integrate identically, so they must share a key.
        setting["duration"] = int(duration) if float(duration).is_integer() else float(duration)
    else:
        setting.update(frames_number=int(frames_number), split_by=split_by)
    return setting


class FrameCache:
    """Integrated frames on disk under ``root``, keyed by setting and sample id (see the module docstring).

    ``compress=True`` stores ``np.savez_compressed`` files (event-count frames are mostly zeros).
    """

    def __init__(self, root: str | os.PathLike, compress: bool = True) -> None:
        self.root = Path(root)
        self.compress = compress

    def __repr__(self) -> str:
        return f"FrameCache({str(self.root)!r})"

    def directory(self, setting: dict[str, Any]) -> Path:
        """The folder of one setting: a readable slug of it and a hash of its canonical JSON."""
        canonical = _canonical(setting)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9=.,_+-]+", "", "_".join(f"{k}={_flat(v)}" for k, v in sorted(setting.items())))
        return self.root / f"{slug[:80]}-{digest}"

    def path(self, sample_id: str, setting: dict[str, Any]) -> Path:
        """Where the frames of ``sample_id`` under ``setting`` are stored."""
        return self.directory(setting) / (_check_sample_id(sample_id) + ".npz")

    def get(self, sample_id: str, setting: dict[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array, or ``compute()``'s result after storing it."""
        path = self.path(sample_id, setting)
        if path.exists():
            try:
                return _read(path)
            except _UNREADABLE as exc:
                warnings.warn(f"FrameCache: {path} is unreadable ({type(exc).__name__}: {exc}); recomputing it",
                              CacheWarning, stacklevel=2)
        array = np.asarray(compute())
        self._write(path, setting, array)
        return array

    def prepare(self, sample_ids: Iterable[str], setting: dict[str, Any], compute: Callable[[str], np.ndarray],
                desc: str = "integrating frames", progress: bool = True) -> int:
        """Compute and store every sample not cached yet, with a tqdm bar; returns how many were computed.

        Files already present are trusted here (a corrupt one is recomputed later by :meth:`get`).
        """
        ids = list(sample_ids)
        computed = 0
        for sample_id in tqdm(ids, desc=desc, unit="sample", disable=not progress):
            path = self.path(sample_id, setting)
            if not path.exists():
                self._write(path, setting, np.asarray(compute(sample_id)))
                computed += 1
        return computed

    def _write(self, path: Path, setting: dict[str, Any], array: np.ndarray) -> None:
        if array.dtype.hasobject:
            raise TypeError(f"FrameCache: cannot store {path.name}: an object array would need pickle; "
                            "compute must return a numeric numpy array")
        path.parent.mkdir(parents=True, exist_ok=True)
        setting_file = self.directory(setting) / "setting.json"
        if not setting_file.exists():
            _atomic_write(setting_file, lambda f: f.write(_canonical(setting).encode() + b"\n"))
        save = np.savez_compressed if self.compress else np.savez
        _atomic_write(path, lambda f: save(f, frames=array))


_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def _read(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        if "frames" not in data.files:
            raise KeyError(f"no 'frames' array (holds {data.files})")
        return data["frames"]


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _canonical(setting: dict[str, Any]) -> str:
    if not isinstance(setting, dict):
        raise TypeError(f"FrameCache: a setting must be a dict (see frames_setting), got {type(setting).__name__}")
    try:
        return json.dumps(setting, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"FrameCache: the setting {setting!r} must be JSON-serializable (str keys; numbers, "
                        f"strings, lists): {exc}") from None


def _flat(value: Any) -> str:
    return "x".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_sample_id(sample_id: str) -> str:
    parts = str(sample_id).replace("\\", "/").split("/")
    if not isinstance(sample_id, str) or not sample_id or sample_id.startswith("/") or any(
            p in ("", ".", "..") for p in parts):
        raise ValueError(f"FrameCache: sample_id must be a relative name like 'train/3/00042' (no empty, '.' or "
                         f"'..' parts), got {sample_id!r}")
    return "/".join(parts)

"""Limits on what a file may make snnir allocate or do, checked before anything is read.

Every loader (``snnir.load``, ``from_nir``, ``from_onnx``, the dataset readers) compares the sizes a
file *declares* (array shapes, zip members, HDF5 datasets, JSON nesting) with these limits
and with the file's own size before it reads or allocates, and raises :class:`snnir.LimitError`
(a :class:`snnir.FormatError`) naming the file, the field and the limit. Trusted files that need
more are opened inside ``override``; environment variables set the defaults of a process.

==================  ======================  ==============================================  =========
limit               environment variable    what it bounds                                  default
==================  ======================  ==============================================  =========
``max_bytes``       ``SNNIR_MAX_BYTES``     bytes one load may allocate for its arrays      2 GiB
                                            (sum over the file), and any one node's state
``max_inflation``   ``SNNIR_MAX_INFLATION`` declared size / stored size of a compressed     1000
                                            array (zip member, chunked HDF5 dataset)
``max_depth``       ``SNNIR_MAX_DEPTH``     nesting depth of JSON documents and of HDF5     64
                                            groups / nested graphs
``max_nodes``       ``SNNIR_MAX_NODES``     nodes (and edges) of one graph                  100000
``timeout``         ``SNNIR_TIMEOUT``       seconds a safe-mode parse may run               60
``safe``            ``SNNIR_SAFE``          parse HDF5 and .mat files in a child process    off (the
                                            (see ``snnir.isolation``)                        CLI: on)
==================  ======================  ==============================================  =========

Example:
    >>> import snnir
    >>> snnir.limits.current().max_depth
    64
    >>> with snnir.limits.override(max_bytes=64 << 30, safe=True):   # a trusted, very large file
    ...     snnir.limits.current().max_bytes == 64 << 30
    True
    >>> snnir.limits.current().max_bytes == 2 << 30
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from snnir.errors import LimitError

__all__ = ["Limits", "LimitError", "check_bytes", "configure", "current", "override"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The active limits (see the module table). Immutable: change them with ``override``/``configure``."""

    max_bytes: int = 2 << 30
    max_inflation: float = 1000.0
    max_depth: int = 64
    max_nodes: int = 100_000
    timeout: float = 60.0
    safe: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "safe":
                if not isinstance(value, bool):
                    raise TypeError(f"limits: safe must be True or False, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"limits: {f.name} must be a positive number, got {value!r}")


_ENV = {"max_bytes": ("SNNIR_MAX_BYTES", int), "max_inflation": ("SNNIR_MAX_INFLATION", float),
        "max_depth": ("SNNIR_MAX_DEPTH", int), "max_nodes": ("SNNIR_MAX_NODES", int),
        "timeout": ("SNNIR_TIMEOUT", float), "safe": ("SNNIR_SAFE", None)}


def _from_env() -> Limits:
    values: dict[str, Any] = {}
    for name, (var, kind) in _ENV.items():
        text = os.environ.get(var)
        if text is None or not text.strip():
            continue
        if kind is None:
            values[name] = text.strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            values[name] = kind(float(text)) if kind is int else kind(text)
        except ValueError:
            raise ValueError(f"environment variable {var}={text!r} is not a number") from None
    return Limits(**values)


_default = _from_env()
_active: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("snnir_limits", default=None)


def current() -> Limits:
    """The limits in force here (``override`` blocks first, then ``configure``, then the environment)."""
    return _active.get() or _default


def configure(**changes: Any) -> Limits:
    """Change the process-wide defaults (e.g. ``configure(safe=True)``); returns the new limits."""
    global _default
    _default = dataclasses.replace(_default, **changes)
    return _default


@contextlib.contextmanager
def override(**changes: Any) -> Iterator[Limits]:
    """Within the block (and its thread or task), use the current limits with ``changes``."""
    token = _active.set(dataclasses.replace(current(), **changes))
    try:
        yield current()
    finally:
        _active.reset(token)


def _fmt(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def check_bytes(where: str, what: str, nbytes: int | float) -> int:
    """Refuse ``nbytes`` (declared by ``what`` in file ``where``) above ``max_bytes``; returns it as int."""
    cap = current().max_bytes
    if not nbytes <= cap:
        raise LimitError(f"{where}: {what} declares {_fmt(nbytes)}, above the limit of {_fmt(cap)} "
                         "(snnir.limits.override(max_bytes=...) or SNNIR_MAX_BYTES raise it for a trusted file)")
    return int(nbytes)


def check_inflation(where: str, what: str, declared: int, stored: int) -> None:
    """Refuse a compressed array whose declared size is more than ``max_inflation`` times its stored size."""
    ratio = current().max_inflation
    if declared > max(stored, 1) * ratio:
        raise LimitError(f"{where}: {what} inflates {_fmt(stored)} into {_fmt(declared)} (more than "
                         f"{ratio:g}x; a compression bomb?). snnir.limits.override(max_inflation=...) raises it")


def check_depth(where: str, what: str, depth: int) -> None:
    cap = current().max_depth
    if depth > cap:
        raise LimitError(f"{where}: {what} is nested {depth} levels deep, above the limit of {cap} "
                         "(snnir.limits.override(max_depth=...))")


def check_count(where: str, what: str, count: int) -> None:
    cap = current().max_nodes
    if count > cap:
        raise LimitError(f"{where}: {count} {what}, above the limit of {cap} (snnir.limits.override(max_nodes=...))")


class Budget:
    """Bytes allocated so far by one load; ``take`` refuses the array that would cross ``max_bytes``."""

    def __init__(self, where: str) -> None:
        self.where, self.used = where, 0

    def take(self, what: str, nbytes: int | float) -> int:
        nbytes = check_bytes(self.where, what, nbytes)
        if self.used + nbytes > current().max_bytes:
            raise LimitError(f"{self.where}: {what} brings the arrays read to {_fmt(self.used + nbytes)}, above "
                             f"the limit of {_fmt(current().max_bytes)} (snnir.limits.override(max_bytes=...))")
        self.used += nbytes
        return nbytes

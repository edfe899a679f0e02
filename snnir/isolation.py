"""Safe mode: run a parser of untrusted bytes in a child process with memory and time limits.

h5py (the HDF5 C library) and ``scipy.io`` can crash the interpreter (a segmentation fault) on
some corrupted files, and a few kilobytes can declare gigabytes. ``run_isolated(fn, ...)`` forks a
child that runs ``fn`` under ``resource.setrlimit`` limits (address space: what the process holds
plus ``2 * max_bytes``; CPU seconds; no core file; no file writing) and a wall-clock ``timeout``.
A crash, a limit or a timeout becomes a :class:`snnir.FormatError` naming the file; an exception
``fn`` raises on purpose (a ``SnnirError``) is re-raised in the parent with its message.

The result travels back **without pickle** (a compromised child must not be able to run code in
the parent): as JSON for the structure plus raw bytes for numpy arrays, so only dicts (string
keys), lists, strings, bytes, numbers, ``None`` and plain numeric/bytes/str numpy arrays come
back. Tuples come back as lists.

Loaders take ``safe=None`` (follow ``snnir.limits.current().safe``; the CLI turns it on), ``True``
or ``False``. Safe mode needs ``os.fork`` (Linux, macOS); elsewhere the parse runs in-process.

Example:
    >>> import numpy as np
    >>> from snnir.isolation import run_isolated
    >>> run_isolated(lambda n: {"a": np.arange(n), "name": "x"}, 3, where="demo")["a"].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from snnir import errors, limits
from snnir.errors import FormatError, LimitError, SnnirError

_MARGIN = 512 << 20  # address space for the interpreter's own growth in the child
_DTYPE_KINDS = "biufcSU"


def use_safe_mode(safe: bool | None) -> bool:
    """``safe`` or, when ``None``, the active ``snnir.limits`` default."""
    return limits.current().safe if safe is None else bool(safe)


# --- the result codec (no pickle) ------------------------------------------------------------------
def _encode(obj: Any) -> bytes:
    buffers: list[bytes | memoryview] = []

    def walk(o: Any, depth: int) -> Any:
        if depth > 256:
            raise TypeError("result nested too deeply")
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        if isinstance(o, (np.ndarray, np.generic)):
            a = np.asarray(o, order="C")
            if a.dtype.kind not in _DTYPE_KINDS or a.dtype.fields is not None:
                raise TypeError(f"array of dtype {a.dtype} cannot leave the isolated process")
            buffers.append(memoryview(a.reshape(-1)).cast("B") if a.size else b"")
            return {"__array__": len(buffers) - 1, "dtype": a.dtype.str, "shape": list(a.shape),
                    "scalar": isinstance(o, np.generic)}
        if isinstance(o, (bytes, bytearray)):
            buffers.append(bytes(o))
            return {"__bytes__": len(buffers) - 1}
        if isinstance(o, (list, tuple)):
            return [walk(v, depth + 1) for v in o]
        if isinstance(o, dict):
            if not all(isinstance(k, str) for k in o):
                raise TypeError("result dict keys must be strings")
            return {"__dict__": {k: walk(v, depth + 1) for k, v in o.items()}}
        raise TypeError(f"a {type(o).__name__} cannot leave the isolated process")

    tree = walk(obj, 0)
    head = json.dumps({"tree": tree, "sizes": [len(b) for b in buffers]}, allow_nan=True).encode()
    return b"".join([struct.pack("<Q", len(head)), head, *(bytes(b) for b in buffers)])


def _decode(data: bytearray, where: str) -> Any:
    try:
        (n,) = struct.unpack("<Q", data[:8])
        head = json.loads(bytes(data[8:8 + n]))
        tree, sizes = head["tree"], [int(s) for s in head["sizes"]]
    except (ValueError, KeyError, TypeError, RecursionError, struct.error):
        raise FormatError(f"{where}: the isolated parser sent back an unreadable result") from None
    offsets = np.cumsum([8 + n, *sizes]).tolist()
    if offsets[-1] != len(data):
        raise FormatError(f"{where}: the isolated parser sent back {len(data)} bytes, expected {offsets[-1]}")
    view = memoryview(data)

    def build(o: Any) -> Any:
        if isinstance(o, list):
            return [build(v) for v in o]
        if not isinstance(o, dict):
            return o
        if "__dict__" in o:
            return {k: build(v) for k, v in o["__dict__"].items()}
        if "__bytes__" in o:
            i = int(o["__bytes__"])
            return bytes(view[offsets[i]:offsets[i + 1]])
        i = int(o["__array__"])
        dtype = np.dtype(o["dtype"])
        if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None:
            raise ValueError(f"dtype {dtype}")
        a = np.frombuffer(view[offsets[i]:offsets[i + 1]], dtype=dtype).reshape([int(s) for s in o["shape"]])
        return a[()] if o.get("scalar") else a

    try:
        return build(tree)
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        raise FormatError(f"{where}: the isolated parser sent back an inconsistent result") from None


# --- the child -------------------------------------------------------------------------------------
def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_child(max_bytes: int, timeout: float) -> None:
    import resource

    def set_limit(kind: int, value: int) -> None:
        try:
            soft, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, hard))
        except (ValueError, OSError):  # a platform without this limit
            pass

    vm = _vm_bytes()
    if vm:
        set_limit(resource.RLIMIT_AS, vm + 2 * max_bytes + _MARGIN)
    set_limit(resource.RLIMIT_CPU, int(timeout) + 2)
    set_limit(resource.RLIMIT_CORE, 0)
    set_limit(resource.RLIMIT_FSIZE, 0)


def _child(write_fd: int, fn: Callable[..., Any], args: tuple, kwargs: dict, max_bytes: int, timeout: float) -> None:
    code = 0
    try:
        import faulthandler

        faulthandler.disable()  # a crash is reported by the parent, not dumped here
        for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        limits._active.set(None)
        limits.configure(safe=False)  # already isolated
        _limit_child(max_bytes, timeout)
        try:
            payload = _encode({"ok": fn(*args, **kwargs)})
        except SnnirError as e:
            payload = _encode({"error": type(e).__name__, "message": str(e)})
        except MemoryError:
            payload = _encode({"memory": True})
        except RecursionError:
            payload = _encode({"raised": "RecursionError", "message": "nesting too deep", "trace": ""})
        except BaseException as e:  # noqa: BLE001 - every escape is reported to the parent
            payload = _encode({"raised": type(e).__name__, "message": str(e)[:2000],
                               "trace": traceback.format_exc(limit=-8)[-4000:]})
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view):]
    except MemoryError:
        code = 3
    except BaseException:  # noqa: BLE001
        code = 4
    finally:
        os._exit(code)


# --- the parent ------------------------------------------------------------------------------------
last_peak_bytes = 0  # peak resident memory of the latest isolated child (for measurements)


class IsolatedParseError(FormatError):
    """The isolated parser raised an exception that is not a snnir error (``.raised`` holds its type)."""

    def __init__(self, message: str, raised: str = "", trace: str = "") -> None:
        super().__init__(message)
        self.raised, self.trace = raised, trace


def run_isolated(fn: Callable[..., Any], *args: Any, where: str, what: str = "parser",
                 timeout: float | None = None, max_bytes: int | None = None, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` run in a forked child under memory/time limits; its result, or a
    ``FormatError`` naming ``where`` if it crashed, ran out of memory or time, or raised.

    ``fn`` needs no pickling (the child is a fork); its result must be built from dicts, lists,
    strings, bytes, numbers and plain numpy arrays (see the module docs).
    """
    lim = limits.current()
    timeout = lim.timeout if timeout is None else float(timeout)
    max_bytes = lim.max_bytes if max_bytes is None else int(max_bytes)
    if not hasattr(os, "fork"):
        warnings.warn("safe mode needs os.fork; parsing in-process", RuntimeWarning, stacklevel=2)
        return fn(*args, **kwargs)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _child(write_fd, fn, args, kwargs, max_bytes, timeout)
    os.close(write_fd)
    data, status, timed_out, too_big = bytearray(), None, False, False
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([read_fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
                if len(data) > 2 * max_bytes + (64 << 20):
                    too_big = True
                    break
    finally:
        os.close(read_fd)
        if timed_out or too_big:
            os.kill(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
        global last_peak_bytes
        last_peak_bytes = usage.ru_maxrss * 1024
    if timed_out:
        raise LimitError(f"{where}: the {what} ran longer than {timeout:g} s in safe mode and was stopped "
                         "(snnir.limits.override(timeout=...) allows more)")
    if too_big:
        raise LimitError(f"{where}: the {what} produced more than {2 * max_bytes} bytes in safe mode")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            raise LimitError(f"{where}: the {what} used more than {timeout:g} s of CPU in safe mode")
        raise FormatError(f"{where}: the {what} crashed ({name}) on this file in safe mode; the file is "
                          "corrupt (the crash is a bug of the underlying library, contained in a child process)")
    if os.WEXITSTATUS(status) == 3 or (not data and os.WEXITSTATUS(status)):
        raise LimitError(f"{where}: the {what} needed more memory than the safe-mode limit "
                         f"(max_bytes={max_bytes}); the file is corrupt or very large")
    reply = _decode(data, where)
    if not isinstance(reply, dict):
        raise FormatError(f"{where}: the isolated {what} sent back an unreadable result")
    if "ok" in reply:
        return reply["ok"]
    if reply.get("memory"):
        raise LimitError(f"{where}: the {what} ran out of memory in safe mode (limit {max_bytes} bytes of "
                         "arrays); the file declares more than it holds, or needs snnir.limits.override(max_bytes=...)")
    if "error" in reply:
        cls = getattr(errors, str(reply["error"]), None)
        if not (isinstance(cls, type) and issubclass(cls, FormatError)):
            cls = _data_error_class(str(reply["error"])) or FormatError
        raise _rebuild(cls, str(reply.get("message", "")))
    raise IsolatedParseError(f"{where}: the {what} failed on this file ({reply.get('raised')}: "
                             f"{reply.get('message')})", str(reply.get("raised", "")), str(reply.get("trace", "")))


def _data_error_class(name: str) -> type | None:
    if name == "EventFormatError":
        from snnir.data.formats._common import EventFormatError

        return EventFormatError
    return None


def _rebuild(cls: type, message: str) -> Exception:
    try:
        return cls(message)
    except TypeError:
        return FormatError(message)

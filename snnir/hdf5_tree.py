"""An HDF5 file as a tree of numpy arrays, with every declared size checked before it is read.

``read_tree(path)`` walks the file's groups without recursion and returns nested dicts: a group
is a ``dict``, a dataset a numpy array (a scalar string: ``numpy.bytes_``; an array of
variable-length strings: nested lists of ``bytes``). Before a dataset is read it must be of a
plain type (numbers, booleans, strings), stored in this file (no external, virtual or linked data),
and declare no more bytes than ``snnir.limits`` allows for the whole file, than the file holds
(uncompressed data) or than ``max_inflation`` times what it stores (compressed data). Errors are
:class:`snnir.FormatError` naming the file and the dataset path.

``load_tree(path, safe=...)`` does the same in a child process when safe mode is on (h5py can
crash on corrupted bytes; see ``snnir.isolation``).

Example:
    >>> import os, tempfile, h5py, numpy as np
    >>> from snnir.hdf5_tree import read_tree
    >>> path = os.path.join(tempfile.mkdtemp(), "t.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["a/w"] = np.eye(2); f["a/type"] = "Affine"
    >>> tree = read_tree(path); sorted(tree["a"]), tree["a"]["type"][()].decode()
    (['type', 'w'], 'Affine')
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from snnir import limits
from snnir.errors import FormatError, LimitError
from snnir.isolation import run_isolated, use_safe_mode

_PLAIN_KINDS = "biuf"  # numbers and booleans; fixed-length strings ("S") are handled apart
_MAX_STRINGS = 1 << 20  # elements of one variable-length string array


def load_tree(path: str | os.PathLike, safe: bool | None = None, roots: tuple[str, ...] | None = None
              ) -> dict[str, Any]:
    """``read_tree(path, roots)``, in a child process when ``safe`` (or the ``snnir.limits`` default) says so."""
    where = str(path)
    if use_safe_mode(safe):
        return run_isolated(read_tree, where, roots, where=where, what="HDF5 reader (h5py)")
    return read_tree(where, roots)


def top_level_names(path: str | os.PathLike, safe: bool | None = None) -> list[str]:
    """The names at the root of an HDF5 file (to tell a NIR file from a netx file), listed in a
    child process when ``safe`` (or the ``snnir.limits`` default) says so; nothing is read."""
    where = str(path)
    if use_safe_mode(safe):
        return run_isolated(_top_level_names, where, where=where, what="HDF5 reader (h5py)")
    return _top_level_names(where)


def _top_level_names(where: str) -> list[str]:
    import h5py

    try:
        f = h5py.File(where, "r")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{where}: cannot open it as an HDF5 file ({e})") from None
    with f:
        try:
            count = len(f)
            if count > 16 * limits.current().max_nodes:
                raise LimitError(f"{where}: {count} HDF5 objects at the root (snnir.limits.override(max_nodes=...))")
            return [str(name) for name in f.keys()]
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise FormatError(f"{where}: the root group cannot be listed ({e})") from None


def read_tree(path: str | os.PathLike, roots: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The file as nested dicts of arrays (see the module docs); only the top-level members named
    in ``roots`` when given (what is not read cannot hurt: HDF5 itself allocates what a corrupted
    variable-length string claims, which safe mode bounds)."""
    import h5py

    where = str(path)
    try:
        size = os.path.getsize(where)
        f = h5py.File(where, "r")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise FormatError(f"{where}: cannot open it as an HDF5 file ({e})") from None
    budget = limits.Budget(where)
    lim = limits.current()
    with f:
        root: dict[str, Any] = {}
        stack: list[tuple[Any, dict[str, Any], str, int]] = [(f, root, "", 0)]
        seen = 0
        while stack:
            group, out, prefix, depth = stack.pop()
            limits.check_depth(where, f"group {prefix or '/'!r}", depth)
            try:
                names = list(group.keys())
            except (OSError, RuntimeError, ValueError, KeyError) as e:
                raise FormatError(f"{where}: group {prefix or '/'!r} cannot be listed ({e})") from None
            seen += len(names)
            if seen > 16 * lim.max_nodes:
                raise LimitError(f"{where}: more than {16 * lim.max_nodes} HDF5 objects "
                                 "(snnir.limits.override(max_nodes=...))")
            for name in names:
                if roots is not None and depth == 0 and name not in roots:
                    continue
                path_in = f"{prefix}/{name}"
                item = _member(group, name, where, path_in, h5py)
                if isinstance(item, h5py.Group):
                    out[name] = {}
                    stack.append((item, out[name], path_in, depth + 1))
                else:
                    out[name] = _read_dataset(item, where, path_in, size, budget, h5py)
    return root


def _member(group: Any, name: str, where: str, path_in: str, h5py: Any) -> Any:
    try:
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise FormatError(f"{where}: {path_in!r} is a {type(link).__name__}; snnir reads only objects stored "
                              "in the file itself (no soft or external links)")
        item = group[name]
    except FormatError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise FormatError(f"{where}: HDF5 object {path_in!r} cannot be opened ({e})") from None
    if not isinstance(item, (h5py.Group, h5py.Dataset)):
        raise FormatError(f"{where}: HDF5 object {path_in!r} is a {type(item).__name__}, expected a group or dataset")
    return item


def dataset_nbytes(dset: Any, where: str, path_in: str, file_size: int) -> int:
    """The bytes reading ``dset`` allocates, after checking it against the limits and the file
    (see the module docs); strings count one byte per character bound by the file size."""
    import h5py

    try:
        if dset.is_virtual or dset.external:
            raise FormatError(f"{where}: dataset {path_in!r} keeps its data in other files; refused")
        dtype, shape = dset.dtype, dset.shape
        filtered = bool(dset._filters)
        stored = int(dset.id.get_storage_size())
    except FormatError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{where}: dataset {path_in!r} has an unreadable header ({e})") from None
    if shape is None:
        raise FormatError(f"{where}: dataset {path_in!r} has no data (an HDF5 null dataspace)")
    count = int(np.prod(shape, dtype=object))
    if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O":
        if count > _MAX_STRINGS:
            raise LimitError(f"{where}: dataset {path_in!r} declares {count} strings, above {_MAX_STRINGS}")
        return count * 64  # pointers and small strings; their text lies in the file (bounded by its size)
    if dtype.kind not in _PLAIN_KINDS + "S" or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(f"{where}: dataset {path_in!r} has type {dtype}; expected numbers or strings")
    nbytes = count * dtype.itemsize
    limits.check_bytes(where, f"dataset {path_in!r} (shape {shape}, {dtype})", nbytes)
    if filtered:
        limits.check_inflation(where, f"compressed dataset {path_in!r}", nbytes, stored)
    elif nbytes > file_size:
        raise FormatError(f"{where}: dataset {path_in!r} declares {nbytes} bytes (shape {shape}, {dtype}) but the "
                          f"file holds only {file_size}; corrupt or truncated")
    return nbytes


def _read_dataset(dset: Any, where: str, path_in: str, file_size: int, budget: limits.Budget, h5py: Any) -> Any:
    nbytes = dataset_nbytes(dset, where, path_in, file_size)
    budget.take(f"dataset {path_in!r}", nbytes)
    try:
        value = dset[()]
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FormatError(f"{where}: dataset {path_in!r} cannot be read ({e}); corrupt?") from None
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):  # a 0-d array: ``a[()]`` works on it, as on an h5py dataset
        return np.array(value, dtype=f"S{max(len(value), 1)}")
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return _strings(value.tolist())
    return np.asarray(value) if not isinstance(value, np.generic) else value


def _strings(value: Any) -> Any:
    """Nested lists of bytes from an object array's ``tolist()`` (recursion depth: the rank, <= 32 in HDF5)."""
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")

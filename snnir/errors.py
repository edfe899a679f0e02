"""Exceptions raised by snnir. Each message names the node, op or file at fault."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class SnnirError(Exception):
    """Base class of every error snnir raises on purpose."""


class GraphError(SnnirError):
    """The graph is malformed: unknown op, missing input, bad attribute, illegal cycle."""


class TimeReductionError(GraphError):
    """A node after a reduction over time that cannot run there (stateful, mixed with per-step values)."""


class ParameterError(GraphError, ValueError):
    """A neuron or op parameter outside its valid range (``tau < 1``, a threshold below the reset, ...);
    the message names the parameter, the offending value (and neuron index) and the valid range."""


class ShapeError(GraphError):
    """A node's input shapes do not fit its op (e.g. Linear(64, 10) fed 32 features)."""


class FormatError(SnnirError):
    """A file snnir reads (``.snnir``, NIR, ONNX, netx, a dataset file) is truncated, corrupt, tampered
    with, of another version or not of the expected format; the message names the file and the field,
    node or byte offset at fault."""


class LimitError(FormatError):
    """A file declares more than ``snnir.limits`` allows (bytes, nesting, nodes) or its parse ran too long;
    the message names the file, the field and how to raise the limit for a trusted file."""


class InvalidGraphFileError(FormatError, GraphError):
    """A file that parses but holds a graph snnir refuses (a bad attribute, shape or cycle): both a
    ``FormatError`` (the file is at fault) and a ``GraphError`` (what is wrong is the graph)."""


class NonFiniteError(SnnirError, FloatingPointError):
    """A compiled network with ``check_finite=True`` met NaN or Inf; the message names the first node."""


class TraceError(SnnirError):
    """A model holds a module or function that the tracer cannot map to an IR op."""


class LoihiMappingError(SnnirError):
    """A node or setting that Loihi (through lava-dl netx) cannot express; the message names the
    node and the reason."""


@contextlib.contextmanager
def file_errors(where: str, what: str) -> Iterator[None]:
    """Inside, an exception that is not a ``SnnirError`` becomes a ``FormatError`` naming the file
    ``where`` and ``what`` was being read (a node, a field): the central net under each loader, so a
    malformed input never escapes as an ``IndexError`` from deep inside a parser. A missing file
    stays ``FileNotFoundError``; a ``GraphError`` becomes an ``InvalidGraphFileError`` naming the file.

    Example:
        >>> try:
        ...     with file_errors("net.onnx", "node 'gather' (Gather)"):
        ...         [1, 2][5]
        ... except FormatError as e:
        ...     print(e)
        net.onnx: node 'gather' (Gather): IndexError: list index out of range
    """
    try:
        yield
    except (FormatError, FileNotFoundError, IsADirectoryError, PermissionError, KeyboardInterrupt):
        raise
    except GraphError as e:
        text = str(e)
        raise InvalidGraphFileError(text if text.startswith(where) else f"{where}: {text}") from e
    except SnnirError:
        raise
    except MemoryError:
        raise LimitError(f"{where}: {what}: out of memory; the file declares more than this machine holds "
                         "(see snnir.limits)") from None
    except RecursionError:
        raise LimitError(f"{where}: {what}: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - the point: no raw exception escapes a loader
        raise FormatError(f"{where}: {what}: {type(e).__name__}: {e}") from e

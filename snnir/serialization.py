"""``.snnir`` files: the graph as JSON plus its arrays, in one safetensors container.

Layout (safetensors, a non-executable format): the tensors are the node params, keyed
``"<node>.<param>"``; the header's ``__metadata__`` holds one key, ``"snnir"``, a JSON document
``{"format_version", "graph", "sha256"}``. The digest covers the graph JSON and every array's
name, dtype, shape and bytes, so an edited file is refused. Writing is deterministic:
``save(load(f))`` reproduces ``f`` byte for byte.

Versions: 2 stores each edge as ``[src, dst, port, offset]`` (its time offset). Version 1 files
(``[src, dst, port]``, before offsets were stored) still load: their loops read the previous
step on the edges the version-1 insertion-order rule names (see ``snnir.graph``); saving such
a graph writes version 2.

Example:
    >>> import numpy as np, tempfile, os
    >>> import snnir
    >>> g = snnir.Graph(); x = g.add_input((4,))
    >>> _ = g.add_output(g.add_node("neuron", [x], attrs={"model": "IF"}))
    >>> path = os.path.join(tempfile.mkdtemp(), "if.snnir")
    >>> snnir.save(g, path); snnir.load(path).summary() == g.validate().summary()
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any

import numpy as np

from snnir.errors import FormatError, GraphError
from snnir.graph import Graph

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_EDGE_FIELDS = {1: 3, 2: 4}  # [src, dst, port] in version 1, [src, dst, port, offset] since 2
_KEY = "snnir"


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(structure_json: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(structure_json.encode())
    for key in sorted(arrays):
        a = np.require(arrays[key], requirements="C")
        h.update(_json([key, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dumps(graph: Graph) -> bytes:
    """The bytes of ``graph`` as a ``.snnir`` file (the graph is validated first)."""
    import safetensors.numpy

    graph.validate()
    structure, arrays = graph.to_dict()
    arrays = {k: np.require(v, requirements="C") for k, v in arrays.items()}
    try:
        structure_json = _json(structure)
    except ValueError as e:  # NaN/Inf attribute
        raise GraphError(f"graph {graph.name!r} cannot be saved: {e}") from None
    doc = {"format_version": FORMAT_VERSION, "graph": structure, "sha256": _digest(structure_json, arrays)}
    return safetensors.numpy.save(arrays, metadata={_KEY: _json(doc)})


def save(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` to ``path`` (conventionally ``*.snnir``)."""
    data = dumps(graph)
    with open(path, "wb") as f:
        f.write(data)


_MAGICS = (  # what a file that is not .snnir usually is, to say so instead of "truncated"
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a NIR graph: snnir.frontends.nir.from_nir; a netx file: "
                             "snnir.backends.lava.netx.read_netx)"),
    (b"PK\x03\x04", "a zip archive (an .npz file or a torch.save checkpoint)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x80", "a Python pickle (snnir never unpickles)"),
    (b"\x08", "a protobuf, probably an ONNX model (snnir.frontends.onnx.from_onnx)"),
)
MAX_HEADER = 100 << 20  # the JSON header of a .snnir file: its graph, not its arrays


def _not_snnir(data: bytes, where: str) -> FormatError:
    kind = next((what for magic, what in _MAGICS if data.startswith(magic)), None)
    if kind is None and data[:64] and all(32 <= c < 127 or c in b"\t\r\n" for c in data[:64]):
        kind = "a text file"
    hint = f"; it looks like {kind}" if kind else ""
    return FormatError(f"{where}: not a snnir file (a .snnir file starts with an 8-byte header length and a JSON "
                       f"header){hint}")


def _parse_json(text: bytes | str, where: str, what: str) -> Any:
    """JSON without NaN/Infinity, overflowing floats, 20+ digit integers or deep nesting."""
    from snnir import limits
    from snnir.validation import json_depth

    limits.check_depth(where, what, json_depth(text))

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    def finite(literal: str) -> float:
        value = float(literal)
        if not np.isfinite(value):
            raise ValueError(f"number {literal[:30]} overflows a float")
        return value

    def bounded(literal: str) -> int:
        if len(literal.lstrip("-")) > 19:
            raise ValueError(f"integer {literal[:30]}... has more than 19 digits")
        return int(literal)

    return json.loads(text, parse_constant=no_constant, parse_float=finite, parse_int=bounded)


def _header(data: bytes, where: str) -> dict[str, Any]:
    if len(data) < 8:
        raise FormatError(f"{where}: file is {len(data)} bytes, too short for a snnir file (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if data[8:9] != b"{":
        raise _not_snnir(data, where)
    if n > MAX_HEADER:
        raise FormatError(f"{where}: header length {n} is above {MAX_HEADER} bytes; corrupt file")
    if 8 + n > len(data):
        raise FormatError(f"{where}: header says {n} bytes but only {len(data) - 8} follow (truncated file)")
    try:
        header = _parse_json(data[8:8 + n], where, "the safetensors header")
        doc = _parse_json(header["__metadata__"][_KEY], where, "the snnir document")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise FormatError(f"{where}: not a snnir file (no valid snnir header in the first {8 + n} bytes: "
                          f"{type(e).__name__}: {e})") from None
    if not isinstance(doc, dict) or "format_version" not in doc:
        raise FormatError(f"{where}: snnir header has no format_version")
    return doc


def loads(data: bytes, where: str = "<bytes>") -> Graph:
    """Parse ``.snnir`` bytes; raises ``FormatError`` naming ``where`` on any defect.

    What loads also compiles: besides the checksum, the graph is validated (attribute types and
    ranges, finite parameters, shapes, activation and state sizes within ``snnir.limits``, the
    ``meta`` annotations snnir reads); see ``snnir.validation``.
    """
    import safetensors.numpy

    from snnir.errors import InvalidGraphFileError
    from snnir.validation import check_count, check_loaded

    doc = _header(data, where)
    version = doc["format_version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise FormatError(f"{where}: format version {version!r}, this snnir reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}; re-export the model with a matching snnir")
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # safetensors raises its own error type for bad offsets/lengths
        raise FormatError(f"{where}: array data is corrupt or truncated ({e})") from None
    structure = doc.get("graph")
    if not isinstance(structure, dict):
        raise FormatError(f"{where}: snnir header has no graph")
    try:
        digest_ok = doc.get("sha256") == _digest(_json(structure), arrays)
    except (ValueError, TypeError) as e:
        raise FormatError(f"{where}: the graph document cannot be re-encoded ({e})") from None
    if not digest_ok:
        raise FormatError(f"{where}: checksum mismatch: the graph or its arrays were modified after saving")
    edges = structure.get("edges")
    if not isinstance(edges, list) or any(not isinstance(e, list) or len(e) != _EDGE_FIELDS[version] for e in edges):
        fields = "[src, dst, port, offset]" if version >= 2 else "[src, dst, port]"
        raise FormatError(f"{where}: format version {version} stores each edge as {fields}")
    try:
        check_count(structure)
        graph = Graph.from_dict(structure, arrays).validate()
        check_loaded(graph)
        return graph
    except GraphError as e:
        raise InvalidGraphFileError(f"{where}: invalid graph: {e}") from None


def load(path: str | os.PathLike) -> Graph:
    """Read a ``.snnir`` file. Never executes code from the file (no pickle).

    The file's size is checked against ``snnir.limits`` before it is read; any defect raises
    ``FormatError`` naming the file (see ``loads``).
    """
    from snnir import limits
    from snnir.errors import file_errors

    where = str(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size >= 9 and f.read(9)[8:9] != b"{":
            f.seek(0)
            raise _not_snnir(f.read(64), where)
        limits.check_bytes(where, "the file", size)
        f.seek(0)
        data = f.read()
    with file_errors(where, "reading the graph"):
        return loads(data, where=where)

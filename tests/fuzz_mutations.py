"""Mutations of valid files for the loader fuzzer: bytes, and the structure of each format.

Byte mutations (bit flips, interesting integers, truncation, insertion, deletion, splices) reach
the parsers' framing; structural mutations reach what a byte flip rarely does: a re-signed
``.snnir`` graph with hostile JSON values, an HDF5 tree with datasets of the wrong type or a
declared size of 2**33 elements, an ONNX graph with string initializers or out-of-range
attributes, an NPY header that does not parse, a zip member that claims to be encrypted. Every
function is ``(rng: random.Random, data: bytes) -> bytes`` and deterministic given ``rng``.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile
from typing import Any

import numpy as np

INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               1 << 33, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


# --- bytes ---------------------------------------------------------------------------------------------
def _flip(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def _interesting(rng: random.Random, data: bytearray) -> None:
    width = rng.choice((1, 2, 4, 8))
    if len(data) < width:
        return
    value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
    i = rng.randrange(len(data) - width + 1)
    data[i:i + width] = value.to_bytes(width, rng.choice(("little", "big")))


def _truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data)):]


def _delete(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    del data[i:i + rng.randint(1, 64)]


def _insert(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data) + 1)
    data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def _duplicate(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    chunk = data[i:i + rng.randint(1, 256)]
    j = rng.randrange(len(data) + 1)
    data[j:j] = chunk


BYTE_MUTATORS = [_flip, _interesting, _truncate, _delete, _insert, _duplicate]


def mutate_bytes(rng: random.Random, data: bytes, others: list[bytes] = ()) -> bytes:
    """One to three byte-level mutations (or a splice with another seed)."""
    if others and rng.random() < 0.1:
        other = rng.choice(others)
        cut = rng.randrange(len(data) + 1)
        return data[:cut] + other[rng.randrange(len(other) + 1):]
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        rng.choice(BYTE_MUTATORS)(rng, out)
    return bytes(out)


# --- hostile values for structures -----------------------------------------------------------------------
RAW = {  # JSON tokens Python's json.dumps never writes, substituted for marker strings
    "__NAN__": "NaN", "__INF__": "-Infinity", "__E400__": "1e400", "__D30__": "1" + "0" * 30,
    "__D400__": "1" + "0" * 400,
}
HOSTILE_JSON = [0, -1, 1, 2, 3, 2**31, 2**63 - 1, -(2**63), 0.0, -0.0, 1e-300, 1e308, -1e308, 0.5, 1.5, 1e12, "",
                "x", "input", "LIF", "conv9d", "neuron", None, True, False, [], {}, [0], [0, 0], [1, 1], [[1]],
                [-1, -1], [2**31, 1], {"name": "ATan"}, {"a": 1}, *RAW]


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every (container, key) path inside ``obj`` (iteratively)."""
    out, stack = [], [(obj, prefix)]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append((*path, k))
            if isinstance(v, (dict, list)):
                stack.append((v, (*path, k)))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate_json(rng: random.Random, doc: Any) -> Any:
    """One structural edit of a JSON document (in place): a hostile value, a deletion, an insertion,
    a duplicate, deep nesting."""
    paths = _paths(doc)
    if not paths:
        return doc
    path = rng.choice(paths)
    parent, key = _get(doc, path[:-1]), path[-1]
    op = rng.random()
    if op < 0.55:
        parent[key] = rng.choice(HOSTILE_JSON)
    elif op < 0.65:
        del parent[key]
    elif op < 0.75:
        if isinstance(parent, dict):
            parent[rng.choice(["junk", "model", "tau", "stride", "op", "id", "port"])] = rng.choice(HOSTILE_JSON)
        else:
            parent.insert(rng.randrange(len(parent) + 1), rng.choice(HOSTILE_JSON))
    elif op < 0.85 and isinstance(parent, list):
        parent.insert(rng.randrange(len(parent) + 1), json.loads(json.dumps(parent[key])))
    elif op < 0.95:
        parent[key] = _deep(rng.choice((70, 1000, 20000)))
    else:
        other = _get(doc, rng.choice(paths))
        parent[key] = json.loads(json.dumps(other))
    return doc


def _raw_json(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    for marker, token in RAW.items():
        text = text.replace(f'"{marker}"', token)
    return text


# --- .snnir ----------------------------------------------------------------------------------------------
def mutate_snnir(rng: random.Random, data: bytes) -> bytes:
    """Edit the graph JSON or an array, then re-sign the digest (what an attacker can do)."""
    import safetensors.numpy

    from snnir import serialization

    (n,) = struct.unpack("<Q", data[:8])
    doc = json.loads(json.loads(data[8:8 + n])["__metadata__"]["snnir"])
    arrays = dict(safetensors.numpy.load(data))
    if rng.random() < 0.25 and arrays:
        key = rng.choice(sorted(arrays))
        a = arrays[key]
        choice = rng.randrange(9)
        if choice == 0:
            a = np.full(a.shape, np.nan, np.float32)
        elif choice == 1:
            a = np.full(a.shape, rng.choice([np.inf, 1e38, -1e38, 0.0]), np.float32)
        elif choice == 2:
            a = a.astype(rng.choice([np.int8, np.int64, np.bool_, np.float16, np.uint8, np.float64]))
        elif choice == 3:
            a = a.reshape(-1)
        elif choice == 4:
            a = a[..., None]
        elif choice == 5:
            a = np.asarray(a.reshape(-1)[:1].sum())
        elif choice == 6:
            a = np.zeros((0, *a.shape[1:]), a.dtype)
        elif choice == 7:
            del arrays[key]
            a = None
        else:
            arrays["stray.weight"] = a
        if a is not None:
            arrays[key] = np.ascontiguousarray(a)
    else:
        doc["graph"] = mutate_json(rng, {"graph": doc["graph"]})["graph"] if rng.random() < 0.9 else \
            mutate_json(rng, doc)
    try:
        doc["sha256"] = serialization._digest(serialization._json(doc["graph"]), arrays)
    except (TypeError, ValueError, KeyError, RecursionError):
        pass  # not JSON-encodable by the writer: the reader must refuse it anyway
    try:
        text = _raw_json(doc)
    except RecursionError:
        text = json.dumps({"format_version": 1, "graph": {}}) + "[" * 100000
    return safetensors.numpy.save(arrays, metadata={"snnir": text})


# --- HDF5 (NIR, SHD) -------------------------------------------------------------------------------------
class Special:
    """An HDF5 object numpy cannot stand for: a declared-huge chunked dataset, a link, a compound."""

    def __init__(self, kind: str, arg: Any = None) -> None:
        self.kind, self.arg = kind, arg


def h5_tree(data: bytes) -> dict[str, Any]:
    """A (trusted) seed file as nested dicts; vlen datasets as ("vlen", dtype, [arrays])."""
    import h5py

    def walk(group: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in group.items():
            if isinstance(v, h5py.Group):
                out[k] = walk(v)
            elif h5py.check_vlen_dtype(v.dtype) is not None and v.dtype.kind == "O" and \
                    h5py.check_string_dtype(v.dtype) is None:
                out[k] = ("vlen", h5py.check_vlen_dtype(v.dtype), [np.asarray(x) for x in v[()]])
            else:
                out[k] = v[()]
        return out

    with h5py.File(io.BytesIO(data), "r") as f:
        return walk(f)


def h5_bytes(tree: dict[str, Any], compress: bool = False) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        stack = [(f, tree)]
        while stack:
            group, node = stack.pop()
            for k, v in node.items():
                if isinstance(v, dict):
                    stack.append((group.create_group(k), v))
                elif isinstance(v, Special):
                    _write_special(group, k, v, h5py)
                elif isinstance(v, tuple) and v and v[0] == "vlen":
                    ds = group.create_dataset(k, (len(v[2]),), dtype=h5py.vlen_dtype(v[1]))
                    for i, x in enumerate(v[2]):
                        ds[i] = np.asarray(x, v[1])
                elif isinstance(v, (bytes, str)):
                    group.create_dataset(k, data=v, dtype=h5py.string_dtype())
                elif isinstance(v, np.ndarray) and v.dtype.kind == "O":
                    group.create_dataset(k, data=v.astype(object), dtype=h5py.string_dtype())
                else:
                    a = np.asarray(v)
                    group.create_dataset(k, data=a, compression="gzip" if compress and a.ndim else None)
    return buf.getvalue()


def _write_special(group: Any, name: str, v: Special, h5py: Any) -> None:
    if v.kind == "huge":  # a few bytes that declare 2**33 elements (chunks are never written)
        group.create_dataset(name, shape=(1 << 33,), chunks=(1 << 12,), dtype=v.arg or np.float64)
    elif v.kind == "huge_zip":
        group.create_dataset(name, shape=(1 << 30,), chunks=(1 << 16,), dtype=np.float64, compression="gzip")
    elif v.kind == "soft":
        group[name] = h5py.SoftLink(v.arg)
    elif v.kind == "external":
        group[name] = h5py.ExternalLink("/etc/hostname", "/")
    elif v.kind == "compound":
        group.create_dataset(name, data=np.zeros(3, [("a", "<f4"), ("b", "<i2")]))
    elif v.kind == "deep":
        for i in range(v.arg):
            group = group.create_group(f"{name}" if i == 0 else "g")
        group.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
    elif v.kind == "null":
        group.create_dataset(name, data=h5py.Empty("f4"))
    elif v.kind == "vlen_huge":
        ds = group.create_dataset(name, (3,), dtype=h5py.vlen_dtype(np.float32))
        ds[0] = np.zeros(1 << 16, np.float32)


HOSTILE_ARRAYS = [
    lambda a: np.array(np.nan), lambda a: np.full(np.shape(a), np.inf), lambda a: np.zeros(0),
    lambda a: np.zeros((2, 2, 2)), lambda a: np.array(0), lambda a: np.array(-1), lambda a: np.array(2**62),
    lambda a: np.full(np.shape(a), 1e300), lambda a: b"abc", lambda a: np.ones(np.shape(a), bool),
    lambda a: np.asarray(a, np.float16) if np.asarray(a).dtype.kind in "iuf" else np.array(1.0),
    lambda a: np.asarray(a).reshape(-1)[:-1] if np.size(a) else np.array([1]),
    lambda a: np.asarray(a)[None], lambda a: np.array([0, 0, 0, 0]), lambda a: np.full(np.shape(a), -1e-9),
    lambda a: np.array(["a", "b"], dtype=object), lambda a: np.array(1 << 40), lambda a: np.full((7, 7), 3),
    lambda a: Special("huge"), lambda a: Special("huge", np.int64), lambda a: Special("huge_zip"),
    lambda a: Special("compound"), lambda a: Special("null"), lambda a: Special("soft", "/"),
    lambda a: Special("external"), lambda a: Special("vlen_huge"),
]
NIR_TYPES = ["Input", "Output", "Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
             "Flatten", "Delay", "Threshold", "I", "IF", "LI", "LIF", "CubaLI", "CubaLIF", "NIRGraph", "Izhikevich",
             "", "\xff"]


def mutate_h5(rng: random.Random, data: bytes) -> bytes:
    """One or two edits of an HDF5 file's tree: a hostile dataset, a deletion, a junk member, a
    changed node type, deep nesting, links, odd edges."""
    tree = h5_tree(data)
    for _ in range(rng.randint(1, 2)):
        paths = [p for p in _h5_paths(tree)]
        path = rng.choice(paths)
        parent, key = _get(tree, path[:-1]), path[-1]
        value = parent[key]
        op = rng.random()
        if key == "type" and op < 0.5:
            parent[key] = rng.choice(NIR_TYPES).encode("utf-8", "surrogateescape")
        elif key == "edges" and op < 0.6:
            names = [n.encode() for n in _get(tree, path[:-1]).get("nodes", {"a": 0})] + [b"missing", b""]
            parent[key] = rng.choice([
                np.array([[rng.choice(names), rng.choice(names)] for _ in range(rng.randint(0, 5))], dtype=object),
                np.array([[1, 2]]), np.array([[b"a", b"b", b"c"]], dtype=object), np.zeros((0, 2)), np.array(b"x")])
        elif isinstance(value, tuple) and op < 0.5:  # a vlen dataset (SHD)
            arrays = list(value[2])
            i = rng.randrange(len(arrays)) if arrays else 0
            bad = rng.choice([np.array([np.nan]), np.array([1e30]), np.array([-5]), np.array([70000]),
                              np.zeros(0), np.arange(3)])
            arrays[i:i + 1] = [bad] if arrays else [bad]
            parent[key] = (value[0], value[1], arrays if rng.random() < 0.8 else arrays[:-1])
        elif op < 0.6:
            parent[key] = rng.choice(HOSTILE_ARRAYS)(value if not isinstance(value, (dict, tuple)) else 0)
        elif op < 0.72:
            del parent[key]
        elif op < 0.8 and isinstance(value, dict):
            value[rng.choice(["junk", "type", "weight", "nodes", "edges", "metadata"])] = \
                rng.choice(HOSTILE_ARRAYS)(0)
        elif op < 0.88:
            parent[key] = Special("deep", rng.choice((70, 300)))
        elif op < 0.94 and isinstance(parent, dict):
            parent[f"{key}_copy"] = value
        else:
            parent[key] = Special("soft", "/" + "/".join(str(p) for p in path[:-1]))
    return h5_bytes(tree, compress=rng.random() < 0.3)


def _h5_paths(tree: dict[str, Any]) -> list[tuple]:
    out, stack = [], [(tree, ())]
    while stack:
        node, path = stack.pop()
        for k, v in node.items():
            out.append((*path, k))
            if isinstance(v, dict):
                stack.append((v, (*path, k)))
    return out


# --- netx (Loihi) ------------------------------------------------------------------------------------------
NETX_TYPES = ["input", "dense", "dense_rec", "conv", "flatten", "pool", "concat", "CUBA", "", "\xff", "dense" * 3]
NETX_FIELDS = ["weight", "weight_rec", "bias", "shape", "stride", "padding", "dilation", "groups", "delay", "neuron",
               "inFeatures", "type", "junk"]
NEURON_FIELDS = ["iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike", "messageBits", "type", "bias"]


def _netx_value(rng: random.Random, value: Any) -> Any:
    """A hostile stand-in for a netx field: the generic ones, or values at and beyond Loihi's ranges."""
    if rng.random() < 0.5:
        return rng.choice(HOSTILE_ARRAYS)(value if not isinstance(value, (dict, tuple)) else 0)
    a = np.asarray(value) if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" else np.ones(3, np.float32)
    return rng.choice([
        lambda: a * rng.choice([-1, 2, 64, 1 << 20, 0.5, 1e30]), lambda: np.where(a == a, np.nan, a),
        lambda: a.astype(rng.choice([np.int8, np.uint64, np.float16, np.complex64, np.int64])),
        lambda: a.reshape(-1), lambda: a[..., None, None],
        lambda: np.array([rng.choice(INTERESTING)] * rng.randint(1, 5)),
        lambda: np.array(rng.choice([-1, 0, 1, 4096, 4097, 1 << 17, (1 << 17) + 1, 1 << 31, -(1 << 40)])),
        lambda: np.array([4, 0, 3]), lambda: np.array([1 << 20, 1 << 20]), lambda: np.array([2, 8, 8, 1, 1]),
        lambda: np.array([b"dense"]), lambda: rng.choice(NETX_TYPES).encode("utf-8", "surrogateescape"),
        lambda: np.zeros((0, 3)), lambda: a.T if a.ndim == 2 else a,
        lambda: Special("huge", rng.choice([np.float32, np.int64, np.uint8])),
    ])()


def mutate_netx(rng: random.Random, data: bytes) -> bytes:
    """One to three edits of a netx file's layers: a layer's type, a field given a hostile value
    (NaN or fractional weights, shapes that disagree, out-of-range decays and thresholds, huge
    declared datasets, strings where numbers belong), a missing or extra field, layers deleted,
    swapped, appended or renumbered; otherwise a generic HDF5 edit."""
    if rng.random() < 0.15:
        return mutate_h5(rng, data)
    tree = h5_tree(data)
    layers = tree.get("layer") if isinstance(tree.get("layer"), dict) else {}
    for _ in range(rng.randint(1, 3)):
        names = sorted(layers)
        if not names:
            break
        name = rng.choice(names)
        group = layers[name]
        op = rng.random()
        if not isinstance(group, dict) or op < 0.08:
            layers[name] = _netx_value(rng, 0) if rng.random() < 0.5 else {}
        elif op < 0.2:
            group["type"] = rng.choice([np.array([rng.choice(NETX_TYPES).encode("utf-8", "surrogateescape")]),
                                        rng.choice(NETX_TYPES).encode("utf-8", "surrogateescape"), np.array([7])])
        elif op < 0.55:
            target = group.get("neuron") if isinstance(group.get("neuron"), dict) and rng.random() < 0.4 else group
            keys = sorted(target) + [rng.choice(NETX_FIELDS if target is group else NEURON_FIELDS)]
            key = rng.choice(keys)
            if key == "type" and target is not group:
                target[key] = rng.choice([b"SDNN", b"RF", b"LOIHI", b"", b"CUBA" * 5, np.array([b"CUBA"])])
            else:
                target[key] = _netx_value(rng, target.get(key, 0))
        elif op < 0.68:
            target = group.get("neuron") if isinstance(group.get("neuron"), dict) and rng.random() < 0.4 else group
            if target:
                del target[rng.choice(sorted(target))]
        elif op < 0.76:
            other = rng.choice(names)
            layers[name], layers[other] = layers[other], layers[name]
        elif op < 0.84:
            del layers[name]
            if rng.random() < 0.5:  # renumber: the file stays 0..n-1
                rest = [layers[k] for k in sorted(layers, key=lambda k: int(k) if k.isdigit() else -1)]
                layers.clear()
                layers.update({str(i): v for i, v in enumerate(rest)})
        elif op < 0.9:
            layers[rng.choice([str(len(names)), str(len(names) + 5), "x", "-1"])] = _copy_tree(group)
        elif op < 0.95:
            group["weight"] = {"real": group.get("weight", np.ones((2, 2))), "imag": np.zeros((2, 2))}
        else:
            layers[name] = Special("deep", rng.choice((70, 300)))
    return h5_bytes(tree, compress=rng.random() < 0.3)


def _copy_tree(node: Any) -> Any:
    return {k: _copy_tree(v) for k, v in node.items()} if isinstance(node, dict) else node


# --- ONNX ------------------------------------------------------------------------------------------------
def mutate_onnx(rng: random.Random, data: bytes) -> bytes:
    """Edit an initializer (dtype, dims, data), a node (attribute values, op type, inputs), a
    Constant node, or the graph inputs' shapes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(data)
    g = model.graph
    op = rng.random()
    if op < 0.3 and len(g.initializer):
        t = rng.choice(list(g.initializer))
        choice = rng.randrange(7)
        if choice == 0:
            t.data_type = rng.choice([TensorProto.STRING, TensorProto.BOOL, TensorProto.FLOAT16, TensorProto.INT64,
                                      TensorProto.UINT8, TensorProto.COMPLEX64, TensorProto.UNDEFINED])
        elif choice == 1:
            dims = list(t.dims)
            if dims and rng.random() < 0.5:
                dims[rng.randrange(len(dims))] = rng.choice([0, 1, -1, 3, 1 << 31, 1 << 40])
            else:
                dims.append(rng.choice([1, 2, 1 << 33]))
            del t.dims[:]
            t.dims.extend(dims)
        elif choice == 2 and t.raw_data:
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
        elif choice == 3:
            a = numpy_helper.to_array(t).astype(np.float32)
            a.reshape(-1)[: max(1, a.size // 2)] = rng.choice([np.nan, np.inf, 1e38])
            t.CopyFrom(numpy_helper.from_array(a, t.name))
        elif choice == 4:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).reshape(-1, 1, 1)
                                               if numpy_helper.to_array(t).size else np.zeros((1, 1, 1)), t.name))
        elif choice == 5:
            t.CopyFrom(helper.make_tensor(t.name, TensorProto.STRING, [2], [b"a", b"b"]))
        else:
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=rng.choice(["../../etc/passwd", "missing.bin", "/etc/hosts"]))
    elif op < 0.65 and len(g.node):
        node = rng.choice([n for n in g.node])
        choice = rng.randrange(7)
        if choice <= 2 and len(node.attribute):
            a = rng.choice(list(node.attribute))
            if a.type == onnx.AttributeProto.INTS and len(a.ints):
                a.ints[rng.randrange(len(a.ints))] = rng.choice([0, -1, -7, 1 << 31, 1 << 62, 99])
            elif a.type == onnx.AttributeProto.INT:
                a.i = rng.choice([0, -1, 2, 1 << 40])
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([float("nan"), float("inf"), -1.0, 0.0, 1e30])
            else:
                a.type = rng.choice([onnx.AttributeProto.STRING, onnx.AttributeProto.FLOATS])
        elif choice == 3:
            node.op_type = rng.choice(["Gemm", "Conv", "Identity", "Relu", "Add", "BatchNormalization", "Gather",
                                       "Concat", "Reshape", "Flatten", "MaxPool", "Clip", "Constant", "Sigmoid"])
        elif choice == 4 and len(node.input):
            names = [i.name for i in g.initializer] + [o for n in g.node for o in n.output] + ["missing"]
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
        elif choice == 5:
            node.attribute.append(rng.choice([helper.make_attribute("strides", [0, 0]),
                                              helper.make_attribute("pads", [1 << 40] * 4),
                                              helper.make_attribute("axis", 77),
                                              helper.make_attribute("kernel_shape", [-3, 2])]))
        else:
            out = f"c{rng.randrange(1000)}"
            value = rng.choice([helper.make_attribute("value_float", 2.5),
                                helper.make_attribute("value_ints", [1, -1]),
                                helper.make_attribute("value_string", "x"),
                                helper.make_attribute("value", numpy_helper.from_array(np.array([1 << 40]), "v"))])
            const = helper.make_node("Constant", [], [out])
            const.attribute.append(value)
            g.node.insert(0, const)
            if len(node.input):
                node.input[rng.randrange(len(node.input))] = out
    elif op < 0.8 and len(g.input):
        dims = g.input[0].type.tensor_type.shape.dim
        if len(dims) and rng.random() < 0.7:
            dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 1 << 31, 1 << 40, 7])
        else:
            dims.add().dim_value = rng.choice([1, 3])
    else:
        return mutate_bytes(rng, data)
    return model.SerializeToString()


# --- NPY / NPZ ----------------------------------------------------------------------------------------------
NPY_HEADERS = [
    "{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776,), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (-1,), }",
    "{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000000000000000000000000,), }",
    "{'descr': '|V0', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<U3', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '|S0', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': [('t', '<U4'), ('x', '<i2'), ('y', '<i2'), ('p', '|i1')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': [('t', '<f8'), ('x', '<f8'), ('y', '<f8'), ('p', '<f8')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': [('t', '<i4', (1073741824,))], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': 'xyz', 'fortran_order': False, 'shape': (3,), }",
    "{'descr': '<f8', 'fortran_order': 'yes', 'shape': (3,), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': ('a',), }",
    "{'descr': '<f8', 'fortran_order': False, }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}",
    "{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 3000 + ")" * 3000 + "}",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3,) ",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\x00\xff",
    "{'descr': \"\"\"<f8, 'shape': (3,)}",
    "[1, 2, 3]",
    "__import__('os')",
]


def npy_bytes(header: str, body: bytes = b"", major: int = 1) -> bytes:
    raw = header.encode("latin-1")
    raw += b" " * (-(len(raw) + 11) % 64) + b"\n"
    size = struct.pack("<H", len(raw)) if major == 1 else struct.pack("<I", len(raw))
    return b"\x93NUMPY" + bytes([major, 0]) + size + raw + body


def mutate_npy(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.6:
        body = data[data.index(b"\n") + 1:] if b"\n" in data else b""
        return npy_bytes(rng.choice(NPY_HEADERS), body[: rng.randrange(len(body) + 1)], rng.choice((1, 2)))
    return mutate_bytes(rng, data)


def mutate_npz(rng: random.Random, data: bytes) -> bytes:
    """Rewrite members (odd compression, mutated NPY bodies) or patch zip header fields."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if rng.random() < 0.5:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, body in members.items():
                if rng.random() < 0.4:
                    body = mutate_npy(rng, body)
                method = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
                z.writestr(rng.choice([name, name, "junk.npy", name[:-4]]), body, compress_type=method)
        data = buf.getvalue()
    out = bytearray(data)
    for sig, fields in ((b"PK\x03\x04", (6, 8, 18, 22)), (b"PK\x01\x02", (8, 10, 20, 24))):
        start = out.find(sig)
        while start >= 0 and rng.random() < 0.7:
            off = start + rng.choice(fields)
            if off + 4 <= len(out):
                value = rng.choice([1, 0x0001, 99, 12, 14, 0xFFFFFFFF, 1 << 31, 0])
                width = 2 if off - start in (6, 8, 10) else 4
                out[off:off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
            start = out.find(sig, start + 4)
    return bytes(out) if rng.random() < 0.8 else mutate_bytes(rng, bytes(out))


# --- text, MAT, AEDAT 3.1 -----------------------------------------------------------------------------------
JUNK_LINES = [b"1,2", b"1,2,3,4", b"0,100,200", b"12,100,200", b"3,900,100", b"a,b,c", b"1," + b"9" * 5000 + b",1",
              b"1,100," + b"9" * 30, b"\xff\xfe\x00", b"-1,-1,-1", b"", b"class,startTime_usec,endTime_usec",
              b"1,  100 , 200", b"1e3,1,2", b"1,-5,10"]


def mutate_lines(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.6:
        lines = data.split(b"\n")
        for _ in range(rng.randint(1, 3)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(JUNK_LINES))
        return b"\n".join(lines)
    return mutate_bytes(rng, data)


def mutate_mat(rng: random.Random, data: bytes) -> bytes:
    import scipy.io

    if rng.random() < 0.5:
        return mutate_bytes(rng, data)
    cols: dict[str, Any] = {"x": np.array([[1], [2]]), "y": np.array([[3], [4]]), "ts": np.array([[5], [6]]),
                            "pol": np.array([[1], [0]])}
    key = rng.choice(sorted(cols))
    cols[key] = rng.choice([np.array([[np.nan]]), np.array([[1e300], [1.0]]), np.array(["ab", "cd"]),
                            np.array([[1 + 2j], [3j]]), np.zeros((2, 2, 2)), np.zeros((0, 0)),
                            np.array([[-5], [40000]]), np.array([[2**62], [1]]), np.array([[0.5], [1]]),
                            {"a": 1}, np.array([np.array([1]), np.array([1, 2])], dtype=object)])
    if rng.random() < 0.2:
        del cols[rng.choice(sorted(cols))]
    buf = io.BytesIO()
    scipy.io.savemat(buf, cols, do_compression=rng.random() < 0.5)
    return buf.getvalue()


def mutate_aedat31(rng: random.Random, data: bytes) -> bytes:
    """Patch a packet header field (type, size, overflow, capacity, number, valid) with an interesting int."""
    start = data.find(b"#!END-HEADER")
    body = data.find(b"\n", start) + 1
    if start < 0 or body <= 0 or rng.random() < 0.4:
        return mutate_bytes(rng, data)
    out = bytearray(data)
    off = body + rng.choice((0, 4, 8, 12, 16, 20, 24))
    width = 2 if off == body else 4
    value = rng.choice(INTERESTING + [-1 & 0xFFFFFFFF, 1, 8])
    out[off:off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    return bytes(out)

"""Hostile and broken files: each loader refuses them with a FormatError naming the file and the
field, node or offset, checks declared sizes before allocating, and never recurses on the file's
nesting. One test per defect found by the fuzzer or listed in issue 16 (regressions)."""

from __future__ import annotations

import ctypes
import io
import json
import struct
import time
import zipfile

import numpy as np
import pytest
import torch

import snnir
from snnir import limits
from snnir.errors import FormatError, GraphError, InvalidGraphFileError, LimitError
from snnir.isolation import run_isolated

h5py = pytest.importorskip("h5py")


# --- .snnir ------------------------------------------------------------------------------------------
def _graph() -> snnir.Graph:
    g = snnir.Graph("net")
    x = g.add_input((4,))
    h = g.add_node("linear", [x], params={"weight": np.eye(4, dtype=np.float32)}, id="fc")
    h = g.add_node("neuron", [h], attrs={"model": "LIF", "tau": 2.0}, id="lif")
    g.add_output(h)
    return g.validate()


def _resigned(tmp_path, edit=None, arrays_edit=None, raw: dict[str, str] | None = None, graph=None):
    """A .snnir file whose graph JSON (or arrays) were edited and whose digest was recomputed."""
    import safetensors.numpy

    from snnir import serialization

    data = serialization.dumps(graph or _graph())
    (n,) = struct.unpack("<Q", data[:8])
    doc = json.loads(json.loads(data[8:8 + n])["__metadata__"]["snnir"])
    arrays = dict(safetensors.numpy.load(data))
    if edit:
        edit(doc["graph"])
    if arrays_edit:
        arrays_edit(arrays)
    try:
        doc["sha256"] = serialization._digest(serialization._json(doc["graph"]), arrays)
    except ValueError:
        pass
    text = json.dumps(doc)
    for marker, token in (raw or {}).items():
        text = text.replace(json.dumps(marker), token)
    path = tmp_path / "edited.snnir"
    path.write_bytes(safetensors.numpy.save(arrays, metadata={"snnir": text}))
    return path


def _node(graph: dict, node_id: str) -> dict:
    return next(n for n in graph["nodes"] if n["id"] == node_id)


@pytest.mark.parametrize("edit,raw,expect", [
    (lambda g: g["meta"].update(x="NAN"), {"NAN": "NaN"}, "NaN is not a number JSON allows"),
    (lambda g: g["meta"].update(x="DEEP"), {"DEEP": "[" * 1000 + "]" * 1000}, "nested 100[0-9] levels deep"),
    (lambda g: g["meta"].update(x="BIG"), {"BIG": "1" + "0" * 400}, "more than 19 digits"),
    (lambda g: g["meta"].update(x="E400"), {"E400": "1e400"}, "overflows a float"),
    (lambda g: _node(g, "lif")["attrs"].update(tau="TAU"), {"TAU": "1" + "0" * 400}, "more than 19 digits"),
    (lambda g: _node(g, "lif").update(attrs=[]), None, r"node 'lif': 'attrs' must be an object, got list"),
    (lambda g: _node(g, "lif")["attrs"].update(tau=0.5), None, r"'lif'.*tau = 0.5 is out of range: needs tau >= 1"),
    (lambda g: _node(g, "lif")["attrs"].update(v_threshold=-1.0), None, "v_threshold = -1 must be > v_reset"),
    (lambda g: _node(g, "lif")["attrs"].update(v_reset=-1e308), None, "v_reset = -1e.308 is beyond float32's range"),
    (lambda g: g["nodes"].insert(2, {"id": "cat", "op": "cat", "attrs": {"axis": 0}, "params": []}), None,
     r"node 'cat' \(cat\) needs at least one input|'cat'.*input"),
    (lambda g: g.update(nodes={}), None, "lists 'nodes' and 'edges'"),
    (lambda g: g["edges"].append(["fc", "lif", "x", 0]), None, r"edge entry 3 must be \[source, target, port, "
                                                              r"offset\] with integer port and offset"),
    (lambda g: g.update(junk=1), None, r"unknown fields \['junk'\]"),
    (lambda g: g["meta"].update(schedule={"regions": [{"mode": "step", "nodes": ["fc"]}]}), None,
     "meta 'schedule' does not match the graph"),
    (lambda g: g["meta"].update(groups=[["lif", "fc"]]), None, "meta 'groups' entry"),
    (lambda g: g["meta"].update(T=-3), None, "meta 'T' must be an int >= 1"),
])
def test_load_refuses_hostile_graph_documents(tmp_path, edit, raw, expect):
    path = _resigned(tmp_path, edit, raw=raw)
    with pytest.raises(FormatError, match=expect) as e:
        snnir.load(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("attrs,expect", [
    ({"stride": [0, 0]}, r"attribute stride=\(0, 0\) is out of range: expected an int >= 1"),
    ({"padding": [2**40, 1]}, r"attribute padding=\(1099511627776, 1\) is out of range"),
    ({"groups": 0}, "attribute groups=0 is out of range"),
    ({"dilation": "x"}, "attribute dilation='x' is out of range"),
])
def test_load_refuses_out_of_range_attributes(tmp_path, attrs, expect):
    g = snnir.Graph()
    x = g.add_input((1, 6, 6))
    g.add_output(g.add_node("conv2d", [x], params={"weight": np.ones((2, 1, 3, 3), np.float32)}, id="conv"))
    path = tmp_path / "conv.snnir"
    snnir.save(g, path)
    edited = _resigned_file(path, lambda graph: _node(graph, "conv")["attrs"].update(attrs))
    with pytest.raises(InvalidGraphFileError, match=f"'conv' \\(conv2d\\): {expect}"):
        snnir.load(edited)


def _resigned_file(path, edit):
    import safetensors.numpy

    from snnir import serialization

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    doc = json.loads(json.loads(data[8:8 + n])["__metadata__"]["snnir"])
    arrays = dict(safetensors.numpy.load(data))
    edit(doc["graph"])
    doc["sha256"] = serialization._digest(serialization._json(doc["graph"]), arrays)
    out = path.with_name("edited_" + path.name)
    out.write_bytes(safetensors.numpy.save(arrays, metadata={"snnir": json.dumps(doc)}))
    return out


@pytest.mark.parametrize("arrays_edit,expect", [
    (lambda a: a.update({"fc.weight": np.full((4, 4), np.nan, np.float32)}), r"'fc' \(linear\): param 'weight' has "
                                                                            "NaN or Inf"),
    (lambda a: a.update({"fc.weight": np.ones(4, np.float32)}),
     r"param 'weight' has shape \(4,\); linear takes 2-axis"),
    (lambda a: a.update({"stray.x": np.ones(1, np.float32)}), r"arrays \['stray.x'\] belong to no node"),
])
def test_load_refuses_broken_arrays(tmp_path, arrays_edit, expect):
    with pytest.raises(InvalidGraphFileError, match=expect):
        snnir.load(_resigned(tmp_path, arrays_edit=arrays_edit))


def test_load_refuses_what_would_allocate_beyond_the_limit(tmp_path):
    # a 1e12-step delay is out of range; a 2**30-step one is in range but its state is 4 GiB per sample
    def delay(steps):
        def edit(g):
            g["nodes"].insert(3, {"id": "d", "op": "delay", "attrs": {"steps": steps}, "params": []})
            g["edges"][-1][0] = "d"
            g["edges"].append(["lif", "d", 0, 0])
        return edit
    with pytest.raises(InvalidGraphFileError, match=r"'d' \(delay\): attribute steps=1000000000000 is out of range"):
        snnir.load(_resigned(tmp_path, delay(10**12)))
    with pytest.raises(InvalidGraphFileError, match=r"'d' \(delay\): its state 'buffer' of shape \(1073741824, 4\)"):
        snnir.load(_resigned(tmp_path, delay(2**30)))
    # a [1e9]-wide layer needs 4 GB per sample
    g = snnir.Graph()
    g.add_output(g.add_node("neuron", [g.add_input((4,))], attrs={"model": "IF"}))
    with pytest.raises(InvalidGraphFileError, match=r"node 'input' \(input\): its per-sample output \(1000000000,\)"):
        snnir.load(_resigned(tmp_path, lambda g: _node(g, "input")["attrs"].update(shape=[10**9]), graph=g))


def test_load_checks_the_file_size_before_reading(tmp_path):
    path = tmp_path / "net.snnir"
    snnir.save(_graph(), path)
    with limits.override(max_bytes=64), pytest.raises(LimitError, match=r"the file declares .* above the limit of 64"):
        snnir.load(path)


@pytest.mark.parametrize("content,kind", [
    (b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
    (b"PK\x03\x04" + bytes(64), "a zip archive"),
    (b"\x93NUMPY\x01\x00" + bytes(64), "a NumPy .npy array"),
    (b"\x80\x04\x95" + bytes(64), "a Python pickle"),
    (b"hello, this is some text that is not a model at all" * 2, "a text file"),
])
def test_load_says_when_a_file_is_not_snnir(tmp_path, content, kind):
    path = tmp_path / "model.snnir"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=f"model.snnir: not a snnir file .*it looks like {kind}"):
        snnir.load(path)


# --- NIR -------------------------------------------------------------------------------------------------
nir = pytest.importorskip("nir")


def _nir_file(tmp_path) -> str:
    g = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
                               nir.LIF(tau=np.full(2, 2e-3), r=np.full(2, 20.0), v_leak=np.zeros(2),
                                       v_threshold=np.ones(2), v_reset=np.zeros(2)), type_check=False)
    path = str(tmp_path / "net.nir")
    nir.write(path, g)
    return path


def test_nir_declared_huge_dataset_is_refused_before_reading(tmp_path):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    with h5py.File(path, "a") as f:  # a few KB declaring 2**33 float64 (64 GiB), chunks never written
        del f["node/nodes/affine/weight"]
        f["node/nodes/affine"].create_dataset("weight", shape=(1 << 33,), chunks=(4096,), dtype="f8")
    start = time.perf_counter()
    with pytest.raises(LimitError, match=r"net.nir: dataset '/node/nodes/affine/weight' \(shape \(8589934592,\), "
                                         r"float64\) declares 64 GiB, above the limit"):
        from_nir(path)
    assert time.perf_counter() - start < 5


def test_nir_uncompressed_dataset_larger_than_the_file_is_refused(tmp_path):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    with h5py.File(path, "a") as f:
        del f["node/nodes/affine/weight"]
        f["node/nodes/affine"].create_dataset("weight", shape=(1 << 22,), chunks=(4096,), dtype="f8")
    with pytest.raises(FormatError, match=r"'/node/nodes/affine/weight' declares 33554432 bytes .* but the file "
                                          r"holds only"):
        from_nir(path)


@pytest.mark.parametrize("damage,expect", [
    (lambda f: f["node/nodes"].create_group("deep").create_group("g" * 1), None),
    (lambda f: f["node/nodes/lif"].__setitem__("junk", h5py.ExternalLink("/etc/hostname", "/")),
     r"'/node/nodes/lif/junk' is a ExternalLink; snnir reads only objects stored in the file"),
    (lambda f: f["node/nodes/lif"].__setitem__("loop", h5py.SoftLink("/node")), r"is a SoftLink"),
    (lambda f: (f["node/nodes"].__delitem__("lif"), f["node/nodes"].create_dataset("lif", data=np.zeros(10**6))),
     r"NIR node 'node/nodes/lif' is a dataset, expected a group"),
    (lambda f: f["node/nodes/lif"].create_dataset("odd", data=np.zeros(2, [("a", "f4"), ("b", "i2")])),
     r"dataset '/node/nodes/lif/odd' has type .*; expected numbers or strings"),
])
def test_nir_structure_damage_names_the_field(tmp_path, damage, expect):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    with h5py.File(path, "a") as f:
        damage(f)
    if expect is None:  # a group without a type
        with pytest.raises(FormatError, match=r"NIR node 'node/nodes/deep' has no text 'type' field"):
            from_nir(path)
        return
    with pytest.raises(FormatError, match=expect):
        from_nir(path)


def test_nir_nesting_is_bounded_without_recursion(tmp_path):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    with h5py.File(path, "a") as f:
        g = f["node/nodes"]
        for _ in range(500):
            g = g.create_group("g")
    with pytest.raises(LimitError, match="nested 65 levels deep, above the limit of 64"):
        from_nir(path)


def test_nir_odd_values_become_format_errors_naming_the_node(tmp_path):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    with h5py.File(path, "a") as f:
        del f["node/nodes/lif/tau"]
        f["node/nodes/lif/tau"] = np.array(["a", "b"], dtype=object).astype(h5py.string_dtype())
    with pytest.raises(FormatError, match=r"net.nir: NIR node 'node/nodes/lif' \(LIF\) is inconsistent"):
        from_nir(path)


def test_nir_import_is_linear_in_the_nodes(monkeypatch):
    """Importing n nodes copied and validated the partial graph per node (O(n^2): 400 nodes took
    minutes); shapes are now inferred once per node."""
    from snnir.frontends.nir import from_nir

    n = 300
    lif = {"tau": np.full(2, 2e-3), "r": np.full(2, 20.0), "v_leak": np.zeros(2), "v_threshold": np.ones(2),
           "v_reset": np.zeros(2)}
    graph = nir.NIRGraph.from_list(*[nir.LIF(**lif) for _ in range(n)], type_check=False)
    calls = {"copy": 0}
    copy = snnir.Graph.copy

    def counting_copy(self):
        calls["copy"] += 1
        return copy(self)

    monkeypatch.setattr(snnir.Graph, "copy", counting_copy)
    g = from_nir(graph)
    assert sum(n.op == "neuron" for n in g) == n
    assert calls["copy"] <= 3


# --- safe mode ----------------------------------------------------------------------------------------------
def test_safe_mode_turns_a_crash_a_memory_bomb_and_a_hang_into_format_errors():
    with pytest.raises(FormatError, match=r"f.h5: the parser crashed \(SIGSEGV\)"):
        run_isolated(lambda: ctypes.string_at(0), where="f.h5")
    with pytest.raises(LimitError, match="f.h5: the parser ran out of memory in safe mode"):
        run_isolated(lambda: np.ones(1 << 34), where="f.h5")
    with pytest.raises(LimitError, match="f.h5: the parser ran longer than 0.5 s"):
        run_isolated(lambda: time.sleep(30), where="f.h5", timeout=0.5)


def test_safe_mode_results_come_back_without_pickle():
    out = run_isolated(lambda: {"a": np.arange(3.0), "s": b"x", "n": [1, None, 2.5]}, where="x")
    assert out["a"].tolist() == [0.0, 1.0, 2.0] and out["s"] == b"x" and out["n"] == [1, None, 2.5]
    with pytest.raises(FormatError, match="array of dtype object cannot leave the isolated process"):
        run_isolated(lambda: np.array([object()]), where="x")


def test_nir_in_safe_mode_matches_in_process(tmp_path):
    from snnir.frontends.nir import from_nir

    path = _nir_file(tmp_path)
    a, b = from_nir(path, safe=True), from_nir(path, safe=False)
    assert a.summary() == b.summary()
    with limits.override(safe=True):  # the default follows the limits (the CLI turns it on)
        assert from_nir(path).summary() == b.summary()


# --- netx (Loihi) ----------------------------------------------------------------------------------------
def _netx_file(tmp_path, name="net.net"):
    """slayer's layout: input neurons, a strided conv, flatten, dense (tests/netx_files.py)."""
    import netx_files

    path = netx_files.tiny_conv(tmp_path)[0]
    return str(path.rename(tmp_path / name))


def _programs_equal(a, b) -> bool:
    fields = ("kind", "shape", "weight_exp", "stride", "padding", "dilation", "groups", "flatten", "name", "extra")
    for x, y in zip(a.layers, b.layers, strict=True):
        if any(getattr(x, f) != getattr(y, f) for f in fields) or (x.neuron is None) != (y.neuron is None):
            return False
        for f in ("weight", "rec_weight"):
            if (getattr(x, f) is None) != (getattr(y, f) is None) or \
                    getattr(x, f) is not None and not np.array_equal(getattr(x, f), getattr(y, f)):
                return False
        if x.neuron is not None and (vars(x.neuron).keys() != vars(y.neuron).keys() or any(
                not np.array_equal(np.asarray(v), np.asarray(vars(y.neuron)[k]))
                for k, v in vars(x.neuron).items() if v is not None)):
            return False
    return True


def test_netx_in_safe_mode_matches_in_process(tmp_path):
    """Every seed of the fuzzer (slayer's layouts, dense_rec, snnir's export) reads the same in a child
    process; the CLI's default (limits.safe) selects it."""
    import fuzz_corpus

    from snnir.backends.lava import LoihiSimulator, read_netx

    for path in fuzz_corpus.seeds_netx(tmp_path):
        a, b = read_netx(path, safe=True), read_netx(path, safe=False)
        assert _programs_equal(a, b), path
        x = (np.random.default_rng(0).random((6, 2, *a.input_shape)) < 0.5).astype(np.float32)
        np.testing.assert_array_equal(LoihiSimulator(a).run(x), LoihiSimulator(b).run(x))


def test_netx_safe_mode_contains_a_crash_of_the_hdf5_library(tmp_path, monkeypatch):
    from snnir import hdf5_tree
    from snnir.backends.lava import read_netx

    path = _netx_file(tmp_path)
    monkeypatch.setattr(hdf5_tree, "read_tree", lambda *a: ctypes.string_at(0))  # what h5py does on some bytes
    with pytest.raises(FormatError, match=r"net.net: the HDF5 reader \(h5py\) crashed \(SIGSEGV\)"):
        read_netx(path, safe=True)
    with limits.override(safe=True):
        with pytest.raises(FormatError, match="crashed"):
            snnir.backends.lava.read(path)


def test_netx_file_that_hung_h5py_is_refused_in_safe_mode():
    from pathlib import Path

    from snnir.backends.lava import read_netx

    path = Path(__file__).parent / "data" / "netx_h5py_hang.net"
    start = time.perf_counter()
    with limits.override(timeout=5.0), pytest.raises(FormatError, match="netx_h5py_hang.net"):
        read_netx(path, safe=True)
    assert time.perf_counter() - start < 8


@pytest.mark.parametrize("damage, expect", [
    # a committed HDF5 datatype where a dataset belongs escaped as AttributeError (fuzz case 822)
    (lambda f: f["layer/1/neuron"].__setitem__("vThMant2", np.dtype("S4")), r"'/layer/1/neuron/vThMant2' is a "
                                                                             r"Datatype, expected a group or dataset"),
    (lambda f: (f["layer/3"].__delitem__("weight"),
                f["layer/3"].__setitem__("weight", h5py.SoftLink("/layer/1/weight"))),
     r"'/layer/3/weight' is a SoftLink; snnir reads only objects stored in the file"),
    (lambda f: f["layer/3"].__setitem__("junk", h5py.ExternalLink("/etc/hostname", "/")), r"is a ExternalLink"),
    (lambda f: (f["layer/3"].__delitem__("weight"),  # 8 GiB declared in a few bytes of gzip chunks
                f["layer/3"].create_dataset("weight", shape=(1 << 30,), chunks=(1 << 16,), dtype="f8",
                                            compression="gzip")),
     r"dataset '/layer/3/weight' \(shape \(1073741824,\), float64\) declares 8 GiB, above the limit"),
    (lambda f: (f["layer/3"].__delitem__("weight"),  # within the byte limit, but far beyond what gzip stores
                f["layer/3"].create_dataset("weight", shape=(1 << 26,), chunks=(1 << 16,), dtype="f4",
                                            compression="gzip")),
     r"compressed dataset '/layer/3/weight' inflates .* into 256 MiB \(more than 1000x"),
    (lambda f: (f["layer/3"].__delitem__("weight"),
                f["layer/3"].create_dataset("weight", data=np.full((3, 64), 2.0, np.complex64))),
     r"dataset '/layer/3/weight' has type complex64; expected numbers or strings"),
    (lambda f: (f["layer/1/neuron"].__delitem__("iDecay"), f["layer/1/neuron"].create_dataset("iDecay", data="4096")),
     r"layer/1/neuron/iDecay: must be numeric"),
    (lambda f: (f["layer/3"].__delitem__("shape"), f["layer/3"].create_dataset("shape", data=np.array([np.nan]))),
     r"layer/3/shape: must hold integers"),
    (lambda f: f["layer/3"].create_dataset("weight_rec", data=np.ones((3, 3))), None),  # extra, unused: ignored
])
def test_netx_hostile_structures_name_the_file_and_dataset(tmp_path, damage, expect):
    from snnir.backends.lava import read_netx

    path = _netx_file(tmp_path)
    with h5py.File(path, "a") as f:
        damage(f)
    for safe in (False, True):
        if expect is None:
            assert [layer.kind for layer in read_netx(path, safe=safe).layers] == ["input", "conv", "dense"]
            continue
        with pytest.raises(FormatError, match=expect) as e:
            read_netx(path, safe=safe)
        assert "net.net" in str(e.value)


def test_netx_float16_and_integer_weights_read_like_float32_without_warnings(tmp_path):
    """A float16 weight compared with 2**62 overflowed in the cast (a RuntimeWarning per file)."""
    import warnings

    from snnir.backends.lava import read_netx

    path = _netx_file(tmp_path)
    reference = read_netx(path)
    for dtype in (np.float16, np.int16, np.int64):
        with h5py.File(path, "a") as f:
            w = f["layer/3/weight"][()]
            del f["layer/3/weight"]
            f["layer/3"].create_dataset("weight", data=w.astype(dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _programs_equal(read_netx(path), reference), dtype
    with h5py.File(path, "a") as f:
        del f["layer/3/weight"]
        f["layer/3"].create_dataset("weight", data=np.full((3, 64), 65504.0, np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FormatError, match=r"layer/3/weight: weights in \[65504, 65504\] are beyond"):
            read_netx(path)


# --- ONNX -------------------------------------------------------------------------------------------------
onnx = pytest.importorskip("onnx")


def _onnx(tmp_path, nodes, inits, in_shape=(1, 4), out="y"):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 1])], initializer=inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return str(path)


def test_onnx_hostile_nodes_name_the_file_and_node(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from snnir.frontends.onnx import UnsupportedOpError, from_onnx

    w3 = numpy_helper.from_array(np.ones((2, 4, 1), np.float32), "w")
    with pytest.raises(FormatError, match=r"m.onnx: .*node 'fc' \(Gemm\)"):
        from_onnx(_onnx(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], [w3]))
    stats = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("s", "b")]
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "x", "x"], ["y"], name="bn")
    with pytest.raises(FormatError, match=r"m.onnx: node 'bn' \(BatchNormalization\) refers to 'x'"):
        from_onnx(_onnx(tmp_path, [bn], stats, in_shape=(1, 4, 2, 2)))
    text = helper.make_tensor("w", TensorProto.STRING, [2], [b"a", b"b"])  # not a constant snnir uses
    with pytest.raises(UnsupportedOpError, match=r"m.onnx: ONNX op 'MatMul' \(node 'mm'"):
        from_onnx(_onnx(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [text]))
    const = helper.make_node("Constant", [], ["w"], name="c", value_float=2.0)
    with pytest.raises(UnsupportedOpError, match=r"m.onnx: ONNX op 'Identity' \(node 'id'"):
        from_onnx(_onnx(tmp_path, [const, helper.make_node("Identity", ["w"], ["y"], name="id")], []))


def test_onnx_gather_index_out_of_range(tmp_path):
    from onnx import helper, numpy_helper

    from snnir.frontends.onnx import from_onnx

    idx = numpy_helper.from_array(np.array(7, np.int64), "i")
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i"], ["n"], name="gather", axis=0),
             helper.make_node("Relu", ["x"], ["y"], name="act")]
    with pytest.raises(FormatError, match=r"m.onnx: node 'gather' \(Gather\): IndexError"):
        from_onnx(_onnx(tmp_path, nodes, [idx]))


def test_onnx_external_data_outside_the_model_is_refused(tmp_path):
    from onnx import TensorProto, helper

    from snnir.frontends.onnx import from_onnx

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.ones(16, np.float32))
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="missing.bin")
    with pytest.raises(FormatError, match=r"m.onnx: tensor 'w' keeps its data in a file that cannot be read"):
        from_onnx(_onnx(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [w]))


# --- dataset files ------------------------------------------------------------------------------------------
from snnir.data.formats import (  # noqa: E402
    EventFormatError,
    SpikeHDF5,
    read_asl_dvs_mat,
    read_gesture_labels,
    read_npy_events,
    read_npz_events,
)


def _npy(header: str, body: bytes = b"") -> bytes:
    raw = header.encode("latin-1")
    raw += b" " * (-(len(raw) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + body


@pytest.mark.parametrize("header,error,expect", [
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,) ", EventFormatError, "not an NPY array header"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 3000 + ")" * 3000 + "}", EventFormatError,
     "not an NPY array header"),
    ("{'descr': '|V0', 'fortran_order': False, 'shape': (3,), }", EventFormatError, "zero-byte items"),
    ("{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776,), }", LimitError, "declares 8 TiB|declares"),
    ("{'descr': [('t', '<U4'), ('x', '<i2'), ('y', '<i2'), ('p', '|i1')], 'fortran_order': False, 'shape': (0,), }",
     EventFormatError, "column 't' has dtype <U4; expected numbers"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", EventFormatError, "holds Python objects"),
])
def test_npy_headers(tmp_path, header, error, expect):
    path = tmp_path / "lip.npy"
    path.write_bytes(_npy(header))
    with pytest.raises(error, match=expect) as e:
        read_npy_events(path)
    assert "lip.npy" in str(e.value)


def _npz(tmp_path, method=zipfile.ZIP_DEFLATED, t=None):
    path = tmp_path / "s.npz"
    with zipfile.ZipFile(path, "w") as z:
        for k in "txyp":
            buf = io.BytesIO()
            np.save(buf, t if (k == "t" and t is not None) else np.arange(3))
            z.writestr(f"{k}.npy", buf.getvalue(), compress_type=method)
    return path


def _patch_central(path, offset: int, value: int, width: int = 4) -> None:
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        data[at + offset:at + offset + width] = value.to_bytes(width, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def test_npz_members_are_bounded_before_inflating(tmp_path):
    path = _npz(tmp_path)
    _patch_central(path, 24, 3 << 30)  # every member claims 3 GiB uncompressed
    with pytest.raises(LimitError, match=r"s.npz: member 't.npy' declares 3 GiB, above the limit"):
        read_npz_events(path)
    big = np.zeros(1 << 21)  # 16 MiB of zeros deflate to ~16 KiB: a 1000x bomb
    path = _npz(tmp_path, t=big)
    with limits.override(max_inflation=100), pytest.raises(LimitError, match=r"member 't.npy' inflates .*more "
                                                                             r"than 100x"):
        read_npz_events(path)


def test_npz_encrypted_or_oddly_compressed_members(tmp_path):
    path = _npz(tmp_path)
    _patch_central(path, 8, 1, 2)  # general-purpose flag bit 0: encrypted
    with pytest.raises(EventFormatError, match="s.npz at byte 0: member 't.npy' cannot be read"):
        read_npz_events(path)
    path = _npz(tmp_path, method=zipfile.ZIP_STORED)
    _patch_central(path, 10, 99, 2)  # compression method 99 (AES): not supported
    with pytest.raises(EventFormatError, match="member 't.npy'"):
        read_npz_events(path)


def test_npz_corrupt_lzma_member(tmp_path):
    path = _npz(tmp_path, method=zipfile.ZIP_LZMA)
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x03\x04") + 30 + len("t.npy") + 4 + 10  # inside the first member's LZMA stream
    data[at:at + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match=r"s.npz at byte 0: member 't.npy' is corrupted \(LZMAError"):
        read_npz_events(path)


def test_float64_constants_load_and_run(tmp_path):
    # found by the fuzzer: a float64 constant made the next linear layer fail at run time
    g = snnir.Graph()
    x = g.add_input((2,))
    s = g.add_node("add", [x, g.add_node("constant", params={"value": np.array([0.5, 1.0])})])
    g.add_output(g.add_node("linear", [s], params={"weight": np.eye(2, dtype=np.float32)}))
    path = tmp_path / "c.snnir"
    snnir.save(g, path)
    out = snnir.compile(snnir.load(path))(np.zeros((1, 1, 2), np.float32))
    assert out.dtype == torch.float32 and out.flatten().tolist() == [0.5, 1.0]


def test_labels_csv_damage(tmp_path):
    path = tmp_path / "u_labels.csv"
    path.write_bytes(b"class,startTime_usec,endTime_usec\n1,100,200\n\xff\xfe,1,2\n")
    with pytest.raises(EventFormatError, match=r"u_labels.csv at byte 44: not UTF-8 text"):
        read_gesture_labels(path)
    path.write_bytes(b"class,startTime_usec,endTime_usec\n1,100," + b"9" * 40 + b"\n")
    with pytest.raises(EventFormatError, match=r"bad label row"):
        read_gesture_labels(path)


def test_shd_declared_sizes_and_types(tmp_path):
    from event_writers import shd_h5

    path = tmp_path / "shd.h5"
    shd_h5(path, [(np.array([0.1], np.float32), np.array([3]))], [1])
    with h5py.File(path, "a") as f:
        del f["labels"]
        f.create_dataset("labels", shape=(1 << 33,), chunks=(4096,), dtype="i8")
    with pytest.raises(LimitError, match=r"shd.h5: dataset 'labels' .* declares 64 GiB"):
        SpikeHDF5(path)
    with h5py.File(path, "a") as f:
        del f["labels"], f["spikes/times"]
        f["labels"] = np.array([1])
        f.create_dataset("spikes/times", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(EventFormatError, match=r"dataset 'spikes/times' has type .* expected 1-D variable-length"):
        SpikeHDF5(path)


def test_mat_array_headers_are_checked_before_scipy_reads_them(tmp_path):
    import scipy.io

    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"x": [[1], [2]], "y": [[3], [4]], "ts": [[5], [6]], "pol": [[1], [0]]})
    data = bytearray(path.read_bytes())
    # the first variable's data sub-element type (after tag, flags, dims, name): an unknown type made
    # scipy.io segfault (found by the fuzzer)
    at = 128 + 8 + 16 + 16 + 8
    data[at] = 255
    path.write_bytes(bytes(data))
    with pytest.raises(EventFormatError, match=r"a.mat at byte 128: variable '.*': real part of type 255"):
        read_asl_dvs_mat(path, safe=False)
    scipy.io.savemat(path, {"x": np.array([np.array([1]), np.array([1, 2])], dtype=object), "y": 1, "ts": 1,
                            "pol": 1})
    with pytest.raises(EventFormatError, match="variable 'x' is a MATLAB cell array"):
        read_asl_dvs_mat(path)


def test_limits_from_environment_and_override(monkeypatch):
    monkeypatch.setenv("SNNIR_MAX_BYTES", "1e6")
    monkeypatch.setenv("SNNIR_SAFE", "yes")
    fresh = limits._from_env()
    assert fresh.max_bytes == 1_000_000 and fresh.safe is True
    monkeypatch.setenv("SNNIR_MAX_DEPTH", "many")
    with pytest.raises(ValueError, match="SNNIR_MAX_DEPTH='many' is not a number"):
        limits._from_env()
    with pytest.raises(ValueError, match="max_bytes must be a positive number"):
        with limits.override(max_bytes=0):
            pass
    before = limits.current()
    with limits.override(max_depth=3):
        assert limits.current().max_depth == 3
    assert limits.current() == before


def test_cli_reads_in_safe_mode_unless_trusted(tmp_path, monkeypatch, capsys):
    import importlib

    from snnir import cli

    seen = []
    verb = importlib.import_module("snnir.cli.inspect")  # the CLI is a package, one module per verb
    monkeypatch.setattr(verb, "run", lambda args: seen.append(limits.current().safe) or 0)
    assert cli.main(["inspect", "x.snnir"]) == 0 and cli.main(["--trusted", "inspect", "x.snnir"]) == 0
    assert seen == [True, False] and limits.current().safe is False
    path = tmp_path / "m.snnir"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    monkeypatch.undo()
    assert cli.main(["inspect", str(path)]) == 1
    assert "not a snnir file" in capsys.readouterr().err


def test_graph_errors_from_files_are_also_graph_errors(tmp_path):
    path = _resigned(tmp_path, lambda g: _node(g, "lif")["attrs"].update(tau=0.5))
    with pytest.raises(GraphError):  # InvalidGraphFileError is both
        snnir.load(path)

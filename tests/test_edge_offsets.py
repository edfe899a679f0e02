"""Edges with time offsets and several edges between two nodes, through every consumer: version-1
files, the torch backend (against hand-written loops), passes, ONNX streaming, NIR and Loihi."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir import FormatError, Graph, LoihiMappingError, SnnirError
from snnir import nn as snn
from snnir import serialization as ser

DATA = Path(__file__).parent / "data"


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(json.loads(data[8:8 + n])["__metadata__"]["snnir"])


def _container(structure: dict, arrays: dict, version: int) -> bytes:
    import safetensors.numpy

    doc = {"format_version": version, "graph": structure, "sha256": ser._digest(ser._json(structure), arrays)}
    return safetensors.numpy.save(arrays, metadata={"snnir": ser._json(doc)})


def _dyadic(t: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Multiples of 2**-bits: the small sums below are exact in float32 in any order."""
    return torch.round(t * 2**bits) / 2**bits


# --- format version 1 ---------------------------------------------------------------------------
def _v1_reference(g: Graph, x: np.ndarray) -> np.ndarray:
    """float64 hand loop of tests/data/recurrent_v1.snnir (see tests/data/README.md):
    rnn_in[t] = fc x[t] + W_rec s[t-1]; LIF(tau=2, threshold 1, hard reset to 0);
    syn[t] = s[t] + d[t-1] with the delay d[t] = syn[t-2], so syn[t] = s[t] + syn[t-3]."""
    w_fc = g.node("fc").params["weight"].astype(np.float64)
    w_rec = g.node("rec").params["weight"].astype(np.float64)
    T, N, _ = x.shape
    v, s = np.zeros((N, 4)), np.zeros((N, 4))
    syn, closest = [], np.inf
    for t in range(T):
        h = v + (x[t] @ w_fc.T + s @ w_rec.T - v) / 2.0
        closest = min(closest, np.abs(h - 1.0).min())
        s = (h >= 1.0).astype(np.float64)
        v = h * (1 - s)
        syn.append(s + (syn[t - 3] if t >= 3 else 0.0))
    assert closest > 1e-6, "a voltage lies on the threshold: choose another input"
    return np.stack(syn)


def test_version_1_file_loads_with_the_insertion_order_offsets(tmp_path):
    data = (DATA / "recurrent_v1.snnir").read_bytes()
    doc = _header(data)
    assert doc["format_version"] == 1 and all(len(e) == 3 for e in doc["graph"]["edges"])
    g = snnir.load(DATA / "recurrent_v1.snnir")
    delayed = [(e.src, e.dst, e.port) for e in g.edges() if e.offset]
    assert delayed == [("rec", "rnn_in", 1), ("d", "syn", 1)]
    assert [r["mode"] for r in g.meta["schedule"]["regions"]] == ["sequence", "step", "step", "sequence"]

    x = np.random.default_rng(0).random((16, 3, 5)) * 2
    ref = _v1_reference(g, x)
    assert ref.max() >= 2  # both loops are active
    for step_mode in ("m", "s"):
        m = snnir.compile(g, step_mode=step_mode).double()
        xs = torch.tensor(x)
        y = m(xs) if step_mode == "m" else torch.stack([m(xt) for xt in xs])
        np.testing.assert_array_equal(y.detach().numpy(), ref)

    # saving writes version 2 with the offsets; that file is byte-stable and computes the same
    snnir.save(g, tmp_path / "v2.snnir")
    v2 = (tmp_path / "v2.snnir").read_bytes()
    doc2 = _header(v2)
    assert doc2["format_version"] == ser.FORMAT_VERSION == 2
    assert ["rec", "rnn_in", 1, 1] in doc2["graph"]["edges"] and ["lif", "rec", 0, 0] in doc2["graph"]["edges"]
    assert ser.dumps(ser.loads(v2)) == v2
    m = snnir.compile(snnir.load(tmp_path / "v2.snnir")).double()
    np.testing.assert_array_equal(m(torch.tensor(x)).detach().numpy(), ref)


def test_edge_fields_must_match_the_version():
    g = Graph("g")
    x = g.add_input((2,))
    g.add_output(g.add_node("add", [x, x], offsets=[0, 1]))
    structure, arrays = g.validate().to_dict()
    with pytest.raises(FormatError, match=r"format version 1 stores each edge as \[src, dst, port\]"):
        ser.loads(_container(structure, arrays, 1))
    structure["edges"] = [e[:3] for e in structure["edges"]]
    with pytest.raises(FormatError, match=r"format version 2 stores each edge as \[src, dst, port, offset\]"):
        ser.loads(_container(structure, arrays, 2))
    structure["edges"] = [[*e, 2] for e in structure["edges"]]
    with pytest.raises(FormatError, match="time offset must be 0 .* or 1 .*, got 2"):
        ser.loads(_container(structure, arrays, 2))


def test_a_file_with_an_instantaneous_loop_is_refused_naming_it():
    g = Graph("loop")
    x = g.add_input((2,))
    s = g.add_node("add", [x], id="sum")
    r = g.add_node("relu", [s], id="r")
    g.add_edge(r, s, port=1)
    g.add_output(r)
    structure, arrays = g.to_dict()
    with pytest.raises(FormatError, match=r"invalid graph: cycle through \['sum', 'r'\] has no edge with time "
                                          "offset 1"):
        ser.loads(_container(structure, arrays, 2))


# --- h + h, cat([h, h]) ---------------------------------------------------------------------------
class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = snn.Linear(4, 3)
        self.lif = snn.LIF(tau=2.0)
        self.lif2 = snn.IF()

    def forward(self, x):
        h = self.lif(self.fc(x))
        return self.lif2(h + h), torch.cat([h, h], dim=-1)


def _twice():
    torch.manual_seed(0)
    net = snn.set_step_mode(Twice(), "m")
    with torch.no_grad():
        net.fc.weight.copy_(_dyadic(torch.rand(3, 4)))
        net.fc.bias.copy_(_dyadic(torch.rand(3) * 0.5))
    x = _dyadic(torch.rand(10, 2, 4))
    return net, x


def test_h_plus_h_and_cat_h_h_trace_compile_save_and_load(tmp_path):
    net, x = _twice()
    ref = net(x)
    snn.reset(net)
    g = snnir.trace(net, x)
    add = next(n.id for n in g if n.op == "add")
    cat = next(n.id for n in g if n.op == "cat")
    assert [(e.src, e.port, e.offset) for e in g.in_edges(add)] == [("lif", 0, 0), ("lif", 1, 0)]
    assert g.predecessors(cat) == ["lif", "lif"] and g.node(cat).shape == (6,)
    snnir.save(g, tmp_path / "twice.snnir")
    data = (tmp_path / "twice.snnir").read_bytes()
    back = snnir.load(tmp_path / "twice.snnir")
    assert ser.dumps(back) == data and back.predecessors(add) == ["lif", "lif"]
    for graph in (g, back, snnir.optimize(back, check=True)):
        out = snnir.compile(graph)(x)
        assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert ref[0].sum() > 0 and ref[1].sum() > 0


def test_h_plus_h_and_cat_stream_on_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    from snnir.backends.onnx import StreamingSession

    net, x = _twice()
    ref = net(x)
    snnir.export(snnir.trace(net, x), tmp_path / "twice.onnx", format="onnx")
    session = StreamingSession(tmp_path / "twice.onnx")
    steps = [session(xt) for xt in x.numpy()]
    for k in range(2):
        np.testing.assert_array_equal(np.stack([s[k] for s in steps]), ref[k].detach().numpy())


def test_nir_refuses_h_plus_h_naming_the_node(tmp_path):
    net, x = _twice()
    g = snnir.trace(nn.Sequential(snn.Linear(4, 3), snn.LIF(), _AddSelf(), snn.IF()), x)
    with pytest.raises(SnnirError, match=r"node '_3' \(neuron IF\) cannot be exported to NIR: it sums \['_1'\] "
                                         "more than once"):
        snnir.export(g, tmp_path / "x.nir", format="nir")


class _AddSelf(nn.Module):
    def forward(self, h):
        return h + h


# --- offsets outside loops, stateless loops, carry across calls -----------------------------------
def _delayed_sum() -> Graph:
    """y[t] = IF(x[t] + x[t-1]): an offset-1 edge that closes no loop."""
    g = Graph("delayed_sum")
    x = g.add_input((3,), id="x")
    s = g.add_node("add", [x, x], offsets=[0, 1], id="s")
    g.add_output(g.add_node("neuron", [s], attrs={"model": "IF"}, id="n"), id="y")
    return g.validate()


def _iir() -> Graph:
    """acc[t] = x[t] + half[t-1], half = acc / 2: a loop of stateless nodes through an offset-1 edge."""
    g = Graph("iir")
    x = g.add_input((3,), id="x")
    acc = g.add_node("add", [x], id="acc")
    half = g.add_node("scale", [acc], attrs={"factor": 0.5}, id="half")
    g.add_edge(half, acc, port=1, offset=1)
    g.add_output(acc, id="y")
    return g.validate()


def _if_loop(current: np.ndarray) -> np.ndarray:
    v, out = np.zeros(current.shape[1:]), []
    for c in current:
        v = v + c
        s = (v >= 1.0).astype(np.float64)
        v = v * (1 - s)
        out.append(s)
    return np.stack(out)


def _references(x: np.ndarray) -> dict[str, np.ndarray]:
    shifted = np.concatenate([np.zeros_like(x[:1]), x[:-1]])
    acc, prev = [], np.zeros_like(x[0])
    for xt in x:
        prev = xt + 0.5 * prev
        acc.append(prev)
    return {"delayed_sum": _if_loop(x + shifted), "iir": np.stack(acc)}


@pytest.mark.parametrize("build", [_delayed_sum, _iir])
def test_offset_1_edges_against_hand_loops_in_every_mode(build):
    g = build()
    x = _dyadic(torch.rand(12, 2, 3))
    ref = _references(x.numpy().astype(np.float64))[g.name]
    assert np.abs(ref).sum() > 0
    whole = snnir.compile(g)
    np.testing.assert_array_equal(whole(x).numpy(), ref)
    chunked = snnir.compile(g)  # a sequence fed in chunks: the previous step carries over
    np.testing.assert_array_equal(torch.cat([chunked(x[:5]), chunked(x[5:])]).numpy(), ref)
    chunked.reset()
    np.testing.assert_array_equal(chunked(x).numpy(), ref)
    blocks = snnir.compile(g)
    blocks.time_block_bytes = 1  # one step per block
    np.testing.assert_array_equal(blocks(x).numpy(), ref)
    single = snnir.compile(g, step_mode="s")
    np.testing.assert_array_equal(torch.stack([single(xt) for xt in x]).numpy(), ref)
    optimized = snnir.optimize(g, check=True)
    assert [(e.src, e.dst, e.port) for e in optimized.delayed_edges()] == \
        [(e.src, e.dst, e.port) for e in g.delayed_edges()]
    np.testing.assert_array_equal(snnir.compile(optimized)(x).numpy(), ref)


def test_schedule_reads_a_feed_forward_delay_from_an_earlier_region():
    regions = snnir.optimize(_delayed_sum()).meta["schedule"]["regions"]
    assert [(r["mode"], r["nodes"]) for r in regions] == [("sequence", ["x"]), ("sequence", ["s", "n", "y"])]
    assert [r["mode"] for r in snnir.optimize(_iir()).meta["schedule"]["regions"]] == ["sequence", "step", "sequence"]


def test_batch_size_change_without_reset_is_named():
    m = snnir.compile(_iir())
    m(torch.rand(3, 2, 3))
    with pytest.raises(RuntimeError, match="node 'half' holds its previous step for batch size 2, this call has "
                                           r"batch size 4; call reset\(\)"):
        m(torch.rand(3, 4, 3))


class RecurrentNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = snn.Linear(5, 8)
        self.rnn = snn.Recurrent(snn.LIF(tau=3.0), snn.Linear(8, 8, bias=False))

    def forward(self, x):
        return self.rnn(self.fc(x))


def test_traced_recurrence_has_an_explicit_offset_and_carries_over_calls_like_eager():
    torch.manual_seed(2)
    net = snn.set_step_mode(RecurrentNet(), "m")
    with torch.no_grad():
        net.fc.weight.mul_(4)
    x = torch.rand(12, 3, 5)
    g = snnir.trace(net, x)
    (e,) = g.delayed_edges()
    assert (g.node(e.src).op, g.node(e.dst).op, e.port, e.offset) == ("linear", "add", 1, 1)
    snn.reset(net)
    ref = torch.cat([net(x[:7]), net(x[7:])])  # eager Recurrent keeps y between calls
    m = snnir.compile(g)
    assert torch.equal(torch.cat([m(x[:7]), m(x[7:])]), ref) and 0 < ref.mean() < 1


@pytest.mark.parametrize("build", [_delayed_sum, _iir])
def test_offset_1_edges_stream_on_onnxruntime_as_prev_state(tmp_path, build):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    from snnir.backends.onnx import StreamingSession

    g = build()
    x = _dyadic(torch.rand(12, 2, 3))
    ref = _references(x.numpy().astype(np.float64))[g.name]
    snnir.export(g, tmp_path / "g.onnx", format="onnx")
    session = StreamingSession(tmp_path / "g.onnx")
    prev = "x.prev" if g.name == "delayed_sum" else "half.prev"
    assert prev in session.state_names
    np.testing.assert_array_equal(np.stack([session(xt) for xt in x[:5].numpy()]), ref[:5])
    np.testing.assert_array_equal(np.stack([session(xt) for xt in x[5:].numpy()]), ref[5:])
    snnir.export(g, tmp_path / "seq.onnx", format="onnx", unroll=12)
    np.testing.assert_array_equal(StreamingSession(tmp_path / "seq.onnx")(x.numpy()), ref)


def test_nir_keeps_loops_and_refuses_a_delay_outside_one(tmp_path):
    from snnir.frontends.nir import from_nir

    g = snnir.trace(snn.set_step_mode(RecurrentNet(), "m"), torch.rand(4, 1, 5))
    snnir.export(g, tmp_path / "r.nir", format="nir")
    back = from_nir(str(tmp_path / "r.nir"))
    assert [(back.node(e.src).op, back.node(e.dst).op, e.offset) for e in back.delayed_edges()] == \
        [("linear", "add", 1)]
    with pytest.raises(SnnirError, match=r"node 's' \(add\) cannot be exported to NIR: it reads 'x' one step late "
                                         "outside a loop"):
        snnir.export(_delayed_sum(), tmp_path / "d.nir", format="nir")


# --- Loihi ----------------------------------------------------------------------------------------
def _loihi_graph(offsets: tuple[int, int, int], twice: bool = False) -> Graph:
    """syn -> add(syn, rec) -> neuron -> rec, offsets on (add -> neuron, neuron -> rec, rec -> add)."""
    rng = np.random.default_rng(0)
    g = Graph()
    x = g.add_input((4,))
    syn = g.add_node("linear", [x], params={"weight": rng.normal(0, 0.5, (3, 4)).astype(np.float32)}, id="syn")
    if twice:
        add = g.add_node("add", [syn, syn], id="sum")
        g.add_output(g.add_node("neuron", [add], attrs={"model": "LIF"}, id="n"))
        return g.validate()
    add = g.add_node("add", [syn], id="sum")
    n = g.add_node("neuron", [add], attrs={"model": "LIF"}, offsets=[offsets[0]], id="n")
    rec = g.add_node("linear", [n], params={"weight": rng.normal(0, 0.5, (3, 3)).astype(np.float32)},
                     offsets=[offsets[1]], id="rec")
    g.add_edge(rec, add, port=1, offset=offsets[2])
    g.add_output(n)
    return g.validate()


def test_loihi_recurrent_synapse_needs_its_loop_delayed_on_the_feedback_path():
    from snnir.passes.to_loihi import loihi_layers

    for offsets in [(0, 0, 1), (0, 1, 0)]:
        (layer,) = loihi_layers(_loihi_graph(offsets))
        assert (layer.synapse, layer.recurrent, layer.neuron) == ("syn", "rec", "n")
    with pytest.raises(LoihiMappingError, match=r"node 'n' \(neuron\) cannot be mapped to Loihi: it reads 'sum' one "
                                                "step late"):
        loihi_layers(_loihi_graph((1, 0, 0)))
    with pytest.raises(LoihiMappingError, match=r"node 'sum' \(add\) cannot be mapped to Loihi"):
        loihi_layers(_loihi_graph((0, 0, 0), twice=True))

"""Streaming ONNX export: the one-step model with explicit state, run on onnxruntime, against the
torch backend (the same spikes for every built-in neuron kind, and the same final state)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn

onnx = pytest.importorskip("onnx", reason="onnx is a test dependency")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")

from snnir.backends.onnx import StreamingSession, UnsupportedOpError  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the spike-count floors below hold for these inputs


NEURONS = [
    ("IF", {}, 1.5),
    ("LIF", {"tau": 3.0}, 1.5),
    ("LIF", {"tau": 3.0, "decay_input": False, "v_reset": None}, 1.5),  # soft reset
    ("QIF", {}, 1.5),
    ("EIF", {}, 1.5),
    ("Izhikevich", {}, 30.0),
    ("CubaLIF", {"tau_syn": 2.0, "tau_mem": 4.0}, 1.0),
    ("AdaptiveLIF", {"a": 0.3, "b": 0.2}, 2.0),
    ("Threshold", {"v_threshold": 0.5}, 1.0),
]


def _stream(path, xs):
    session = StreamingSession(path)
    return session, np.stack([session(x) for x in xs.numpy()])


@pytest.mark.parametrize("model, attrs, scale", NEURONS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(NEURONS)])
def test_every_neuron_streams_like_torch(tmp_path, model, attrs, scale):
    g = snnir.Graph()
    x = g.add_input((40,))
    g.add_output(g.add_node("neuron", [x], attrs={"model": model, **attrs}, id="layer1"))
    path = tmp_path / "n.onnx"
    snnir.export(g, path, format="onnx")
    onnx.checker.check_model(onnx.load(str(path)))
    xs = torch.rand(40, 3, 40) * scale
    module = snnir.compile(g)
    ref = module(xs)
    session, out = _stream(path, xs)
    assert 20 < ref.sum() < ref.numel() - 20
    np.testing.assert_array_equal(out, ref.numpy())
    # the state after T steps: bit for bit, but exp() may differ by one ulp between torch and onnxruntime
    rtol = 1e-6 if model == "EIF" else 0.0
    for name, value in module.neurons()["layer1"].state().items():
        np.testing.assert_allclose(session.state[f"layer1.{name}"], value.numpy(), rtol=rtol, atol=0)


def test_parametric_lif_and_integrators(tmp_path):
    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(6, 8), snn.ParametricLIF(init_tau=3.0)), "m")
    with torch.no_grad():
        net[0].weight.abs_()
    xs = torch.rand(30, 2, 6) * 3
    g = snnir.trace(net, xs)
    ids = [n.id for n in g]
    li = g.add_node("integrator", [ids[1]], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 3.0, "v_reset": 0.1})
    g.add_output(g.add_node("integrator", [li], attrs={"model": "LIF", "tau": 4.0, "decay_input": False}), id="v")
    snnir.export(g, tmp_path / "p.onnx", format="onnx")
    ref_s, ref_v = snnir.compile(g)(xs)
    session, out = StreamingSession(tmp_path / "p.onnx"), []
    out = [session(x) for x in xs.numpy()]
    assert ref_s.sum() > 20
    np.testing.assert_array_equal(np.stack([o[0] for o in out]), ref_s.detach().numpy())
    np.testing.assert_array_equal(np.stack([o[1] for o in out]), ref_v.detach().numpy())


def _network():
    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(1, 4, 3, padding=1), snn.LIF(tau=2.0), snn.AvgPool2d(2), snn.Flatten(),
        snn.Linear(64, 16), snn.Recurrent(snn.CubaLIF(tau_syn=2.0, tau_mem=3.0), snn.Linear(16, 16)),
        snn.Delay(2), snn.SynapseFilter(tau=2.0), snn.Linear(16, 4), snn.LIF(tau=2.0)), "m")
    with torch.no_grad():
        net[0].weight.abs_()
        net[8].weight.mul_(3)
    return net


def test_network_streams_like_torch_and_names_its_state(tmp_path):
    net = _network()
    xs = torch.rand(30, 2, 1, 8, 8) * 2
    g = snnir.trace(net, xs)
    snnir.export(g, tmp_path / "net.onnx", format="onnx")
    model = onnx.load(str(tmp_path / "net.onnx"))
    inputs = [i.name for i in model.graph.input]
    assert inputs[0] == "input" and {"_1.v_in", "_5.i_in", "_5.v_in", "_6.buffer_in", "_7.i_in"} <= set(inputs)
    assert any(name.endswith(".prev_in") for name in inputs)  # the recurrent edge's value
    assert {"_1.v_out", "_5.v_out"} <= {o.name for o in model.graph.output}
    with torch.no_grad():
        ref = snnir.compile(g)(xs)
    _, out = _stream(tmp_path / "net.onnx", xs)
    assert ref.sum() >= 10
    np.testing.assert_array_equal(out, ref.numpy())


def test_unrolled_model_and_state_carry_over(tmp_path):
    net = _network()
    xs = torch.rand(20, 2, 1, 8, 8) * 2
    g = snnir.trace(net, xs)
    with torch.no_grad():
        ref = snnir.compile(g)(xs).numpy()
    snnir.export(g, tmp_path / "seq.onnx", format="onnx", unroll=10)
    session = StreamingSession(tmp_path / "seq.onnx")
    out = np.concatenate([session(xs[:10].numpy()), session(xs[10:].numpy())])  # state carries over
    np.testing.assert_array_equal(out, ref)
    session.reset()
    np.testing.assert_array_equal(session(xs[:10].numpy()), ref[:10])


def test_ann_layers_stream_like_torch(tmp_path):
    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Conv1d(2, 4, 3, padding=1), snn.BatchNorm1d(4), snn.ReLU(), snn.MaxPool1d(2),
        snn.AdaptiveAvgPool1d(2), snn.Flatten(), snn.Linear(8, 6), snn.Scale(3.0), snn.IF()), "m").eval()
    xs = torch.rand(20, 3, 2, 8)
    g = snnir.trace(net, xs)
    snnir.export(g, tmp_path / "ann.onnx", format="onnx")
    with torch.no_grad():
        ref = snnir.compile(g).eval()(xs)  # batchnorm with its running statistics, as exported
    _, out = _stream(tmp_path / "ann.onnx", xs)
    assert ref.sum() >= 10
    np.testing.assert_array_equal(out, ref.numpy())


def test_unsupported_ops_are_named(tmp_path):
    g = snnir.Graph()
    x = g.add_input((1, 4, 4))
    g.add_output(g.add_node("spiking_maxpool2d", [x], attrs={"kernel_size": 2}, id="pool1"))
    with pytest.raises(UnsupportedOpError, match="'pool1'.*spiking_maxpool2d"):
        snnir.export(g, tmp_path / "x.onnx", format="onnx")
    with pytest.raises(ValueError, match="unroll"):
        snnir.export(g, tmp_path / "x.onnx", format="onnx", unroll=0)


def test_session_refuses_a_plain_onnx_model(tmp_path):
    from onnx import TensorProto, helper

    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("x", "y")]
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "plain", info[:1], info[1:]))
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(snnir.errors.SnnirError, match="not a snnir streaming model"):
        StreamingSession(tmp_path / "plain.onnx")

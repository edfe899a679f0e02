"""Streaming ONNX export: the one-step model with explicit state, run on onnxruntime, against the
torch backend (the same spikes for every built-in neuron kind, and the same final state).

What is compared bit for bit is what is guaranteed on every CPU: neuron steps given identical input
(both sides print the same float operations in the same order). onnxruntime's Gemm/Conv may sum in
another order than torch's (it does on AVX-512 machines), so network tests either make those sums
exact by construction (dyadic weights and inputs: every partial sum is representable in float32,
whatever the order) or check explicitly that no voltage comes within ``MARGIN`` of its threshold
before comparing spikes exactly.
"""

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


MARGIN = 1e-4  # far above the last-bit differences of a Gemm/Conv (~1e-7 relative)


def _dyadic(t: torch.Tensor, bits: int = 4) -> torch.Tensor:
    """``t`` rounded to multiples of 2**-bits: small sums of products of such values are exact."""
    return torch.round(t * 2**bits) / 2**bits


def _dyadic_weights_(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(_dyadic(p))


def _assert_clear_of_threshold(current: torch.Tensor, tau: float | None) -> None:
    """A float64 hand loop of the hard-reset LIF (``tau``) or IF (``None``) neuron, threshold 1, fed
    ``current``: no charged voltage may lie within ``MARGIN`` of the threshold, so a last-bit
    difference in ``current`` cannot flip a spike."""
    v = torch.zeros_like(current[0], dtype=torch.float64)
    closest = float("inf")
    for x in current.double():
        h = v + x if tau is None else v + (x - v) / tau
        closest = min(closest, float((h - 1.0).abs().min()))
        v = torch.where(h >= 1.0, torch.zeros_like(h), h)
    assert closest > MARGIN, f"a voltage lies {closest:.2e} from threshold: choose other test inputs"


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
    _dyadic_weights_(net[0])  # the Gemm is exact, so everything after it is compared bit for bit
    xs = _dyadic(torch.rand(30, 2, 6) * 3)
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
    _dyadic_weights_(net)  # conv and linear sums on dyadic spikes/inputs are exact; the last is checked
    return net


def _network_input(T: int) -> torch.Tensor:
    return _dyadic(torch.rand(T, 2, 1, 8, 8) * 2)


def _check_last_layer_margin(g, xs) -> None:
    """The last Linear reads a synapse filter's (non-dyadic) current: check its LIF's margin."""
    module = snnir.compile(g)
    module.capture = {"_8"}
    with torch.no_grad():
        module(xs)
    _assert_clear_of_threshold(module.captured["_8"], tau=2.0)


def test_network_streams_like_torch_and_names_its_state(tmp_path):
    net = _network()
    xs = _network_input(30)
    g = snnir.trace(net, xs)
    _check_last_layer_margin(g, xs)
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
    xs = _network_input(20)
    g = snnir.trace(net, xs)
    _check_last_layer_margin(g, xs)
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
    module = snnir.compile(g).eval()  # batchnorm with its running statistics, as exported
    module.capture = {[n.id for n in g if n.op == "scale"][0]}
    with torch.no_grad():
        ref = module(xs)
    _assert_clear_of_threshold(next(iter(module.captured.values())), tau=None)
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

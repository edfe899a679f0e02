"""Per-neuron parameters (one value per channel or per neuron) against float64 loops written here
from the models' documented equations, on the fused kernel and the reference path; learnable
per-channel ``tau`` and threshold train through the fused kernel with the gradients of a
hand-written autograd loop; the graph, ``.snnir`` files, ONNX export; and the errors for bad
parameter arrays.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir import nn as snn
from snnir.errors import GraphError, ShapeError

SHAPE = (3, 2, 2)  # one sample's neurons: channels x height x width


def run64(module: snn.Neuron, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    module = module.double()
    module.step_mode, module.store_v_seq = "m", True
    with torch.no_grad():
        s = module(torch.from_numpy(x)).numpy()
    return s, module.v_seq.numpy()


def lif_loop(x, tau, th, v_reset, decay_input=True):
    """LIF, float64: ``v + (x - (v - v_reset)) / tau`` (or ``v - (v - v_reset) / tau + x``); hard reset
    to ``v_reset``, or soft (``v_reset=None``: subtract the threshold, the leak targets 0)."""
    vr = 0.0 if v_reset is None else v_reset
    v = np.broadcast_to(np.asarray(vr, np.float64), x.shape[1:]).copy()
    spikes, vs = [], []
    for xt in x:
        h = v + (xt - (v - vr)) / tau if decay_input else v - (v - vr) / tau + xt
        s = (h >= th).astype(np.float64)
        v = h - s * th if v_reset is None else np.where(s > 0, v_reset, h)
        spikes.append(s)
        vs.append(v)
    return np.stack(spikes), np.stack(vs)


def per_channel(values) -> np.ndarray:
    return np.asarray(values, np.float64).reshape(-1, 1, 1)


rng = np.random.default_rng(3)
PER_NEURON_TAU = rng.uniform(1.5, 6.0, SHAPE)
LIF_CASES = {
    "per-channel tau": dict(tau=per_channel([2.0, 3.5, 8.0]), th=1.0, v_reset=0.0),
    "per-neuron tau, threshold": dict(tau=PER_NEURON_TAU, th=rng.uniform(0.6, 1.4, SHAPE), v_reset=0.0),
    "per-channel reset": dict(tau=2.5, th=1.0, v_reset=per_channel([0.0, -0.3, 0.2])),
    "soft, per-channel threshold": dict(tau=per_channel([2.0, 3.0, 4.0]), th=per_channel([0.7, 1.0, 1.3]),
                                        v_reset=None),
    "per-neuron everything": dict(tau=PER_NEURON_TAU, th=rng.uniform(0.6, 1.4, SHAPE),
                                  v_reset=rng.uniform(-0.3, 0.2, SHAPE)),
}


def _tensor(v):
    return torch.tensor(v) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("case", sorted(LIF_CASES))
def test_lif_per_neuron_equals_float64_loop(case, decay_input, fused):
    p = LIF_CASES[case]
    x = np.random.default_rng(1).uniform(0.0, 1.6 if decay_input else 0.8, (30, 4, *SHAPE))
    m = snn.LIF(tau=_tensor(p["tau"]), v_threshold=_tensor(p["th"]), v_reset=_tensor(p["v_reset"]),
                decay_input=decay_input, fused=fused)
    s, v = run64(m, x)
    rs, rv = lif_loop(x, p["tau"], p["th"], p["v_reset"], decay_input)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)
    assert 0.05 < s.mean() < 0.9
    if fused:
        assert m._fused_key(torch.from_numpy(x)) is not None  # no fallback: the fused kernel ran


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_cuba_and_izhikevich_per_neuron(fused):
    x = np.random.default_rng(2).uniform(-0.2, 1.0, (40, 2, *SHAPE))
    ts, tm = per_channel([2.0, 3.0, 5.0]), np.random.default_rng(4).uniform(2.0, 6.0, SHAPE)
    s, v = run64(snn.CubaLIF(tau_syn=torch.tensor(ts), tau_mem=torch.tensor(tm), fused=fused), x)
    i, vv, rs, rv = np.zeros(x.shape[1:]), np.zeros(x.shape[1:]), [], []
    for xt in x:  # i = i - i / tau_syn + x; v = v - v / tau_mem + i (new i); reset to 0 at 1
        i = i - i / ts + xt
        h = vv - vv / tm + i
        sp = (h >= 1.0).astype(float)
        vv = np.where(sp > 0, 0.0, h)
        rs.append(sp)
        rv.append(vv)
    np.testing.assert_array_equal(s, np.stack(rs))
    np.testing.assert_allclose(v, np.stack(rv), rtol=0, atol=1e-12)
    assert s.sum() > 20
    # Izhikevich with per-neuron a, b, c (= v_reset), d: also u's initial value b*c and the hoisted dt*a
    g = np.random.default_rng(5)
    a, b = g.uniform(0.02, 0.1, SHAPE), per_channel([0.2, 0.25, 0.2])
    c, d = per_channel([-65.0, -55.0, -50.0]), g.uniform(2.0, 8.0, SHAPE)
    x = g.uniform(0.0, 15.0, (60, 2, *SHAPE))
    m = snn.Izhikevich(a=torch.tensor(a), b=torch.tensor(b), v_reset=torch.tensor(c), d=torch.tensor(d), dt=0.5,
                       fused=fused)
    s, v = run64(m, x)
    vv, u = np.broadcast_to(c, SHAPE).copy(), np.broadcast_to(b * c, SHAPE).copy()
    rs, rv = [], []
    for xt in x:
        vv = vv + 0.5 * (0.04 * vv * vv + 5 * vv + 140 - u + xt)
        u = u + (0.5 * a) * (b * vv - u)
        sp = (vv >= 30.0).astype(float)
        vv = np.where(sp > 0, np.broadcast_to(c, SHAPE), vv)
        u = u + d * sp
        rs.append(sp)
        rv.append(vv)
    np.testing.assert_array_equal(s, np.stack(rs))
    np.testing.assert_allclose(v, np.stack(rv), rtol=1e-12, atol=1e-9)
    assert s.sum() > 10


class _ATanSpike(torch.autograd.Function):
    """Heaviside with the ATan surrogate (alpha = 2), written out: alpha / 2 / (1 + (pi/2 alpha x)^2)."""

    @staticmethod
    def forward(ctx, z):
        ctx.save_for_backward(z)
        return (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        return g * 1.0 / (1 + (math.pi * z) ** 2)


def _plif_loop(x, w, th):
    """ParametricLIF (decay_input, hard reset to 0), float64 autograd: v + (x - v) * sigmoid(w)."""
    v = torch.zeros_like(x[0])
    out = []
    for xt in x:
        h = v + (xt - v) * torch.sigmoid(w)
        s = _ATanSpike.apply(h - th)
        v = (1 - s) * h
        out.append(s)
    return torch.stack(out), v


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "reference"])
def test_learnable_per_channel_tau_and_threshold_gradients(fused):
    torch.manual_seed(0)
    x = torch.rand(16, 4, *SHAPE, dtype=torch.float64) * 1.5
    w0 = torch.tensor([0.5, -0.2, -1.0], dtype=torch.float64).view(3, 1, 1)
    th0 = torch.tensor([0.8, 1.0, 1.2], dtype=torch.float64).view(3, 1, 1)
    m = snn.ParametricLIF(w=nn.Parameter(w0.clone()), v_threshold=nn.Parameter(th0.clone()), fused=fused,
                          step_mode="m").double()
    assert m.learnable == ("v_threshold", "w")
    weights = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).view_as(x)
    y = m(x)
    ((y * weights).sum() + m.v.sum() * 0.1).backward()
    w, th = w0.clone().requires_grad_(), th0.clone().requires_grad_()
    ry, rv = _plif_loop(x, w, th)
    ((ry * weights).sum() + rv.sum() * 0.1).backward()
    assert torch.equal(y.detach(), ry.detach()) and 0.05 < y.mean() < 0.9
    assert m.w.grad.shape == (3, 1, 1) and m.v_threshold.grad.shape == (3, 1, 1)
    torch.testing.assert_close(m.w.grad, w.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.v_threshold.grad, th.grad, rtol=1e-10, atol=1e-12)


def test_per_channel_parameters_train_through_the_fused_kernel():
    """float32: fused gradients equal the reference's to 1e-5, and SGD on per-channel firing-rate
    targets moves each channel's threshold its own way."""
    torch.manual_seed(1)
    x = torch.rand(12, 8, *SHAPE) * 2
    target = torch.tensor([0.1, 0.3, 0.6]).view(3, 1, 1).expand(SHAPE)

    def make(fused=True):
        return snn.ParametricLIF(init_tau=torch.tensor([2.0, 3.0, 5.0]).view(3, 1, 1),
                                 v_threshold=nn.Parameter(torch.ones(3, 1, 1)), fused=fused, step_mode="m")

    grads = []
    for fused in (False, True):
        m = make(fused)
        ((m(x) - 0.3) ** 2).mean().backward()
        grads.append((m.w.grad.clone(), m.v_threshold.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    m = make()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    losses = []
    for _ in range(12):
        snn.reset(m)
        loss = ((m(x).mean((0, 1)) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    th = m.v_threshold.detach().flatten()
    assert th[0] > 1.0 > th[1] > th[2]  # a low target rate raises the threshold, a high one lowers it


def test_graph_file_compile_and_onnx_round_trip(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    del ort
    from snnir.backends.onnx import StreamingSession

    torch.manual_seed(0)
    lif = snn.LIF(tau=torch.tensor([2.0, 3.0, 4.0]).view(3, 1, 1), v_threshold=nn.Parameter(torch.full(SHAPE, 0.9)),
                  v_reset=None, step_mode="m")
    net = snn.set_step_mode(nn.Sequential(lif, snn.CubaLIF(tau_mem=torch.tensor(PER_NEURON_TAU, dtype=torch.float32))),
                            "m")
    xs = torch.rand(20, 2, *SHAPE) * 2
    with torch.no_grad():
        ref = net(xs)
    snn.reset(net)
    g = snnir.trace(net, xs)
    first, second = (n for n in g if n.op == "neuron")
    assert "tau" not in first.attrs and first.params["tau"].shape == (3, 1, 1)
    assert list(first.attrs["learnable"]) == ["v_threshold"] and first.attrs["v_reset"] is None
    assert second.params["tau_mem"].shape == SHAPE and second.attrs["tau_syn"] == 2.0
    path = tmp_path / "n.snnir"
    snnir.save(g, path)
    loaded = snnir.load(path)
    snnir.save(loaded, tmp_path / "again.snnir")
    assert path.read_bytes() == (tmp_path / "again.snnir").read_bytes()
    module = snnir.compile(loaded)
    assert isinstance(module.neurons()[first.id].v_threshold, nn.Parameter)
    assert not isinstance(module.neurons()[first.id].tau, nn.Parameter)
    with torch.no_grad():
        assert torch.equal(module(xs), ref)
    snnir.export(loaded, tmp_path / "n.onnx", format="onnx")
    session = StreamingSession(tmp_path / "n.onnx")
    out = np.stack([session(x) for x in xs.numpy()])
    np.testing.assert_array_equal(out, ref.numpy())
    assert ref.sum() > 10


def test_integrator_per_neuron_tau_and_leak(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    from snnir.backends.onnx import StreamingSession

    tau, leak = np.array([2.0, 4.0, 8.0], np.float32), np.array([0.0, 0.5, -0.5], np.float32)
    g = snnir.Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("integrator", [x], attrs={"model": "LIF", "decay_input": False},
                           params={"tau": tau, "v_reset": leak}, id="li"))
    xs = np.random.default_rng(0).uniform(-1, 1, (10, 2, 3))
    module = snnir.compile(g).double()
    with torch.no_grad():
        out = module(torch.from_numpy(xs)).numpy()
    v, ref = np.broadcast_to(leak.astype(np.float64), (2, 3)).copy(), []
    for xt in xs:  # v = v - (v - v_leak) / tau + x, starting at v_leak
        v = v - (v - leak.astype(np.float64)) / tau.astype(np.float64) + xt
        ref.append(v)
    np.testing.assert_allclose(out, np.stack(ref), rtol=0, atol=1e-12)
    snnir.export(g, tmp_path / "li.onnx", format="onnx")
    session = StreamingSession(tmp_path / "li.onnx")
    onnx_out = np.stack([session(xt) for xt in xs.astype(np.float32)])
    np.testing.assert_allclose(onnx_out, np.stack(ref), rtol=1e-5, atol=1e-5)


def test_bad_parameter_arrays_are_named():
    with pytest.raises(ValueError, match="LIF: parameter 'tau' has NaN"):
        snn.LIF(tau=torch.tensor([2.0, float("nan")]))
    lif = snn.LIF(tau=torch.ones(5) * 2, step_mode="m")
    with pytest.raises(ValueError, match=r"LIF: parameter 'tau' of shape \(5,\) does not broadcast .* \(3, 2, 2\)"):
        lif(torch.rand(4, 1, *SHAPE))
    with pytest.raises(ValueError, match="does not broadcast"):  # never over the batch
        snn.LIF(v_threshold=torch.ones(2, *SHAPE), step_mode="m")(torch.rand(4, 2, *SHAPE))

    def graph(params, attrs=None):
        g = snnir.Graph()
        x = g.add_input(SHAPE)
        g.add_output(g.add_node("neuron", [x], attrs={"model": "LIF", **(attrs or {})}, params=params, id="n1"))
        return g

    with pytest.raises(ShapeError, match=r"node 'n1'.*'tau' of shape \(5,\) does not broadcast"):
        graph({"tau": np.ones(5)}).validate()
    with pytest.raises(GraphError, match="node 'n1'.*param 'tau' has NaN"):
        graph({"tau": np.array([2.0, np.nan, 2.0]).reshape(3, 1, 1)})
    with pytest.raises(GraphError, match="node 'n1'.*no parameter 'tau_m'"):
        graph({"tau_m": np.ones(3)}).validate()
    with pytest.raises(GraphError, match=r"node 'n1'.*\['tau'\] given both"):
        graph({"tau": np.ones((3, 1, 1))}, {"tau": 2.0})
    # a loaded file is checked as well: NaN smuggled into the arrays
    structure, arrays = graph({"tau": np.full((3, 1, 1), 2.0)}).to_dict()
    arrays["n1.tau"] = np.array([2.0, np.nan, 2.0]).reshape(3, 1, 1)
    with pytest.raises(GraphError, match="node 'n1'.*'tau' has NaN"):
        snnir.Graph.from_dict(structure, arrays).validate()


def test_per_neuron_tau_exports_to_nir_and_loihi_refuses_it_by_name(tmp_path):
    """NIR holds one value per neuron (written as such); Loihi has one decay per layer (refused)."""
    nir = pytest.importorskip("nir", reason="nir is a test dependency")
    g = snnir.Graph()
    x = g.add_input((3,))
    lin = g.add_node("linear", [x], params={"weight": np.eye(3, dtype=np.float32)})
    g.add_output(g.add_node("neuron", [lin], attrs={"model": "LIF"}, params={"tau": np.array([2.0, 3.0, 4.0])},
                            id="lif1"))
    snnir.export(g, tmp_path / "m.nir", format="nir", dt=1e-4)
    np.testing.assert_allclose(nir.read(str(tmp_path / "m.nir")).nodes["lif1"].tau, [2e-4, 3e-4, 4e-4])
    with pytest.raises(snnir.errors.LoihiMappingError, match=r"lif1.*differs across neurons"):
        snnir.export(g, tmp_path / "m.h5", format="lava")

"""Each neuron against an independent float64 loop of its textbook equation.

The reference loops below are written from the equations in the models' documentation, in
numpy, without using snnir's expressions.
"""

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.errors import GraphError


def run(module: snn.Neuron, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-step run in float64; returns spikes and the post-reset voltage trace."""
    module = module.double()
    module.step_mode = "m"
    module.store_v_seq = True
    s = module(torch.from_numpy(x)).detach().numpy()
    return s, module.v_seq.detach().numpy()


def hard_or_soft(h, v_th, v_reset):
    s = (h >= v_th).astype(np.float64)
    v = np.where(s > 0, v_reset, h) if v_reset is not None else h - s * v_th
    return s, v


def ref_loop(x, charge, v_th, v_reset, extra_state=None, on_spike=None):
    v = np.full(x.shape[1:], 0.0 if v_reset is None else v_reset)
    state = dict(extra_state or {})
    spikes, vs = [], []
    for xt in x:
        h, state = charge(v, xt, state)
        s, v = hard_or_soft(h, v_th, v_reset)
        if on_spike:
            state = on_spike(state, s)
        spikes.append(s)
        vs.append(v)
    return np.stack(spikes), np.stack(vs)


RESETS = [0.0, -0.2, None]


@pytest.mark.parametrize("v_reset", RESETS)
def test_if(rng, v_reset):
    x = rng.uniform(-0.5, 1.0, (40, 3, 7))
    s, v = run(snn.IF(v_threshold=1.0, v_reset=v_reset), x)
    rs, rv = ref_loop(x, lambda v, xt, st: (v + xt, st), 1.0, v_reset)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)
    assert s.sum() > 10


@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("decay_input", [True, False])
def test_lif(rng, v_reset, decay_input):
    tau, vr = 3.0, (v_reset or 0.0)
    x = rng.uniform(-0.5, 2.5 if decay_input else 0.8, (50, 4, 5))

    def charge(v, xt, st):  # tau dv/dt = -(v - v_reset) + x, forward Euler
        if decay_input:
            return v + (xt - (v - vr)) / tau, st
        return v - (v - vr) / tau + xt, st

    s, v = run(snn.LIF(tau=tau, v_reset=v_reset, decay_input=decay_input), x)
    rs, rv = ref_loop(x, charge, 1.0, v_reset)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)
    assert 0 < s.mean() < 1


@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("decay_input", [True, False])
def test_parametric_lif(rng, v_reset, decay_input):
    init_tau, vr = 4.0, (v_reset or 0.0)
    m = snn.ParametricLIF(init_tau=init_tau, v_reset=v_reset, decay_input=decay_input)
    assert abs(m.tau.item() - init_tau) < 1e-6  # 1/tau = sigmoid(w), w = -log(init_tau - 1)
    w = m.w.item()  # the float32 parameter, as float64
    k = 1.0 / (1.0 + np.exp(-w))
    x = rng.uniform(-0.5, 2.5, (50, 6))

    def charge(v, xt, st):
        if decay_input:
            return v + (xt - (v - vr)) * k, st
        return v - (v - vr) * k + xt, st

    s, v = run(m, x)
    rs, rv = ref_loop(x, charge, 1.0, v_reset)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)


def test_parametric_lif_tau_is_learned(rng):
    m = snn.ParametricLIF(init_tau=2.0, step_mode="m")
    x = torch.from_numpy(rng.uniform(0, 1.5, (10, 4, 3)).astype(np.float32))
    m(x).sum().backward()
    assert m.w.grad is not None and m.w.grad.abs().item() > 0


@pytest.mark.parametrize("v_reset", [-0.1, None])
def test_qif(rng, v_reset):
    tau, v_c, a0, v_rest = 2.0, 0.8, 1.0, 0.0
    x = rng.uniform(-0.2, 0.8, (40, 5))

    def charge(v, xt, st):  # tau dv/dt = a0 (v - v_rest)(v - v_c) + x
        return v + (xt + a0 * (v - v_rest) * (v - v_c)) / tau, st

    s, v = run(snn.QIF(v_reset=v_reset), x)
    rs, rv = ref_loop(x, charge, 1.0, v_reset)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)
    assert s.sum() > 0


@pytest.mark.parametrize("v_reset", [-0.1, None])
def test_eif(rng, v_reset):
    tau, delta_t, theta_rh, v_rest = 2.0, 1.0, 0.8, 0.0
    x = rng.uniform(-0.2, 1.0, (40, 5))

    def charge(v, xt, st):  # tau dv/dt = -(v - v_rest) + delta_T exp((v - theta_rh)/delta_T) + x
        return v + (xt - (v - v_rest) + delta_t * np.exp((v - theta_rh) / delta_t)) / tau, st

    s, v = run(snn.EIF(v_reset=v_reset), x)
    rs, rv = ref_loop(x, charge, 1.0, v_reset)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, rtol=0, atol=1e-12)
    assert s.sum() > 0


def test_izhikevich_regular_spiking():
    # Izhikevich 2003: v' = 0.04v^2 + 5v + 140 - u + I, u' = a(bv - u); v >= 30 -> v = c, u += d
    a, b, c, d, dt = 0.02, 0.2, -65.0, 8.0, 0.5
    x = np.full((400, 1, 3), 10.0)
    x[:, 0, 1] = 5.0
    x[:, 0, 2] = 0.0
    v, u = np.full(3, c), np.full(3, b * c)
    ref_s, ref_v = [], []
    for xt in x[:, 0]:
        v = v + dt * (0.04 * v**2 + 5 * v + 140 - u + xt)
        u = u + dt * a * (b * v - u)
        s = (v >= 30.0).astype(float)
        v = np.where(s > 0, c, v)
        u = u + d * s
        ref_s.append(s)
        ref_v.append(v)
    s, vs = run(snn.Izhikevich(dt=dt), x)
    np.testing.assert_array_equal(s[:, 0], np.stack(ref_s))
    np.testing.assert_allclose(vs[:, 0], np.stack(ref_v), rtol=1e-12, atol=1e-9)
    assert s[:, 0, 0].sum() > s[:, 0, 1].sum() > 0 and s[:, 0, 2].sum() == 0  # tonic spiking scales with I


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_cuba_lif(rng, v_reset):
    tau_syn, tau_mem = 4.0, 2.0
    x = rng.uniform(-0.3, 0.6, (50, 8))
    i = np.zeros(8)
    v = np.zeros(8)
    ref_s, ref_v = [], []
    for xt in x:  # Loihi CUBA: i <- i (1 - 1/tau_syn) + x ; v <- v (1 - 1/tau_mem) + i
        i = i - i / tau_syn + xt
        v = v - v / tau_mem + i
        s, v = hard_or_soft(v, 1.0, v_reset)
        ref_s.append(s)
        ref_v.append(v)
    m = snn.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, v_reset=v_reset)
    s, vs = run(m, x)
    np.testing.assert_array_equal(s, np.stack(ref_s))
    np.testing.assert_allclose(vs, np.stack(ref_v), rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.i.numpy(), i, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_adaptive_lif(rng, v_reset):
    tau, tau_w, a, b = 2.0, 10.0, 0.3, 0.5
    vr = v_reset or 0.0
    x = rng.uniform(0.0, 2.0, (60, 6))
    v, w = np.full(6, vr), np.zeros(6)
    ref_s, ref_w = [], []
    for xt in x:
        v = v + (xt - (v - vr) - w) / tau
        w = w + (a * (v - vr) - w) / tau_w
        s, v = hard_or_soft(v, 1.0, v_reset)
        w = w + b * s
        ref_s.append(s)
        ref_w.append(w)
    m = snn.AdaptiveLIF(tau=tau, tau_w=tau_w, a=a, b=b, v_reset=v_reset)
    s, _ = run(m, x)
    np.testing.assert_array_equal(s, np.stack(ref_s))
    np.testing.assert_allclose(m.w.numpy(), ref_w[-1], atol=1e-12)
    # adaptation lowers the rate relative to the same LIF
    s_lif, _ = run(snn.LIF(tau=tau, v_reset=v_reset), x)
    assert s.sum() < s_lif.sum()


@pytest.mark.parametrize("cls", [snn.IF, snn.LIF, snn.ParametricLIF, snn.QIF, snn.EIF, snn.CubaLIF, snn.AdaptiveLIF])
def test_single_and_multi_step_agree(rng, cls):
    x = torch.from_numpy(rng.uniform(-0.2, 1.5, (12, 3, 4)).astype(np.float32))
    m = cls(step_mode="m")
    y_m = m(x)
    v_m = m.v.clone()
    snn.reset(m)
    m.step_mode = "s"
    y_s = torch.stack([m(xt) for xt in x])
    assert torch.equal(y_m, y_s)
    assert torch.equal(m.v, v_m)


def test_reset_and_shape_change_error():
    m = snn.LIF()
    m(torch.ones(2, 3))
    assert m.v is not None
    with pytest.raises(ValueError, match="snn.reset"):
        m(torch.ones(4, 3))
    snn.reset(m)
    assert m.v is None
    assert m(torch.ones(4, 3)).shape == (4, 3)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_reset_changes_only_gradients(rng, detach):
    x = torch.from_numpy(rng.uniform(0, 1.5, (20, 2, 5))).requires_grad_()
    grads = {}
    for d in (False, True):
        m = snn.LIF(detach_reset=d, step_mode="m").double()
        y = m(x)
        (g,) = torch.autograd.grad((y * torch.arange(20.0, dtype=torch.float64).view(20, 1, 1)).sum(), x)
        grads[d] = (y.detach(), g)
    assert torch.equal(grads[False][0], grads[True][0])
    assert not torch.allclose(grads[False][1], grads[True][1])


def test_gradient_matches_hand_written_bptt(rng):
    # LIF, hard reset, ATan surrogate: d out / d x through time, against a manual autograd-free loop
    tau, alpha = 2.0, 2.0
    x = rng.uniform(0, 1.5, (6, 3))
    m = snn.LIF(tau=tau, surrogate=snn.surrogate.ATan(alpha=alpha), step_mode="m").double()
    xt = torch.from_numpy(x).requires_grad_()
    m(xt).sum().backward()

    def sg(z):
        return alpha / 2 / (1 + (np.pi / 2 * alpha * z) ** 2)

    hs, ss = [], []
    v = np.zeros(3)
    for t in range(6):
        h = v + (x[t] - v) / tau
        s = (h >= 1).astype(float)
        v = (1 - s) * h
        hs.append(h)
        ss.append(s)
    # backward: dL/dv_t flows to h_t; v_t = (1 - s_t) h_t ; s_t = H(h_t - 1)
    grad_x, dv = np.zeros_like(x), np.zeros(3)
    for t in reversed(range(6)):
        ds = 1.0 + dv * (-hs[t])  # loss term + through the reset
        dh = ds * sg(hs[t] - 1) + dv * (1 - ss[t])
        grad_x[t] = dh / tau
        dv = dh * (1 - 1 / tau)
    np.testing.assert_allclose(xt.grad.numpy(), grad_x, rtol=1e-10)


class LeakyQuadratic(snnir.NeuronModel):
    """v <- v + (x - v + beta v^2) / tau  (a user-defined model)."""

    params = {"tau": 4.0, "beta": 0.1}

    def charge(self, s, **options):
        return {"v": s.v + (s.x - s.v + s.beta * s.v**2) / s.tau}


def test_user_defined_neuron_works_everywhere(rng, tmp_path):
    x = rng.uniform(0, 1.2, (30, 2, 4))
    m = snn.Neuron(LeakyQuadratic(), tau=3.0, beta=0.2, v_threshold=0.9)
    s, v = run(m, x)
    rs, rv = ref_loop(x, lambda v, xt, st: (v + (xt - v + 0.2 * v**2) / 3.0, st), 0.9, 0.0)
    np.testing.assert_array_equal(s, rs)
    np.testing.assert_allclose(v, rv, atol=1e-12)
    # the module class, trace, save/load and compile work with no more code
    Cls = snn.neuron_class(LeakyQuadratic)
    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(4, 3), Cls(beta=0.3)), "m")
    xs = torch.rand(5, 2, 4)
    g = snnir.trace(net, xs)
    assert g.node("_1").attrs["model"] == "LeakyQuadratic" and g.node("_1").attrs["beta"] == 0.3
    snnir.save(g, tmp_path / "q.snnir")
    out = snnir.compile(snnir.load(tmp_path / "q.snnir"))(xs)
    snn.reset(net)
    assert torch.equal(out, net(xs))


def test_redefined_model_class_is_recompiled():
    def define(gain):
        class Redefined(snnir.NeuronModel):
            def charge(self, s, **options):
                return {"v": s.v + gain * s.x}
        return Redefined

    first = snn.Neuron(define(1.0)(), v_threshold=1.5)(torch.ones(1)).item()
    second = snn.Neuron(define(2.0)(), v_threshold=1.5)(torch.ones(1)).item()
    assert (first, second) == (0.0, 1.0)


def test_bad_neuron_arguments():
    with pytest.raises(TypeError, match="unknown arguments.*taux"):
        snn.LIF(taux=2.0)
    with pytest.raises(ValueError, match="step_mode"):
        snn.LIF(step_mode="x")
    with pytest.raises(TypeError, match="surrogate"):
        snn.LIF(surrogate=torch.sigmoid)
    with pytest.raises(ValueError, match="init_tau > 1"):
        snn.ParametricLIF(init_tau=0.5)
    with pytest.raises(GraphError, match="unknown neuron model 'Nope'"):
        snnir.neurons.get_model("Nope")


def test_model_declaration_errors():
    with pytest.raises(TypeError, match="state variable 'v'"):
        class NoV(snnir.NeuronModel):
            state = {"u": 0.0}

    class AssignsUnknown(snnir.NeuronModel):
        def charge(self, s, **options):
            return {"q": s.v + s.x}

    with pytest.raises(GraphError, match="assigns 'q'"):
        AssignsUnknown().equations()

"""Recurrence: Recurrent / SynapseFilter / Delay against hand-written loops, traced into graph
cycles, scheduled step by step, and compiled back to the same outputs."""

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir import nn as snn


def lif_loop(x, w_rec=None, tau=2.0):
    """Hand-written recurrent LIF: v <- v + (x_t + W s_{t-1} - v) / tau, hard reset to 0."""
    T, N, F = x.shape
    v, s = np.zeros((N, F)), np.zeros((N, F))
    out = []
    for t in range(T):
        inp = x[t] + (s @ w_rec.T if w_rec is not None else s)
        h = v + (inp - v) / tau
        s = (h >= 1.0).astype(float)
        v = h * (1 - s)
        out.append(s)
    return np.stack(out)


@pytest.mark.parametrize("linear", [False, True])
def test_recurrent_against_hand_loop(linear):
    torch.manual_seed(0)
    x = torch.rand(20, 3, 6, dtype=torch.float64) * 1.2
    conn = snn.Linear(6, 6, bias=False).double() if linear else None
    rnn = snn.Recurrent(snn.LIF(), conn, step_mode="m").double()
    y = rnn(x).detach().numpy()
    ref = lif_loop(x.numpy(), conn.weight.detach().numpy() if linear else None)
    np.testing.assert_array_equal(y, ref)
    assert 0 < y.mean() < 1
    # single-step mode gives the same sequence
    snn.reset(rnn)
    rnn.step_mode = "s"
    assert np.array_equal(torch.stack([rnn(xt) for xt in x]).detach().numpy(), ref)


def test_synapse_filter_and_delay_against_formulas():
    x = torch.rand(9, 2, 3)
    f = snn.SynapseFilter(tau=4.0, step_mode="m")
    i, ref = torch.zeros(2, 3), []
    for xt in x:
        i = i - i / 4.0 + xt
        ref.append(i)
    torch.testing.assert_close(f(x), torch.stack(ref))
    d = snn.Delay(3, step_mode="m")
    y = torch.cat([d(x[:4]), d(x[4:])])  # the buffer carries across calls
    torch.testing.assert_close(y, torch.cat([torch.zeros(3, 2, 3), x[:-3]]))
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        snn.Delay(0)
    with pytest.raises(ValueError, match="tau must be >= 1"):
        snn.SynapseFilter(0.5)


class RecurrentNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = snn.Linear(5, 8)
        self.rnn = snn.Recurrent(snn.LIF(tau=3.0), snn.Linear(8, 8, bias=False))
        self.syn = snn.SynapseFilter(tau=2.0)
        self.delay = snn.Delay(2)
        self.out = snn.Linear(8, 3)
        self.lif = snn.LIF()

    def forward(self, x):
        return self.lif(self.out(self.delay(self.syn(self.rnn(self.fc(x))))))


@pytest.mark.parametrize("mode", ["m", "s"])
def test_traced_recurrent_net_is_a_cycle_and_compiles_to_the_same_outputs(mode, tmp_path):
    torch.manual_seed(0)
    net = snn.set_step_mode(RecurrentNet(), mode)
    with torch.no_grad():
        net.fc.weight.mul_(4)
        net.out.weight.mul_(10)
    x = torch.rand(12, 4, 5) * 2
    y = net(x) if mode == "m" else torch.stack([net(xt) for xt in x])
    g = snnir.trace(net, x)
    (src, dst), = g.recurrent_edges()  # exactly one edge closes the loop
    assert g.node(dst).op == "add" and g.node(src).op == "linear"
    h = snnir.optimize(g, check=True)
    regions = h.meta["schedule"]["regions"]
    assert [r["mode"] for r in regions] == ["sequence", "step", "sequence"]
    assert sorted(g.node(n).op for n in regions[1]["nodes"]) == ["add", "linear", "neuron"]
    snnir.save(h, tmp_path / "rnn.snnir")
    m = snnir.compile(snnir.load(tmp_path / "rnn.snnir"), step_mode=mode)
    out = m(x) if mode == "m" else torch.stack([m(xt) for xt in x])
    assert torch.equal(out, y)
    assert 0 < y.mean() < 1


def test_recurrent_gradients_match_eager():
    torch.manual_seed(1)
    net = snn.set_step_mode(RecurrentNet(), "m")
    x = torch.rand(8, 2, 5) * 3
    g = snnir.trace(net, x)
    m = snnir.compile(g)
    grads = []
    for model in (net, m):
        snn.reset(model)
        xi = x.clone().requires_grad_()
        model(xi).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)


def test_inspect_and_render(tmp_path, capsys):
    net = snn.set_step_mode(RecurrentNet(), "m")
    g = snnir.optimize(snnir.trace(net, torch.rand(3, 1, 5)))
    text = snnir.inspect(g)
    assert "step" in text and "rnn_in" in text and "*" in text and capsys.readouterr().out.strip() == text
    dot = g.render(tmp_path / "g.dot").read_text()
    assert dot.startswith('digraph "RecurrentNet"') and "style=dashed" in dot
    for suffix in ("svg", "png"):
        path = g.render(tmp_path / f"g.{suffix}")
        assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match=".dot, .svg or .png"):
        g.render(tmp_path / "g.pdf")

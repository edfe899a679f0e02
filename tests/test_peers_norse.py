"""Norse 1.1 cells traced by ``snnir.trace``: identical outputs, gradients to float rounding.

Norse's cells are single-step modules returning ``(z, state)``; the reference loops over time and
threads the state. snnir's models take Norse's ``dt * tau_inv`` products and fire at ``v > v_th``.
"""

from __future__ import annotations

import pytest
import torch
from peer_agreement import assert_close_grads, assert_same_spikes, run_both

import snnir
from snnir import TraceError

norse = pytest.importorskip("norse.torch", reason="Norse is a test reference (pip install --no-deps norse==1.1.0)")
from norse.torch.functional.reset import reset_subtract  # noqa: E402


def _run_norse(net, x):
    state, out = None, []
    for xt in x.unbind(0):
        y, state = net(xt, state)
        out.append(y)
    return torch.stack(out)


def _seq(*cells, sizes=(6, 8, 7, 6, 5, 4), gain=12.0):
    torch.manual_seed(8)
    layers = []
    for i, cell in enumerate(cells):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), cell]
    net = norse.SequentialState(*layers)
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(gain)
    return net


SPIKING = {
    "LIFCell": lambda: norse.LIFCell(),
    "LIFCell-params": lambda: norse.LIFCell(norse.LIFParameters(tau_syn_inv=torch.tensor(150.0),
                                                                tau_mem_inv=torch.tensor(80.0),
                                                                v_leak=torch.tensor(0.1), v_th=torch.tensor(0.6),
                                                                v_reset=torch.tensor(-0.1)), dt=2e-3),
    "LIFBoxCell": lambda: norse.LIFBoxCell(),
    "LIFBoxCell-subtract": lambda: norse.LIFBoxCell(norse.LIFBoxParameters(reset_method=reset_subtract)),
    "IAFCell": lambda: norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(0.8))),
    "LIFCell-per-neuron": lambda: norse.LIFCell(norse.LIFParameters(tau_mem_inv=torch.linspace(50.0, 150.0, 8),
                                                                    v_th=torch.linspace(0.5, 1.5, 8))),
}


@pytest.mark.parametrize("name", sorted(SPIKING))
def test_spiking_cells(name):
    net = _seq(SPIKING[name](), gain=12.0 if "IAF" not in name else 1.0)
    y_peer, y, g_peer, g, compiled = run_both(net, torch.rand(30, 4, 6), _run_norse, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)


def test_heaviside_threshold_passes_no_gradient():
    """Norse's ``method="heaviside"`` has no gradient; snnir's surrogate passes zeros."""
    net = _seq(norse.LIFCell(norse.LIFParameters(method="heaviside")))
    compiled = snnir.compile(snnir.trace(net, torch.rand(2, 1, 6)), step_mode="s")
    x = torch.rand(30, 4, 6, requires_grad=True)
    y = torch.stack([compiled(xt) for xt in x.unbind(0)])
    y.sum().backward()
    with torch.no_grad():
        assert_same_spikes(_run_norse(net, x), y.detach())
    assert torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("name", ["LICell", "LIBoxCell"])
def test_leaky_integrators(name):
    per_neuron = {"tau_mem_inv": torch.linspace(50.0, 150.0, 7), "v_leak": torch.linspace(-0.1, 0.1, 7)}
    p = (norse.LIParameters if name == "LICell" else norse.LIBoxParameters)(**per_neuron)
    net = _seq(norse.LIFCell(), getattr(norse, name)(p))
    y_peer, y, g_peer, g, compiled = run_both(net, torch.rand(30, 4, 6), _run_norse, fused=False, step_mode="s")
    assert torch.equal(y, y_peer) and y.abs().max() > 0
    assert_close_grads(g, g_peer)
    assert [n.op for n in snnir.trace(net, torch.rand(2, 1, 6))][-2] == "integrator"


def test_fused_kernels_multi_step():
    """The compiled default: fused kernels, the whole sequence per call (time folded for Linear)."""
    net = _seq(norse.LIFCell(), norse.LIFBoxCell(), norse.IAFCell(), norse.LICell(), gain=10.0)
    y_peer, y, g_peer, g, _ = run_both(net, torch.rand(30, 4, 6), _run_norse)
    torch.testing.assert_close(y, y_peer, rtol=1e-5, atol=1e-6)  # a [T*N] GEMM may round differently
    assert_close_grads(g, g_peer, rtol=1e-4)


class CellsInForward(torch.nn.Module):
    """Norse cells called in a module's own forward, taking the spikes of ``(z, state)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.lif = torch.nn.Linear(6, 8), norse.LIFBoxCell()
        self.fc2, self.out = torch.nn.Linear(8, 3), norse.LICell()

    def forward(self, x):
        z, _ = self.lif(self.fc1(x))
        v, _ = self.out(self.fc2(z))
        return v


def test_cells_in_a_custom_forward():
    torch.manual_seed(9)
    net = CellsInForward()
    with torch.no_grad():
        net.fc1.weight.mul_(12)
    compiled = snnir.compile(snnir.trace(net, torch.rand(2, 1, 6)), step_mode="s")
    x = torch.rand(20, 3, 6)
    states, ref = [None, None], []
    for xt in x:  # the Norse way: thread each cell's state by hand
        z, states[0] = net.lif(net.fc1(xt), states[0])
        v, states[1] = net.out(net.fc2(z), states[1])
        ref.append(v)
    assert torch.equal(torch.stack([compiled(xt) for xt in x]), torch.stack(ref))


@pytest.mark.parametrize("cell,match", [
    (lambda: norse.LIFCell(norse.LIFParameters(method="tanh")), r"p.method='tanh' has no snnir equivalent"),
    (lambda: norse.LIFCell(norse.LIFParameters(v_th=torch.tensor(1.0, dtype=torch.float64))),
     r"p.v_th.dtype=torch.float64 has no snnir equivalent"),
    (lambda: norse.LIFAdExCell(), r"LIFAdExCell\): no snnir equivalent\. Norse modules snnir maps: IAF, IAFCell"),
])
def test_unmappable_cells_are_named(cell, match):
    with pytest.raises(TraceError, match=r"module '1' \(norse\..*" + match):
        snnir.trace(torch.nn.Sequential(torch.nn.Linear(6, 8), cell()), torch.rand(2, 3, 6))


def test_return_hidden_is_refused():
    net = norse.SequentialState(torch.nn.Linear(6, 4), norse.LIFCell(), return_hidden=True)
    with pytest.raises(TraceError, match="return_hidden=True has no snnir equivalent"):
        snnir.trace(net, torch.rand(2, 3, 6))


def test_sequence_modules():
    """Norse's LIF, IAF and LI modules process whole sequences, like a multi-step snnir model."""
    torch.manual_seed(10)
    net = norse.SequentialState(torch.nn.Linear(6, 8), norse.LIF(), torch.nn.Linear(8, 6), norse.IAF(),
                                torch.nn.Linear(6, 3), norse.LI())
    with torch.no_grad():
        net[0].weight.mul_(12)
        net[2].weight.mul_(2)
    x = torch.rand(30, 4, 6)
    y_peer, y, g_peer, g, _ = run_both(net, x, lambda n, xs: n(xs)[0], fused=False)
    assert torch.equal(y, y_peer) and y.abs().max() > 0
    assert_close_grads(g, g_peer)

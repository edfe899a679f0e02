"""LIF / IF / ParametricLIF against SpikingJelly's LIFNode / IFNode / ParametricLIFNode.

SpikingJelly is installed in the test environment with ``--no-deps`` (see README); the tests skip
with that instruction if it is missing. Spike trains must be identical; voltages and input
gradients equal to float32 rounding (SpikingJelly's ATan backward groups its constants
differently).
"""

import pytest
import torch

from snnir import nn as snn

sj = pytest.importorskip("spikingjelly.activation_based.neuron",
                         reason="SpikingJelly not installed: pip install --no-deps spikingjelly loguru")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

CASES = []
for v_reset in (0.0, -0.3, None):
    CASES.append(("IF", {"v_threshold": 1.0, "v_reset": v_reset}))
    for decay_input in (True, False):
        CASES.append(("LIF", {"tau": 3.0, "decay_input": decay_input, "v_reset": v_reset}))
        CASES.append(("PLIF", {"init_tau": 2.5, "decay_input": decay_input, "v_reset": v_reset}))


def make_pair(kind: str, kwargs: dict, detach_reset: bool):
    kw_sj = dict(kwargs, detach_reset=detach_reset, step_mode="m", store_v_seq=True,
                 surrogate_function=sj_surrogate.ATan(alpha=2.0))
    kw_ours = dict(kwargs, detach_reset=detach_reset, step_mode="m", store_v_seq=True,
                   surrogate=snn.surrogate.ATan(alpha=2.0))
    if kind == "IF":
        return sj.IFNode(**kw_sj), snn.IF(**kw_ours)
    if kind == "LIF":
        return sj.LIFNode(**kw_sj), snn.LIF(**kw_ours)
    return sj.ParametricLIFNode(**kw_sj), snn.ParametricLIF(**kw_ours)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("kind,kwargs", CASES, ids=[f"{k}-{v}" for k, v in CASES])
def test_same_spikes_as_spikingjelly(kind, kwargs, detach_reset, training):
    torch.manual_seed(0)
    x = (torch.rand(32, 8, 16) * 2.4 - 0.4)
    theirs, ours = make_pair(kind, kwargs, detach_reset)
    theirs.train(training)
    ours.train(training)
    if kind == "PLIF":
        assert torch.equal(theirs.w.detach(), ours.w.detach())
    outs = []
    for m in (theirs, ours):
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * torch.linspace(0.1, 1.0, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), m.v_seq.detach(), xi.grad))
    (s_sj, v_sj, g_sj), (s, v, g) = outs
    assert torch.equal(s, s_sj), f"spike trains differ at {(s != s_sj).nonzero()[:5].tolist()}"
    assert 0.01 < s.mean() < 0.95  # the comparison covers both spiking and silent steps
    torch.testing.assert_close(v, v_sj, rtol=0, atol=1e-6)
    torch.testing.assert_close(g, g_sj, rtol=1e-5, atol=1e-6)
    if kind == "PLIF":
        torch.testing.assert_close(ours.w.grad, theirs.w.grad, rtol=1e-5, atol=1e-6)

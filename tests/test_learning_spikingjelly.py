"""STDP against SpikingJelly's ``STDPLearner``, step by step on the same spikes (linear and conv).

SpikingJelly's rule: traces ``tr <- tr - tr / tau + s`` (Euler), then
``dw = -f_pre(w) * sum(tr_post * s_pre) + f_post(w) * sum(tr_pre * s_post)`` summed over batch and
positions. snnir's ``STDP`` is that rule with ``f_post(w) = a_plus`` (``* (w_max - w)`` when
multiplicative) and ``f_pre(w) = a_minus`` (``* (w - w_min)``). Both networks run the same neuron
(SpikingJelly's ``IFNode`` and ``snn.IF`` agree bit for bit), so they see the same spikes; after each
step snnir's weight is set to SpikingJelly's, so every step compares the two rules from one state.
"""

import importlib
import sys
import types

import pytest
import torch

from snnir import nn as snn
from snnir.learning import STDP, Learner

pytest.importorskip("spikingjelly.activation_based.neuron",
                    reason="SpikingJelly not installed: pip install --no-deps spikingjelly loguru")


def _import_learning():
    """SpikingJelly's learners import its monitor module, which imports ``torch.utils.tensorboard``
    for a GPU monitor the learners never use; without the ``tensorboard`` package (not a test
    dependency) that import fails, so a stand-in module serves the import and is removed after."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        stub = types.ModuleType("torch.utils.tensorboard")

        class SummaryWriter:  # noqa: D401 - only the name is imported
            def __init__(self, *args, **kwargs):
                raise RuntimeError("tensorboard is not installed")

        stub.SummaryWriter = SummaryWriter
        sys.modules["torch.utils.tensorboard"] = stub
        try:
            return importlib.import_module("spikingjelly.activation_based.learning")
        finally:
            del sys.modules["torch.utils.tensorboard"]
    return importlib.import_module("spikingjelly.activation_based.learning")


sj_learning = _import_learning()
from spikingjelly.activation_based import functional as sj_functional  # noqa: E402
from spikingjelly.activation_based import layer as sj_layer  # noqa: E402
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402

A_PLUS, A_MINUS, W_MIN, W_MAX = 0.02, 0.015, -0.6, 0.9
SYNAPSES = {
    "linear": (lambda: sj_layer.Linear(12, 5, bias=False), lambda: snn.Linear(12, 5, bias=False), (12,)),
    "conv2d": (lambda: sj_layer.Conv2d(3, 4, 3, stride=2, padding=1, bias=False),
               lambda: snn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), (3, 9, 9)),
    "conv1d": (lambda: sj_layer.Conv1d(2, 3, 3, stride=1, padding=2, bias=False),
               lambda: snn.Conv1d(2, 3, 3, stride=1, padding=2, bias=False), (2, 11)),
}


def _f(multiplicative: bool):
    if multiplicative:
        return (lambda w: A_MINUS * (w - W_MIN)), (lambda w: A_PLUS * (W_MAX - w))
    return (lambda w: A_MINUS * torch.ones_like(w)), (lambda w: A_PLUS * torch.ones_like(w))


def _pair(kind: str, multiplicative: bool, dtype: torch.dtype, step_mode: str, backend: str):
    torch.manual_seed(3)
    make_theirs, make_ours, sample = SYNAPSES[kind]
    syn_sj, syn = make_theirs().to(dtype), make_ours().to(dtype)
    with torch.no_grad():
        syn_sj.weight.uniform_(0.0, 0.5)
        syn.weight.copy_(syn_sj.weight)
    sn_sj, sn = sj_neuron.IFNode(v_threshold=0.6, step_mode=step_mode), snn.IF(v_threshold=0.6)
    net_sj, net = torch.nn.Sequential(syn_sj, sn_sj), torch.nn.Sequential(syn, sn)
    if step_mode == "m":
        sj_functional.set_step_mode(net_sj, "m")
    snn.set_step_mode(net, step_mode)
    f_pre, f_post = _f(multiplicative)
    theirs = sj_learning.STDPLearner(step_mode, syn_sj, sn_sj, tau_pre=4.0, tau_post=6.0, f_pre=f_pre, f_post=f_post)
    rule = STDP(tau_pre=4.0, tau_post=6.0, a_plus=A_PLUS, a_minus=A_MINUS, multiplicative=multiplicative,
                **({"w_min": W_MIN, "w_max": W_MAX} if multiplicative else {}))
    ours = Learner(syn, rule, post=sn, backend=backend)
    return net_sj, net, theirs, ours, sample


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("multiplicative", [False, True])
@pytest.mark.parametrize("kind", list(SYNAPSES))
def test_stdp_step_by_step_equals_spikingjelly(kind, multiplicative, dtype, backend):
    net_sj, net, theirs, ours, sample = _pair(kind, multiplicative, dtype, "s", backend)
    torch.manual_seed(4)
    T, B = 16, 3
    x = (torch.rand(T, B, *sample) < 0.35).to(dtype)
    worst, post_spikes = 0.0, 0.0
    with torch.no_grad():
        for t in range(T):
            y_sj, y = net_sj(x[t]), net(x[t])
            assert torch.equal(y, y_sj), f"step {t}: post spikes differ"
            post_spikes += float(y.sum())
            dw_sj = theirs.step(on_grad=False)
            dw = ours.step()  # applies w <- w + dw (no bounds given for additive; within them otherwise)
            worst = max(worst, float((dw - dw_sj).abs().max()))
            scale = float(dw_sj.abs().max())
            # both sum B x positions products (in different orders): rounding of the sum, relative
            tol = (2e-5 if dtype == torch.float32 else 1e-13) * max(scale, 1e-2)
            torch.testing.assert_close(dw, dw_sj, rtol=0, atol=tol)
            net_sj[0].weight += dw_sj
            expected = net_sj[0].weight.clamp(W_MIN, W_MAX) if multiplicative else net_sj[0].weight  # snnir's bounds
            torch.testing.assert_close(net[0].weight, expected, rtol=0, atol=tol)
            net[0].weight.copy_(net_sj[0].weight)  # the next step starts from one state
    assert post_spikes > 0 and float(x.sum()) > 0, "the comparison must cover pre and post spikes"
    print(f"\nSTDP vs SpikingJelly {kind} multiplicative={multiplicative} {dtype} {backend}: "
          f"max |dw - dw_sj| per step = {worst:.3g}")


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_multi_step_fixed_weight_equals_spikingjelly(kind, backend):
    """SpikingJelly's multi-step learner sums a sequence's updates at a fixed weight: ``apply=False``."""
    net_sj, net, theirs, ours, sample = _pair(kind, True, torch.float64, "m", backend)
    torch.manual_seed(5)
    x = (torch.rand(30, 2, *sample) < 0.3).double()
    before = net[0].weight.detach().clone()
    with torch.no_grad():
        for chunk in (x[:12], x[12:]):  # two calls: traces carry over between them
            assert torch.equal(net_sj(chunk), net(chunk))
            dw_sj = theirs.step(on_grad=False)
            dw = ours.step(apply=False)
            torch.testing.assert_close(dw, dw_sj, rtol=0, atol=1e-12)
            assert float(dw_sj.abs().max()) > 0
    assert torch.equal(net[0].weight, before), "apply=False must not change the weight"

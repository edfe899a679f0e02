"""SpikingJelly 2.0 modules traced by ``snnir.trace``: identical spikes, gradients to float rounding.

Each case builds a small SpikingJelly network, traces and compiles it, and runs both on one input.
Broad parameter sweeps use snnir's per-step reference path; each neuron model also runs once through
the fused kernel that ``snnir.compile`` uses by default (a kernel build costs about a second).
"""

from __future__ import annotations

import pytest
import torch
from peer_agreement import assert_close_grads, assert_same_spikes, run_both

import snnir
from snnir import TraceError
from snnir import surrogate as S

sj = pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly is a test reference "
                         "(pip install --no-deps spikingjelly==2.0.0)")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402


def _run_sj(net, x):
    functional.reset_net(net)
    if isinstance(net, MultiStepNet) or net[-1].step_mode == "m":
        return net(x)
    return torch.stack([net(xt) for xt in x.unbind(0)])


def _net(node, step_mode="m", gain=2.5):
    torch.manual_seed(3)
    net = torch.nn.Sequential(layer.Linear(6, 8), node)
    with torch.no_grad():
        net[0].weight.mul_(gain)
    functional.set_step_mode(net, step_mode)
    return net


def _cuba(**kw):
    m = neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75, v_threshold=0.8, v_reset=kw["v_reset"],
                           surrogate_function=kw["surrogate_function"])
    m.detach_reset = kw["detach_reset"]
    return m


NODES = {
    "IF": lambda **kw: neuron.IFNode(**kw),
    "SimpleIF": lambda **kw: neuron.SimpleIFNode(**kw),
    "LIF": lambda **kw: neuron.LIFNode(tau=3.0, decay_input=True, **kw),
    "LIF-nodecay": lambda **kw: neuron.LIFNode(tau=3.0, decay_input=False, **kw),
    "PLIF": lambda **kw: neuron.ParametricLIFNode(init_tau=2.5, **kw),
    "PLIF-nodecay": lambda **kw: neuron.ParametricLIFNode(init_tau=2.5, decay_input=False, **kw),
    "QIF": lambda **kw: neuron.QIFNode(tau=2.0, v_c=0.8, a0=0.5, **kw),
    "EIF": lambda **kw: neuron.EIFNode(tau=2.0, delta_T=0.5, theta_rh=0.8, **kw),
    "Izhikevich": lambda **kw: neuron.IzhikevichNode(tau=2.0, a=0.1, b=0.2 * (not kw["detach_reset"]),
                                                     tau_w=3.0, **kw),
    "CUBALIF": _cuba,
}
RESETS = {"IF": (0.0, -0.3, None), "SimpleIF": (0.0, None), "QIF": (-0.1, None), "EIF": (-0.1, None)}
CASES = [(name, v_reset, detach) for name in NODES for v_reset in RESETS.get(name, (0.0, None))
         for detach in (False, True)]


@pytest.mark.parametrize("name,v_reset,detach_reset", CASES)
def test_neuron_sweep(name, v_reset, detach_reset):
    sg = surrogate.Sigmoid(alpha=3.0)
    net = _net(NODES[name](v_reset=v_reset, surrogate_function=sg, detach_reset=detach_reset))
    x = torch.rand(12, 4, 6)
    y_sj, y, g_sj, g, compiled = run_both(net, x, _run_sj, fused=False)
    assert_same_spikes(y_sj, y)
    assert_close_grads(g, g_sj)
    (ours,) = compiled.neurons().values()
    assert torch.equal(ours.v, net[1].v), "final voltage differs"
    if name.startswith("PLIF"):
        compiled_w = ours.w.grad
        torch.testing.assert_close(compiled_w, net[1].w.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(NODES))
def test_neuron_fused_kernel_single_and_multi_step(name):
    """The default compiled path (fused kernel), in SpikingJelly's multi-step and single-step modes."""
    for step_mode in ("m", "s"):
        node = NODES[name](v_reset=None if name == "LIF" else RESETS.get(name, (0.0,))[0],
                           surrogate_function=surrogate.ATan(), detach_reset=False)
        if name in ("CUBALIF", "SimpleIF"):
            node.step_mode = step_mode
        net = _net(node, step_mode)
        y_sj, y, g_sj, g, _ = run_both(net, torch.rand(10, 3, 6), _run_sj)
        assert_same_spikes(y_sj, y)
        assert_close_grads(g, g_sj)


SURROGATES = [surrogate.ATan(alpha=3.0), surrogate.Sigmoid(alpha=5.0), surrogate.PiecewiseQuadratic(alpha=1.5),
              surrogate.PiecewiseExp(alpha=2.0), surrogate.SoftSign(alpha=3.0), surrogate.SuperSpike(alpha=2.0),
              surrogate.Erf(alpha=1.5), surrogate.NonzeroSignLogAbs(alpha=2.0),
              surrogate.PiecewiseLeakyReLU(w=0.5, c=0.05), surrogate.S2NN(alpha=3.0, beta=0.5),
              surrogate.QPseudoSpike(alpha=3.0), surrogate.LeakyKReLU(leak=0.1, k=0.7), surrogate.Rect(alpha=0.8),
              surrogate.DeterministicPass()]


@pytest.mark.parametrize("sg", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_surrogates_give_the_same_gradients(sg):
    net = _net(neuron.LIFNode(tau=2.0, surrogate_function=sg))
    y_sj, y, g_sj, g, compiled = run_both(net, torch.rand(12, 4, 6), _run_sj, fused=False)
    assert_same_spikes(y_sj, y)
    assert_close_grads(g, g_sj)
    expected = "LeakyKReLU" if isinstance(sg, surrogate.DeterministicPass) else type(sg).__name__
    assert next(iter(compiled.neurons().values())).surrogate == getattr(S, expected)(
        **({"leak": 1.0, "k": 1.0} if expected == "LeakyKReLU" and not sg._sg_params else sg._sg_params))


class MultiStepNet(torch.nn.Module):
    """Containers, step-mode wrappers, Flatten and a residual, in SpikingJelly's multi-step style."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = layer.SeqToANNContainer(layer.Conv2d(2, 4, 3, padding=1, bias=False), layer.BatchNorm2d(4))
        self.sn1 = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
        self.conv = layer.Conv2d(4, 4, 3, padding=1, step_mode="m")
        self.bn = layer.BatchNorm2d(4, step_mode="m")
        self.sn2 = neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m", detach_reset=True)
        self.pool = layer.MaxPool2d(2, step_mode="m")
        self.flat = layer.Flatten(step_mode="m")
        self.drop = layer.Dropout(0.3, step_mode="m")
        self.fc = layer.MultiStepContainer(layer.Linear(64, 10), neuron.LIFNode(tau=2.0))

    def forward(self, x):
        h = self.sn1(self.stem(x))
        h = self.sn2(self.bn(self.conv(h)) + h)
        return self.fc(self.drop(self.flat(self.pool(h))))


def _multi_step_net() -> torch.nn.Module:
    torch.manual_seed(4)
    net = MultiStepNet()
    with torch.no_grad():
        net.stem[0].weight.mul_(3)
        net.fc[0].weight.mul_(4)
    return net


@pytest.mark.parametrize("train", [False, True])
def test_containers_and_wrappers(train):
    net = _multi_step_net()
    if train:  # dropout masks come from different random streams: compare without dropout
        net.drop.p = 0.0
    y_sj, y, g_sj, g, compiled = run_both(net, torch.rand(4, 3, 2, 8, 8), _run_sj, train=train)
    assert_same_spikes(y_sj, y, lo=0.02)
    assert_close_grads(g, g_sj)
    if train:  # batch statistics over T*N moved the running means identically
        torch.testing.assert_close(compiled.layers[compiled._key["stem__1"]].running_mean,
                                   net.stem[1].running_mean, rtol=0, atol=0)


def test_dropout_mask_is_shared_over_time():
    net = torch.nn.Sequential(layer.Dropout(0.5, step_mode="m"))
    compiled = snnir.compile(snnir.trace(net, torch.rand(2, 1, 64))).train()
    y = compiled(torch.ones(6, 2, 64))
    assert torch.equal(y, y[:1].expand_as(y)) and 0 < int((y == 0).sum()) < y.numel()
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_voting_layer():
    if "reshape" not in snnir.ops.registered_ops():
        pytest.skip("VotingLayer needs the reshape op (another branch adds it)")
    net = torch.nn.Sequential(layer.Linear(6, 20), neuron.IFNode(), layer.VotingLayer(5))
    functional.set_step_mode(net, "m")
    with torch.no_grad():
        net[0].weight.mul_(3)
    x = torch.rand(5, 3, 6)
    y_sj, y, g_sj, g, _ = run_both(net, x, _run_sj, fused=False)
    assert y.shape == (5, 3, 4)
    torch.testing.assert_close(y, y_sj, rtol=0, atol=0)
    assert_close_grads(g, g_sj)


@pytest.mark.parametrize("module,match", [
    (lambda: neuron.ILIFNode(), r"module '1' \(spikingjelly\..*ILIFNode\): no snnir equivalent: it subclasses "
                                r".*LIFNode and redefines"),
    (lambda: neuron.KLIFNode(), r"KLIFNode\): no snnir equivalent\. SpikingJelly modules snnir maps: .*IFNode"),
    (lambda: neuron.LIFNode(surrogate_function=surrogate.SquarewaveFourierSeries()),
     r"surrogate_function=SquarewaveFourierSeries.*snnir has no SquarewaveFourierSeries"),
    (lambda: neuron.LIFNode(surrogate_function=surrogate.ATan(spiking=False)), r"surrogate_function.spiking=False"),
    (lambda: neuron.IzhikevichNode(b=0.1, detach_reset=True), r"detach_reset=True has no snnir equivalent"),
    (lambda: neuron.SimpleIFNode(v_reset=0.5), r"v_reset=0.5 has no snnir equivalent.*starts at v = 0"),
    (lambda: layer.WSLinear(6, 4), r"WSLinear\): no snnir equivalent: it subclasses .*Linear and redefines"),
])
def test_unmappable_modules_are_named(module, match):
    net = torch.nn.Sequential(layer.Linear(6, 6), module())
    with pytest.raises(TraceError, match=match):
        snnir.trace(net, torch.rand(2, 3, 6))


def test_mixed_step_modes_are_refused():
    net = torch.nn.Sequential(layer.Linear(6, 6, step_mode="m"), neuron.IFNode(step_mode="s"))
    with pytest.raises(TraceError, match="mixes single-step and multi-step"):
        snnir.trace(net, torch.rand(2, 3, 6))

"""snnTorch 1.0 neurons traced by ``snnir.trace``: identical spikes, gradients to float rounding.

snnTorch neurons are single-step modules; the reference runs them once per time step. Its reset
timing (``reset_delay``), mechanisms and strict ``v > threshold`` firing are part of the mapped
equations, so feed-forward layers agree bit for bit; the recurrent ones sum ``x + V(spk)`` before
the leak (snnTorch after), so they are compared to float rounding.
"""

from __future__ import annotations

import pytest
import torch
from peer_agreement import assert_close_grads, assert_same_spikes, run_both

import snnir
from snnir import TraceError

snntorch = pytest.importorskip("snntorch", reason="snnTorch is a test reference "
                                                  "(pip install --no-deps snntorch==1.0.0)")
from snntorch import surrogate, utils  # noqa: E402


def _run_steps(net, x):
    utils.reset(net)
    return torch.stack([net(xt) for xt in x.unbind(0)])


def _net(*neurons, gain=2.5, sizes=(6, 8, 5)):
    torch.manual_seed(5)
    layers = []
    for i, neuron in enumerate(neurons):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), neuron]
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(gain)
    return net


MECHANISMS = [(mech, delay) for mech in ("subtract", "zero", "none") for delay in (True, False)]


@pytest.mark.parametrize("mechanism,reset_delay", MECHANISMS)
def test_leaky_and_synaptic(mechanism, reset_delay):
    kw = {"init_hidden": True, "reset_mechanism": mechanism, "reset_delay": reset_delay,
          "spike_grad": surrogate.fast_sigmoid(slope=5)}
    net = _net(snntorch.Leaky(beta=0.8, threshold=0.9, **kw), snntorch.Synaptic(alpha=0.7, beta=0.85, **kw))
    y_peer, y, g_peer, g, compiled = run_both(net, torch.rand(15, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)
    leaky, synaptic = compiled.neurons().values()
    assert torch.equal(leaky.v, net[1].mem) and torch.equal(synaptic.v, net[3].mem)
    assert torch.equal(synaptic.syn, net[3].syn)


def test_fused_kernels():
    """The compiled default (fused kernels) for Leaky and Synaptic, delayed and immediate reset."""
    for delay in (True, False):
        kw = {"init_hidden": True, "reset_delay": delay}
        net = _net(snntorch.Leaky(beta=0.8, **kw), snntorch.Synaptic(alpha=0.7, beta=0.85, **kw))
        y_peer, y, g_peer, g, _ = run_both(net, torch.rand(15, 4, 6), _run_steps, step_mode="s")
        assert_same_spikes(y_peer, y)
        assert_close_grads(g, g_peer)


SURROGATES = {"atan": surrogate.atan(alpha=3.0), "fast_sigmoid": surrogate.fast_sigmoid(slope=10),
              "sigmoid": surrogate.sigmoid(slope=5), "ste": surrogate.straight_through_estimator(),
              "heaviside": surrogate.heaviside(), "triangular": surrogate.triangular(threshold=0.5)}


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogates(name):
    net = _net(snntorch.Leaky(beta=0.9, init_hidden=True, spike_grad=SURROGATES[name]), gain=3.0)
    y_peer, y, g_peer, g, _ = run_both(net, torch.rand(12, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)


def test_surrogate_disable_passes_no_gradient():
    net = _net(snntorch.Leaky(beta=0.9, init_hidden=True, surrogate_disable=True))
    compiled = snnir.compile(snnir.trace(net, torch.rand(2, 1, 6)))
    x = torch.rand(8, 3, 6, requires_grad=True)
    y = compiled(x)
    y.sum().backward()
    assert torch.equal(y.detach(), _run_steps(net, x.detach())) and torch.equal(x.grad, torch.zeros_like(x))


def test_threshold_tie_does_not_fire():
    """snnTorch fires at mem > threshold: a membrane exactly at threshold stays silent, in snnir too."""
    net = torch.nn.Sequential(snntorch.Leaky(beta=0.5, threshold=1.0, init_hidden=True))
    x = torch.tensor([[[1.0]], [[0.5]], [[0.75]], [[2.0]]])  # mem: 1.0 (tie), 1.0 (tie), 1.25, ...
    y = snnir.compile(snnir.trace(net, x))(x)
    assert torch.equal(y, _run_steps(net, x)) and y.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("kind", ["linear", "one_to_one", "conv"])
def test_recurrent_leaky(kind):
    torch.manual_seed(6)
    kw = {"beta": 0.8, "init_hidden": True}
    if kind == "conv":
        lif = snntorch.RLeaky(conv2d_channels=3, kernel_size=3, **kw)
        net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), lif)
        x = torch.rand(10, 2, 2, 6, 6)
    else:
        lif = (snntorch.RLeaky(linear_features=8, **kw) if kind == "linear"
               else snntorch.RLeaky(all_to_all=False, V=0.5, **kw))
        net = torch.nn.Sequential(torch.nn.Linear(6, 8), lif)
        x = torch.rand(12, 4, 6)
    with torch.no_grad():
        net[0].weight.mul_(3)
    y_peer, y, g_peer, g, _ = run_both(net, x, _run_steps, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer, rtol=1e-4)


def test_recurrent_synaptic():
    net = _net(snntorch.RSynaptic(alpha=0.6, beta=0.8, linear_features=8, init_hidden=True, reset_mechanism="zero"))
    y_peer, y, g_peer, g, _ = run_both(net, torch.rand(12, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer, rtol=1e-4)


@pytest.mark.parametrize("kw", [{"beta": 0.85}, {"R": 5.1, "C": 5e-3, "time_step": 1e-2},
                                {"beta": 0.8, "reset_mechanism": "zero"}], ids=["beta", "RC", "zero"])
def test_lapicque(kw):
    net = _net(snntorch.Lapicque(init_hidden=True, **kw), gain=4.0)
    y_peer, y, g_peer, g, compiled = run_both(net, torch.rand(15, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)
    assert torch.equal(next(iter(compiled.neurons().values())).v, net[1].mem)


def test_per_neuron_and_learned_parameters():
    torch.manual_seed(11)
    leaky = snntorch.Leaky(beta=torch.rand(8) * 0.5 + 0.4, threshold=torch.rand(8) + 0.5, learn_beta=True,
                           learn_threshold=True, init_hidden=True)
    synaptic = snntorch.Synaptic(alpha=torch.rand(5) * 0.8, beta=0.9, learn_alpha=True, init_hidden=True,
                                 reset_delay=False)
    net = _net(leaky, synaptic)
    y_peer, y, g_peer, g, compiled = run_both(net, torch.rand(15, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)
    ours = list(compiled.neurons().values())
    for theirs, mine, names in ((leaky, ours[0], ("beta", "threshold")), (synaptic, ours[1], ("alpha",))):
        for name in names:
            mine_name = "v_threshold" if name == "threshold" else name
            assert isinstance(getattr(mine, mine_name), torch.nn.Parameter), f"{name} should stay learned"
            assert_close_grads(getattr(mine, mine_name).grad, getattr(theirs, name).grad)


def test_one_to_one_weights_per_feature():
    torch.manual_seed(12)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), snntorch.RLeaky(beta=0.8, all_to_all=False, V=torch.rand(8),
                                                                    init_hidden=True))
    with torch.no_grad():
        net[0].weight.mul_(3)
    y_peer, y, g_peer, g, _ = run_both(net, torch.rand(12, 4, 6), _run_steps, fused=False, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer, rtol=1e-4)


class ExplicitOutputs(torch.nn.Module):
    """snnTorch's tutorial style: neurons return ``(spk, mem)``; the model uses the spikes."""

    def __init__(self, use_mem: bool = False) -> None:
        super().__init__()
        self.fc1, self.lif1 = torch.nn.Linear(6, 8), snntorch.Leaky(beta=0.9)
        self.fc2, self.lif2 = torch.nn.Linear(8, 4), snntorch.Synaptic(alpha=0.8, beta=0.9, output=True)
        self.use_mem = use_mem

    def forward(self, x):
        spk1, mem1 = self.lif1(self.fc1(x))
        out = self.lif2(self.fc2(mem1 if self.use_mem else spk1))
        return out[0]


def test_tuple_outputs_trace_their_spikes():
    torch.manual_seed(7)
    net = ExplicitOutputs()
    with torch.no_grad():
        net.fc1.weight.mul_(3)
        net.fc2.weight.mul_(4)
    y_peer, y, g_peer, g, _ = run_both(net, torch.rand(12, 4, 6), _run_steps, step_mode="s")
    assert_same_spikes(y_peer, y)
    assert_close_grads(g, g_peer)


class ExplicitState(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.lif = torch.nn.Linear(6, 4), snntorch.Leaky(beta=0.9)

    def forward(self, x, mem):
        return self.lif(self.fc(x), mem)[0]


@pytest.mark.parametrize("module,match", [
    (lambda: ExplicitOutputs(use_mem=True), r"module input is output 'mem' \(index 1\) of module 'lif1' \(which "
                                            r"returns \('spk', 'mem'\)\) has no IR form"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), snntorch.Leaky(beta=1.5, learn_beta=True, init_hidden=True)),
     r"module '1' \(snntorch.*Leaky\): learn_beta=True has no snnir equivalent: beta lies outside \[0, 1\]"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), snntorch.Leaky(beta=0.9, inhibition=True, init_hidden=True)),
     r"inhibition=True has no snnir equivalent"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), snntorch.Leaky(beta=0.9, graded_spikes_factor=2.0,
                                                                       init_hidden=True)),
     r"graded_spikes_factor=2.0 has no snnir equivalent"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), snntorch.Leaky(
        beta=0.9, spike_grad=surrogate.spike_rate_escape(), init_hidden=True)),
     r"spike_grad='snntorch.surrogate.spike_rate_escape' has no snnir equivalent"),
    (lambda: torch.nn.Sequential(torch.nn.Linear(6, 4), snntorch.Alpha(alpha=0.9, beta=0.8, init_hidden=True)),
     r"Alpha\): no snnir equivalent\. snnTorch modules snnir maps: Lapicque, Leaky"),
])
def test_unmappable_modules_are_named(module, match):
    with pytest.warns(UserWarning) if "inhibition" in match else _nothing():
        net = module()
    with pytest.raises(TraceError, match=match):
        snnir.trace(net, torch.rand(2, 3, 6))


def test_explicit_state_argument_is_refused():
    with pytest.raises(TraceError, match=r"called with 2 arguments.*state lives in the graph"):
        snnir.trace(ExplicitState(), (torch.rand(2, 3, 6), torch.rand(2, 3, 4)))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_streaming_onnx_export_of_a_snntorch_model(tmp_path):
    """The snnTorch models' equations (delayed reset, fire above threshold) export to ONNX as well.
    Dyadic weights and inputs keep the Gemm exact in both runtimes."""
    pytest.importorskip("onnxruntime")
    from snnir.backends.onnx import StreamingSession

    net = _net(snntorch.Leaky(beta=0.75, init_hidden=True, reset_delay=False),
               snntorch.Synaptic(alpha=0.5, beta=0.75, init_hidden=True, reset_mechanism="zero"))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_((m.weight * 8).round() / 8)
                m.bias.copy_((m.bias * 8).round() / 8)
    x = (torch.rand(15, 4, 6) * 32).round() / 16
    graph = snnir.trace(net, x)
    snnir.export(graph, tmp_path / "net.onnx", format="onnx")
    session = StreamingSession(tmp_path / "net.onnx")
    out = torch.stack([torch.as_tensor(session(xt.numpy())) for xt in x])
    assert_same_spikes(_run_steps(net, x), out)


def test_saved_graph_keeps_the_mechanism(tmp_path):
    """String options (reset_mechanism) survive .snnir save/load."""
    net = _net(snntorch.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero", reset_delay=False))
    x = torch.rand(10, 3, 6)
    graph = snnir.trace(net, x)
    snnir.save(graph, tmp_path / "net.snnir")
    loaded = snnir.load(tmp_path / "net.snnir")
    assert loaded.node("_1").attrs["reset_mechanism"] == "zero_leak" and loaded.node("_1").attrs["reset_delay"] is False
    with torch.no_grad():
        assert torch.equal(snnir.compile(loaded)(x), snnir.compile(graph)(x))

"""``compile(..., recompute_currents=True)``: ``linear -> neuron`` chains do not keep the current
for backward. Same bits as the default compiled graph (the current is computed again by the same
kernel), gradients against a float64 per-step reference, fewer saved bytes (counted with
saved-tensor hooks: deterministic), and the cases that fall back to keeping the current."""

import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.backends.torch import layers, recompute, skinny_kernel, spike_linear

SIZES = (784, 512, 512, 10)


def _mlp(sizes=SIZES, neurons=None, scale=3.0, seed=0, dtype=torch.float32):
    """Linear -> neuron per layer (LIF unless ``neurons`` names the classes); ``scale`` x Kaiming
    init: the hidden LIFs fire at a few percent (sparse: the event kernels)."""
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        lin = snn.Linear(a, b, step_mode="m")
        with torch.no_grad():
            lin.weight.mul_(scale)
        make = neurons[i] if neurons else (lambda: snn.LIF(tau=2.0, step_mode="m"))
        mods += [lin, make()]
    return torch.nn.Sequential(*mods).to(dtype)


def _spikes(T, B, n, rate, seed=1, dtype=torch.float32):
    torch.manual_seed(seed)
    return (torch.rand(T, B, n) < rate).to(dtype)


class SavedBytes:
    """Bytes of the tensors autograd saves for backward while active (outer saved-tensor hooks)."""

    def __init__(self):
        self.total = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t):
        self.total += t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


def _step(model, x, calls=1, seed=2):
    """Forward (``calls`` consecutive calls: the state carries over), a weighted-sum loss,
    backward; returns the outputs, the gradients by name (and ``x``'s) and the saved bytes."""
    x = x.clone().requires_grad_()
    outs = []
    with SavedBytes() as saved:
        for _ in range(calls):
            outs.append(model(x))
    torch.manual_seed(seed)
    loss = sum((o * torch.rand(o.shape).to(o.dtype)).sum() for o in outs)  # same weights in any dtype
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    grads["input"] = x.grad.clone()
    return torch.stack(outs).detach(), grads, saved.total


def _pair(graph, *args, **kwargs):
    return (snnir.compile(graph, *args, **kwargs), snnir.compile(graph, *args, recompute_currents=True, **kwargs))


def _assert_same(a, b):
    assert torch.equal(a[0], b[0])
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert torch.equal(a[1][k], b[1][k]), k


@pytest.mark.parametrize("rate,scale", [(0.1, 7.0), (0.5, 8.0)], ids=["sparse", "dense"])
def test_mlp_same_bits_and_less_saved(rate, scale, monkeypatch):
    """784-512-512-10 LIF, T=25, B=64: outputs and every gradient equal to the default's bit for
    bit; the saved bytes fall by exactly the three currents. Sparse: the hidden LIFs fire at ~7%
    (event kernels, forward and weight gradient); dense: at 20-26% (GEMMs)."""
    T, B = 25, 64
    x = _spikes(T, B, 784, rate)
    graph = snnir.trace(_mlp(scale=scale), x)
    events = []
    real = spike_linear.linear
    monkeypatch.setattr(spike_linear, "linear", lambda *a: events.append(a[0].shape) or real(*a))
    default, opt_in = _pair(graph)
    a = _step(default, x)
    n_default = len(events)
    b = _step(opt_in, x)
    _assert_same(a, b)
    assert a[0].sum() > 0 and all(g.abs().sum() > 0 for g in a[1].values())  # spikes and gradients flow
    # the event kernels ran for the hidden layer (sparse); the recompute ran them again in backward
    if rate < 0.2:
        assert n_default >= 1 and len(events) - n_default == 2 * n_default
    current_bytes = T * B * sum(SIZES[1:]) * 4
    assert a[2] - b[2] == current_bytes, (a[2], b[2])


def test_mlp_against_a_float64_per_step_reference():
    """The opt-in in float32 and float64 against the same network run by the per-step torch path
    (``fused=False``) in float64, uncompiled: same spikes; gradients to float32 rounding."""
    sizes, T, B = (60, 48, 40, 10), 12, 6
    x = _spikes(T, B, sizes[0], 0.3, seed=3)
    net = _mlp(sizes, scale=6.0, seed=4)
    ref_net = _mlp(sizes, scale=6.0, seed=4, dtype=torch.float64)
    for m in ref_net:
        if isinstance(m, snn.LIF):
            m.fused = False
    ref = _step(ref_net, x.double())
    for dtype in (torch.float32, torch.float64):
        model = snnir.compile(snnir.trace(net, x), recompute_currents=True).to(dtype)
        out, grads, _ = _step(model, x.to(dtype))
        assert torch.equal(out.double(), ref[0]) and ref[0].sum() > 0
        names = {f"layers._{k.split('.')[0]}.{k.split('.')[1]}": k for k in ref[1] if k != "input"}
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        for ours, theirs in [*names.items(), ("input", "input")]:
            g, r = grads[ours].double(), ref[1][theirs]
            assert (g - r).abs().max() <= tol * (r.abs().max() + 1e-3), ours


def test_cuba_and_learnable_neurons_and_the_initial_state():
    """CubaLIF and a ParametricLIF (learnable tau): two consecutive calls, so the second starts from
    the first's final state and the loss's gradient flows through the initial state; every
    gradient (tau included) equals the default's."""
    x = _spikes(10, 16, 100, 0.2, seed=5)
    net = _mlp((100, 80, 70), neurons=[lambda: snn.CubaLIF(tau_syn=3.0, tau_mem=2.0, step_mode="m"),
                                      lambda: snn.ParametricLIF(init_tau=2.5, step_mode="m")], scale=2.0)
    default, opt_in = _pair(snnir.trace(net, x))
    a, b = _step(default, x, calls=2), _step(opt_in, x, calls=2)
    _assert_same(a, b)
    learned = [k for k in a[1] if k.endswith("w") or "tau" in k]
    assert learned and all(a[1][k].abs().sum() > 0 for k in learned)
    assert a[2] - b[2] == 2 * 10 * 16 * (80 + 70) * 4


def test_autocast_bfloat16_same_bits():
    """Under ``torch.autocast`` (bfloat16 linears) the current is computed again under the same
    autocast state: the same bits."""
    x = _spikes(8, 32, 120, 0.3, seed=6)
    default, opt_in = _pair(snnir.trace(_mlp((120, 96, 10), scale=5.0), x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = _step(default, x), _step(opt_in, x)
    _assert_same(a, b)
    assert a[2] > b[2]


def test_backward_twice_with_retain_graph():
    x = _spikes(6, 8, 40, 0.3, seed=7)
    model = snnir.compile(snnir.trace(_mlp((40, 30, 10), scale=5.0), x), recompute_currents=True)
    out = model(x)
    loss = (out * torch.linspace(0, 1, 10)).sum() + model.layer("_0").weight.sum()
    first = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, list(model.parameters()))
    assert all(torch.equal(f, s) for f, s in zip(first, second))


def test_few_outputs_readout_uses_the_same_kernel():
    """A readout with at most ``skinny_kernel.tile()`` outputs runs the few-output kernel in the
    forward and again in the recompute."""
    if not skinny_kernel.tile():
        pytest.skip("no few-output kernel on this CPU (no compiler or no AVX2+FMA)")
    x = _spikes(20, 64, 50, 0.4, seed=8)
    default, opt_in = _pair(snnir.trace(_mlp((50, 10), scale=2.0), x))
    assert skinny_kernel.supported(x.reshape(-1, 50), default.layer("_0").weight)
    _assert_same(_step(default, x), _step(opt_in, x))


# --- where the option changes nothing -----------------------------------------------------------------

def _no_saving(graph, x, **kwargs):
    default, opt_in = _pair(graph, **kwargs)
    a, b = _step(default, x), _step(opt_in, x)
    _assert_same(a, b)
    assert a[2] == b[2]
    return opt_in


def test_falls_back_single_step_unfused_checked_or_captured():
    x = _spikes(6, 16, 40, 0.3, seed=9)
    graph = snnir.trace(_mlp((40, 30, 10), scale=5.0), x)
    _no_saving(graph, x[0], step_mode="s")              # single-step mode: one call per step
    _no_saving(graph, x, check_finite=True)             # every node checked: the chains run unfused
    _no_saving(graph, x, fuse=False)                    # no chains
    default, opt_in = _pair(graph)
    for m in (default, opt_in):
        m.capture = {"_0"}                              # a monitor reads the first current: its chain unfused
    a, b = _step(default, x), _step(opt_in, x)
    _assert_same(a, b)
    assert torch.equal(default.captured["_0"], opt_in.captured["_0"])
    assert a[2] - b[2] == 6 * 16 * 10 * 4  # the readout's chain, not captured, still drops its current


def test_no_linear_neuron_chain_is_a_no_op():
    """A graph whose only chain is conv -> neuron, or without neurons: nothing to recompute."""
    torch.manual_seed(10)
    conv = torch.nn.Sequential(snn.Conv2d(2, 4, 3, step_mode="m"), snn.LIF(step_mode="m"), snn.Flatten(step_mode="m"))
    x = torch.rand(4, 3, 2, 6, 6)
    _no_saving(snnir.trace(conv, x), x)
    plain = snn.set_step_mode(torch.nn.Sequential(snn.Linear(12, 5), torch.nn.Tanh()), "m")
    x = torch.rand(4, 3, 12)
    _no_saving(snnir.trace(plain, x), x)


def _count_products(monkeypatch):
    calls = []
    real = layers.Linear.product
    monkeypatch.setattr(layers.Linear, "product", lambda *a: calls.append(1) or real(*a))
    return calls


def test_a_per_step_neuron_computes_nothing_again(monkeypatch):
    """A neuron on the per-step torch path (``fused=False``) does not save its input (its ops need
    no input values): nothing to drop for that layer, and no product in backward."""
    x = _spikes(6, 16, 40, 0.3, seed=11)
    default, opt_in = _pair(snnir.trace(_mlp((40, 30, 10), scale=5.0), x))
    for m in (default, opt_in):
        m.layer("_1").fused = False
    calls = _count_products(monkeypatch)
    a = _step(default, x)
    n_default = len(calls)
    b = _step(opt_in, x)
    _assert_same(a, b)
    assert n_default == 2 and len(calls) - n_default == 3  # the readout's product, once more in backward
    assert a[2] - b[2] == 6 * 16 * 10 * 4  # only the fused readout's current is dropped


def test_a_neuron_saving_views_of_the_current_keeps_it(monkeypatch):
    """A "neuron" that saves a view of its input per step: the current is kept (a product per
    saved view in backward would cost more than it saves), results as without the hook."""
    class Squares(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[t] * x[t] for t in range(x.shape[0])])

    torch.manual_seed(13)
    lin = snn.Linear(20, 70, step_mode="m")
    x = torch.rand(5, 8, 20, requires_grad=True)
    calls = _count_products(monkeypatch)
    out = recompute.linear_neuron(lin, Squares(), x)
    out.sum().backward()
    assert len(calls) == 1
    ref_x = x.detach().clone().requires_grad_()
    ref = lin(ref_x) ** 2
    ref.sum().backward()
    assert torch.equal(out, ref) and torch.equal(x.grad, ref_x.grad)


def test_weight_modified_in_place_before_backward():
    x = _spikes(6, 16, 40, 0.3, seed=12)
    model = snnir.compile(snnir.trace(_mlp((40, 30, 10), scale=5.0), x), recompute_currents=True)
    out = model(x)
    with torch.no_grad():
        model.layer("_2").bias.add_(1.0)  # the readout's bias: the default path would not notice
    with pytest.raises(RuntimeError, match="modified in place between forward and backward"):
        out.sum().backward()


def test_torch_compile_traces_the_default_chain():
    """Under ``torch.compile`` the option steps aside (the compiler plans its own memory): no graph
    break, results as eager."""
    x = _spikes(6, 8, 40, 0.3, seed=14)
    graph = snnir.trace(_mlp((40, 30, 10), scale=5.0), x)
    m = snnir.compile(graph, recompute_currents=True)
    assert torch._dynamo.explain(m)(x).graph_break_count == 0
    m.reset()
    eager = _step(snnir.compile(graph), x)
    compiled = _step(torch.compile(m, backend="aot_eager", fullgraph=True), x)
    assert torch.equal(compiled[0], eager[0])
    grads = {k.removeprefix("_orig_mod."): g for k, g in compiled[1].items()}
    assert grads.keys() == eager[1].keys()
    for name in eager[1]:
        torch.testing.assert_close(grads[name], eager[1][name], rtol=1e-5, atol=1e-6, msg=name)

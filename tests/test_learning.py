"""snnir.learning: rules against float64 hand loops, fused kernel vs torch reference, the IR
attribute through trace/save/load/compile, and bad input named.

The rule tests drive a synapse whose post-synaptic "neuron" replays chosen spikes (``Replay``), so
pre and post spike trains are independent random inputs and the hand loops need no neuron model.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp
import torch

import snnir
from snnir import nn as snn
from snnir.errors import FormatError, GraphError, ShapeError
from snnir.learning import STDP, Learner, PlasticityRule, ThreeFactor, attach, plasticity
from snnir.lowering import LoweringError, lower_rule


class Replay(snn.StepModule):
    """Returns pre-chosen post spikes (one step per call, or the whole sequence in 'm' mode)."""

    def __init__(self, spikes: torch.Tensor, step_mode: str = "s") -> None:
        super().__init__()
        self.spikes, self.t, self.step_mode = spikes, 0, step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            return self.spikes
        y = self.spikes[self.t]
        self.t += 1
        return y


def _spikes(shape, p, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


def _drive(syn, rule, pre, post, backend="torch", step_every=1, **mods_per_step):
    """Run ``pre`` through ``syn`` with ``post`` replayed; step the learner every ``step_every``
    steps; returns the weight trajectory and the deltas."""
    replay = Replay(post)
    learner = Learner(syn, rule, post=replay, backend=backend)
    weights, deltas = [], []
    with torch.no_grad():
        for t in range(pre.shape[0]):
            replay(syn(pre[t]))
            if (t + 1) % step_every == 0:
                mods = {k: v[t + 1 - step_every:t + 1] for k, v in mods_per_step.items()}
                deltas.append(learner.step(**mods))
                weights.append(syn.weight.detach().clone())
    learner.close()
    return weights, deltas


# --- float64 hand loops -------------------------------------------------------------------------------
def _linear_three_factor_loop(w, pre, post, reward, p):
    w = w.copy()
    T, B, n_in = pre.shape
    n_out = post.shape[2]
    x_pre, x_post, e = np.zeros((B, n_in)), np.zeros((B, n_out)), np.zeros((B, n_out, n_in))
    out = []
    for t in range(T):
        x_pre = x_pre - x_pre / p["tau_pre"] + pre[t]
        x_post = x_post - x_post / p["tau_post"] + post[t]
        for b in range(B):
            for j in range(n_out):
                for i in range(n_in):
                    hebb = p["a_plus"] * x_pre[b, i] * post[t, b, j] - p["a_minus"] * x_post[b, j] * pre[t, b, i]
                    e[b, j, i] = e[b, j, i] - e[b, j, i] / p["tau_e"] + hebb
        dw = sum(p["lr"] * reward[t, b] * e[b] for b in range(B))
        w = np.clip(w + dw, p["w_min"], p["w_max"])
        out.append(w.copy())
    return out


def _conv_pairs(a, b, kernel, stride, dilation, groups, padding):
    """``P[j, c, ky, kx] = sum over samples and output positions of b[j] * a[window]`` by loops."""
    a = np.pad(a, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    B, C, H, W = a.shape
    n_out, Ho, Wo = b.shape[1:]
    cg, jg = C // groups, n_out // groups
    out = np.zeros((n_out, cg, kernel, kernel))
    for j in range(n_out):
        g = j // jg
        for c in range(cg):
            for ky in range(kernel):
                for kx in range(kernel):
                    s = 0.0
                    for n in range(B):
                        for oy in range(Ho):
                            for ox in range(Wo):
                                s += b[n, j, oy, ox] * a[n, g * cg + c, oy * stride + ky * dilation,
                                                        ox * stride + kx * dilation]
                    out[j, c, ky, kx] = s
    return out


# --- three-factor -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("reward_kind", ["per_step_and_sample", "per_sample", "scalar"])
def test_three_factor_equals_float64_loop(backend, reward_kind):
    T, B, n_in, n_out = 14, 3, 6, 4
    params = dict(tau_pre=3.0, tau_post=5.0, tau_e=7.0, a_plus=1.0, a_minus=0.6, lr=0.05, w_min=-0.4, w_max=0.5)
    pre, post = _spikes((T, B, n_in), 0.4, 1), _spikes((T, B, n_out), 0.3, 2)
    g = torch.Generator().manual_seed(3)
    reward = {"per_step_and_sample": torch.randn(T, B, generator=g, dtype=torch.float64),
              "per_sample": torch.randn(B, generator=g, dtype=torch.float64).expand(T, B),
              "scalar": torch.full((T, B), -0.7, dtype=torch.float64)}[reward_kind]
    syn = torch.nn.Linear(n_in, n_out, bias=False).double()
    w0 = syn.weight.detach().numpy().copy()
    # per step: the learner takes [1, B] (one step), [B] or a number, as the kind says
    given = {"per_step_and_sample": reward, "per_sample": reward[0].expand(T, B), "scalar": reward}[reward_kind]
    replay = Replay(post)
    learner = Learner(syn, ThreeFactor(**params), post=replay, backend=backend)
    weights = []
    with torch.no_grad():
        for t in range(T):
            replay(syn(pre[t]))
            r = {"per_step_and_sample": given[t:t + 1], "per_sample": given[t], "scalar": float(given[t, 0])}
            learner.step(reward=r[reward_kind])
            weights.append(syn.weight.detach().numpy().copy())
    expected = _linear_three_factor_loop(w0, pre.numpy(), post.numpy(), reward.numpy(), params)
    for t in range(T):
        np.testing.assert_allclose(weights[t], expected[t], rtol=0, atol=1e-12, err_msg=f"step {t}")
    assert np.abs(expected[-1] - w0).max() > 1e-2, "the rewards moved the weights"


def test_three_factor_conv_equals_float64_loop():
    """Eligibility of a grouped, strided, dilated conv: per sample, summed over positions."""
    T, B = 6, 2
    conv = torch.nn.Conv2d(4, 2, 2, stride=2, padding=1, dilation=2, groups=2, bias=False).double()
    pre = _spikes((T, B, 4, 6, 6), 0.4, 5)
    Ho = conv(pre[0]).shape[-1]
    post = _spikes((T, B, 2, Ho, Ho), 0.4, 6)
    reward = torch.linspace(-1, 1, T * B, dtype=torch.float64).view(T, B)
    p = dict(tau_pre=2.0, tau_post=3.0, tau_e=4.0, a_plus=1.0, a_minus=0.5, lr=0.1)
    w = conv.weight.detach().numpy().copy()
    for backend in ("torch", "fused"):
        conv.weight.data.copy_(torch.from_numpy(w))
        weights, _ = _drive(conv, ThreeFactor(**p), pre, post, backend, reward=reward)
        x_pre, x_post = np.zeros((B, 4, 6, 6)), np.zeros((B, 2, Ho, Ho))
        e, ww = np.zeros((B, *w.shape)), w.copy()
        for t in range(T):
            x_pre = x_pre - x_pre / p["tau_pre"] + pre[t].numpy()
            x_post = x_post - x_post / p["tau_post"] + post[t].numpy()
            dw = np.zeros_like(w)
            for b in range(B):
                hebb = p["a_plus"] * _conv_pairs(x_pre[b:b + 1], post[t, b:b + 1].numpy(), 2, 2, 2, 2, 1)
                hebb -= p["a_minus"] * _conv_pairs(pre[t, b:b + 1].numpy(), x_post[b:b + 1], 2, 2, 2, 2, 1)
                e[b] = e[b] - e[b] / p["tau_e"] + hebb
                dw += p["lr"] * reward[t, b].item() * e[b]
            ww = ww + dw
            np.testing.assert_allclose(weights[t].numpy(), ww, rtol=0, atol=1e-12, err_msg=f"{backend} step {t}")


# --- STDP variants SpikingJelly does not have -----------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_nearest_spike_stdp_equals_float64_loop(backend):
    T, B, n_in, n_out = 20, 2, 5, 3
    pre, post = _spikes((T, B, n_in), 0.35, 7), _spikes((T, B, n_out), 0.35, 8)
    p = dict(tau_pre=3.0, tau_post=4.0, a_plus=0.1, a_minus=0.12)
    syn = torch.nn.Linear(n_in, n_out, bias=False).double()
    w = syn.weight.detach().numpy().copy()
    weights, _ = _drive(syn, STDP(nearest=True, **p), pre, post, backend, step_every=5)
    x_pre, x_post = np.zeros((B, n_in)), np.zeros((B, n_out))
    for t in range(T):
        s_pre, s_post = pre[t].numpy(), post[t].numpy()
        x_pre = np.where(s_pre > 0, 1.0, x_pre - x_pre / p["tau_pre"])   # a spike resets the trace to 1
        x_post = np.where(s_post > 0, 1.0, x_post - x_post / p["tau_post"])
        w = (w + p["a_plus"] * np.einsum("bj,bi->ji", s_post, x_pre)
             - p["a_minus"] * np.einsum("bj,bi->ji", x_post, s_pre))
        if (t + 1) % 5 == 0:
            np.testing.assert_allclose(weights[t // 5].numpy(), w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "fused"])
@pytest.mark.parametrize("kind", ["conv2d", "conv1d"])
def test_stdp_grouped_dilated_conv_equals_float64_loop(kind, backend):
    """Groups and dilation (SpikingJelly's conv STDP takes neither)."""
    T, B = 5, 2
    if kind == "conv2d":
        conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False).double()
        pre = _spikes((T, B, 4, 7, 7), 0.4, 9)
    else:
        conv = torch.nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False).double()
        pre = _spikes((T, B, 4, 9), 0.4, 9)
    out_shape = conv(pre[0]).shape[1:]
    post = _spikes((T, B, *out_shape), 0.4, 10)
    p = dict(tau_pre=2.0, tau_post=3.0, a_plus=0.05, a_minus=0.04)
    w = conv.weight.detach().numpy().copy()
    weights, deltas = _drive(conv, STDP(**p), pre, post, backend)
    expand = (lambda a: a) if kind == "conv2d" else (lambda a: a[:, :, None, :])
    x_pre, x_post = np.zeros(pre.shape[1:]), np.zeros(post.shape[1:])
    for t in range(T):
        x_pre = x_pre - x_pre / p["tau_pre"] + pre[t].numpy()
        x_post = x_post - x_post / p["tau_post"] + post[t].numpy()
        pot = _conv_pairs(expand(x_pre), expand(post[t].numpy()), 3, 2, 2, 2, 2) if kind == "conv2d" else \
            _conv1d_pairs(x_pre, post[t].numpy())
        dep = _conv_pairs(expand(pre[t].numpy()), expand(x_post), 3, 2, 2, 2, 2) if kind == "conv2d" else \
            _conv1d_pairs(pre[t].numpy(), x_post)
        dw = (p["a_plus"] * pot - p["a_minus"] * dep).reshape(w.shape)
        w = w + dw
        np.testing.assert_allclose(deltas[t].numpy(), dw, rtol=0, atol=1e-12)
        np.testing.assert_allclose(weights[t].numpy(), w, rtol=0, atol=1e-12)


def _conv1d_pairs(a, b):
    """Conv1d(4 -> 6, k=3, stride 2, padding 2, dilation 2, groups 2) pairings by loops."""
    a = np.pad(a, ((0, 0), (0, 0), (2, 2)))
    out = np.zeros((6, 2, 3))
    for j in range(6):
        g = j // 3
        for c in range(2):
            for k in range(3):
                out[j, c, k] = sum(b[n, j, o] * a[n, g * 2 + c, o * 2 + k * 2]
                                   for n in range(a.shape[0]) for o in range(b.shape[2]))
    return out


# --- user rules: literal pairings, terms without pairing, expansion -----------------------------------
class OddRule(PlasticityRule):
    """Exercises the separation: a pre-only term, a post-only term, a term without pairing (counted
    once per sample), a product of sums to expand, an exponential decay hoisted to the prologue."""

    pre_traces = {"u": 0.5}
    post_traces = {"v": 0.0}
    params = {"tau": 3.0, "c": 0.01, "d": 0.02}

    def traces(self, s, **options):
        return {"u": s.u * sp.exp(-1 / s.tau) + s.pre, "v": s.v / 2 + s.post}

    def dw(self, s, **options):
        return (s.w - s.u) * s.post * s.c - s.d * s.pre + s.c * s.v - s.d * s.w


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_user_rule_equals_float64_loop(backend):
    T, B, n_in, n_out = 8, 3, 4, 5
    pre, post = _spikes((T, B, n_in), 0.5, 11), _spikes((T, B, n_out), 0.5, 12)
    p = dict(tau=3.0, c=0.01, d=0.02)
    syn = torch.nn.Linear(n_in, n_out, bias=False).double()
    w = syn.weight.detach().numpy().copy()
    weights, _ = _drive(syn, OddRule(**p), pre, post, backend)
    u, v = np.full((B, n_in), 0.5), np.zeros((B, n_out))
    for t in range(T):
        s_pre, s_post = pre[t].numpy(), post[t].numpy()
        u, v = u * math.exp(-1 / p["tau"]) + s_pre, v / 2 + s_post
        dw = np.zeros_like(w)
        for b in range(B):
            dw += ((w - u[b][None, :]) * s_post[b][:, None] * p["c"] - p["d"] * s_pre[b][None, :]
                   + p["c"] * v[b][:, None] - p["d"] * w)
        w = w + dw
        np.testing.assert_allclose(weights[t].numpy(), w, rtol=0, atol=1e-12, err_msg=f"step {t}")
    lowered = lower_rule(OddRule().equations())
    assert {(isinstance(p.pre, str), isinstance(p.post, str)) for p in lowered.pairings} == {
        (False, True), (True, False), (True, True)}, "pre-only and post-only terms pair with a literal"
    assert "exp" in {op.fn for op in lowered.prologue.ops}, "exp(-1/tau) is computed once, in the prologue"


# --- fused kernel vs torch reference --------------------------------------------------------------------
GEOMETRIES = {
    "linear": (lambda: torch.nn.Linear(10, 7, bias=False), (10,)),
    "linear_positions": (lambda: torch.nn.Linear(6, 5, bias=False), (3, 4, 6)),
    "conv1d": (lambda: torch.nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=False), (3, 12)),
    "conv2d_groups": (lambda: torch.nn.Conv2d(4, 6, 3, stride=1, padding=1, dilation=1, groups=2, bias=False),
                      (4, 6, 6)),
    "conv2d_strided": (lambda: torch.nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                                               bias=False), (2, 7, 8)),
}
RULES = {
    "stdp": lambda: STDP(tau_pre=3.0, tau_post=4.0, a_plus=0.02, a_minus=0.03, w_min=-0.3, w_max=0.3),
    "stdp_mult_nearest": lambda: STDP(multiplicative=True, nearest=True, w_min=-0.5, w_max=0.5, a_plus=0.05),
    "three_factor": lambda: ThreeFactor(tau_e=5.0, lr=0.1, a_minus=0.5),
    "user": lambda: OddRule(),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_fused_kernel_equals_torch_reference(geometry, rule, dtype):
    if dtype == torch.float32 and rule in ("user", "stdp_mult_nearest") and geometry != "linear":
        pytest.skip("float32 runs every geometry with two rules (the float64 runs cover the rest)")
    make, sample = GEOMETRIES[geometry]
    torch.manual_seed(0)
    syn_ref = make().to(dtype)
    syn_fused = make().to(dtype)
    syn_fused.weight.data.copy_(syn_ref.weight.data)
    w0 = syn_ref.weight.detach().clone()
    T, B = 9, 3
    pre = _spikes((T, B, *sample), 0.3, 13, dtype)
    post = _spikes((T, B, *syn_ref(pre[0]).shape[1:]), 0.3, 14, dtype)
    reward = {"reward": torch.randn(T, B, generator=torch.Generator().manual_seed(15), dtype=dtype)}
    mods = reward if rule == "three_factor" else {}
    w_ref, d_ref = _drive(syn_ref, RULES[rule](), pre, post, "torch", step_every=3, **mods)
    w_fused, d_fused = _drive(syn_fused, RULES[rule](), pre, post, "fused", step_every=3, **mods)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for a, b in zip(w_ref + d_ref, w_fused + d_fused):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    assert float((w_ref[-1] - w0).abs().max()) > 1e-3, "the rule changed the weight"


# --- bounds, apply=False, recording modes ---------------------------------------------------------------
def test_hard_bounds_clip_every_step():
    T, B = 30, 4
    pre, post = _spikes((T, B, 8), 0.6, 16), _spikes((T, B, 3), 0.6, 17)
    syn = torch.nn.Linear(8, 3, bias=False).double()
    weights, deltas = _drive(syn, STDP(a_plus=0.2, a_minus=0.05, w_min=-0.25, w_max=0.25), pre, post)
    w = torch.stack(weights)
    assert float(w.max()) == 0.25 and float(w.min()) >= -0.25, "potentiation-dominated: the upper bound is reached"
    assert float(torch.stack(deltas).max()) > 0.1, "the rule's increments themselves are unclipped"


def test_apply_false_keeps_the_weight_and_sums_the_increments():
    T, B = 10, 2
    pre, post = _spikes((T, B, 5), 0.5, 18), _spikes((T, B, 4), 0.5, 19)
    syn = torch.nn.Linear(5, 4, bias=False).double()
    w0 = syn.weight.detach().clone()
    replay = Replay(post)
    learner = Learner(syn, STDP(multiplicative=True, w_min=-1.0, w_max=1.0), post=replay)
    with torch.no_grad():
        for t in range(T):
            replay(syn(pre[t]))
    assert learner.pending_steps == T
    total = learner.step(apply=False)
    assert torch.equal(syn.weight.detach(), w0)
    other = torch.nn.Linear(5, 4, bias=False).double()
    other.weight.data.copy_(w0)
    _, deltas = _drive(other, STDP(multiplicative=True, w_min=-1.0, w_max=1.0), pre, post, step_every=T)
    assert not torch.allclose(deltas[0], total), "applying per step changes the weight-dependent increments"
    assert learner.step() is None, "records are consumed"


def test_single_step_calls_equal_one_multi_step_call():
    T, B = 7, 2
    pre, post = _spikes((T, B, 6), 0.5, 20), _spikes((T, B, 3), 0.5, 21)
    a, b = torch.nn.Linear(6, 3, bias=False).double(), snn.Linear(6, 3, bias=False, step_mode="m").double()
    b.weight.data.copy_(a.weight.data)
    _, d_single = _drive(a, STDP(), pre, post, step_every=T)
    replay = Replay(post, step_mode="m")
    learner = Learner(b, STDP(), post=replay)
    with torch.no_grad():
        replay(b(pre))
    torch.testing.assert_close(learner.step(), d_single[0], rtol=0, atol=1e-13)
    torch.testing.assert_close(b.weight, a.weight, rtol=0, atol=1e-13)


# --- the IR attribute -----------------------------------------------------------------------------------
def _net():
    torch.manual_seed(1)
    net = torch.nn.Sequential(snn.Conv2d(1, 4, 3, padding=1, bias=False), snn.BatchNorm2d(4), snn.LIF(tau=2.0),
                              snn.Flatten(), snn.Linear(4 * 5 * 5, 3, bias=False), snn.IF())
    return snn.set_step_mode(net.eval(), "m")


def test_trace_save_load_compile_round_trip(tmp_path):
    net = _net()
    rule = STDP(tau_pre=5.0, a_plus=0.01, a_minus=0.02, w_min=0.0, w_max=1.0, multiplicative=True, nearest=True)
    learner = Learner(net, rule, synapse="0", post="2")
    three = Learner(net, ThreeFactor(lr=0.5), synapse="4", post="5")
    x = _spikes((6, 2, 1, 5, 5), 0.5, 22, torch.float32)
    w_conv = net[0].weight.detach().clone()
    g = snnir.trace(net, x)
    entries = plasticity(g)
    assert [(e.synapse, e.post, e.rule) for e in entries] == [("_0", "_2", rule), ("_4", "_5", ThreeFactor(lr=0.5))]
    snnir.save(g, tmp_path / "m.snnir")
    loaded = snnir.load(tmp_path / "m.snnir")
    assert loaded.meta["plasticity"] == g.meta["plasticity"]
    snnir.save(loaded, tmp_path / "again.snnir")
    assert (tmp_path / "m.snnir").read_bytes() == (tmp_path / "again.snnir").read_bytes()
    module = snnir.compile(loaded)
    assert set(module.learners) == {"_0", "_4"} and module.learners["_0"].rule == rule
    with torch.no_grad():  # the compiled learners learn as the originals
        for m, learners in ((net, {"_0": learner, "_4": three}), (module, module.learners)):
            m(x)
            learners["_0"].step()
            learners["_4"].step(reward=0.5)
    torch.testing.assert_close(module.layer("_0").weight, net[0].weight, rtol=0, atol=1e-6)
    torch.testing.assert_close(module.layer("_4").weight, net[4].weight, rtol=0, atol=1e-6)
    assert float((net[0].weight.detach() - w_conv).abs().max()) > 1e-4, "STDP changed the conv weight"
    learner.close()
    three.close()
    assert "plasticity" not in snnir.trace(net, x).meta, "closed learners are not traced"


def test_learner_on_compiled_graph_finds_its_neuron():
    net = _net()
    module = snnir.compile(snnir.trace(net, _spikes((2, 1, 1, 5, 5), 0.5, 23, torch.float32)))
    learner = Learner(module, STDP(), synapse="_0")  # conv -> batchnorm -> LIF
    assert learner.post is module.layer("_2")
    g = attach(snnir.trace(net, torch.zeros(2, 1, 1, 5, 5)), "_0", STDP())
    assert plasticity(g)[0].post == "_2"


# --- bad input ------------------------------------------------------------------------------------------
def _graph():
    return snnir.trace(_net(), torch.zeros(2, 1, 1, 5, 5))


def test_rule_on_a_non_synapse_node_is_named():
    g = _graph()
    with pytest.raises(GraphError, match=r"'_2' is a 'neuron' node.*needs a synapse"):
        attach(g, "_2", STDP())
    with pytest.raises(GraphError, match=r"node '_1' .* is a 'batchnorm' node"):
        Learner(snnir.compile(g), STDP(), synapse="_1")
    with pytest.raises(GraphError, match="no node 'nope'"):
        attach(g, "nope", STDP())
    with pytest.raises(TypeError, match="LIF"):
        Learner(snn.LIF(), STDP(), post=snn.LIF())


def test_unknown_rule_in_a_file_is_named(tmp_path):
    g = attach(_graph(), "_4", STDP())
    g.meta["plasticity"][0]["rule"] = "NoSuchRule"
    with pytest.raises(GraphError, match="unknown plasticity rule 'NoSuchRule'; known: .*STDP"):
        g.validate()
    # a file saved where a user rule was defined, loaded where it is not: a valid file, named rule
    import safetensors.numpy

    from snnir import serialization

    structure, arrays = g.to_dict()
    doc = {"format_version": serialization.FORMAT_VERSION, "graph": structure,
           "sha256": serialization._digest(serialization._json(structure), arrays)}
    (tmp_path / "user_rule.snnir").write_bytes(safetensors.numpy.save(arrays, metadata={
        "snnir": serialization._json(doc)}))
    with pytest.raises(FormatError, match="user_rule.snnir.*unknown plasticity rule 'NoSuchRule'.*import the module"):
        snnir.load(tmp_path / "user_rule.snnir")
    with pytest.raises(GraphError, match="unknown plasticity rule 'Nope'"):
        Learner(torch.nn.Linear(2, 2), "Nope", post=snn.IF())


@pytest.mark.parametrize("entry, message", [
    ({"synapse": "_4", "post": "_5", "rule": "STDP", "params": {"tau_pre": "oops"}}, "neither a number nor"),
    ({"synapse": "_4", "post": "_5", "rule": "STDP", "params": {"w_min": 1.0, "w_max": 0.0}}, "exceeds"),
    ({"synapse": "_4", "post": "_5", "rule": "STDP", "options": {"nearest": 1}}, "must be a bool"),
    ({"synapse": "_4", "post": "_5", "rule": "STDP", "params": {"bogus": 1.0}}, "no parameter or option"),
    ({"synapse": "_4", "post": "_2", "rule": "STDP"}, r"shape \(3,\) but post neuron '_2' has shape \(4, 5, 5\)"),
    ({"synapse": "_4", "post": "_3", "rule": "STDP"}, "'flatten' node, not a spiking neuron"),
    ({"synapse": "_4", "rule": "STDP"}, "expected an object with keys"),
    ("STDP", "expected an object"),
])
def test_malformed_plasticity_entries_are_refused_by_name(entry, message):
    g = _graph()
    g.meta["plasticity"] = [entry]
    with pytest.raises(GraphError, match=message):
        g.validate()


def test_shape_mismatch_at_run_time_is_named():
    net = torch.nn.Sequential(snn.Linear(6, 4, bias=False), snn.IF(), snn.Linear(4, 2, bias=False), snn.IF())
    learner = Learner(net, STDP(), synapse="0", post="3")  # not the neuron this synapse drives
    with torch.no_grad():
        net(torch.ones(3, 6))
    with pytest.raises(ShapeError, match="post-synaptic spikes have 2 features, the weight 4 outputs"):
        learner.step()
    learner.close()
    learner = Learner(net, STDP(), synapse="0", post="1")
    with torch.no_grad():
        net(torch.ones(3, 6))
        learner.step()
        snn.reset(net)
        net(torch.ones(5, 6))
    with pytest.raises(ShapeError, match="call reset"):
        learner.step()
    learner.reset()
    snn.reset(net)
    with torch.no_grad():
        net(torch.ones(5, 6))
    assert learner.step().shape == (4, 6)


def test_bad_modulators_are_named():
    syn, post = torch.nn.Linear(3, 2, bias=False), snn.IF()
    learner = Learner(syn, ThreeFactor(), post=post)
    with torch.no_grad():
        post(syn(torch.ones(4, 3)))
    with pytest.raises(TypeError, match=r"takes modulators \['reward'\]; missing \['reward'\]"):
        learner.step()
    with torch.no_grad():
        post(syn(torch.ones(4, 3)))
    with pytest.raises(ValueError, match="'reward' has NaN or Inf"):
        learner.step(reward=float("nan"))
    with torch.no_grad():
        post(syn(torch.ones(4, 3)))
    with pytest.raises(ShapeError, match=r"'reward' has shape \[3\]; expected a number, one value per sample \[4\]"):
        learner.step(reward=torch.ones(3))
    with pytest.raises(TypeError, match="unknown"):
        Learner(torch.nn.Linear(3, 2), STDP(), post=snn.IF()).step(reward=1.0)


def test_bad_rules_are_named():
    with pytest.raises(GraphError, match=r"multiplicative=True\) .* finite w_min and w_max"):
        STDP(multiplicative=True)
    with pytest.raises(GraphError, match="tau_pre=0.0 must be > 0"):
        STDP(tau_pre=0)

    class PeekingTrace(PlasticityRule):
        pre_traces = {"x": 0.0}

        def traces(self, s, **options):
            return {"x": s.x + s.post}

        def dw(self, s, **options):
            return s.x * s.post

    with pytest.raises(GraphError, match=r"pre trace 'x' reads \['post'\]"):
        PeekingTrace().equations()

    class Tangled(PlasticityRule):
        pre_traces = {"x": 0.0}

        def traces(self, s, **options):
            return {"x": s.x / 2 + s.pre}

        def dw(self, s, **options):
            return sp.exp(s.x * s.post)

    with pytest.raises(LoweringError, match=r"exp\(post\*x\) of dw mixes pre-synaptic, post-synaptic"):
        Learner(torch.nn.Linear(2, 2), Tangled(), post=snn.IF())
    with pytest.raises(TypeError, match="reserved"):
        type("Clash", (PlasticityRule,), {"params": {"w": 1.0}})


def test_learning_declarations_do_not_import_torch():
    code = ("import sys, snnir.learning, snnir.lowering; from snnir.learning import STDP; "
            "snnir.lowering.lower_rule(STDP().equations()); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_learners_record_through_optimized_synapse_neuron_groups():
    """``snnir.optimize`` folds batchnorms and groups synapse + neuron: the learners still see
    the synapse's input and the neuron's spikes, so they learn exactly as without the passes."""
    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(1, 4, 3, padding=1, bias=False), snn.BatchNorm2d(4), snn.LIF(v_threshold=0.2), snn.Flatten(),
        snn.Linear(64, 3), snn.IF(v_threshold=0.2)).eval(), "m")
    learner = Learner(net, STDP(a_plus=0.1), synapse="4", post="5")
    g = snnir.trace(net, torch.zeros(2, 1, 1, 4, 4))
    learner.close()
    optimized = snnir.optimize(g)
    assert ["_4", "_5"] in optimized.meta.get("groups", []), "the passes grouped the learning synapse"
    x = _spikes((5, 2, 1, 4, 4), 0.5, 24, torch.float32)
    deltas = []
    for graph in (g, optimized):
        module = snnir.compile(graph)
        with torch.no_grad():
            module(x)
        assert module.learners["_4"].pending_steps == 5
        deltas.append(module.learners["_4"].step())
    assert float(deltas[0].abs().sum()) > 0
    torch.testing.assert_close(deltas[1], deltas[0], rtol=0, atol=1e-6)


def test_learning_mixes_with_autograd_safely():
    """The update counts as an in-place change of the weight: a graph built on the old weight is
    refused by backward (as after an optimizer step), a new forward trains normally."""
    syn, lif = snn.Linear(4, 3, bias=False), snn.LIF(v_threshold=0.1)
    learner = Learner(syn, STDP(), post=lif)
    x = torch.ones(2, 4, requires_grad=True)  # the input gradient needs the weight
    out = lif(syn(x))
    learner.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    snn.reset(lif)
    learner.disable()
    lif(syn(torch.ones(2, 4))).sum().backward()
    assert syn.weight.grad is not None and learner.pending_steps == 0
    assert learner.step() is None

"""Passes: each rewrites as intended, never mutates its input, and preserves behaviour."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snnir
from snnir import Graph
from snnir.passes import DEFAULT_PIPELINE, PassCheckError, get_pass, optimize, register_pass
from snnir.passes.pipeline import run_torch


def f32(*shape, scale=1.0, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def bn_params(c, seed=0):
    r = np.random.default_rng(seed)
    return {"running_mean": r.normal(0, 0.3, c).astype(np.float32),
            "running_var": r.uniform(0.5, 2, c).astype(np.float32),
            "weight": r.uniform(0.5, 1.5, c).astype(np.float32), "bias": r.normal(0, 0.2, c).astype(np.float32)}


def conv_bn_graph() -> Graph:
    g = Graph("conv_bn")
    x = g.add_input((2, 8, 8))
    c = g.add_node("conv2d", [x], attrs={"padding": 1}, params={"weight": f32(4, 2, 3, 3, scale=0.6)})
    b = g.add_node("batchnorm", [c], params=bn_params(4))
    n = g.add_node("neuron", [b], attrs={"model": "LIF"})
    r = g.add_node("relu", [n])
    b2 = g.add_node("batchnorm", [r], params=bn_params(4, 1))  # not after a conv: becomes affine
    f = g.add_node("flatten", [b2])
    lin = g.add_node("linear", [f], params={"weight": f32(5, 256, scale=0.2), "bias": f32(5)})
    g.add_output(g.add_node("neuron", [lin], attrs={"model": "IF"}))
    return g.validate()


def _snapshot(g: Graph):
    structure, arrays = g.to_dict()
    return structure, {k: v.copy() for k, v in arrays.items()}


@pytest.mark.parametrize("name", DEFAULT_PIPELINE)
def test_passes_do_not_mutate_their_input(name):
    g = conv_bn_graph()
    before = _snapshot(g)
    get_pass(name)(g)
    after = _snapshot(g)
    assert before[0] == after[0]
    assert all(np.array_equal(before[1][k], after[1][k]) for k in before[1])


def test_fold_batchnorm_into_conv_and_affine():
    g = conv_bn_graph()
    h = optimize(g, ["fold_batchnorm"], check=True)
    ops = [n.op for n in h]
    assert ops.count("batchnorm") == 0 and ops.count("affine") == 1
    assert "bias" in h.node("conv2d").params
    # against the math: conv(x) * s + (beta - mean s) with s = gamma / sqrt(var + eps)
    p = bn_params(4)
    s = p["weight"] / np.sqrt(p["running_var"] + 1e-5)
    expected = g.node("conv2d").params["weight"] * s[:, None, None, None]
    np.testing.assert_allclose(h.node("conv2d").params["weight"], expected, rtol=1e-6)
    np.testing.assert_allclose(h.node("conv2d").params["bias"], p["bias"] - p["running_mean"] * s, rtol=1e-5, atol=1e-7)


def test_fuse_elementwise_chain_and_into_linear():
    g = Graph()
    x = g.add_input((6,))
    lin = g.add_node("linear", [x], params={"weight": f32(3, 6), "bias": f32(3)})
    s1 = g.add_node("scale", [lin], attrs={"factor": 2.0})
    a = g.add_node("affine", [s1], params={"weight": np.array([1.0, 0.5, 2.0], np.float32),
                                           "bias": np.array([0.1, 0.2, 0.3], np.float32)})
    s2 = g.add_node("scale", [a], attrs={"factor": -1.5})
    g.add_output(g.add_node("neuron", [s2], attrs={"model": "LIF", "v_reset": None}))
    h = optimize(g, ["fuse_elementwise"], check=True)
    assert [n.op for n in h] == ["input", "linear", "neuron", "output"]
    w = g.node("linear").params["weight"] * (2.0 * np.array([1.0, 0.5, 2.0]) * -1.5)[:, None]
    np.testing.assert_allclose(h.node("linear").params["weight"], w, rtol=1e-6)


def test_eliminate_dead_and_identities():
    g = Graph()
    x = g.add_input((4,))
    dead = g.add_node("relu", [x], id="dead")
    g.add_node("scale", [dead], attrs={"factor": 3.0}, id="dead2")
    one = g.add_node("scale", [x], attrs={"factor": 1.0})
    drop = g.add_node("dropout", [one], attrs={"p": 0.0})
    single = g.add_node("add", [drop])
    g.add_output(g.add_node("neuron", [single], attrs={"model": "IF"}))
    h = optimize(g, ["eliminate_dead"], check=True)
    assert [n.op for n in h] == ["input", "neuron", "output"]


def test_fold_constants():
    g = Graph()
    x = g.add_input((3,))
    c = g.add_node("constant", [], params={"value": np.array([1.0, -2.0, 0.5], np.float32)})
    lin = g.add_node("linear", [c], params={"weight": f32(3, 3), "bias": f32(3)})
    r = g.add_node("relu", [lin])
    s = g.add_node("add", [x, r])
    g.add_output(g.add_node("neuron", [s], attrs={"model": "IF"}))
    h = optimize(g, ["fold_constants"], check=True)
    assert sorted(n.op for n in h) == sorted(["input", "constant", "add", "neuron", "output"])
    value = next(n for n in h if n.op == "constant").params["value"]
    lin = g.node("linear").params
    ref = np.maximum(lin["weight"] @ np.array([1.0, -2.0, 0.5]) + lin["bias"], 0)
    np.testing.assert_allclose(value, ref, rtol=1e-6)


def test_group_synapse_neuron():
    g = conv_bn_graph()
    h = optimize(g, ["group_synapse_neuron"])
    assert h.meta["groups"] == [["conv2d", "batchnorm", "neuron"], ["linear", "neuron_1"]]
    h = optimize(g, ["fold_batchnorm", "group_synapse_neuron"])
    assert ["conv2d", "neuron"] in h.meta["groups"]
    x = np.random.default_rng(0).uniform(0, 2, (5, 2, 2, 8, 8)).astype(np.float32)
    ref = run_torch(optimize(g, ["fold_batchnorm"]), [x])[0]
    assert np.array_equal(run_torch(h, [x])[0], ref)


def test_pipeline_check_names_a_broken_pass():
    @register_pass("test_break_weights")
    def breaks(g: Graph) -> Graph:
        g = g.copy()
        g.node("linear").params["weight"] = g.node("linear").params["weight"] * -1
        return g

    with pytest.raises(PassCheckError, match="pass 'test_break_weights' changed output 0"):
        optimize(conv_bn_graph(), ["fold_batchnorm", "test_break_weights"], check=True)
    with pytest.raises(ValueError, match="unknown pass 'nope'"):
        optimize(conv_bn_graph(), ["nope"])


def test_default_pipeline_on_a_traced_model_and_plan_is_serialized(tmp_path):
    from snnir import nn as snn

    torch.manual_seed(0)
    net = torch.nn.Sequential(snn.Conv2d(1, 4, 3, padding=1), snn.BatchNorm2d(4), snn.LIF(), snn.Flatten(),
                              snn.Linear(64, 3), snn.Scale(2.0), snn.LIF())
    net.eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
    g = snnir.trace(net, torch.rand(4, 2, 1, 4, 4))
    h = optimize(g, check=True)
    assert [n.op for n in h] == ["input", "conv2d", "neuron", "flatten", "linear", "neuron", "output"]
    assert h.meta["schedule"]["regions"] == [{"mode": "sequence", "nodes": [n.id for n in h], "sample_elems": 64}]
    snnir.save(h, tmp_path / "h.snnir")
    assert snnir.load(tmp_path / "h.snnir").meta == h.meta
    assert snnir.serialization.dumps(snnir.load(tmp_path / "h.snnir")) == (tmp_path / "h.snnir").read_bytes()


# --- random graphs (hypothesis) --------------------------------------------------------------

@st.composite
def random_graphs(draw):
    """Random valid graphs: layer stacks of linear/scale/affine/batchnorm/relu/neurons, residual
    branches (add), and recurrent loops (add <- linear <- neuron)."""
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    width = draw(st.sampled_from([3, 5]))
    g = Graph("random")
    h = g.add_input((width,))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["linear", "scale", "affine", "batchnorm", "relu", "lif", "if",
                                     "residual", "recurrent", "dropout0", "dead"]))
        if kind == "linear":
            h = g.add_node("linear", [h], params={"weight": (rng.normal(0, 1, (width, width))).astype(np.float32),
                                                  "bias": rng.normal(0, 0.2, width).astype(np.float32)})
        elif kind == "scale":
            h = g.add_node("scale", [h], attrs={"factor": float(rng.choice([0.5, 2.0, -1.0, 1.0]))})
        elif kind == "affine":
            h = g.add_node("affine", [h], params={"weight": rng.uniform(0.5, 2, width).astype(np.float32),
                                                  "bias": rng.normal(0, 0.3, width).astype(np.float32)})
        elif kind == "batchnorm":
            h = g.add_node("batchnorm", [h], params=bn_params(width, int(rng.integers(100))))
        elif kind == "relu":
            h = g.add_node("relu", [h])
        elif kind in ("lif", "if"):
            h = g.add_node("neuron", [h], attrs={"model": kind.upper(), "v_reset": rng.choice([0.0, None])})
        elif kind == "residual":
            branch = g.add_node("scale", [h], attrs={"factor": 0.5})
            branch = g.add_node("neuron", [branch], attrs={"model": "LIF"})
            h = g.add_node("add", [h, branch])
        elif kind == "recurrent":
            entry = g.add_node("add", [h])
            neuron = g.add_node("neuron", [entry], attrs={"model": "LIF"})
            w_rec = rng.normal(0, 0.5, (width, width)).astype(np.float32)
            fb = g.add_node("linear", [neuron], params={"weight": w_rec})
            g.add_edge(fb, entry, port=1, offset=1)
            h = neuron
        elif kind == "dropout0":
            h = g.add_node("dropout", [h], attrs={"p": 0.0})
        else:
            g.add_node("relu", [h])  # nobody reads it
    g.add_output(g.add_node("neuron", [h], attrs={"model": "IF", "v_threshold": 0.5}))
    return g.validate()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_pipeline_preserves_random_graphs(g):
    h = optimize(g, check=True)  # raises PassCheckError naming a pass that changed the outputs
    assert "schedule" in h.meta


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_plan_equals_step_by_step_execution(g):
    """The schedule's regions (whole-sequence and step-by-step) compute what a plain per-step
    loop over all nodes computes."""
    g = optimize(g, ["schedule"])
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1.5, (7, 2, g.node("input").shape[0])).astype(np.float32))
    planned = snnir.compile(g, step_mode="m").eval()
    stepped = snnir.compile(g, step_mode="s").eval()
    with torch.no_grad():
        a = planned(x)
        b = torch.stack([stepped(xt) for xt in x])
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("train", [False, True])
def test_time_blocks_give_the_same_outputs_and_gradients(train):
    """Sequence regions run in blocks of time steps: the same values as the whole sequence."""
    from snnir import nn as snn

    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(snn.Conv2d(1, 4, 3, padding=1), snn.LIF(), snn.Dropout2d(0.3),
                                                snn.Flatten(), snn.Linear(64, 5), snn.Dropout(0.2), snn.CubaLIF(),
                                                snn.SynapseFilter(2.0), snn.Delay(2)), "m")
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[4].weight.mul_(3)
    x = torch.rand(11, 3, 1, 4, 4) * 2
    g = optimize(snnir.trace(net, x), ["schedule"])
    results = []
    for budget in (1, 1 << 30):  # one step per block, or everything at once
        m = snnir.compile(g).train(train)
        m.time_block_bytes = budget
        torch.manual_seed(1)
        xi = x.clone().requires_grad_()
        y = m(xi)
        (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
        results.append((y.detach(), xi.grad, [p.grad for p in m.parameters()]))
    assert torch.equal(results[0][0], results[1][0]) and results[0][0].sum() > 0
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

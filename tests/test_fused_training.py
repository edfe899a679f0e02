"""Whole-network fast paths against their reference paths: BatchNorm inside the neuron pass,
chains in compiled graphs, channels-last and bfloat16 compilation, torch.compile of a compiled
graph.

float64 runs are compared tightly (the fused BatchNorm sums its statistics in another order than
torch, so float32 voltages may differ in the last bit: float32 spikes are compared where the
reference voltage is not within 1e-4 of the threshold).
"""

import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.backends.torch import fused_bn
from snnir.backends.torch.batchnorm_kernel import batch_norm_backward, channel_stats


def _pair(bn_kw, neuron_kw, dtype):
    torch.manual_seed(7)
    mods = []
    for _ in range(2):
        bn = snn.BatchNorm2d(4, step_mode="m", **bn_kw).to(dtype)
        if bn.weight is not None:
            with torch.no_grad():
                bn.weight.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
                bn.bias.copy_(torch.tensor([-0.2, 0.0, 0.3, 0.1]))
        mods.append((bn, snn.LIF(step_mode="m", store_v_seq=True, **neuron_kw).to(dtype)))
    return mods


BN_CASES = [({}, True), ({}, False), ({"momentum": None}, True), ({"affine": False}, True),
            ({"track_running_stats": False}, True)]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("bn_kw,train", BN_CASES, ids=[f"{k}-train{t}" for k, t in BN_CASES])
def test_batchnorm_inside_the_neuron_equals_batchnorm_then_neuron(bn_kw, train, layout):
    (bn, lif), (bn_ref, lif_ref) = _pair(bn_kw, {"tau": 2.0}, torch.float64)
    x = torch.randn(5, 6, 4, 5, 5, dtype=torch.float64) * 2 + 0.5
    if layout == "channels_last":
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])
    for module in (bn, bn_ref):
        module.train(train)
        if not train:
            with torch.no_grad():
                module.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
                module.running_var.copy_(torch.tensor([0.5, 1.5, 2.0, 1.0]))
    for _ in range(2):  # two steps: running statistics and num_batches_tracked advance alike
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        assert fused_bn.applies(bn, lif, xa)
        ya = fused_bn.batchnorm_neuron(bn, lif, xa)
        yb = lif_ref(bn_ref(xb))
        assert torch.equal(ya, yb) and 0 < ya.mean() < 1
        torch.testing.assert_close(lif.v_seq, lif_ref.v_seq, rtol=1e-12, atol=1e-12)
        g = torch.linspace(-1, 1, ya.numel(), dtype=torch.float64).view_as(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
        for p, q in zip(bn.parameters(), bn_ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
        for name, buf in bn.named_buffers():
            torch.testing.assert_close(buf, dict(bn_ref.named_buffers())[name], rtol=1e-12, atol=1e-12)
        snn.reset(lif), snn.reset(lif_ref)


def test_batchnorm_inside_the_neuron_float32_and_bfloat16():
    (bn, lif), (bn_ref, lif_ref) = _pair({}, {"tau": 2.0}, torch.float32)
    torch.manual_seed(8)
    x = torch.randn(4, 8, 4, 6, 6) * 2 + 0.5
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = fused_bn.batchnorm_neuron(bn, lif, xa), lif_ref(bn_ref(xb))
    clear = (lif_ref.v_seq - 1.0).abs() > 1e-4  # away from the threshold: same spikes
    assert torch.equal(ya[clear], yb[clear]) and (ya == yb).float().mean() > 0.999
    g = torch.randn_like(ya)
    ya.backward(g), yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.weight.grad, bn_ref.weight.grad, rtol=1e-5, atol=1e-6)
    # bfloat16 input (autocast's conv output): float32 statistics and voltages, nothing rounded to 16 bits
    (bn16, lif16), _ = _pair({}, {"tau": 2.0}, torch.float32)
    x16 = x.bfloat16().requires_grad_()
    y16 = fused_bn.batchnorm_neuron(bn16, lif16, x16)
    (bn32, lif32), _ = _pair({}, {"tau": 2.0}, torch.float32)
    x32 = x16.detach().float().requires_grad_()
    y32 = lif32(bn32(x32))
    assert y16.dtype == torch.bfloat16 and lif16.v.dtype == torch.float32
    clear = (lif32.v_seq - 1.0).abs() > 1e-4
    assert torch.equal(y16.float()[clear], y32[clear])
    y16.backward(g.bfloat16()), y32.backward(g.bfloat16().float())
    torch.testing.assert_close(x16.grad.float(), x32.grad, rtol=2e-2, atol=2e-3)  # bfloat16's 8 bits
    torch.testing.assert_close(bn16.weight.grad, bn32.weight.grad, rtol=1e-2, atol=1e-3)


def test_monitored_modules_run_unfused():
    bn, lif = snn.BatchNorm2d(3, step_mode="m"), snn.LIF(step_mode="m")
    x = torch.randn(2, 2, 3, 4, 4)
    assert fused_bn.applies(bn, lif, x)
    handle = lif.register_forward_hook(lambda *a: None)
    assert not fused_bn.applies(bn, lif, x)
    handle.remove()
    assert not fused_bn.applies(bn, snn.LIF(step_mode="m", fused=False), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_channel_stats_against_float64(dtype, layout):
    torch.manual_seed(9)
    x = (torch.randn(6, 5, 7, 3) * 3 + 50).to(dtype).contiguous(memory_format=layout)
    mean, var = channel_stats(x)
    ref_var, ref_mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(var, ref_var, rtol=1e-9, atol=1e-10)
    sliced = torch.randn(4, 3, 6, 6, dtype=torch.float64)[:, :, ::2]  # not dense: torch's var_mean
    torch.testing.assert_close(channel_stats(sliced)[1], sliced.var(dim=(0, 2, 3), unbiased=False))



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_backward_against_aten(dtype, layout, affine):
    """The pooled-output BatchNorm backward gives ATen's gradients (float64 sums: float32 differs from
    ATen's float32 sums in the last bits only)."""
    torch.manual_seed(11)
    x = (torch.randn(6, 5, 7, 3) * 3 + 2).to(dtype).contiguous(memory_format=layout)
    g = torch.randn(6, 5, 7, 3).to(dtype).contiguous(memory_format=layout)
    weight = torch.rand(5, dtype=dtype) + 0.5 if affine else None
    var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    invstd = (var + 1e-5).rsqrt()
    for mask in ([True, True, True], [True, False, False], [False, True, True]):
        mask = [mask[0], mask[1] and affine, mask[2] and affine]
        got = batch_norm_backward(g, x, weight, mean, invstd, mask)
        ref = torch.ops.aten.native_batch_norm_backward(g, x, weight, None, None, mean, invstd, True, 1e-5, mask)
        tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
        for a, b in zip(got, ref):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
                torch.testing.assert_close(a, b, **tol)
    # what the kernel does not take goes back to ATen (the caller's fallback)
    assert batch_norm_backward(g, x.to(torch.bfloat16), None, mean, invstd, [True, False, False]) is None
    assert batch_norm_backward(g.transpose(2, 3), x, None, mean, invstd, [True, False, False]) is None


def conv_net():
    torch.manual_seed(10)
    net = torch.nn.Sequential(
        snn.Conv2d(2, 8, 3, padding=1, bias=False), snn.BatchNorm2d(8), snn.LIF(tau=2.0), snn.MaxPool2d(2),
        snn.Conv2d(8, 8, 3, padding=1, stride=2, bias=False), snn.BatchNorm2d(8), snn.LIF(tau=2.0),
        snn.Flatten(), snn.Linear(8 * 2 * 2, 10), snn.LIF(tau=2.0))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(2.5)
        net[8].weight.abs_().mul_(4.0)
    return snn.set_step_mode(net, "m")


def _step(m, x):
    x = x.clone().requires_grad_()
    y = m(x)
    y.backward(torch.linspace(0.5, 1.5, y.numel(), dtype=y.dtype).view_as(y))
    return y.detach(), x.grad, {n.removeprefix("_orig_mod."): p.grad for n, p in m.named_parameters()}


def test_compiled_chains_and_channels_last_equal_the_unfused_graph():
    x = torch.rand(4, 3, 2, 8, 8, dtype=torch.float64) * 2
    graph = snnir.trace(conv_net().double(), x)
    assert [len(c) for c in snnir.optimize(graph, ["group_synapse_neuron"]).meta["groups"]] == [3, 3, 2]
    ref = _step(snnir.compile(graph, fuse=False).double(), x)
    assert 0 < ref[0].mean() < 1
    for kwargs in ({}, {"memory_format": torch.channels_last}):
        got = _step(snnir.compile(graph, **kwargs).double(), x)
        assert torch.equal(got[0], ref[0]), kwargs
        torch.testing.assert_close(got[1], ref[1], rtol=1e-9, atol=1e-12)
        for name in ref[2]:
            torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-9, atol=1e-12, msg=name)
    # a captured intermediate value is kept: its chain runs unfused
    m = snnir.compile(graph)
    m.capture = {"_1"}
    with torch.no_grad():
        out = m(x.float())
    assert m.captured["_1"].shape == (4, 3, 8, 8, 8) and out.shape == (4, 3, 10)


def test_bfloat16_channels_last_training_matches_float32_closely():
    x = torch.rand(4, 8, 2, 8, 8) * 2
    graph = snnir.trace(conv_net(), x)
    ref = _step(snnir.compile(graph), x)
    m = snnir.compile(graph, memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _step(m, x)
    assert got[0].dtype == torch.bfloat16
    assert (got[0].float() == ref[0]).float().mean() > 0.9  # bfloat16 convolutions flip some spikes
    for layer in m.neurons().values():
        assert layer.v.dtype == torch.float32
    for name, g in got[2].items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
        cos = torch.nn.functional.cosine_similarity(g.flatten(), ref[2][name].flatten(), dim=0)
        assert cos > 0.8, name


def test_torch_compile_of_a_compiled_graph_has_no_graph_break():
    x = torch.rand(4, 16, 2, 8, 8) * 2  # 64 rows into the 10-output readout: where eager takes skinny_kernel
    graph = snnir.trace(conv_net(), x)
    m = snnir.compile(graph)
    explained = torch._dynamo.explain(m)(x)
    assert explained.graph_break_count == 0
    code = "".join(gm.code for gm in explained.graphs)
    assert code.count("snnir.neuron_forward") == 3
    eager = _step(snnir.compile(graph, fuse=False, memory_format=torch.contiguous_format), x)  # NCHW, as traced
    m.reset()
    compiled = _step(torch.compile(m, backend="aot_eager", fullgraph=True), x)
    assert torch.equal(compiled[0], eager[0])
    for name in eager[2]:
        torch.testing.assert_close(compiled[2][name], eager[2][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("layers", ["linear", "conv1d"])
def test_batchnorm1d_chains_equal_the_unfused_graph(layers):
    torch.manual_seed(13)
    if layers == "linear":
        net, x = torch.nn.Sequential(snn.Linear(20, 16), snn.BatchNorm1d(16), snn.LIF()), torch.rand(5, 6, 20)
    else:
        net, x = torch.nn.Sequential(snn.Conv1d(2, 4, 3), snn.BatchNorm1d(4), snn.LIF()), torch.rand(5, 6, 2, 10)
    net, x = snn.set_step_mode(net, "m").double(), x.double() * 2
    graph = snnir.trace(net, x)
    ref = _step(snnir.compile(graph, fuse=False).double(), x)
    got = _step(snnir.compile(graph).double(), x)
    assert torch.equal(got[0], ref[0]) and 0 < ref[0].mean() < 1
    torch.testing.assert_close(got[1], ref[1], rtol=1e-9, atol=1e-12)
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-9, atol=1e-12, msg=name)

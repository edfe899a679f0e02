"""The event-driven linear layer (``spike_linear``) against dense float64 references, and its use
by compiled graphs for the linear layers that read a neuron's spikes."""

import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.backends.torch import spike_linear


def _reference(x, w, b, g):
    """Float64 dense ``F.linear`` and its gradients."""
    args = [t.detach().double().requires_grad_() for t in (x, w, *([b] if b is not None else []))]
    y = torch.nn.functional.linear(*args)
    y.backward(g.double())
    return y.detach(), [a.grad for a in args]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.2, 1.0])
@pytest.mark.parametrize("rows,inputs,outputs,bias", [(64, 37, 5, True), (640, 200, 130, False),
                                                       (100, 300, 512, True)])
def test_event_linear_equals_the_dense_product(dtype, density, rows, inputs, outputs, bias):
    torch.manual_seed(21)
    x = (torch.rand(rows, inputs) < density).to(dtype).requires_grad_()
    w = (torch.randn(outputs, inputs, dtype=dtype) / inputs**0.5).requires_grad_()
    b = torch.randn(outputs, dtype=dtype, requires_grad=True) if bias else None
    assert spike_linear.supported(x, w)
    # density given: the weight gradient by the event kernel up to MAX_DENSITY_GW, a GEMM above it
    y = spike_linear.linear(x, w, b, density=density)
    g = torch.randn(rows, outputs, dtype=dtype)
    y.backward(g)
    y_ref, grads = _reference(x, w, b, g)
    # float64: only the summation order differs; float32: a few ulps of the terms summed
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    scale_y = (x.detach().double().abs() @ w.detach().double().abs().t()).max() + 1
    assert (y.double() - y_ref).abs().max() <= tol * scale_y
    scale_w = (g.double().abs().t() @ x.detach().double().abs()).max() + 1
    assert (w.grad.double() - grads[1]).abs().max() <= tol * scale_w
    assert (x.grad.double() - grads[0]).abs().max() <= tol * (g.abs() @ w.detach().abs()).max().double() + 1e-12
    if bias:
        torch.testing.assert_close(b.grad.double(), grads[2], rtol=tol, atol=tol * rows)
    if density == 0.0:  # no event: exactly the bias, and a zero weight gradient
        assert torch.equal(w.grad, torch.zeros_like(w))
        assert torch.equal(y, (b.detach() if bias else torch.zeros(outputs, dtype=dtype)).expand(rows, outputs))


def test_event_weight_gradient_kernel_at_every_density():
    """The event kernel's weight gradient itself (``density`` 0: never the GEMM), on graded input
    with negative values and a strided row layout: zeros are skipped, whatever the values."""
    torch.manual_seed(22)
    base = torch.randn(300, 90, dtype=torch.float64) * (torch.rand(300, 90) < 0.5)
    x = base[:, 5:85].requires_grad_()  # rows 90 apart
    w = torch.randn(70, 80, dtype=torch.float64, requires_grad=True)
    y = spike_linear.linear(x, w, None, density=0.0)
    g = torch.randn(300, 70, dtype=torch.float64)
    y.backward(g)
    y_ref, grads = _reference(x, w, None, g)
    torch.testing.assert_close(y.detach(), y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.grad, grads[1], rtol=1e-12, atol=1e-12)
    assert spike_linear.nonzero(x.detach()) == int(torch.count_nonzero(x))


def test_event_density_decides_the_path():
    torch.manual_seed(23)
    w = torch.randn(100, 50)
    sparse, dense = (torch.rand(200, 50) < 0.05).float(), (torch.rand(200, 50) < 0.5).float()
    assert spike_linear.event_density(sparse, w) == pytest.approx(float(sparse.mean()))
    assert spike_linear.event_density(dense, w) is None
    assert spike_linear.event_density(sparse[:10], w) is None  # a few rows: BLAS
    assert spike_linear.event_density(sparse.half(), w.half()) is None  # 16-bit: not supported
    assert not spike_linear.supported(sparse.t(), w)  # columns not contiguous


def _mlp(width=160):
    torch.manual_seed(24)
    net = torch.nn.Sequential(snn.Flatten(), snn.Linear(64, width), snn.LIF(tau=2.0), snn.Linear(width, width),
                              snn.LIF(tau=2.0), snn.Linear(width, 10), snn.LIF(tau=2.0))
    with torch.no_grad():
        net[1].weight.mul_(1.4)
        net[3].weight.mul_(6.0)
        net[5].weight.mul_(4.0)
    return snn.set_step_mode(net, "m")


def _step(m, x):
    x = x.clone().requires_grad_()
    y = m(x)
    y.backward(torch.linspace(0.5, 1.5, y.numel(), dtype=y.dtype).view_as(y))
    return y.detach(), x.grad, {n.removeprefix("_orig_mod."): p.grad for n, p in m.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_spiking_mlp_takes_the_event_path_and_equals_the_unfused_graph(dtype, monkeypatch):
    torch.manual_seed(25)
    x = torch.rand(8, 16, 1, 8, 8, dtype=dtype) * 2
    graph = snnir.trace(_mlp().to(dtype), x)
    m = snnir.compile(graph).to(dtype)
    spiking = [k for k, layer in m.layers.items() if getattr(layer, "spike_input", False)]
    assert len(spiking) == 2  # the two linear layers fed by a LIF; not the first one (fed by the image)
    calls = []
    real = spike_linear._SpikeLinear.apply
    monkeypatch.setattr(spike_linear._SpikeLinear, "apply", lambda *a: calls.append(a[3]) or real(*a))
    got = _step(m, x)
    assert len(calls) == 1 and 0.01 < calls[0] <= spike_linear.MAX_DENSITY_GW  # the hidden layer: both kernels
    dense = snnir.compile(graph, fuse=False).to(dtype)  # the same graph, modules one by one, dense linear
    for layer in dense.layers.values():
        layer.spike_input = False
    ref = _step(dense, x)
    assert len(calls) == 1
    monkeypatch.undo()
    if dtype == torch.float64:
        assert torch.equal(got[0], ref[0])
        for name in ref[2]:
            torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)
    else:  # float32 summation order may flip a spike whose voltage is at the threshold
        assert (got[0] == ref[0]).float().mean() > 0.99
        for name in ref[2]:
            cos = torch.nn.functional.cosine_similarity(got[2][name].flatten(), ref[2][name].flatten(), dim=0)
            assert cos > 0.99, name


def test_torch_compile_of_a_spiking_mlp_has_no_graph_break():
    torch.manual_seed(26)
    x = torch.rand(8, 16, 1, 8, 8) * 2
    m = snnir.compile(snnir.trace(_mlp(), x))
    explained = torch._dynamo.explain(m)(x)
    assert explained.graph_break_count == 0
    eager = _step(m, x)
    m.reset()
    compiled = _step(torch.compile(m, backend="aot_eager", fullgraph=True), x)  # dense linear under compile
    assert (compiled[0] == eager[0]).float().mean() > 0.99
    for name in eager[2]:
        cos = torch.nn.functional.cosine_similarity(compiled[2][name].flatten(), eager[2][name].flatten(), dim=0)
        assert cos > 0.99, name

"""``torch.compile`` of a compiled graph runs snnir's own CPU kernels as custom ops (BatchNorm
statistics and backward inside the BatchNorm -> neuron pass, the running-statistics update, max
pooling), so a compiled step computes what the eager compiled graph computes: the same kernels,
hence the same outputs, gradients and running statistics bit for bit, without graph breaks."""

import pytest
import torch

import snnir
from snnir import nn as snn


class _Net(torch.nn.Module):
    """conv-BN-LIF twice with a residual sum (SEW's ADD), pooling, conv-BN(momentum=None)-LIF, pooling."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a = torch.nn.Sequential(snn.Conv2d(2, 8, 3, padding=1, bias=False), snn.BatchNorm2d(8), snn.LIF(tau=2.0))
        self.b = torch.nn.Sequential(snn.Conv2d(8, 8, 3, padding=1, bias=False), snn.BatchNorm2d(8), snn.LIF(tau=2.0))
        self.c = torch.nn.Sequential(
            snn.MaxPool2d(2), snn.Conv2d(8, 8, 3, padding=1, bias=False), snn.BatchNorm2d(8, momentum=None),
            snn.LIF(tau=2.0), snn.MaxPool2d(3, 2, 1))
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_(2.5)
        snn.set_step_mode(self, "m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        return self.c(self.b(a) + a)


def _train_step(m, x, autocast: bool):
    x = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = m(x)
    y.float().backward(torch.linspace(0.5, 1.5, y.numel()).view_as(y))
    return y.detach(), x.grad, {n.removeprefix("_orig_mod."): p.grad for n, p in m.named_parameters()}


def _all_code(explained) -> str:
    return "".join(sub.code for gm in explained.graphs for _, sub in gm.named_modules() if hasattr(sub, "code"))


@pytest.mark.parametrize("backend,kwargs,autocast", [
    ("inductor", {}, False),  # the automatic layout: channels-last convolutions on CPU
    ("inductor", {"memory_format": torch.contiguous_format}, False),
    ("aot_eager", {}, True),
])
def test_torch_compile_runs_the_eager_kernels(backend, kwargs, autocast):
    # bit for bit where the convolutions run as in eager: Inductor turns NCHW convolutions
    # channels-last on CPU (its layout optimization), whose oneDNN sums round differently
    exact = not kwargs or backend != "inductor"
    x = torch.rand(4, 8, 2, 32, 32) * 2  # the residual sum is 1 MiB: a pooled buffer (buffers.add)
    graph = snnir.trace(_Net(), x)
    eager, traced = snnir.compile(graph, **kwargs), snnir.compile(graph, **kwargs)
    traced.load_state_dict(eager.state_dict())
    explained = torch._dynamo.explain(traced)(x)
    assert explained.graph_break_count == 0
    code = _all_code(explained)
    assert code.count("snnir.channel_stats") == 3 and code.count("snnir.update_running_stats") == 3
    assert "snnir.pooled_add" in code
    assert code.count("snnir.max_pool2d") >= 2 and "batch_norm_backward" in code
    traced.reset()
    for buf, ref in zip(traced.buffers(), eager.buffers()):  # explain ran a step: start both alike
        buf.copy_(ref)
    compiled = torch.compile(traced, backend=backend, fullgraph=True)
    for step in range(2):  # the second step starts from updated running statistics
        want, got = _train_step(eager, x, autocast), _train_step(compiled, x, autocast)
        eager.reset(), traced.reset()
        assert 0 < want[0].float().mean() < 1
        assert torch.equal(got[0], want[0]), step
        for name, g in [("x", want[1]), *want[2].items()]:
            have = got[1] if name == "x" else got[2][name]
            if exact:
                assert torch.equal(have, g), (step, name)
            else:
                assert (have - g).abs().max() <= 1e-5 * g.abs().max(), (step, name)
    for (name, buf), ref in zip(traced.named_buffers(), eager.buffers()):
        assert torch.equal(buf, ref) if exact else torch.allclose(buf.double(), ref.double(), rtol=1e-6), name
    counts = [int(b) for n, b in traced.named_buffers() if n.endswith("num_batches_tracked")]
    assert counts == [2, 2, 2]
    eager.eval(), traced.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        assert torch.equal(compiled(x), eager(x))
    assert torch._dynamo.explain(traced)(x).graph_break_count == 0  # running statistics, grad mode: no break

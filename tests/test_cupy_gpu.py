"""The CUDA backend on a GPU (skipped, with the reason, where CuPy or a CUDA device is missing).

The fused CUDA kernels against the per-step torch reference on the same GPU: float32 spikes and
voltages bit for bit (both evaluate the equation's operations in its written order, the kernel
with ``--fmad=false``; exp/tanh within a few ulp), gradients within 1e-5; per-neuron and learnable
per-channel parameters; float16/bfloat16 under autocast; ``snnir.compile(g, backend="cupy")`` of a
convolutional network (channels-last kept) trains. ``benchmarks/gpu_check.sh`` runs this file.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import snnir
from snnir import nn as snn
from snnir.backends.cupy import unavailable_reason  # imports without CuPy or a GPU

REASON = unavailable_reason()
# a kernel that fails to build warns and falls back to the torch loop, which would pass these
# comparisons vacuously: here that warning is an error
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"needs CuPy and a CUDA device: {REASON}"),
              pytest.mark.filterwarnings("error::RuntimeWarning")]
DEVICE = "cuda"

# (module factory, input scale, offset): every built-in, both resets
NEURONS = {
    "IF": (lambda **k: snn.IF(**k), 1.0, 0.0),
    "LIF": (lambda **k: snn.LIF(tau=3.0, **k), 2.5, 0.0),
    "LIF-no-decay-input": (lambda **k: snn.LIF(tau=3.0, decay_input=False, **k), 1.0, 0.0),
    "ParametricLIF": (lambda **k: snn.ParametricLIF(**k), 2.5, 0.0),
    "QIF": (lambda **k: snn.QIF(**k), 1.0, 0.0),
    "EIF": (lambda **k: snn.EIF(**k), 1.2, 0.0),
    "Izhikevich": (lambda **k: snn.Izhikevich(dt=0.5, **k), 15.0, 0.0),
    "CubaLIF": (lambda **k: snn.CubaLIF(tau_syn=3.0, **k), 1.0, -0.2),
    "AdaptiveLIF": (lambda **k: snn.AdaptiveLIF(a=0.2, b=0.3, **k), 2.5, 0.0),
}
TRANSCENDENTAL = {"EIF", "ParametricLIF"}


def _pair(factory, **kwargs):
    fused = factory(step_mode="m", store_v_seq=True, **kwargs).to(DEVICE)
    ref = factory(step_mode="m", store_v_seq=True, fused=False, **kwargs).to(DEVICE)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def _run(neuron, x, weights):
    xi = x.clone().requires_grad_()
    y = neuron(xi)
    ((y * weights).sum() + neuron.v.float().sum() * 0.1).backward()
    out = {"spikes": y.detach(), "v_seq": neuron.v_seq.detach(), "grad_x": xi.grad}
    out.update({f"grad_{n}": getattr(neuron, n).grad for n in neuron.learnable})
    neuron.reset()
    return out


def test_kernels_are_installed_on_the_first_cuda_tensor():
    from snnir.backends.cupy import kernel_config, runtime
    from snnir.backends.torch.fused import fused_devices

    lif = snn.LIF(step_mode="m").to(DEVICE)
    lif(torch.rand(4, 2, 8, device=DEVICE))
    assert "cuda" in fused_devices()
    assert lif._fused_key(torch.rand(4, 2, 8, device=DEVICE)) is not None
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):  # NVRTC builds, the driver loads
        assert isinstance(runtime.kernel(kernel_config("LIF"), dtype, torch.device(DEVICE)), runtime.CudaKernel)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("name", list(NEURONS))
def test_fused_cuda_equals_reference_float32(name, reset):
    factory, scale, offset = NEURONS[name]
    kwargs = {"v_reset": None} if reset == "soft" else {}
    fused, ref = _pair(factory, **kwargs)
    torch.manual_seed(0)
    T = 4 if (name, reset) == ("Izhikevich", "soft") else 37  # chunks of 16: two full, one partial
    x = torch.rand(T, 8, 257, device=DEVICE) * scale + offset * scale
    if (name, reset) == ("Izhikevich", "soft"):
        x = torch.rand(T, 8, 257, device=DEVICE) * 40 - 160
    weights = torch.randn_like(x)
    a, b = _run(fused, x, weights), _run(ref, x, weights)
    assert torch.equal(a["spikes"], b["spikes"]) and 0 < float(b["spikes"].mean()) < 1
    if name in TRANSCENDENTAL:
        torch.testing.assert_close(a["v_seq"], b["v_seq"], rtol=0, atol=1e-5)
    else:
        assert torch.equal(a["v_seq"], b["v_seq"])
    for k in a:
        if k.startswith("grad_"):
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5 * float(b[k].abs().max()))


def test_per_neuron_and_learnable_per_channel_parameters():
    shape = (3, 4, 4)
    torch.manual_seed(1)
    tau = nn.Parameter(torch.tensor([2.0, 3.0, 5.0]).view(3, 1, 1))
    factory = lambda **k: snn.LIF(tau=nn.Parameter(tau.detach().clone()),  # noqa: E731
                                  v_threshold=torch.rand(shape) * 0.6 + 0.7, v_reset=None, **k)
    fused, ref = _pair(factory)
    x = torch.rand(20, 5, *shape, device=DEVICE) * 1.6
    weights = torch.randn_like(x)
    a, b = _run(fused, x, weights), _run(ref, x, weights)
    assert torch.equal(a["spikes"], b["spikes"]) and torch.equal(a["v_seq"], b["v_seq"])
    torch.testing.assert_close(a["grad_tau"], b["grad_tau"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a["grad_x"], b["grad_x"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_16bit_follows_float32(dtype):
    """Under autocast the linear layer feeds 16-bit current; the kernel computes in float32 on it,
    so its spikes equal the float32 kernel's on the same (rounded) current."""
    torch.manual_seed(2)
    net = nn.Sequential(snn.Linear(64, 128), snn.LIF(tau=2.0)).to(DEVICE)
    snn.set_step_mode(net, "m")
    x = torch.rand(16, 32, 64, device=DEVICE)
    with torch.autocast("cuda", dtype=dtype):
        current = net[0](x)
        y = net[1](current)
    assert current.dtype == dtype and y.dtype == dtype
    snn.reset(net)
    y32 = net[1](current.float())
    assert torch.equal(y.float(), y32)
    y.float().sum().backward()  # the 16-bit backward runs and reaches the weights
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()


def test_compile_cupy_backend_conv_net_channels_last_trains():
    torch.manual_seed(3)
    net = nn.Sequential(snn.Conv2d(2, 8, 3, padding=1), snn.BatchNorm2d(8), snn.LIF(), snn.MaxPool2d(2),
                        snn.Flatten(), snn.Linear(8 * 8 * 8, 10))
    snn.set_step_mode(net, "m")
    g = snnir.trace(net, torch.rand(4, 2, 2, 16, 16))
    m = snnir.compile(g, backend="cupy", memory_format=torch.channels_last)
    assert next(m.parameters()).is_cuda
    conv = [p for p in m.parameters() if p.dim() == 4][0]
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(6, 4, 2, 16, 16, device=DEVICE)
    reference = snnir.compile(g).to(DEVICE).to(memory_format=torch.channels_last)  # the same cuDNN algorithms
    reference.load_state_dict(m.state_dict())
    for n in reference.neurons().values():
        n.fused = False
    y, y_ref = m(x), reference(x)
    lif = next(iter(m.neurons().values()))
    assert lif._fused_key(torch.rand(6, 4, 8, 16, 16, device=DEVICE)) is not None  # ran the CUDA kernels
    assert torch.equal(y, y_ref) and float(y.abs().sum()) > 0
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        snn.reset(m)
        loss = (m(x).mean(0) - 0.2).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]

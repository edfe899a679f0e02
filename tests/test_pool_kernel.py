"""The compiled max pooling against torch's ``max_pool2d``: identical outputs and gradients."""

import pytest
import torch
from torch.nn import functional as F

from snnir import nn as snn
from snnir.backends.torch import pool_kernel

CASES = [  # (input shape, kernel, stride, padding)
    ((4, 3, 8, 8), 2, None, 0),
    ((4, 3, 9, 7), 2, 2, 0),        # odd sizes: the last row/column is never pooled
    ((2, 5, 11, 11), 3, 2, 1),      # padding: windows at the border are clipped
    ((2, 2, 10, 10), 3, 1, 0),      # overlapping windows: gradients accumulate
    ((3, 6, 6), (2, 3), (1, 2), (1, 1)),
    ((2, 1, 12, 12), (4, 4), 4, 0),
]


@pytest.mark.parametrize("shape,kernel,stride,padding", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("data", ["spikes", "random"])
def test_matches_torch_max_pool2d(shape, kernel, stride, padding, dtype, data):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g, dtype=dtype)
    if data == "spikes":  # 0/1: ties everywhere, so the first-maximum rule decides the gradient
        x = (x < 0.3).to(dtype)
    assert pool_kernel.supported(x, kernel, stride or kernel, padding, 1, False, False)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    ya = pool_kernel.max_pool2d(a, kernel, stride, padding)
    yb = F.max_pool2d(b, kernel, stride, padding)
    assert torch.equal(ya, yb)
    gy = torch.randn(yb.shape, generator=g, dtype=dtype)
    ya.backward(gy)
    yb.backward(gy)
    assert torch.equal(a.grad, b.grad)


def test_nan_and_infinity_follow_torch():
    x = torch.tensor([[[[1.0, float("nan"), 3.0, 2.0], [-float("inf"), -float("inf"), float("nan"), 5.0],
                        [-float("inf"), -float("inf"), 0.0, 0.0], [-float("inf"), -float("inf"), 0.0, 0.0]]]])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = pool_kernel.max_pool2d(a, 2), F.max_pool2d(b, 2)
    assert torch.equal(ya.isnan(), yb.isnan()) and torch.equal(ya.nan_to_num(), yb.nan_to_num())
    ya.sum().backward()
    yb.sum().backward()
    assert torch.equal(a.grad, b.grad)


def test_module_uses_the_kernel_in_both_step_modes_and_falls_back():
    x = (torch.rand(5, 3, 4, 8, 8) < 0.3).float().requires_grad_()
    pool = snn.MaxPool2d(2, step_mode="m")
    y = pool(x)
    assert y.grad_fn.next_functions[0][0].name() == "_MaxPool2dBackward"  # under the unflatten view
    assert torch.equal(y, F.max_pool2d(x.flatten(0, 1), 2).unflatten(0, (5, 3)))
    single = snn.MaxPool2d(2)
    assert torch.equal(single(x[0]), F.max_pool2d(x[0], 2))
    dilated = snn.MaxPool2d(2, dilation=2)  # not covered by the kernel: torch computes it
    assert "MaxPool2DWithIndices" in dilated(x[0]).grad_fn.name()
    assert torch.equal(dilated(x[0]), F.max_pool2d(x[0], 2, dilation=2))
    assert not pool_kernel.supported(x[0].half(), 2, 2, 0, 1, False, False)
    assert not pool_kernel.supported(x[0], 2, 2, 0, 1, True, False)  # ceil_mode

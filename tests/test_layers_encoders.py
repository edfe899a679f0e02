"""Stateless layers in both step modes, dropout masks over time, and the encoders."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from snnir import nn as snn

LAYERS = [
    (lambda: snn.Linear(6, 4), (3, 6)),
    (lambda: snn.Conv1d(2, 3, 3, padding=1), (2, 9)),
    (lambda: snn.Conv2d(2, 3, 3, stride=2), (2, 7, 7)),
    (lambda: snn.BatchNorm1d(2), (2, 5)),
    (lambda: snn.BatchNorm2d(2), (2, 4, 4)),
    (lambda: snn.MaxPool1d(2), (2, 8)),
    (lambda: snn.MaxPool2d(3, 2, padding=1), (2, 7, 7)),
    (lambda: snn.AvgPool1d(3), (2, 9)),
    (lambda: snn.AvgPool2d(2), (2, 6, 6)),
    (lambda: snn.AdaptiveAvgPool1d(3), (2, 9)),
    (lambda: snn.AdaptiveAvgPool2d((2, 3)), (2, 6, 6)),
    (lambda: snn.Flatten(), (2, 3, 4)),
    (lambda: snn.ReLU(), (5,)),
]


@pytest.mark.parametrize("factory,shape", LAYERS, ids=[f"layer{i}" for i in range(len(LAYERS))])
def test_multi_step_folds_time_like_a_per_step_loop(factory, shape):
    torch.manual_seed(0)
    layer = factory().eval()
    x = torch.randn(5, 4, *shape)
    per_step = torch.stack([layer(xt) for xt in x])
    layer.step_mode = "m"
    folded = layer(x)
    torch.testing.assert_close(folded, per_step, rtol=1e-6, atol=1e-6)
    # and the layer is exactly its torch counterpart in single-step mode
    base = next(c for c in type(layer).__mro__[1:] if c.__module__.startswith("torch.nn"))
    assert isinstance(layer, base)


def test_batchnorm_multi_step_uses_statistics_over_time_and_batch():
    bn = snn.BatchNorm1d(3, step_mode="m")
    x = torch.randn(4, 5, 3) * 3 + 1
    y = bn(x)
    flat = y.reshape(-1, 3)
    torch.testing.assert_close(flat.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_multi_step_layer_rejects_missing_time_axis():
    with pytest.raises(ValueError, match=r"expects \[T, N, \.\.\.\]"):
        snn.Flatten(step_mode="m")(torch.rand(3))


@pytest.mark.parametrize("cls,shape", [(snn.Dropout, (6, 3, 50)), (snn.Dropout2d, (6, 3, 8, 4, 4))])
def test_dropout_one_mask_for_all_steps(cls, shape):
    torch.manual_seed(0)
    x = torch.ones(shape)
    d = cls(0.5, step_mode="m")
    y = d(x)
    assert torch.equal(y, y[0].expand_as(y))
    assert 0.3 < (y[0] == 0).float().mean() < 0.7
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    if cls is snn.Dropout2d:  # whole channels
        assert ((y[0] == 0).flatten(2).all(-1) | (y[0] != 0).flatten(2).all(-1)).all()
    d.step_mode = "s"
    steps = [d(xt) for xt in x]
    assert all(torch.equal(s, steps[0]) for s in steps)
    d.reset()
    assert not torch.equal(d(x[0]), steps[0])
    d.eval()
    assert torch.equal(d(x[0]), x[0])
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        cls(1.0)


def test_direct_and_periodic():
    x = torch.rand(2, 3)
    assert torch.equal(snn.direct(x, 4), x.expand(4, 2, 3))
    assert torch.equal(snn.DirectEncoder(4)(x), snn.direct(x, 4))
    pattern = torch.tensor([[1.0], [0.0], [0.0]])
    out = snn.periodic(pattern, 7)
    assert out.flatten().tolist() == [1, 0, 0, 1, 0, 0, 1]
    assert torch.equal(snn.PeriodicEncoder(7)(pattern), out)


def test_poisson_rate_and_range():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([0.0, 0.2, 0.9, 1.0])
    s = snn.poisson(x.expand(4000, 4), T=5, generator=g)
    rates = s.mean((0, 1))
    assert rates[0] == 0 and rates[3] == 1
    assert abs(rates[1] - 0.2) < 0.01 and abs(rates[2] - 0.9) < 0.01
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        snn.poisson(torch.tensor([1.5]), 3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        snn.PoissonEncoder(3)(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="positive int"):
        snn.poisson(x, 0)


@pytest.mark.parametrize("kind", ["linear", "log"])
def test_latency_one_spike_at_reference_time(kind):
    T = 8
    x = torch.linspace(0, 1, 11)
    s = snn.latency(x, T, kind)
    assert torch.equal(s.sum(0), torch.ones(11))
    t_spike = s.argmax(0).numpy()
    xs = x.numpy().astype(np.float64)
    if kind == "linear":
        ref = (T - 1) * (1 - xs)
    else:
        ref = (T - 1) - np.log(math.expm1(T - 1) * xs + 1)
    np.testing.assert_array_equal(t_spike, np.clip(np.round(ref), 0, T - 1).astype(int))
    assert t_spike[-1] == 0 and t_spike[0] == T - 1
    assert np.all(np.diff(t_spike) <= 0)  # stronger inputs never fire later
    with pytest.raises(ValueError, match="'linear' or 'log'"):
        snn.LatencyEncoder(T, kind="cubic")


def test_multi_step_on_non_sequential_loops_over_time():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.lif = snn.LIF()

        def forward(self, x):
            return self.lif(self.fc(x) * 2.0)

    net = Custom()
    x = torch.rand(6, 4, 3)
    y = snn.multi_step(net, x)
    snn.reset(net)
    ref = torch.stack([net(xt) for xt in x])
    assert torch.equal(y, ref)
    assert net.lif.step_mode == "s"
    with pytest.raises(ValueError, match=r"\[T, N, \.\.\.\]"):
        snn.multi_step(net, torch.rand(3))

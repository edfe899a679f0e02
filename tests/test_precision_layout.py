"""Neuron kernels in 16-bit dtypes and in any memory layout, against the float32 kernel, the per-step
reference path and contiguous inputs; the per-module plan cache and its invalidation.

16-bit sequences are computed in float32 (states float32), so a bfloat16/float16 kernel must give
exactly the float32 kernel's spikes on the widened input and its input gradient rounded once; the
reference path (also float32 arithmetic) the same spikes, gradients within one 16-bit ulp.
"""

import copy

import pytest
import torch

from snnir import nn as snn

NEURONS = [
    (snn.LIF, {"tau": 2.0}, 2.5),
    (snn.LIF, {"tau": torch.tensor([2.0, 3.0, 5.0]).view(3, 1, 1), "v_reset": None}, 2.5),
    (snn.CubaLIF, {"tau_syn": 3.0}, 1.5),
    (snn.ParametricLIF, {"init_tau": 2.5}, 2.5),
    (snn.AdaptiveLIF, {"a": 0.2, "b": 0.3}, 2.5),
]


def _ids(case):
    cls, kw, _ = case
    return cls.__name__ + ("-per-channel" if any(isinstance(v, torch.Tensor) for v in kw.values()) else "")


def _run(layer, x, g):
    """Spikes, input gradient, final states and learned-parameter gradients of one call."""
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(g.to(y.dtype), retain_graph=True)
    grads = [p.grad.clone() for p in layer.parameters()]
    return y.detach(), x.grad, {k: v.detach().clone() for k, v in layer.state().items()}, grads


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", NEURONS, ids=[_ids(c) for c in NEURONS])
def test_16bit_kernels_compute_in_float32(case, dtype):
    cls, kw, scale = case
    torch.manual_seed(0)
    x = (torch.rand(12, 4, 3, 5, 5) * scale).to(dtype)
    g = torch.randn(x.shape)
    fused16 = _run(cls(**kw, step_mode="m"), x, g)
    # the float32 kernel on what the 16-bit one computes with: the widened input, and tensor
    # parameters rounded to the input's dtype (as a 16-bit input rounds them)
    m32 = cls(**kw, step_mode="m")
    with torch.no_grad():
        for t in [*m32.parameters(), *m32.buffers()]:
            t.copy_(t.to(dtype))
    fused32 = _run(m32, x.float(), g.to(dtype).float())
    ref16 = _run(cls(**kw, step_mode="m", fused=False), x, g)
    assert fused16[0].dtype == dtype and all(s.dtype == torch.float32 for s in fused16[2].values())
    assert 0 < fused16[0].float().mean() < 1
    assert torch.equal(fused16[0].float(), fused32[0]) and torch.equal(fused16[0], ref16[0])
    assert torch.equal(fused16[1], fused32[1].to(dtype))  # computed in float32, rounded once
    for k in fused16[2]:
        assert torch.equal(fused16[2][k], fused32[2][k]) and torch.equal(fused16[2][k], ref16[2][k])
    ulp = torch.finfo(dtype).eps * fused16[1].float().abs().clamp_min(torch.finfo(dtype).tiny)
    assert ((fused16[1].float() - ref16[1].float()).abs() <= ulp + 1e-6).all()
    for a, b, c in zip(fused16[3], ref16[3], fused32[3]):  # learned parameters: float32 gradients
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-5)  # the reference rounds them through the cast
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


def _channels_last(x):
    return x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, x.shape[:2])


LAYOUTS = {
    "channels_last": _channels_last,
    "permuted": lambda x: x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3),
    "batch_inner": lambda x: x.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3),
    "sliced": lambda x: torch.stack([x, x], -1)[..., 0],
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", NEURONS, ids=[_ids(c) for c in NEURONS])
def test_any_layout_gives_the_contiguous_result(case, layout):
    cls, kw, scale = case
    torch.manual_seed(1)
    x = torch.rand(6, 4, 3, 5, 5) * scale
    xl = LAYOUTS[layout](x)
    assert torch.equal(xl, x) and not xl.is_contiguous()
    g = torch.randn(x.shape)
    a, b = cls(**kw, step_mode="m"), cls(**kw, step_mode="m")
    for _ in range(2):  # the second call continues from the stored state
        ya, gxa, sa, pa = _run(a, xl, g)
        yb, gxb, sb, pb = _run(b, x, g)
        assert torch.equal(ya, yb) and torch.equal(gxa, gxb)
        for k in sa:
            assert torch.equal(sa[k], sb[k])
        for u, v in zip(pa, pb):
            torch.testing.assert_close(u, v, rtol=1e-6, atol=1e-7)
    # dense layouts are read in place (the spikes keep the input's strides), except that per-neuron
    # parameters need one sample's neurons together (batch outside them); other layouts are copied
    per_neuron = any(isinstance(v, torch.Tensor) for v in kw.values())
    if layout != "sliced" and not (layout == "batch_inner" and per_neuron):
        with torch.no_grad():
            assert a(xl).stride() == xl.stride()


def test_single_steps_in_channels_last_continue_like_one_sequence():
    torch.manual_seed(2)
    x = _channels_last(torch.rand(5, 2, 4, 3, 3) * 2.5)
    seq = snn.LIF(tau=torch.tensor([2.0, 3.0, 4.0, 5.0]).view(4, 1, 1), step_mode="m")
    step = snn.LIF(tau=torch.tensor([2.0, 3.0, 4.0, 5.0]).view(4, 1, 1))
    with torch.no_grad():
        assert torch.equal(torch.stack([step(xt) for xt in x.unbind(0)]), seq(x))
    assert torch.equal(step.v, seq.v)


def test_plan_follows_parameter_dtype_and_shape_changes():
    torch.manual_seed(3)
    x = torch.rand(8, 3, 6) * 2

    def ref(**kw):
        return snn.LIF(step_mode="m", fused=False, **kw)(x)

    lif = snn.LIF(tau=2.0, step_mode="m")
    assert torch.equal(lif(x), ref(tau=2.0))
    lif.reset()
    lif.params["tau"] = 4.0  # a changed parameter value is a new plan
    assert torch.equal(lif(x), ref(tau=4.0))
    lif.reset()
    lif.v_threshold = 0.7
    assert torch.equal(lif(x), ref(tau=4.0, v_threshold=0.7))
    lif.reset()
    assert torch.equal(lif(x.double()), snn.LIF(step_mode="m", fused=False, tau=4.0, v_threshold=0.7)(x.double()))
    lif.reset()
    assert torch.equal(lif(x[:, :2]), ref(tau=4.0, v_threshold=0.7)[:, :2])  # new shape
    with pytest.raises(ValueError, match="differs from the state"):
        lif(x)  # the state of the [8, 2, 6] call does not fit
    lif.reset()
    per_neuron = snn.LIF(tau=torch.full((6,), 2.0), step_mode="m")
    assert torch.equal(per_neuron(x), ref(tau=2.0))
    per_neuron.reset()
    with torch.no_grad():
        per_neuron.tau.fill_(4.0)  # an in-place change of a tensor parameter (version counter)
    assert torch.equal(per_neuron(x), ref(tau=4.0))


def test_modules_with_plans_copy_and_pickle():
    torch.manual_seed(4)
    x = torch.rand(5, 2, 7) * 2
    lif = snn.LIF(tau=torch.linspace(2, 4, 7), step_mode="m")
    y = lif(x)
    twin = copy.deepcopy(lif)
    # what pickling (torch.save of the module) stores and rebuilds, without unpickling any bytes
    rebuild, args, state = lif.__reduce_ex__(4)[:3]
    loaded = rebuild(*args)
    loaded.__setstate__(copy.deepcopy(state))
    for m in (twin, loaded):
        assert "_plan" not in m.__dict__
        m.reset()
        assert torch.equal(m(x), y)


def test_learned_parameters_get_gradients_when_the_input_needs_none():
    plif = snn.ParametricLIF(step_mode="m")
    x = torch.rand(6, 2, 5) * 3
    for _ in range(2):  # the second call runs the cached plan
        plif.reset()
        plif.w.grad = None
        plif(x).sum().backward()
        assert plif.w.grad is not None and plif.w.grad.abs() > 0


def test_no_grad_calls_build_no_autograd_graph_and_keep_the_state():
    lif = snn.LIF(step_mode="m")
    x = torch.rand(4, 2, 3, requires_grad=True) * 3
    with torch.no_grad():
        y = lif(x)
    assert y.grad_fn is None and lif.v.grad_fn is None and lif.v.shape == (2, 3)
    y2 = lif(x)  # with grad, continuing from that state
    assert y2.grad_fn is not None

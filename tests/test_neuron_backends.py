"""Every built-in neuron and a user-defined one (tanh, abs, Piecewise) on the three backends that
print the one lowering: the per-step torch reference path, the fused CPU kernel and ONNX
(onnxruntime), fed identical input.

Neurons whose step uses only + - * / agree bit for bit in spikes and states. A step with a
transcendental function (EIF's exp, the user neuron's tanh) calls each library's own ``exp``/``tanh``
(torch's vectorized ones, libm/libmvec in C, onnxruntime's), which may differ in the last bit: there
the states agree within a few ulp and the spikes exactly, except where a voltage lies within 1e-5
of the threshold (counted, and expected to be none for these inputs).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import snnir
from snnir.neurons import NeuronModel

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
from snnir.backends.onnx import StreamingSession  # noqa: E402


class SaturatingLeak(NeuronModel):
    """A user-defined neuron: tanh-saturated drive, a leak that switches off near rest (Piecewise)
    and a cubic-like self-inhibition through abs.

    ``v <- v + gain tanh(x) - (v / tau if |v| > floor else 0) - k |v| v``
    """

    params = {"tau": 3.0, "gain": 1.5, "floor": 0.05, "k": 0.1}

    def charge(self, s, **options):
        leak = sp.Piecewise((s.v / s.tau, sp.Abs(s.v) > s.floor), (0, True))
        return {"v": s.v + s.gain * sp.tanh(s.x) - leak - s.k * sp.Abs(s.v) * s.v}


# (model, attrs, input scale, input offset, time steps)
CASES = [
    ("IF", {}, 1.0, 0.0, 24),
    ("LIF", {"tau": 3.0}, 2.5, 0.0, 24),
    ("LIF", {"tau": 3.0, "decay_input": False}, 1.0, 0.0, 24),
    ("ParametricLIF", {}, 2.5, 0.0, 24),
    ("QIF", {}, 1.0, 0.0, 24),
    ("EIF", {}, 1.2, 0.0, 24),
    ("Izhikevich", {"dt": 0.5}, 15.0, 0.0, 24),
    ("CubaLIF", {"tau_syn": 3.0}, 1.0, -0.2, 24),
    ("AdaptiveLIF", {"a": 0.2, "b": 0.3}, 2.5, 0.0, 24),
    ("Threshold", {"v_threshold": 0.5}, 1.0, 0.0, 24),
    ("SaturatingLeak", {"v_threshold": 0.8}, 1.5, -0.2, 24),
]
TRANSCENDENTAL = {"EIF", "SaturatingLeak"}
PARAMS = [(c, reset) for c in CASES for reset in ("hard", "soft")]


def _graph(model: str, attrs: dict, reset: str) -> snnir.Graph:
    attrs = dict(attrs)
    if reset == "soft":
        attrs["v_reset"] = None
    params = {"w": np.float32(-np.log(1.5))} if model == "ParametricLIF" else {}
    g = snnir.Graph()
    x = g.add_input((17,))
    g.add_output(g.add_node("neuron", [x], attrs={"model": model, **attrs}, params=params, id="n"))
    return g.validate()


def _input(model: str, scale: float, offset: float, T: int, reset: str) -> torch.Tensor:
    torch.manual_seed(7)
    if model == "Izhikevich" and reset == "soft":  # soft reset from v = 0 diverges: short and inhibited
        return torch.rand(4, 3, 17) * 40 - 160
    return torch.rand(T, 3, 17) * scale + offset * scale


def _run_torch(g: snnir.Graph, xs: torch.Tensor, fused: bool):
    module = snnir.compile(g)
    neuron = module.neurons()["n"]
    neuron.fused, neuron.store_v_seq = fused, True
    with torch.no_grad():
        spikes = module(xs)
    return spikes.numpy(), {k: v.numpy() for k, v in neuron.state().items()}, neuron.v_seq.numpy()


def _agree(model, ref_spikes, ref_v, th, spikes, what):
    mismatch = ref_spikes != spikes
    if model in TRANSCENDENTAL:  # a last-bit difference can only flip a spike right at the threshold
        near = np.abs(ref_v - th) < 1e-5
        assert not (mismatch & ~near).any(), f"{what}: spikes differ away from the threshold"
    else:
        assert not mismatch.any(), f"{what}: {int(mismatch.sum())} spikes differ"


@pytest.mark.parametrize("case, reset", PARAMS, ids=[f"{c[0]}-{i}-{r}" for i, (c, r) in enumerate(PARAMS)])
def test_reference_fused_and_onnx_agree(tmp_path, case, reset):
    model, attrs, scale, offset, T = case
    g = _graph(model, attrs, reset)
    xs = _input(model, scale, offset, T, reset)
    s_ref, st_ref, v_ref = _run_torch(g, xs, fused=False)
    s_fused, st_fused, v_fused = _run_torch(g, xs, fused=True)
    th = g.node("n").attrs["v_threshold"]
    assert 0 < s_ref.mean() < 1, "inputs must make the neurons both spike and stay silent"
    # charged voltage before the reset, for the threshold margin: v_seq is after the reset
    _agree(model, s_ref, v_ref if reset == "soft" else np.where(s_ref > 0, th, v_ref), th, s_fused, "fused")
    # last-bit differences of exp/tanh accumulate over the steps (a soft reset keeps them): a few ulp of 1
    atol = 1e-6 if model in TRANSCENDENTAL else 0.0
    for k in st_ref:
        np.testing.assert_allclose(st_fused[k], st_ref[k], rtol=0, atol=atol, err_msg=f"fused state {k}")
    np.testing.assert_allclose(v_fused, v_ref, rtol=0, atol=atol)

    path = tmp_path / "n.onnx"
    snnir.export(g, path, format="onnx")
    session = StreamingSession(path)
    s_onnx = np.stack([session(x) for x in xs.numpy()])
    _agree(model, s_ref, np.where(s_ref > 0, th, v_ref) if reset == "hard" else v_ref, th, s_onnx, "onnx")
    for k in st_ref:
        np.testing.assert_allclose(session.state[f"n.{k}"], st_ref[k], rtol=0, atol=atol, err_msg=f"onnx state {k}")


def test_user_neuron_gradients_fused_equal_reference():
    """The adjoint of tanh, abs and Piecewise (sign, 1 - tanh^2, the selected branch), fused vs autograd."""
    torch.manual_seed(0)
    x = torch.rand(20, 3, 9) * 1.5 - 0.2
    grads = []
    for fused in (False, True):
        neuron = snnir.nn.Neuron(SaturatingLeak(), v_threshold=0.8, fused=fused, step_mode="m")
        xi = x.clone().requires_grad_()
        y = neuron(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().add(neuron.v.sum() * 0.1).backward()
        grads.append((y.detach(), xi.grad))
    assert torch.equal(grads[0][0], grads[1][0]) and 0 < grads[0][0].mean() < 1
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-5, atol=1e-6)
    assert grads[0][1].abs().sum() > 0

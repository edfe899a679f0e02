"""The C++ training call of fused neurons (``native_call``) against the Python call it replaces:
same kernels, so spikes, states and every gradient must be bit-identical."""

import subprocess
import threading

import pytest
import torch

from snnir import nn as snn
from snnir.backends.torch import fused_bn, fused_call, native_call

NATIVE = native_call.wait()  # builds once per cache (~15 s on two cores), then loads in milliseconds
needs_native = pytest.mark.skipif(NATIVE is None, reason="the native call cannot be built here (no C++ compiler "
                                  "or no Python/torch headers)")


def python_path(monkeypatch):
    """Plans made while this is active take the Python ``_DirectNeuron``."""
    monkeypatch.setattr(fused_call.native_call, "plan_handle", lambda plan: False)


def train_steps(make, x, steps=3, state_loss=True):
    """Spikes, final state and gradients (input, parameters) of ``steps`` chained calls of one module
    (the state carried from call to call), under a loss weighting every spike differently."""
    torch.manual_seed(0)
    module = make()
    xs = x.clone().requires_grad_()
    outs = [module(xs * (1 + 0.1 * k)) for k in range(steps)]
    names = []
    for o in outs:
        assert o.grad_fn is not None
        names.append(o.grad_fn.name())
    loss = sum((o * torch.linspace(-1, 2, o.numel(), dtype=o.dtype).view(o.shape)).sum() for o in outs)
    if state_loss:
        loss = loss + module.v.pow(2).sum()
    loss.backward()
    grads = [xs.grad] + [p.grad for p in module.parameters()]
    return [o.detach() for o in outs], module.v.detach(), grads, names


def assert_identical(a, b):
    (outs_a, v_a, grads_a, _), (outs_b, v_b, grads_b, _) = a, b
    assert all(torch.equal(u, w) for u, w in zip(outs_a, outs_b))
    assert torch.equal(v_a, v_b)
    assert len(grads_a) == len(grads_b)
    for u, w in zip(grads_a, grads_b):
        assert (u is None and w is None) or (u.dtype == w.dtype and torch.equal(u, w))


NEURONS = {
    "LIF": (lambda: snn.LIF(tau=2.0, step_mode="m"), (4, 2, 8)),
    "LIF detach_reset": (lambda: snn.LIF(tau=2.0, detach_reset=True, step_mode="m"), (5, 3, 7)),
    "ParametricLIF": (lambda: snn.ParametricLIF(step_mode="m"), (4, 2, 8)),
    "CubaLIF": (lambda: snn.CubaLIF(step_mode="m"), (4, 2, 3, 4)),
    "LIF per-channel tau": (lambda: snn.LIF(tau=torch.tensor([2.0, 4.0, 8.0]).view(3, 1), step_mode="m"),
                            (4, 2, 3, 5)),
    "LIF float64": (lambda: snn.LIF(tau=2.0, step_mode="m"), (3, 2, 6)),
    "LIF bfloat16": (lambda: snn.LIF(tau=2.0, step_mode="m"), (3, 2, 6)),
}
DTYPES = {"float64": torch.float64, "bfloat16": torch.bfloat16}


@needs_native
@pytest.mark.parametrize("name", list(NEURONS))
def test_native_call_is_bit_identical_to_the_python_call(name, monkeypatch):
    make, shape = NEURONS[name]
    torch.manual_seed(1)
    x = torch.rand(*shape, dtype=DTYPES.get(name.split()[-1], torch.float32)) * 2
    native = train_steps(make, x)
    assert set(native[3]) == {"NeuronCallBackward"}
    python_path(monkeypatch)
    reference = train_steps(make, x)
    assert set(reference[3]) == {"_DirectNeuronBackward"}
    assert_identical(native, reference)
    if name == "ParametricLIF":
        assert native[2][1] is not None and native[2][1].shape == () and native[2][1] != 0


@needs_native
def test_native_call_on_channels_last_input_with_batchnorm_inside(monkeypatch):
    """A permuted memory order (the kernels' rows are channels-last) and per-call arrays (BatchNorm's
    affine applied inside the neuron pass), with a non-contiguous upstream gradient."""
    torch.manual_seed(2)
    x = (torch.randn(3, 2, 4, 5, 5) * 2 + 0.5).flatten(0, 1).contiguous(memory_format=torch.channels_last)
    x = x.unflatten(0, (3, 2))

    def run():
        torch.manual_seed(3)
        bn, lif = snn.BatchNorm2d(4, step_mode="m"), snn.LIF(tau=2.0, step_mode="m")
        xs = x.clone().requires_grad_()
        y = fused_bn.batchnorm_neuron(bn, lif, xs)
        g = torch.linspace(-1, 1, y.numel()).view(y.shape[::-1]).permute(4, 3, 2, 1, 0)  # neither layout
        y.backward(g)
        return y.grad_fn.name(), y.detach(), xs.grad, bn.weight.grad, bn.bias.grad

    native = run()
    python_path(monkeypatch)
    reference = run()
    assert native[0] == "NeuronCallBackward" and reference[0] == "_DirectNeuronBackward"
    for u, w in zip(native[1:], reference[1:]):
        assert torch.equal(u, w)


@needs_native
def test_failed_build_falls_back_to_the_python_call(monkeypatch):
    def broken():
        raise native_call.NativeBuildError("no compiler in this test")

    make, shape = NEURONS["ParametricLIF"]
    x = torch.rand(*shape) * 2
    native = train_steps(make, x)
    monkeypatch.setattr(native_call, "_LOADER", native_call._Loader())
    monkeypatch.setattr(native_call, "build", broken)
    with pytest.warns(RuntimeWarning, match="no compiler in this test"):
        assert native_call.wait() is None
    fallback = train_steps(make, x)
    assert set(fallback[3]) == {"_DirectNeuronBackward"}
    assert_identical(native, fallback)


def test_a_missing_compiler_is_a_build_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("SNNIR_CACHE_DIR", str(tmp_path))
    with pytest.raises(native_call.NativeBuildError, match="no-such-compiler"):
        native_call.build()


@needs_native
def test_a_built_extension_is_loaded_from_the_cache(monkeypatch):
    native_call.build()  # in the cache since NATIVE
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    assert native_call.build().neuron_call is NATIVE.neuron_call


@needs_native
@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_double_backward_is_refused(native, monkeypatch):
    if not native:
        python_path(monkeypatch)
    lif = snn.LIF(tau=2.0, step_mode="m")
    x = (torch.rand(4, 2, 8) * 2).requires_grad_()
    w = torch.arange(8.0, requires_grad=True)  # the spikes' gradient depends on w: second order wanted
    y = lif(x)
    (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
    assert gx.requires_grad
    x2 = x.detach().requires_grad_()
    (reference,) = torch.autograd.grad((snn.LIF(tau=2.0, step_mode="m")(x2) * w.detach()).sum(), x2)
    assert torch.equal(gx.detach(), reference)  # the first order is exact ...
    with pytest.raises(RuntimeError, match="differentiable"):  # ... a second is refused, not silently zero
        gx.sum().backward()


@needs_native
def test_native_call_errors_as_autograd_does():
    lif = snn.LIF(tau=2.0, step_mode="m")
    x = (torch.rand(4, 2, 8) * 2).requires_grad_()
    y = lif(x)
    assert y.grad_fn.name() == "NeuronCallBackward"
    y.sum().backward(retain_graph=False)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    lif.reset()  # the saved input, modified in place after the call
    leaf = torch.rand(4, 2, 8, requires_grad=True)
    inner = leaf.clone()
    y = lif(inner)
    inner.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@needs_native
def test_two_threads_training_at_once_get_single_thread_results():
    make, shape = NEURONS["ParametricLIF"]
    inputs = [torch.rand(*shape) * 2 for _ in range(2)]
    expected = [train_steps(make, x) for x in inputs]
    errors, results = [], [[], []]

    def worker(i):
        try:
            for _ in range(50):
                results[i].append(train_steps(make, inputs[i]))
        except Exception as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(2):
        assert len(results[i]) == 50
        for r in results[i]:
            assert set(r[3]) == {"NeuronCallBackward"}
            assert_identical(r, expected[i])


@needs_native
def test_no_grad_and_inference_calls_do_not_use_it():
    lif = snn.LIF(tau=2.0, step_mode="m")
    x = torch.rand(4, 2, 8, requires_grad=True)
    with torch.no_grad():
        assert lif(x).grad_fn is None
    lif.reset()
    assert lif(x.detach()).grad_fn is None
    kept = snn.LIF(tau=2.0, step_mode="m", store_v_seq=True)  # a voltage sequence: the Python call
    assert kept(x).grad_fn.name() == "_DirectNeuronBackward" and kept.v_seq.shape == x.shape


@needs_native
@pytest.mark.parametrize("env", ["1", "0"])
def test_the_build_starts_after_enough_training_calls(env, monkeypatch):
    monkeypatch.setenv("SNNIR_NATIVE_CALL", env)
    monkeypatch.setattr(native_call, "_LOADER", native_call._Loader())
    monkeypatch.setattr(native_call, "START_AFTER", 3)
    built = []
    monkeypatch.setattr(native_call, "build", lambda: built.append(1) or NATIVE)
    lif = snn.LIF(tau=2.0, step_mode="m")
    x = torch.rand(4, 2, 8, requires_grad=True)
    names = []
    for _ in range(6):
        names.append(lif(x).grad_fn.name())
        lif.reset()
        if native_call._LOADER.thread is not None:
            native_call._LOADER.thread.join()
    if env == "0":  # turned off: never built
        assert not built and set(names) == {"_DirectNeuronBackward"}
    else:  # the third call starts the build; once loaded, the plan takes it
        assert built == [1]
        assert names == ["_DirectNeuronBackward"] * 3 + ["NeuronCallBackward"] * 3


@needs_native
def test_forward_mode_ad_is_refused_as_by_the_python_call():
    lif = snn.LIF(tau=2.0, step_mode="m")
    x = torch.rand(4, 2, 8, requires_grad=True)
    assert lif(x).grad_fn.name() == "NeuronCallBackward"
    lif.reset()
    with torch.autograd.forward_ad.dual_level():  # the extension hands it to the Python call, which refuses it
        dual = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        with pytest.raises(NotImplementedError, match="jvp"):
            lif(dual)

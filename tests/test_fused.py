"""The fused multi-step kernels against the per-step reference path (autograd through torch ops).

Every built-in neuron x reset mode x detach_reset: identical spikes and states, gradients of the
input, the initial state and learnable parameters equal to 1e-5 relative in float32.
"""

import itertools

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.backends.torch import fused as fused_mod
from snnir.backends.torch.cpu_kernel import KernelBuildError

# (module class, kwargs, input scale, offset): inputs chosen so every model spikes
MODELS = [
    (snn.IF, {}, 1.0, 0.0),
    (snn.LIF, {"tau": 3.0}, 2.5, 0.0),
    (snn.LIF, {"tau": 3.0, "decay_input": False}, 1.0, 0.0),
    (snn.ParametricLIF, {"init_tau": 2.5}, 2.5, 0.0),
    (snn.ParametricLIF, {"init_tau": 2.5, "decay_input": False}, 1.0, 0.0),
    (snn.QIF, {}, 1.0, 0.0),
    (snn.EIF, {}, 1.2, 0.0),
    (snn.Izhikevich, {"dt": 0.5}, 15.0, 0.0),
    (snn.CubaLIF, {"tau_syn": 3.0}, 1.0, -0.2),
    (snn.AdaptiveLIF, {"a": 0.2, "b": 0.3}, 2.5, 0.0),
]
CASES = [(m, r, d) for m, r, d in itertools.product(range(len(MODELS)), ("hard", "soft"), (False, True))]


def _ids(case):
    m, r, d = case
    cls, kw = MODELS[m][:2]
    return f"{cls.__name__}{'-' + '-'.join(f'{k}={v}' for k, v in kw.items()) if kw else ''}-{r}-detach{d}"


def _make(m, reset, detach, fused, dtype=torch.float32):
    cls, kw, _, _ = MODELS[m]
    default_reset = cls.model.all_params()["v_reset"]
    v_reset = None if reset == "soft" else default_reset
    return cls(**kw, v_reset=v_reset, detach_reset=detach, fused=fused, step_mode="m", store_v_seq=True).to(dtype)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_fused_equals_reference(case):
    m, reset, detach = case
    cls, _, scale, offset = MODELS[m]
    torch.manual_seed(m)
    T = 24
    x = torch.rand(T, 3, 17) * scale + offset * scale
    if cls is snn.Izhikevich and reset == "soft":
        # soft reset starts at v = 0 and only subtracts 30 mV, so v diverges: keep it short and
        # inhibited enough that some neurons stay silent
        T = 4
        x = torch.rand(T, 3, 17) * 40 - 160
    results = []
    for fused in (False, True):
        neuron = _make(m, reset, detach, fused)
        xi = x.clone().requires_grad_()
        # two chunks without reset: gradients also flow through the state between calls
        y = torch.cat([neuron(xi[:T // 2]), neuron(xi[T // 2:])])
        weights = torch.linspace(-1, 1, y.numel()).view_as(y)
        state = neuron.state()
        loss = (y * weights).sum() + sum((v * 0.1).sum() for v in state.values())
        loss.backward()
        params = [p.grad.clone() for p in neuron.parameters()]
        results.append((y.detach(), {k: v.detach() for k, v in state.items()}, neuron.v_seq.detach(), xi.grad, params))
    (y0, s0, v0, g0, p0), (y1, s1, v1, g1, p1) = results
    assert torch.isfinite(g0).all()
    assert torch.equal(y1, y0), "spikes differ"
    assert 0 < y0.mean() < 1
    for k in s0:
        torch.testing.assert_close(s1[k], s0[k], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(v1, v0, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-6)
    for a, b in zip(p1, p0):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("surrogate", [snn.surrogate.Sigmoid(), snn.surrogate.PiecewiseQuadratic(),
                                       snn.surrogate.Rect(alpha=0.5), snn.surrogate.PiecewiseLeakyReLU(w=0.6, c=0.05),
                                       snn.surrogate.Erf(), snn.surrogate.FastSigmoid()])
def test_fused_with_other_surrogates_float64(surrogate):
    torch.manual_seed(0)
    x = (torch.rand(16, 4, 9, dtype=torch.float64) * 2.5).requires_grad_()
    grads = []
    for fused in (False, True):
        lif = snn.LIF(tau=2.0, surrogate=surrogate, fused=fused, step_mode="m").double()
        xi = x.detach().clone().requires_grad_()
        (lif(xi) * torch.linspace(0, 1, x.numel(), dtype=torch.float64).view_as(x)).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_single_steps_chain_like_one_sequence():
    torch.manual_seed(0)
    x = (torch.rand(12, 2, 5) * 2).requires_grad_()
    lif = snn.LIF(step_mode="s")
    y_steps = torch.stack([lif(t) for t in x.unbind(0)])
    (g_steps,) = torch.autograd.grad(y_steps.sum(), x)
    snn.reset(lif)
    lif.step_mode = "m"
    y_seq = lif(x)
    (g_seq,) = torch.autograd.grad(y_seq.sum(), x)
    assert torch.equal(y_steps, y_seq)
    torch.testing.assert_close(g_steps, g_seq, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [lambda f: snn.LIF(tau=2.0, fused=f), lambda f: snn.CubaLIF(fused=f),
                                  lambda f: snn.LIF(v_reset=torch.tensor([0.0, 0.1, -0.1, 0.2, 0.0]), fused=f),
                                  lambda f: snn.ParametricLIF(fused=f)],
                         ids=["LIF", "CubaLIF", "per-neuron-v_reset", "ParametricLIF"])
def test_streaming_and_training_steps_share_the_state(make):
    # single steps under no_grad (the inference fast path, one state kept in its own shape), then
    # training steps continuing from that state and carrying gradients through it, then no_grad again
    torch.manual_seed(0)
    xs = [torch.rand(2, 5) * 2 for _ in range(7)]
    results = []
    for fused in (False, True):
        neuron = make(fused)
        torch.manual_seed(1)
        with torch.no_grad():
            for p in neuron.parameters():
                p.uniform_(-0.5, 0.5)
            out = [neuron(x) for x in xs[:3]]
        xg = xs[3].clone().requires_grad_()
        y1 = neuron(xg)
        y2 = neuron(xs[4] * y1.sum() / 10)  # the second step's input also depends on xg
        loss = (y1 * torch.arange(5.0)).sum() + (y2 * torch.arange(5.0).flip(0)).sum() + neuron.v.sum() * 0.1
        loss.backward()
        with torch.no_grad():
            out += [neuron(x) for x in xs[5:]]
        results.append(out + [y1.detach(), y2.detach(), xg.grad, *(p.grad for p in neuron.parameters()),
                               *(v for v in neuron.state().values())])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert results[1][7].abs().sum() > 0  # the input's gradient (after 5 outputs and y1, y2)


def test_state_of_another_shape_is_refused_every_time():
    # the refused call leaves a plan for the new shape behind: the next call must not read the old
    # (smaller) state through it
    lif = snn.LIF()
    with torch.no_grad():
        lif(torch.rand(1, 4))
        for _ in range(2):
            with pytest.raises(ValueError, match="differs from the state shape"):
                lif(torch.rand(300, 4))


def test_state_carries_over_a_change_of_memory_layout():
    torch.manual_seed(0)
    x = torch.rand(4, 2, 3, 4, 5) * 2
    cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (4, 2))
    outs = []
    for fused in (False, True):
        lif = snn.LIF(tau=2.0, step_mode="m", fused=fused)
        with torch.no_grad():
            outs.append(torch.cat([lif(x[:2]), lif(cl[2:])]))
        outs.append(lif.v)
    assert torch.equal(outs[2], outs[0])
    torch.testing.assert_close(outs[3], outs[1])


def test_inference_keeps_nothing_for_backward():
    lif = snn.LIF(step_mode="m")
    with torch.no_grad():
        y = lif(torch.rand(8, 4, 4) * 3)
    assert y.grad_fn is None and y.sum() > 0


def test_user_model_gets_the_fused_path():
    class Quad(snnir.NeuronModel):
        params = {"tau": 3.0, "beta": 0.2}

        def charge(self, s, **options):
            return {"v": s.v + (s.x - s.v + s.beta * s.v**2) / s.tau}

    torch.manual_seed(0)
    x = torch.rand(10, 3, 6) * 2
    outs = []
    for fused in (False, True):
        n = snn.Neuron(Quad(), fused=fused, step_mode="m")
        xi = x.clone().requires_grad_()
        y = n(xi)
        y.sum().backward()
        outs.append((y.detach(), xi.grad))
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-5, atol=1e-7)
    key = fused_mod.config_key(Quad, "hard", (), snn.surrogate.ATan, False, (), frozenset())
    assert fused_mod.cpu_kernel(key, torch.float32) is not None


def test_missing_compiler_falls_back_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("SNNIR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(fused_mod._STATE, "cpu_kernels", {})
    monkeypatch.setattr(fused_mod._STATE, "unavailable", set())
    torch.manual_seed(0)
    x = torch.rand(4, 2, 3) * 3
    lif = snn.LIF(tau=5.0, step_mode="m", surrogate=snn.surrogate.SoftSign())
    with pytest.warns(RuntimeWarning, match="cannot run the C compiler"):
        y = lif(x)
    ref = snn.LIF(tau=5.0, step_mode="m", surrogate=snn.surrogate.SoftSign(), fused=False)(x)
    assert torch.equal(y, ref)
    key, dtype = next(iter(fused_mod._STATE.unavailable))
    with pytest.raises(KernelBuildError):
        fused_mod.CpuKernel(fused_mod.config(key), dtype)
    # the op itself still runs where no kernel can be built: the lowered step as torch ops
    params = {"p_v_threshold": 1.0, "p_v_reset": 0.0, "p_tau": 5.0, "p_sg_alpha": 2.0}
    prm, arrays = fused_mod.config(key).pack(params, torch.float32, (3,))
    spikes, _, _ = fused_mod.neuron_forward(x.reshape(4, 6), torch.zeros(1, 6), prm, arrays, torch.empty(0, 3), key,
                                            False)
    assert torch.equal(spikes.view(4, 2, 3), ref)


def test_kernel_memory_is_one_sequence_for_lif():
    from snnir.neurons import get_model
    from snnir.neurons.adjoint import step_program
    from snnir.surrogate import ATan

    for name, kept in [("LIF", ("v",)), ("IF", ("v",)), ("CubaLIF", ("v",)), ("Izhikevich", ("v", "u"))]:
        prog = step_program(get_model(name).equations(), ATan, False)
        assert prog.kept == kept, name
    assert np.prod((1,)) == 1


def test_torch_compile_sees_one_op_per_neuron_without_graph_breaks():
    """``torch.compile(fullgraph=True)`` of a LIF network: the fused neurons are ``snnir::neuron_forward``
    nodes (no graph break on ctypes), with the same spikes and gradients as eager."""
    def make():
        torch.manual_seed(0)
        net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(8, 16), snn.LIF(tau=2.0), snn.Linear(16, 4),
                                                    snn.ParametricLIF()), "m")
        with torch.no_grad():
            net[0].weight.abs_()
            net[2].weight.abs_()
        return net

    x = torch.rand(6, 3, 8) * 2
    eager = make()
    ref = eager(x)
    ref.sum().backward()
    net = make()
    explained = torch._dynamo.explain(net)(x)
    assert explained.graph_break_count == 0
    code = "".join(gm.code for gm in explained.graphs)
    assert code.count("snnir.neuron_forward") == 2
    snn.reset(net)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    assert torch.equal(out, ref) and 0 < ref.mean() < 1
    for (name, p), q in zip(net.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_torch_loop_implementation_equals_the_c_kernel():
    """The ops' implementation for devices without a compiled kernel (the lowered step as torch ops,
    what the CUDA slot runs until a GPU backend registers its kernels) against the C kernel on CPU."""
    from snnir.backends.torch import torch_loop

    torch.manual_seed(0)
    for cls, kw in [(snn.LIF, {"tau": torch.tensor([2.0, 3.0, 4.0]).view(3, 1)}), (snn.CubaLIF, {}),
                    (snn.ParametricLIF, {"init_tau": torch.tensor([2.0, 4.0, 5.0]).view(3, 1)}),
                    (snn.AdaptiveLIF, {"a": 0.2, "b": 0.3})]:
        m = cls(**kw, step_mode="m")
        x = torch.rand(10, 2, 3, 4) * 2
        key = m._fused_key(x)
        cfg = fused_mod.config(key)
        prm, arrays = m._pack(cfg, m._param_env(x), x.dtype, (3, 4))
        x2, s0 = x.reshape(10, -1), torch.zeros(len(cfg.step.states), 24)
        kernel = fused_mod.cpu_kernel(key, x.dtype)
        a, b = kernel.forward(x2, s0, prm, arrays, True), torch_loop.forward(cfg, x2, s0, prm, arrays, True)
        for u, v in zip(a, b):
            assert torch.equal(u, v), cls.__name__
        g, gs = torch.linspace(-1, 1, x2.numel()).view_as(x2), torch.rand_like(s0)
        n_learn = len(cfg.step.learnable)
        for u, v in zip(kernel.backward(g, gs, x2, s0, prm, arrays, n_learn),
                        torch_loop.backward(cfg, g, gs, x2, s0, prm, arrays, n_learn)):
            if u is not None:
                torch.testing.assert_close(u.to(v.dtype), v, rtol=1e-5, atol=1e-6, msg=cls.__name__)


def test_kernel_threads_small_work_stays_on_the_calling_thread():
    """Below ATen's grain a kernel call runs on one thread (a parallel region's barrier can wait a
    scheduler slice when the cores are busy); never more threads than independent chunks; results
    of a fused layer are identical whatever the thread count (tiles are independent)."""
    from snnir.backends.torch.threads import GRAIN, kernel_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert kernel_threads(GRAIN - 1) == 1
        assert kernel_threads(GRAIN) == 2
        assert kernel_threads(10**6, chunks=1) == 1
        assert kernel_threads(10**6, chunks=7) == 2
        torch.manual_seed(0)
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for shape in ((4, 1, 8), (8, 4, 4096)):  # below and above the grain
                layer = snn.LIF(tau=2.0, step_mode="m")
                x = (torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2).requires_grad_()
                y = layer(x)
                (y * torch.linspace(0, 1, y.numel()).view_as(y)).sum().backward()
                outs.append((y.detach(), layer.v.detach(), x.grad))
        for a, b in zip(outs[:2], outs[2:]):
            for u, w in zip(a, b):
                assert torch.equal(u, w)
        assert outs[1][0].sum() > 0
    finally:
        torch.set_num_threads(before)

"""The CUDA backend checked without a GPU.

Every generated kernel (each built-in neuron x float32/float16/bfloat16/float64 x hard/soft reset
x detach_reset, a user-defined neuron with tanh/abs/Piecewise, and per-neuron and learnable
per-channel parameter configurations) compiles with ``nvcc -ptx`` for sm_90 (float32 and 16-bit
optimized, with no local memory: the state and the backward's chunk stay in registers) and sm_80
(front end and code generation). The very same template is built as host code (the per-neuron
functions the kernels call, looped over the neurons on the CPU) and driven with the argument lists
the CUDA runtime launches, on the inputs a neuron module packs, against that module's per-step
torch reference path with autograd: float32/float64 spikes and voltages exactly (a few ulp for
exp/tanh, whose libm and torch versions may differ in the last bit), gradients within 1e-5
relative; float16/bfloat16 bit for bit the float32 kernel rounded, and within 1e-2 of torch.
"""

from __future__ import annotations

import ctypes
import math
import re
from functools import cache

import cuda_host
import numpy as np
import pytest
import sympy as sp
import torch
from cuda_host import NVCC, HostKernel
from torch import nn

import snnir
from snnir import nn as snn
from snnir.backends.torch.fused import config, config_key
from snnir.neurons import NeuronModel

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) is not installed")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
OPTIMIZED = ("float32", "float16", "bfloat16")  # compiled for sm_90 with optimization (float64: front end)


class ClippedTanh(NeuronModel):
    """A user-defined neuron: tanh drive, a leak switched off near rest (Piecewise), |v| v damping.

    ``v <- v + gain tanh(x) - (v / tau if |v| > floor else 0) - k |v| v``
    """

    params = {"tau": 3.0, "gain": 1.5, "floor": 0.05, "k": 0.1}

    def charge(self, s, **options):
        leak = sp.Piecewise((s.v / s.tau, sp.Abs(s.v) > s.floor), (0, True))
        return {"v": s.v + s.gain * sp.tanh(s.x) - leak - s.k * sp.Abs(s.v) * s.v}


SAMPLE = (17,)
CHANNELS = (3, 2, 2)
# model -> (module keywords, input scale, input offset, time steps)
MODELS = {
    "IF": ({}, 1.0, 0.0, 40),
    "LIF": ({"tau": 3.0}, 2.5, 0.0, 24),
    "ParametricLIF": ({"init_tau": 1.5}, 2.5, 0.0, 24),
    "QIF": ({}, 1.0, 0.0, 24),
    "EIF": ({}, 1.2, 0.0, 24),
    "Izhikevich": ({"dt": 0.5}, 15.0, 0.0, 17),
    "CubaLIF": ({"tau_syn": 3.0}, 1.0, -0.2, 24),
    "AdaptiveLIF": ({"a": 0.2, "b": 0.3}, 2.5, 0.0, 16),
    "Threshold": ({"v_threshold": 0.5}, 1.0, 0.0, 9),
    "ClippedTanh": ({"v_threshold": 0.8}, 1.5, -0.2, 33),
}
TRANSCENDENTAL = {"EIF", "ClippedTanh", "ParametricLIF"}  # exp / tanh in the step or its prologue


def _rng_tensor(seed: int, shape, low: float, high: float) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(low, high, shape)).float()


def _module(name: str, reset: str, detach: bool) -> snn.Neuron:
    kwargs = dict(MODELS[name][0])
    if reset == "soft":
        kwargs["v_reset"] = None
    cls = snn.neuron_class(ClippedTanh if name == "ClippedTanh" else snnir.neurons.get_model(name))
    return cls(detach_reset=detach, **kwargs)


# per-neuron and learnable per-channel configurations: name -> (module factory, scale, offset, T)
PER_NEURON = {
    "LIF-per-neuron": (lambda: snn.LIF(tau=_rng_tensor(1, (3, 1, 1), 1.5, 6.0),
                                       v_threshold=_rng_tensor(2, CHANNELS, 0.6, 1.4),
                                       v_reset=_rng_tensor(3, (3, 1, 1), -0.3, 0.2)), 1.6, 0.0, 30),
    "LIF-learnable-tau-threshold": (lambda: snn.LIF(tau=nn.Parameter(torch.tensor([2.0, 3.0, 4.0]).view(3, 1, 1)),
                                                    v_threshold=nn.Parameter(torch.full(CHANNELS, 0.9)), v_reset=None),
                                    1.6, 0.0, 20),
    "PLIF-per-channel-w": (lambda: snn.ParametricLIF(init_tau=torch.tensor([2.0, 3.0, 5.0]).view(3, 1, 1)),
                           2.0, 0.0, 24),
    "CubaLIF-per-neuron": (lambda: snn.CubaLIF(tau_syn=_rng_tensor(4, CHANNELS, 1.5, 4.0),
                                               tau_mem=_rng_tensor(5, (3, 1, 1), 1.5, 4.0)), 1.5, -0.1, 24),
    "Izhikevich-per-neuron": (lambda: snn.Izhikevich(a=_rng_tensor(6, CHANNELS, 0.01, 0.1),
                                                     b=_rng_tensor(7, CHANNELS, 0.15, 0.25),
                                                     d=_rng_tensor(8, CHANNELS, 2, 8),
                                                     v_reset=_rng_tensor(9, CHANNELS, -65, -50), dt=0.5),
                              15.0, 0.0, 18),
}


def _cases() -> list[tuple[str, str, bool]]:
    return [(name, reset, detach) for name in MODELS for reset in ("hard", "soft") for detach in (False, True)]


CASES = _cases()


def _build(case) -> tuple[snn.Neuron, float, float, int, tuple[int, ...]]:
    if case in PER_NEURON:
        factory, scale, offset, T = PER_NEURON[case]
        return factory(), scale, offset, T, CHANNELS
    name, reset, detach = case
    _, scale, offset, T = MODELS[name]
    return _module(name, reset, detach), scale, offset, T, SAMPLE


def module_config(neuron: snn.Neuron):
    """The fused configuration ``neuron`` dispatches to (as ``Neuron._fused_key`` computes it)."""
    per_neuron = frozenset(n for n in neuron._tensor_params if getattr(neuron, n).numel() > 1)
    return config(config_key(type(neuron.model), neuron.reset_kind, tuple(sorted(neuron.options.items())),
                             type(neuron.surrogate), neuron.detach_reset, neuron.learnable, per_neuron))


ALL = [*CASES, *PER_NEURON]


@cache
def _configs() -> list:
    return [module_config(_build(case)[0]) for case in ALL]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every configuration x dtype: PTX for sm_90 (optimized) and sm_80, and the host library; the
    nvcc runs go in parallel."""
    if NVCC is None:
        pytest.skip("nvcc (CUDA toolkit) is not installed")
    root = tmp_path_factory.mktemp("cuda")
    jobs, sources = [], {}
    for dtype in DTYPES:
        src = root / f"kernels_{dtype}.cu"
        src.write_text(cuda_host.translation_unit(_configs(), dtype))
        sources[dtype] = src
        jobs += [("ptx", dtype, "sm_90", cuda_host.start_ptx(src, "sm_90", optimize=dtype in OPTIMIZED)),
                 ("ptx", dtype, "sm_80", cuda_host.start_ptx(src, "sm_80", optimize=False)),
                 ("host", dtype, None, cuda_host.start_host(src))]
    out = {}
    for kind, dtype, arch, job in jobs:
        rc, err = job.wait()
        out[(kind, dtype, arch)] = (rc, err, job.out)
    return out


@needs_nvcc
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_every_kernel_compiles_to_ptx_for_sm80_and_sm90(built, dtype):
    n = len(_configs())
    for arch in ("sm_90", "sm_80"):
        rc, err, ptx = built[("ptx", dtype, arch)]
        assert rc == 0, f"nvcc -ptx -arch={arch} ({dtype}):\n{err}"
        text = ptx.read_text()
        entries = set(re.findall(r"\.entry (k\d+_(?:forward|backward))\(", text))
        assert entries == {f"k{i}_{kind}" for i in range(n) for kind in ("forward", "backward")}
        assert f".target {arch}" in text
        if arch == "sm_90" and dtype in OPTIMIZED:  # states, uniforms and the backward's chunk: registers
            assert ".local" not in text, f"{dtype}: a kernel keeps an array in local memory"


def _host_kernel(built, dtype: str, index: int) -> HostKernel:
    rc, err, lib_path = built[("host", dtype, None)]
    assert rc == 0, f"nvcc host build ({dtype}):\n{err}"
    return HostKernel(_lib(str(lib_path)), index, _configs()[index])


@cache
def _lib(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path)


def _inputs(neuron: snn.Neuron, x: torch.Tensor, cfg):
    """What ``Neuron._run_fused`` hands the op: [T, N] input, [S, N] initial state, uniforms."""
    params = neuron._param_env(x)
    prm, arrays = neuron._pack(cfg, params, x.dtype, tuple(x.shape[2:]))
    state0 = torch.stack([s.reshape(-1) for s in neuron.equations().initial_state(x[0], params)])
    return x.reshape(x.shape[0], -1).contiguous(), state0, prm, arrays


def _reference(neuron: snn.Neuron, x: torch.Tensor, weights: torch.Tensor,
               state0: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The per-step torch path with autograd from ``state0`` (default: the initial state): spikes,
    v_seq, final states, input and parameter gradients of ``sum(spikes * weights) + 0.1 sum(v_final)``."""
    neuron.fused, neuron.step_mode, neuron.store_v_seq = False, "m", True
    neuron.reset()
    if state0 is not None:
        neuron._store([s.to(x.dtype) for s in state0])
    xi = x.clone().requires_grad_()
    y = neuron(xi)
    ((y * weights).sum() + neuron.v.sum() * 0.1).backward()
    out = {"spikes": y.detach(), "v_seq": neuron.v_seq.detach(), "grad_x": xi.grad,
           **{f"grad_{n}": getattr(neuron, n).grad.clone() for n in neuron.learnable},
           **{f"state_{k}": v.detach() for k, v in neuron.state().items()}}
    for n in neuron.learnable:
        getattr(neuron, n).grad = None
    neuron.reset()
    return out


def _case_input(case, dtype: torch.dtype):
    index = ALL.index(case)
    neuron, scale, offset, T, sample = _build(case)
    torch.manual_seed(index)
    x = torch.rand(T, 3, *sample) * scale + offset * scale
    if case in (("Izhikevich", "soft", False), ("Izhikevich", "soft", True)):
        x = torch.rand(4, 3, *sample) * 40 - 160  # soft reset from v = 0 diverges: inhibit
    x = x.to(dtype)
    return index, neuron, x, torch.linspace(-1, 1, x.numel()).view_as(x).to(dtype), sample


def _run_kernel(kernel: HostKernel, neuron: snn.Neuron, x, weights, sample):
    """The kernel ABI as ``Neuron._run_fused`` drives it: forward (with v_seq), then the backward
    of ``sum(spikes * weights) + 0.1 sum(v_final)``; the learnable gradients reduced as the op does."""
    T = x.shape[0]
    with torch.no_grad():
        x2, state0, prm, arrays = _inputs(neuron, x, kernel.config)
        spikes, state, v_seq = kernel.forward(x2, state0, prm, arrays, True)
        g_state = torch.zeros_like(state0)
        g_state[kernel.config.step.states.index("v")] = 0.1
        gx, _, gl = kernel.backward(weights.reshape(T, -1), g_state, x2, state0, prm, arrays)
    out = {"spikes": spikes.view_as(x), "v_seq": v_seq.view_as(x), "grad_x": gx.view_as(x),
           **{f"state_{k}": state[i].view_as(x[0]) for i, k in enumerate(kernel.config.step.states)}}
    for i, n in enumerate(neuron.learnable):
        per_sample = gl.view(len(neuron.learnable), x.shape[1], math.prod(sample)).sum(1)
        out[f"grad_{n}"] = per_sample[i].view(sample).sum_to_size(getattr(neuron, n).shape)
    return out


def run_both(built, case, dtype: str):
    """The host-built CUDA template and the per-step torch reference with autograd on the same
    input, as dicts of spikes, v_seq, final states, grad_x and learnable-parameter grads.

    A 16-bit kernel computes in float32 on its 16-bit input, so its reference is the float32 torch
    path on that input, with the tensor parameters rounded to 16 bits as a module rounds them
    for any 16-bit input, from the initial state stored in 16 bits."""
    index, neuron, x, weights, sample = _case_input(case, DTYPES[dtype])
    if x.dtype in (torch.float16, torch.bfloat16):  # the initial state too is stored in 16 bits (u = b v)
        state0 = neuron.equations().initial_state(x[0], neuron._param_env(x))
        ref = _reference(neuron.to(x.dtype).float(), x.float(), weights.float(), state0)
    else:
        ref = _reference(neuron.to(x.dtype), x, weights)
    kernel = _host_kernel(built, dtype, index)
    assert kernel.config.key == module_config(neuron).key
    return ref, _run_kernel(kernel, neuron, x, weights, sample)


def agreement(ref: dict, out: dict) -> dict[str, float]:
    """Spike mismatches and the largest absolute/relative differences of the rest."""
    fig = {"spikes": int((ref["spikes"] != out["spikes"]).sum()), "spike_rate": float(ref["spikes"].float().mean())}
    for k in ref:
        if k == "spikes":
            continue
        a, b = ref[k].double(), out[k].double()
        fig[f"{k}_abs"] = float((a - b).abs().max()) if a.numel() else 0.0
        fig[f"{k}_rel"] = fig[f"{k}_abs"] / max(float(a.abs().max()), 1e-30)
    return fig


def _case_id(case) -> str:
    return case if isinstance(case, str) else f"{case[0]}-{case[1]}{'-detach' if case[2] else ''}"


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ALL, ids=[_case_id(c) for c in ALL])
def test_host_built_kernel_equals_reference(built, case, dtype):
    ref, out = run_both(built, case, dtype)
    name = case if isinstance(case, str) else case[0]
    fig = agreement(ref, out)
    assert 0 < fig["spike_rate"] < 1, "inputs must make the neurons both spike and stay silent"
    assert fig["spikes"] == 0, fig
    exact = not any(n in name for n in TRANSCENDENTAL)
    for k in ref:
        if k.startswith(("v_seq", "state_")):
            limit = 0.0 if exact else 2e-6 * max(1.0, float(ref[k].abs().max()))
            assert fig[f"{k}_abs"] <= limit, (k, fig)
        elif k.startswith("grad_"):
            assert fig[f"{k}_rel"] <= 1e-5, (k, fig)
    assert float(ref["grad_x"].abs().sum()) > 0


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", ALL, ids=[_case_id(c) for c in ALL])
def test_host_built_kernel_16bit_is_the_float32_kernel_rounded(built, case, dtype):
    """A 16-bit kernel loads, computes in float32 and rounds what it stores: on the same input it
    gives the float32 kernel's spikes, and its voltages, states and input gradients rounded to 16
    bits, bit for bit; learnable-parameter gradients accumulate in float32 in both."""
    index, neuron, x, weights, sample = _case_input(case, DTYPES[dtype])
    out = _run_kernel(_host_kernel(built, dtype, index), neuron, x, weights, sample)
    k32 = _host_kernel(built, "float32", index)
    with torch.no_grad():  # the float32 kernel on exactly what the 16-bit one computes with
        x2, state0, prm, arrays = _inputs(neuron, x, k32.config)
        x32, s32, a32 = x2.float(), state0.float(), arrays.float()
        spikes, state, v_seq = k32.forward(x32, s32, prm, a32, True)
        g_state = torch.zeros_like(state0)
        g_state[k32.config.step.states.index("v")] = 0.1
        gx, _, gl = k32.backward(weights.reshape(x.shape[0], -1).float(), g_state.float(), x32, s32, prm, a32)
    assert torch.equal(out["spikes"].reshape(spikes.shape).float(), spikes)
    assert 0 < float(spikes.mean()) < 1
    assert torch.equal(out["v_seq"].reshape(v_seq.shape), v_seq.to(x.dtype))
    assert torch.equal(out["grad_x"].reshape(gx.shape), gx.to(x.dtype))
    for i, k in enumerate(k32.config.step.states):
        assert torch.equal(out[f"state_{k}"].reshape(-1), state[i].to(x.dtype))
    for i, n in enumerate(neuron.learnable):
        per_sample = gl.view(len(neuron.learnable), x.shape[1], math.prod(sample)).sum(1)
        assert torch.equal(out[f"grad_{n}"], per_sample[i].view(sample).sum_to_size(getattr(neuron, n).shape))


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", ALL, ids=[_case_id(c) for c in ALL])
def test_host_built_kernel_16bit_within_1e_2_of_reference(built, case, dtype):
    """Against torch (float32 on the 16-bit input): the same spikes, voltages and gradients within
    1e-2. Per-neuron uniforms computed from the parameters (``1 / tau``, ``sigmoid(w)``) reach the
    kernel rounded to 16 bits, so there a spike may flip next to the threshold (at most 1%)."""
    ref, out = run_both(built, case, dtype)
    fig = agreement(ref, out)
    if isinstance(case, tuple):
        assert fig["spikes"] == 0, fig
    assert fig["spikes"] <= 0.01 * ref["spikes"].numel(), fig
    if fig["spikes"] == 0:
        for k in ref:
            if k.startswith(("v_seq", "state_", "grad_")):
                assert fig[f"{k}_rel"] <= 1e-2, (k, fig)


@needs_nvcc
@pytest.mark.parametrize("T", [1, 15, 16, 17, 48])
def test_host_built_lif_chunk_boundaries_and_scalar_gradient(built, T):
    """Sequences shorter than, equal to and longer than the backward's chunk (checkpoints), and a
    broadcast gradient (``spikes.sum()``) read as one value."""
    index = ALL.index(("LIF", "hard", False))
    kernel = _host_kernel(built, "float32", index)
    neuron = snn.LIF(tau=3.0, step_mode="m", fused=False)
    torch.manual_seed(T)
    x = torch.rand(T, 2, 5) * 2.5
    xi = x.clone().requires_grad_()
    neuron(xi).sum().backward()
    neuron.reset()
    x2, state0, prm, arrays = _inputs(neuron, x, kernel.config)
    ones = torch.ones(()).expand(T, 10)
    gx, gs0, _ = kernel.backward(ones, None, x2, state0, prm, arrays)
    torch.testing.assert_close(gx.view_as(x), xi.grad, rtol=1e-5, atol=1e-7)
    spikes, state, v_seq = kernel.forward(x2, state0, prm, arrays, False)
    assert v_seq is None and torch.equal(spikes.view_as(x), neuron(x).detach())


# --- the public API without a GPU -------------------------------------------------------------------


def test_kernel_source_names_and_options():
    from snnir.backends.cupy import kernel_source

    src = kernel_source(snnir.neurons.LIF, "bfloat16", reset="soft", detach_reset=True, decay_input=False)
    assert "#include <cuda_bf16.h>" in src and "typedef __nv_bfloat16 storage_t;" in src
    assert "typedef float scalar_t;" in src  # computed in float32
    assert src == kernel_source("LIF", torch.bfloat16, reset="soft", detach_reset=True, decay_input=False)
    assert "#include" not in kernel_source("LIF")  # float32: no header, NVRTC compiles it as is
    per = kernel_source("LIF", per_neuron=("tau", "v_threshold"))
    assert "arrays[1 * M + m]" in per and "n % M" in per
    learn = kernel_source("ParametricLIF")
    assert "grad_learn[0 * N + n] = gp[0];" in learn
    with pytest.raises(ValueError, match="LIF has no parameters \\['tau_x'\\]"):
        kernel_source("LIF", per_neuron=("tau_x",))
    with pytest.raises(ValueError, match="float8"):
        kernel_source("LIF", "float8")
    with pytest.raises(snnir.errors.GraphError, match="unknown neuron model 'Nope'"):
        kernel_source("Nope")


def test_compile_names_what_is_missing(monkeypatch):
    from snnir.backends.cupy import CudaUnavailableError

    g = snnir.trace(torch.nn.Sequential(snn.Linear(3, 2), snn.LIF()), torch.rand(2, 1, 3))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CudaUnavailableError, match="no CUDA device"):
        snnir.compile(g, backend="cupy")
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(CudaUnavailableError, match=r"CuPy is not installed: pip install snnir\[cuda\]"):
        snnir.compile(g, backend="cupy")


def test_cpu_neurons_never_import_cupy():
    """The CUDA backend loads on the first CUDA tensor only; CPU models run as before."""
    import subprocess
    import sys

    code = ("import sys, torch; from snnir import nn as snn; snn.LIF(step_mode='m')(torch.rand(3, 2, 4)); "
            "print('cupy' in sys.modules, 'snnir.backends.cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_install_without_cupy_keeps_the_reference_path(monkeypatch):
    """A CUDA tensor without CuPy: one warning naming what to install, no kernels registered, so
    neurons keep the per-step path (``has_fused_kernels('cuda')`` is False)."""
    import sys

    from snnir.backends.cupy import runtime
    from snnir.backends.torch import fused

    monkeypatch.setattr(runtime, "_state", {"installed": False, "warned": set()})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.warns(RuntimeWarning, match=r"CuPy is not installed: pip install snnir\[cuda\].*per-step torch path"):
        assert runtime.install() is False
    assert "cuda" not in fused.fused_devices()
    monkeypatch.setattr(fused._STATE, "probed", set())
    assert fused.has_fused_kernels("cuda") is False and "cuda" in fused._STATE.probed
    assert fused.has_fused_kernels("meta") is False and fused.has_fused_kernels("cpu") is True


def test_runtime_checks_the_abi_before_touching_a_device():
    from snnir.backends.cupy import runtime

    cfg = kernel_config_of("Izhikevich", per_neuron=("a",))
    x, s0, prm = torch.rand(4, 6), torch.zeros(2, 6), torch.zeros(len(cfg.step.uniforms), dtype=torch.float64)
    A = len(cfg.array_uniforms)  # a and the uniforms computed from it (dt * a, ...)
    assert A >= 1
    with pytest.raises(ValueError, match=r"Izhikevich\): x must be \[T, N\] and state0 \[2, N\]"):
        runtime.forward(cfg, x, s0[:1], prm, torch.zeros(A, 6), False)
    with pytest.raises(ValueError, match="prm must be float64"):
        runtime.forward(cfg, x, s0, prm.float(), torch.zeros(A, 6), False)
    with pytest.raises(ValueError, match=rf"arrays must be \[{A}, M\] with M dividing N = 6"):
        runtime.forward(cfg, x, s0, prm, torch.zeros(A, 4), False)


def kernel_config_of(model: str, **kwargs):
    from snnir.backends.cupy import kernel_config

    return kernel_config(model, **kwargs)


@needs_nvcc
def test_gpu_kernels_example_compiles_a_user_neuron():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "gpu_kernels.py"
    out = subprocess.run([sys.executable, str(script), "--arch", "sm_80"], capture_output=True, text=True,
                         check=True).stdout
    assert "uniforms p_g, p_tau[M]" in out  # tau per neuron (per channel)
    for dtype in ("float32", "float16", "bfloat16", "float64"):
        assert f"{dtype}: snnir_forward" in out and f"{dtype}: snnir_backward" in out
    assert "GPU training skipped" in out or "fused CUDA kernels == per-step torch path (float32): True" in out

"""The few-output linear kernels (``skinny_kernel``) against float64 and torch's BLAS, on this CPU's
instruction set and, compiled on purpose, on the AVX2 one (AMD and older Intel machines) and on
one without AVX2 (the kernels report themselves unavailable and torch runs)."""

import ctypes
import platform
import shutil
import subprocess

import pytest
import torch
from torch.nn import functional as F

from snnir import nn as snn
from snnir.backends.torch import skinny_kernel

TILE = skinny_kernel.tile()
needs_kernels = pytest.mark.skipif(TILE == 0, reason="no C compiler or no AVX2+FMA: torch's linear runs")


def _as_accurate_as_blas(ours, blas, exact):
    """float32 summation order is all that differs: no worse than twice BLAS's own error."""
    assert (ours.double() - exact).abs().max() <= 2 * (blas.double() - exact).abs().max() + 1e-6


@needs_kernels
@pytest.mark.parametrize("rows,inputs,outputs", [(6400, 784, 10), (130, 33, 99), (64, 5, 1), (97, 200, 7),
                                                 (1001, 17, 3)])
def test_forward_and_gradients_as_accurate_as_blas(rows, inputs, outputs):
    outputs = min(outputs, TILE)
    torch.manual_seed(11)
    x = torch.rand(rows, inputs + 3)[:, 1:inputs + 1].requires_grad_()  # rows a stride apart
    w = torch.randn(outputs, inputs, requires_grad=True)
    b = torch.randn(outputs, requires_grad=True)
    assert skinny_kernel.supported(x, w)
    y = skinny_kernel.linear(x, w, b)
    ref_args = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    y_ref = F.linear(*ref_args)
    _as_accurate_as_blas(y.detach(), y_ref.detach(), F.linear(*(t.detach().double() for t in (x, w, b))))
    g = torch.randn_like(y)
    y.backward(g), y_ref.backward(g)
    _as_accurate_as_blas(w.grad, ref_args[1].grad, g.double().t() @ x.detach().double())
    torch.testing.assert_close(b.grad, ref_args[2].grad)  # torch's sum
    torch.testing.assert_close(x.grad, ref_args[0].grad)  # torch's GEMM


@needs_kernels
def test_weight_gradient_does_not_depend_on_the_thread_count():
    torch.manual_seed(12)
    x, w = torch.rand(3000, 300), torch.randn(TILE, 300, requires_grad=True)
    g = torch.randn(3000, TILE)
    grads = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            w.grad = None
            skinny_kernel.linear(x, w).backward(g)
            grads.append(w.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


@needs_kernels
def test_snn_linear_takes_the_kernels_for_readouts_only(monkeypatch):
    torch.manual_seed(13)
    lin = snn.Linear(50, TILE, step_mode="m")
    x = torch.rand(8, 16, 50)
    ours = lin(x)
    assert ours.shape == (8, 16, TILE)
    assert torch.equal(ours, skinny_kernel.linear(x.reshape(-1, 50), lin.weight, lin.bias).view(8, 16, TILE))
    torch.testing.assert_close(ours, F.linear(x, lin.weight, lin.bias))
    wide = snn.Linear(50, TILE + 1, step_mode="m")  # more outputs than a register tile: BLAS
    assert torch.equal(wide(x), F.linear(x, wide.weight, wide.bias))
    assert torch.equal(lin(x[:, :2]), F.linear(x[:, :2], lin.weight, lin.bias))  # 16 rows: BLAS
    lin64 = snn.Linear(50, TILE, step_mode="m").double()
    assert torch.equal(lin64(x.double()), F.linear(x.double(), lin64.weight, lin64.bias))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: torch's bfloat16 linear
        assert lin(x).dtype == torch.bfloat16
    monkeypatch.setattr(skinny_kernel, "ENABLED", False)
    assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


def test_unsupported_inputs_run_torch():
    assert not skinny_kernel.supported(torch.rand(100, 50), torch.rand(max(TILE, 10) + 1, 50))
    assert not skinny_kernel.supported(torch.rand(100, 50, dtype=torch.float64), torch.rand(5, 50, dtype=torch.float64))
    assert not skinny_kernel.supported(torch.rand(50, 100).t(), torch.rand(5, 50))  # columns a stride apart
    w = torch.randn(5, 50)
    x = torch.rand(50, 100).t()
    torch.testing.assert_close(skinny_kernel.linear(x, w), F.linear(x, w))


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def _compile_for(march: str, tmp_path) -> ctypes.CDLL:
    cc = shutil.which("cc") or shutil.which("gcc")
    if platform.machine() != "x86_64":
        pytest.skip("x86-64 instruction sets")
    if cc is None:
        pytest.skip("no C compiler")
    src, lib = tmp_path / f"skinny_{march}.c", tmp_path / f"skinny_{march}.so"
    src.write_text(skinny_kernel._SOURCE)
    subprocess.run([cc, "-O3", "-fPIC", "-shared", "-fopenmp", "-ffp-contract=off", f"-march={march}", "-std=c99",
                    str(src), "-o", str(lib)], check=True, capture_output=True)
    out = ctypes.CDLL(str(lib))
    skinny_kernel._declare(out)
    return out


def test_avx2_build_agrees_with_float64(tmp_path):
    """The instruction set of AMD Zen 1-3 and pre-AVX-512 Intel: 8 lanes, 5-output tiles."""
    if not {"avx2", "fma"} <= _cpu_flags():
        pytest.skip("this CPU cannot run AVX2 code")
    lib = _compile_for("haswell", tmp_path)
    assert lib.snnir_skinny_available() == 1 and lib.tile == 5
    torch.manual_seed(14)
    for rows, inputs, outputs in [(64, 5, 1), (257, 31, 5), (130, 300, 4), (3, 9, 2)]:
        x = torch.rand(rows, inputs + 2)[:, :inputs]
        w, b, g = torch.randn(outputs, inputs), torch.randn(outputs), torch.randn(rows, outputs)
        y, gw = torch.empty(rows, outputs), torch.empty(outputs, inputs)
        lib.snnir_skinny_fwd(rows, inputs, outputs, x.data_ptr(), x.stride(0), w.data_ptr(), b.data_ptr(),
                             y.data_ptr(), 2)
        lib.snnir_skinny_gw(rows, inputs, outputs, g.data_ptr(), x.data_ptr(), x.stride(0), gw.data_ptr(), 2)
        exact = x.double() @ w.double().t() + b.double()
        torch.testing.assert_close(y.double(), exact, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gw.double(), g.double().t() @ x.double(), rtol=1e-5, atol=1e-5)


def test_build_without_avx2_reports_unavailable(tmp_path):
    lib = _compile_for("x86-64", tmp_path)
    assert lib.snnir_skinny_available() == 0 and lib.tile == 0


def test_kernel_libraries_step_aside_while_torch_compile_traces():
    """A ctypes library cannot be called from a compiled graph: while tracing, ``LazyLibrary.get``
    is None (the caller's torch op is traced), and the traced function has no graph break."""
    from snnir.backends.torch.cpu_kernel import LazyLibrary

    lib = LazyLibrary("int snnir_answer(void) { return 42; }", lambda lib: None)

    @torch.compile(backend="eager", fullgraph=True)
    def traced(x):
        return x + (1.0 if lib.get() is None else 2.0)

    assert traced(torch.zeros(1)).item() == 1.0
    eager = lib.get()
    assert eager is None or eager.snnir_answer() == 42

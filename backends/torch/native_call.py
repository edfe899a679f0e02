"""The training call of a fused neuron layer with its autograd node in C++ (per-call cost).

A small layer's training call (streaming, small batches) costs mostly Python: a Python
``autograd.Function`` node, its ``forward``/``backward`` bodies and two ``ctypes`` kernel calls
cost ~17 us around a ~2 us kernel. This module compiles, once per torch version, a CPython
extension (``SOURCE``) whose one function ``neuron_call`` allocates the outputs, calls the
already-built C kernels (``snnir_forward`` / ``snnir_backward`` of ``cpu_kernel``, by address)
and attaches a C++ autograd node whose backward calls the backward kernel: the same kernels on
the same arguments as ``fused_call._DirectNeuron``, so outputs and gradients are bit-identical.

The extension is compiled against the installed torch's headers (~15 s on two cores: torch's
autograd headers are large), in a background thread that the process's ``START_AFTER``-th
eligible training call starts (``wait()`` builds it at once), and cached in the kernel cache
(``$SNNIR_CACHE_DIR``) by torch version, source, compiler and flags; until it is loaded, and
wherever it cannot be built (no C++ compiler, no Python or torch headers), calls take the Python
path. ``SNNIR_NATIVE_CALL=0`` turns it off. Eligible: plain CPU tensors whose outputs are below
the buffer pool's size (where the per-call cost matters), no ``store_v_seq``, outside functorch
transforms and forward-mode AD. Calls under ``no_grad`` never use it (they call the C kernel
directly), nor does ``torch.compile`` (which traces the ``snnir::neuron_forward`` op).

Example:
    >>> import torch
    >>> from snnir import nn as snn
    >>> from snnir.backends.torch import native_call
    >>> ext = native_call.wait()  # build (or load) now; None where it cannot be built
    >>> x = torch.rand(4, 1, 8, requires_grad=True)
    >>> snn.LIF(tau=2.0, step_mode="m")(x).sum().backward()
    >>> x.grad.shape
    torch.Size([4, 1, 8])
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import sysconfig
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from .cpu_kernel import _cache_dir, _host_tag, compile_into

MODULE = "snnir_native_call"

SOURCE = r"""
// snnir: the fused neuron's training call with a C++ autograd node (see native_call.py)
#include <Python.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/csrc/autograd/saved_variable.h>

using at::Tensor;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// the kernel ABI of cpu_kernel.generate_source
typedef void (*forward_fn)(int64_t T, int64_t N, int64_t M, int64_t tile, const void* x, void* spikes,
                           const void* state0, int64_t s0_row, int64_t s0_col, void* state, void* v_seq,
                           const double* prm, const void* arrays, int nthreads);
typedef int (*backward_fn)(int64_t T, int64_t N, int64_t M, int64_t tile, const void* grad_spikes,
                           int grad_is_scalar, const void* grad_state, const void* x, const void* state0,
                           int64_t s0_row, int64_t s0_col, void* grad_x, void* grad_state0, double* grad_learn,
                           const double* prm, const void* arrays, int nthreads);

// What does not change from call to call (fused_call.Plan): built once per plan, held by a capsule.
struct Plan {
  forward_fn fwd;
  backward_fn bwd;
  int64_t T, N, M, S, tile, bwd_tile;
  int fwd_threads, bwd_threads;
  std::vector<int64_t> state_shape;  // the final state's shape: one state in memory order (S = 1) or [S, N]
  at::ScalarType dtype, sdtype;  // the sequences' and the states' types
  Tensor init;  // [S]: the initial values broadcast to every neuron (read with column stride 0)
  Tensor prm, arrays;
};

static const char* kOnce =
    "snnir fused neuron: its backward is not differentiable (a double backward through a spiking "
    "neuron is not supported; use fused=False for higher-order gradients)";

struct NeuronCallBackward : public torch::autograd::Node {
  std::shared_ptr<const Plan> plan;
  SavedVariable x_, rows_;  // rows_: the initial state's rows (undefined: the plan's init)
  Tensor arrays;            // the per-neuron uniforms this call used
  int64_t s0_row = 1, s0_col = 0;
  std::vector<int64_t> s0_shape;     // the state0 argument's shape (its gradient's)
  std::vector<int64_t> learn_shape;  // empty: no learned parameters
  bool learn = false;

  std::string name() const override { return "NeuronCallBackward"; }
  void release_variables() override {
    x_.reset_data();
    rows_.reset_data();
  }

  variable_list apply(variable_list&& grads) override {
    const Plan& p = *plan;
    Tensor x = x_.unpack();
    Tensor rows = rows_.unpack();
    const void* s0 = rows.defined() ? rows.data_ptr() : p.init.data_ptr();
    Tensor g = grads[0];
    int scalar = 0;
    if (!g.defined()) {
      g = at::zeros(x.sizes(), x.options());  // as the Python path: a dense zero gradient
    } else {
      if (g.scalar_type() != x.scalar_type()) g = g.to(x.scalar_type());
      bool broadcast = true;  // loss = spikes.sum(): one value, read as such
      for (int64_t s : g.strides()) broadcast = broadcast && s == 0;
      scalar = broadcast;
      if (!scalar && g.strides() != x.strides()) {  // into the input's memory order
        Tensor dense = at::empty_like(x);
        dense.copy_(g);
        g = dense;
      }
    }
    Tensor g_state = grads[1];
    if (g_state.defined()) g_state = g_state.to(p.sdtype).contiguous();
    Tensor gx = at::empty_like(x);
    Tensor gs0;
    if (task_should_compute_output(1)) gs0 = at::empty(s0_shape, x.options().dtype(p.sdtype));
    Tensor gl;
    if (learn)
      gl = at::empty({learn_shape.size() == 2 ? learn_shape[0] : 1, p.N}, x.options().dtype(at::kDouble));
    int failed = p.bwd(p.T, p.N, p.M, p.bwd_tile, g.data_ptr(), scalar,
                       g_state.defined() ? g_state.const_data_ptr() : nullptr, x.const_data_ptr(), s0, s0_row, s0_col,
                       gx.data_ptr(), gs0.defined() ? gs0.data_ptr() : nullptr,
                       gl.defined() ? gl.data_ptr<double>() : nullptr, p.prm.const_data_ptr<double>(),
                       arrays.const_data_ptr(), p.bwd_threads);
    TORCH_CHECK_WITH(OutOfMemoryError, !failed, "fused neuron backward: could not allocate a ", p.bwd_tile,
                     "-neuron recompute buffer");
    if (gl.defined() && learn_shape.size() == 2)  // [L, M] rows: summed over the batch (fused._reduce_learn)
      gl = gl.view({learn_shape[0], -1, learn_shape[1]}).sum(1).to(p.sdtype);
    // else a one-element parameter: [1, N] summed to its shape and cast by the engine
    variable_list out = {gx, gs0, gl};
    if (at::GradMode::is_enabled()) {  // create_graph=True: as once_differentiable, refuse a second order
      bool any = false;
      for (const Tensor& t : grads) any = any || (t.defined() && t.requires_grad());
      if (any) {  // outputs made to require grad (as once_differentiable's), their grad_fn an error
        for (Tensor& t : out)
          if (t.defined()) t.set_requires_grad(true);
        auto err = c10::make_intrusive<torch::autograd::DelayedError>(kOnce, 3);
        out = err->apply(std::move(out));
      }
    }
    return out;
  }
};

static void free_plan(PyObject* capsule) {
  delete static_cast<std::shared_ptr<const Plan>*>(PyCapsule_GetPointer(capsule, "snnir.Plan"));
}

static bool is_tensor(PyObject* o) { return THPVariable_Check(o); }

// make_plan(fwd, bwd, T, N, M, S, tile, bwd_tile, fwd_threads, bwd_threads, state_shape, init, prm, arrays,
//           dtype_like, sdtype_like) -> capsule
static PyObject* make_plan(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 16 || !is_tensor(args[12]) || !is_tensor(args[13]) || !is_tensor(args[14]) || !is_tensor(args[15]) ||
      !PyTuple_Check(args[10])) {
    PyErr_SetString(PyExc_TypeError, "make_plan: bad arguments");
    return nullptr;
  }
  auto plan = std::make_shared<Plan>();
  int64_t v[10];
  for (int i = 0; i < 10; ++i) {
    v[i] = PyLong_AsLongLong(args[i]);
    if (v[i] == -1 && PyErr_Occurred()) return nullptr;
  }
  plan->fwd = reinterpret_cast<forward_fn>(v[0]);
  plan->bwd = reinterpret_cast<backward_fn>(v[1]);
  plan->T = v[2], plan->N = v[3], plan->M = v[4], plan->S = v[5], plan->tile = v[6], plan->bwd_tile = v[7];
  plan->fwd_threads = static_cast<int>(v[8]), plan->bwd_threads = static_cast<int>(v[9]);
  for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[10]); ++i)
    plan->state_shape.push_back(PyLong_AsLongLong(PyTuple_GET_ITEM(args[10], i)));
  if (PyErr_Occurred()) return nullptr;
  if (args[11] != Py_None) {
    if (!is_tensor(args[11])) {
      PyErr_SetString(PyExc_TypeError, "make_plan: init must be a tensor or None");
      return nullptr;
    }
    plan->init = THPVariable_Unpack(args[11]);
  }
  plan->prm = THPVariable_Unpack(args[12]);
  plan->arrays = THPVariable_Unpack(args[13]);
  plan->dtype = THPVariable_Unpack(args[14]).scalar_type();
  plan->sdtype = THPVariable_Unpack(args[15]).scalar_type();
  return PyCapsule_New(new std::shared_ptr<const Plan>(std::move(plan)), "snnir.Plan", free_plan);
}

// neuron_call(plan, x, state0 or None, learn or None, arrays or None) -> (spikes, state), or
// NotImplemented where the Python path must run (forward-mode AD).
static PyObject* neuron_call(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 5) {
    PyErr_SetString(PyExc_TypeError, "neuron_call(plan, x, state0, learn, arrays): 5 arguments");
    return nullptr;
  }
  auto* held = static_cast<std::shared_ptr<const Plan>*>(PyCapsule_GetPointer(args[0], "snnir.Plan"));
  if (!held) return nullptr;
  ++args;  // the tensors
  if (!is_tensor(args[0]) || (args[1] != Py_None && !is_tensor(args[1])) ||
      (args[2] != Py_None && !is_tensor(args[2])) || (args[3] != Py_None && !is_tensor(args[3]))) {
    PyErr_SetString(PyExc_TypeError, "neuron_call(plan, x, state0, learn, arrays): tensors or None expected");
    return nullptr;
  }
  try {
    const Plan& p = **held;
    const Tensor& x = THPVariable_Unpack(args[0]);
    Tensor state0 = args[1] == Py_None ? Tensor() : THPVariable_Unpack(args[1]);
    Tensor learn = args[2] == Py_None ? Tensor() : THPVariable_Unpack(args[2]);
    Tensor arrays = args[3] == Py_None ? p.arrays : THPVariable_Unpack(args[3]);
    if (x._fw_grad(0).defined() || (state0.defined() && state0._fw_grad(0).defined()) ||
        (learn.defined() && learn._fw_grad(0).defined()))
      Py_RETURN_NOTIMPLEMENTED;
    TORCH_CHECK(x.is_cpu() && x.scalar_type() == p.dtype && x.numel() == p.T * p.N &&
                x.is_non_overlapping_and_dense() && arrays.dim() == 2 && arrays.size(1) == p.M &&
                arrays.scalar_type() == p.sdtype && arrays.is_contiguous() &&
                (!state0.defined() || state0.numel() == p.S * p.N),
                "neuron_call: the input does not match its plan");
    // the initial state as the kernels read it (fused.initial_rows)
    Tensor rows;
    int64_t s0_row = 1, s0_col = 0;
    if (state0.defined()) {
      if (state0.scalar_type() == p.sdtype && state0.is_contiguous()) {
        rows = state0, s0_row = p.N, s0_col = 1;
      } else {
        Tensor r = state0.reshape({p.S, p.N});
        if (p.N > 1 && r.stride(1) == 0)
          rows = r.select(1, 0).to(p.sdtype).contiguous();
        else
          rows = r.to(p.sdtype).contiguous(), s0_row = p.N, s0_col = 1;
      }
    }
    const void* s0 = rows.defined() ? rows.const_data_ptr() : p.init.const_data_ptr();
    Tensor spikes = at::empty_like(x);
    Tensor state = at::empty(p.state_shape, x.options().dtype(p.sdtype));
    {
      const void* xp = x.const_data_ptr();
      void *sp = spikes.data_ptr(), *st = state.data_ptr();
      const double* prm = p.prm.const_data_ptr<double>();
      const void* ap = arrays.const_data_ptr();
      Py_BEGIN_ALLOW_THREADS
      p.fwd(p.T, p.N, p.M, p.tile, xp, sp, s0, s0_row, s0_col, st, nullptr, prm, ap, p.fwd_threads);
      Py_END_ALLOW_THREADS
    }
    if (torch::autograd::compute_requires_grad(x, state0, learn)) {
      auto node = c10::make_intrusive<NeuronCallBackward>();
      node->set_next_edges(torch::autograd::collect_next_edges(x, state0, learn));
      node->plan = *held;
      node->x_ = SavedVariable(x, false);
      if (rows.defined()) node->rows_ = SavedVariable(rows, false);
      node->arrays = arrays;
      node->s0_row = s0_row, node->s0_col = s0_col;
      if (state0.defined()) node->s0_shape = state0.sizes().vec();
      else node->s0_shape = {p.S, p.N};
      if (learn.defined()) node->learn = true, node->learn_shape = learn.sizes().vec();
      torch::autograd::set_history(spikes, node);
      torch::autograd::set_history(state, node);
    }
    PyObject* out = PyTuple_New(2);
    if (!out) return nullptr;
    PyTuple_SET_ITEM(out, 0, THPVariable_Wrap(std::move(spikes)));
    PyTuple_SET_ITEM(out, 1, THPVariable_Wrap(std::move(state)));
    return out;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

static PyMethodDef methods[] = {
    {"make_plan", (PyCFunction)(void (*)(void))make_plan, METH_FASTCALL, "a plan's constants as a capsule"},
    {"neuron_call", (PyCFunction)(void (*)(void))neuron_call, METH_FASTCALL, "one fused neuron training call"},
    {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "snnir_native_call", nullptr, -1, methods};
PyMODINIT_FUNC PyInit_snnir_native_call(void) { return PyModule_Create(&module_def); }
"""


class NativeBuildError(RuntimeError):
    """No C++ compiler, no Python or torch headers, or the extension failed to build or load."""


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        raise NativeBuildError("no C++ compiler found (set CXX, or install g++)")
    return cxx


def _command(source: Path, out: Path) -> list[str]:
    from torch.utils import cpp_extension

    python_include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(python_include, "Python.h")):
        raise NativeBuildError(f"no Python.h in {python_include} (install the Python development headers)")
    includes = [f"-I{p}" for p in [*cpp_extension.include_paths(), python_include]]
    libs = cpp_extension.library_paths()
    return [_compiler(), "-O2", "-std=c++20", "-fPIC", "-shared", "-fvisibility=hidden", "-w",
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}", *includes, str(source), "-o", str(out),
            *[f"-L{p}" for p in libs], *[f"-Wl,-rpath,{p}" for p in libs], "-lc10", "-ltorch_cpu", "-ltorch",
            "-ltorch_python"]


def build() -> ModuleType:
    """Compile (or find in the cache) and import the extension; ``NativeBuildError`` if it cannot."""
    flags = _command(Path("SOURCE"), Path("OUT"))  # the key: no temporary path in it
    key_text = "\0".join([SOURCE, torch.__version__, os.path.dirname(torch.__file__), sys.version, *flags, _host_tag()])
    lib_path = _cache_dir() / f"snnir_native_{hashlib.sha256(key_text.encode()).hexdigest()[:24]}.so"
    if not lib_path.exists():
        compile_into(lib_path, SOURCE, _command, "C++", NativeBuildError)
    try:
        spec = importlib.util.spec_from_loader(MODULE, importlib.machinery.ExtensionFileLoader(MODULE, str(lib_path)))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (ImportError, OSError) as e:
        raise NativeBuildError(f"loading the native call failed: {e}") from None
    return module


class _Loader:
    """Builds the extension once per process, in a background thread (``start``), or now (``wait``)."""

    def __init__(self) -> None:
        self.module: ModuleType | None = None
        self.failed = False
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.calls = 0  # training calls that asked for it before the build started

    def _run(self) -> None:
        try:
            self.module = build()
        except NativeBuildError as e:
            self.failed = True
            warnings.warn(f"{e}\nsnnir keeps the Python training call of fused neurons (a few microseconds "
                          "more per call).", RuntimeWarning, stacklevel=2)
        except Exception as e:  # an unexpected failure must never break a training call
            self.failed = True
            warnings.warn(f"snnir native call unavailable: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)

    def start(self) -> None:
        with self.lock:
            if os.environ.get("SNNIR_NATIVE_CALL", "1").lower() in ("0", "false", "off", "no"):
                self.failed = True
            if self.thread is None and not self.failed:
                self.thread = threading.Thread(target=self._run, name="snnir-native-call-build", daemon=True)
                self.thread.start()

    def wait(self, timeout: float | None = None) -> ModuleType | None:
        self.start()
        if self.thread is not None:
            self.thread.join(timeout)
        return self.module


# One loader per process, shared by every copy of this module (pytest's doctest collection imports
# the file a second time as ``backends.torch.native_call``).
_SHARED = sys.modules.setdefault("snnir.backends.torch._native_call_state", ModuleType("_native_call_state"))
if not hasattr(_SHARED, "loader"):
    _SHARED.loader = _Loader()
_LOADER = _SHARED.loader


# Training calls before the background build starts: a short script (a test, an example) never pays
# the compiler; a training run, whose per-call cost adds up, does, once per cache.
START_AFTER = 200


def loaded() -> ModuleType | None:
    """The extension if it is loaded; otherwise counts the call, starts building it (once) after
    ``START_AFTER`` calls, and returns ``None``."""
    module = _LOADER.module
    if module is None and _LOADER.thread is None and not _LOADER.failed:
        _LOADER.calls += 1
        if _LOADER.calls >= START_AFTER:
            _LOADER.start()
    return module


def wait(timeout: float | None = None) -> ModuleType | None:
    """Build (or load from the cache) the extension now; ``None`` where it cannot be built."""
    return _LOADER.wait(timeout)


def plan_handle(plan: Any) -> Any:
    """The extension's handle of a ``fused_call.Plan``: ``None`` while the extension is not loaded
    (the call takes the Python path), ``False`` where the plan never can use it."""
    module = loaded()
    if module is None:
        return False if _LOADER.failed else None
    kernel = plan.kernel
    address = ctypes.cast(kernel._fwd, ctypes.c_void_p).value, ctypes.cast(kernel._bwd, ctypes.c_void_p).value
    init = None if plan.init_rows is None else plan.init_rows[0]
    state_shape = plan.state_shape if plan.S == 1 else (plan.S, plan.N)  # ``Plan.new_state``
    try:
        handle = module.make_plan(*address, plan.T, plan.N, plan.M, plan.S, plan.fwd_head[3].value, plan.bwd_tile,
                                  plan.fwd_threads.value, plan.bwd_threads.value, state_shape, init, plan.prm,
                                  plan.arrays, torch.empty(0, dtype=kernel.dtype), plan.no_learn)
    except (TypeError, ValueError, OverflowError, RuntimeError) as e:  # never break a training call
        warnings.warn(f"snnir native call: this plan takes the Python path ({e})", RuntimeWarning, stacklevel=3)
        return False
    return functools.partial(module.neuron_call, handle)

"""Build the generated CUDA kernels with nvcc, without a GPU: PTX for given architectures, and the
very same template as host code (``SNNIR_HOST_ONLY``: the per-neuron functions looped on the CPU),
loaded with ctypes and called with the kernel ABI of ``snnir::neuron_forward/backward``.

Many configurations share one translation unit per storage type (one nvcc run each), every
configuration in its own namespace with its own symbol prefix ``k<i>``.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from snnir.backends.cupy import runtime
from snnir.backends.cupy.source import dialect, generate_source, headers

NVCC = shutil.which("nvcc")
# 177/550: locals a configuration computes but does not read (a spike the adjoint does not need)
QUIET = ["-diag-suppress=177,550"]
HOST_FLAGS = ["-x", "cu", "-DSNNIR_HOST_ONLY", "-shared", "-Xcompiler", "-fPIC", "-Xcompiler", "-ffp-contract=off",
              "-O1", "-std=c++17", *QUIET]


def translation_unit(configs: list[Any], dtype: str) -> str:
    """One CUDA source holding every configuration's kernels for ``dtype``."""
    storage, _ = dialect(dtype)
    parts = [generate_source(cfg.step, dtype, cfg.per_neuron, name=f"k{i}", includes=False)
             for i, cfg in enumerate(configs)]
    include = headers("CUDART_", storage)  # every header any part may need
    return "\n".join([*include, *(f"namespace c{i} {{\n{p}\n}}  // namespace c{i}" for i, p in enumerate(parts))])


@dataclass
class Job:
    """One nvcc run in the background."""

    what: str
    out: Path
    proc: subprocess.Popen

    def wait(self) -> tuple[int, str]:
        _, err = self.proc.communicate()
        return self.proc.returncode, err[-4000:]


def start_ptx(src: Path, arch: str, optimize: bool = True) -> Job:
    out = src.with_name(f"{src.stem}_{arch}.ptx")
    fast = [] if optimize else ["-Xcicc", "-O0"]  # front end and code generation, without optimizing
    cmd = [NVCC, "-ptx", f"-arch={arch}", *QUIET, *fast, str(src), "-o", str(out)]
    return Job(f"{src.name} {arch}", out, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))


def start_host(src: Path) -> Job:
    out = src.with_suffix(".so")
    cmd = [NVCC, *HOST_FLAGS, str(src), "-o", str(out)]
    return Job(f"{src.name} host", out, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))


class HostKernel:
    """Configuration ``i`` of a host-built unit, driven with the very argument lists the CUDA
    runtime launches its kernels with (``runtime.forward_args``/``backward_args``); the trailing
    ``double`` uniforms go to the host functions as one array. CPU tensors."""

    def __init__(self, lib: ctypes.CDLL, i: int, config: Any) -> None:
        self.config = config
        self.fwd = getattr(lib, f"k{i}_host_forward")
        self.bwd = getattr(lib, f"k{i}_host_backward")
        i64, p = ctypes.c_longlong, ctypes.c_void_p
        self.fwd.argtypes = [i64, i64, i64, p, p, p, p, p, p]
        self.bwd.argtypes = [i64, i64, i64, p, i64, p, p, p, p, p, p, p, p, p]
        self.fwd.restype = self.bwd.restype = None

    @staticmethod
    def _call(fn, args: list, fixed: int) -> None:
        prm = torch.tensor(args[fixed:], dtype=torch.float64)
        fn(*args[:fixed], ctypes.c_void_p(prm.data_ptr() if prm.numel() else 0))

    def forward(self, x, state0, prm, arrays, want_v):
        args, (spikes, state, v_seq) = runtime.forward_args(x, state0, prm, arrays, want_v)
        if x.numel():
            self._call(self.fwd, args, 8)
        return spikes, state, v_seq if want_v else None

    def backward(self, g_spikes, g_state, x, state0, prm, arrays):
        args, outputs = runtime.backward_args(self.config, g_spikes, g_state, x, state0, prm, arrays)
        if x.numel():
            self._call(self.bwd, args, 13)
        return outputs

"""Building and launching the generated kernels: NVRTC through CuPy, torch tensors in and out.

``install()`` registers ``forward``/``backward`` as the ``snnir::neuron_forward/backward`` kernels
for CUDA tensors (``register_device_kernels``) when CuPy and a CUDA device are there; it is
called on the first CUDA tensor a fused neuron sees and by ``snnir.compile(g, backend="cupy")``.

Kernels are compiled per configuration, storage type and device architecture with NVRTC
(``cupy.cuda.compiler.compile_using_nvrtc``, the CuPy compiler underneath ``RawModule``), with
``--fmad=false`` so that every floating-point operation is the one the equation writes (no fused
multiply-adds, denormals kept), which is what makes float32 spikes equal the per-step torch path
bit for bit. (``RawModule(code=...)`` would force ``-ftz=true``, flushing denormals.) The binary
is cached on disk under ``$SNNIR_CACHE_DIR/cuda`` by the hash of source, options, NVRTC version
and architecture, and loaded with ``cupy.RawModule(path=...)``; loaded modules are cached per
process and device. Launches go to torch's current stream on the tensors' device.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import torch

from .source import BACKWARD_CHUNK, BLOCK, generate_source

TORCH_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
                torch.bfloat16: "bfloat16"}
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")


class CudaUnavailableError(RuntimeError):
    """CuPy or a CUDA device is missing; the message names which."""


class KernelBuildError(RuntimeError):
    """NVRTC refused a generated kernel (the message holds its log)."""


def unavailable_reason() -> str | None:
    """Why the CUDA kernels cannot run in this process (each missing piece named), or ``None``."""
    missing = []
    try:
        import cupy
    except ImportError as e:
        cupy = None
        missing.append(f"CuPy is not installed: pip install snnir[cuda] ({e})")
    if not torch.cuda.is_available():
        built = torch.version.cuda
        missing.append("no CUDA device: torch.cuda.is_available() is False (" + (
            f"torch {torch.__version__} is built for CUDA {built}, but no GPU or driver is visible)" if built
            else f"torch {torch.__version__} is a CPU-only build)"))
    elif cupy is not None:
        try:
            cupy.cuda.runtime.getDeviceCount()
        except Exception as e:  # CuPy built for another CUDA, or no driver it can use
            missing.append(f"CuPy cannot reach the CUDA device: {e}")
    return "; ".join(missing) or None


def require() -> None:
    """Raise ``CudaUnavailableError`` naming what is missing, unless the CUDA kernels can run."""
    reason = unavailable_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)


_lock = threading.Lock()
_state: dict[str, Any] = {"installed": False, "warned": set()}


def install() -> bool:
    """Register the CUDA kernels for ``snnir::neuron_forward/backward`` on CUDA tensors, if CuPy
    and a device are there; returns whether they are installed. Without them neurons on CUDA keep
    the per-step torch path (one warning says what is missing, unless only the GPU is)."""
    if _state["installed"]:
        return True
    reason = unavailable_reason()
    if reason is not None:
        if torch.cuda.is_available():
            _warn_once("install", f"snnir: {reason}; neurons on CUDA run the per-step torch path")
        return False
    from snnir.backends.torch.fused import register_device_kernels
    register_device_kernels("cuda", forward, backward)
    _state["installed"] = True
    return True


def _warn_once(key: str, message: str) -> None:
    if key not in _state["warned"]:
        _state["warned"].add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


# --- building -----------------------------------------------------------------------------------------


def _cache_dir() -> Path:
    root = os.environ.get("SNNIR_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "snnir")
    path = Path(root) / "cuda"
    path.mkdir(parents=True, exist_ok=True)
    return path


@cache
def include_dirs() -> tuple[str, ...]:
    """Directories holding the CUDA headers the 16-bit kernels include (``cuda_fp16.h``,
    ``cuda_bf16.h``, ``math_constants.h``): the toolkit's, found as CuPy finds it."""
    candidates = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory
        candidates.append(find_nvidia_header_directory("cudart"))
    except Exception:  # cuda-pathfinder absent (older CuPy) or no toolkit found
        pass
    try:
        import cupy
        root = cupy.cuda.get_cuda_path()
        candidates.append(os.path.join(root, "include") if root else None)
    except Exception:
        pass
    for var in ("CUDA_PATH", "CUDA_HOME"):
        candidates.append(os.path.join(os.environ[var], "include") if os.environ.get(var) else None)
    nvcc = shutil.which("nvcc")
    candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "include")
                      if nvcc else None)
    found = [c for c in candidates if c and os.path.isfile(os.path.join(c, "cuda_fp16.h"))]
    return tuple(dict.fromkeys(found))


def _arch(device_index: int) -> str:
    major, minor = torch.cuda.get_device_capability(device_index)
    return f"{major}{minor}"


def _compile(source: str, arch: str, who: str) -> bytes:
    from cupy.cuda import compiler

    options = (*NVRTC_OPTIONS, *(f"-I{d}" for d in include_dirs()))
    try:
        binary = compiler.compile_using_nvrtc(source, options=options, arch=arch)
    except compiler.CompileException as e:
        missing = "" if include_dirs() or "#include" not in source else \
            " (no CUDA headers found: set CUDA_PATH to the toolkit that has cuda_fp16.h)"
        raise KernelBuildError(f"NVRTC could not compile the CUDA kernel of {who}{missing}:\n{str(e)[-3000:]}") \
            from None
    except Exception as e:  # NVRTC missing or unusable (a library CuPy cannot find, ...)
        raise KernelBuildError(f"NVRTC is not usable for {who}: {type(e).__name__}: {e}") from None
    return binary.encode() if isinstance(binary, str) else bytes(binary)


def build_module(source: str, device_index: int, who: str = "a neuron") -> Any:
    """The loaded ``cupy.RawModule`` of ``source`` for the device's architecture (compiled once,
    cached on disk by content hash)."""
    import cupy
    from cupy.cuda import compiler, nvrtc

    arch = _arch(device_index)
    try:
        version = ".".join(map(str, nvrtc.getVersion()))
    except Exception as e:
        raise KernelBuildError(f"NVRTC is not usable for {who}: {type(e).__name__}: {e}") from None
    key = hashlib.sha256("\0".join([source, *NVRTC_OPTIONS, arch, version, cupy.__version__]).encode()).hexdigest()
    path = _cache_dir() / f"snnir_{key[:24]}_sm{arch}.bin"
    with _lock:
        if not path.exists():
            if not hasattr(compiler, "compile_using_nvrtc"):  # another CuPy's compiler API: its own route
                _warn_once("nvrtc-api", "snnir: this CuPy has no cupy.cuda.compiler.compile_using_nvrtc; "
                           "compiling through RawModule(code=...), which flushes float32 denormals")
                options = (*NVRTC_OPTIONS, *(f"-I{d}" for d in include_dirs()))
                with cupy.cuda.Device(device_index):
                    return cupy.RawModule(code=source, options=options)
            with cupy.cuda.Device(device_index):
                binary = _compile(source, arch, who)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(binary)
            os.replace(tmp, path)  # atomic: concurrent processes never load half a file
        with cupy.cuda.Device(device_index):
            return cupy.RawModule(path=str(path))


class CudaKernel:
    """The forward and backward kernels of one configuration, storage type and device."""

    def __init__(self, config: Any, dtype: torch.dtype, device: torch.device) -> None:
        import cupy

        self.config = config
        self.device_index = device.index if device.index is not None else torch.cuda.current_device()
        self.source = generate_source(config.step, TORCH_DTYPES[dtype], config.per_neuron)
        who = f"neuron model {config.step.model} ({dtype})"
        module = build_module(self.source, self.device_index, who)
        try:  # loads the module: a binary the driver refuses fails here
            with cupy.cuda.Device(self.device_index):
                self._forward = module.get_function("snnir_forward")
                self._backward = module.get_function("snnir_backward")
        except Exception as e:
            raise KernelBuildError(f"the CUDA driver could not load the kernels of {who}: {type(e).__name__}: {e}") \
                from None
        sms = torch.cuda.get_device_properties(self.device_index).multi_processor_count
        self.max_blocks = sms * (2048 // BLOCK)  # one full wave; the grid-stride loop covers the rest

    def _launch(self, fn: Any, N: int, args: list[Any]) -> None:
        import cupy

        stream = _stream(torch.cuda.current_stream(self.device_index).cuda_stream, self.device_index)
        blocks = max(1, min(-(-N // BLOCK), self.max_blocks))
        with cupy.cuda.Device(self.device_index), stream:
            fn((blocks,), (BLOCK,), args)

    def forward(self, x, state0, prm, arrays, want_v):
        args, outputs = forward_args(x, state0, prm, arrays, want_v)
        if x.numel():
            self._launch(self._forward, x.shape[1], args)
        return outputs

    def backward(self, g_spikes, g_state, x, state0, prm, arrays, n_learn):
        args, outputs = backward_args(self.config, g_spikes, g_state, x, state0, prm, arrays)
        if x.numel():
            self._launch(self._backward, x.shape[1], args)
        return outputs


def forward_args(x, state0, prm, arrays, want_v) -> tuple[list, tuple]:
    """The ``<name>_forward`` kernel's arguments (the ABI of ``source.generate_source``: ints,
    pointers as ints, the scalar uniforms as floats) and the output tensors they point to."""
    T, N = x.shape
    spikes = torch.empty_like(x)
    state = state0.clone()
    v_seq = torch.empty_like(x) if want_v else x.new_empty(0)
    M = arrays.shape[1] if arrays.numel() else N
    args = [T, N, M, x.data_ptr(), spikes.data_ptr(), state.data_ptr(), _ptr(v_seq), _ptr(arrays), *prm.tolist()]
    return args, (spikes, state, v_seq)


def backward_args(config: Any, g_spikes, g_state, x, state0, prm, arrays) -> tuple[list, tuple]:
    """The ``<name>_backward`` kernel's arguments and the outputs (``grad_x``, ``grad_state0``,
    ``grad_learn[L, N]`` or ``None``); the buffers they need (checkpoints) are held by the list."""
    T, N = x.shape
    step = config.step
    opmath = compute_dtype(x.dtype)
    grad_x = torch.empty_like(x)
    grad_state0 = torch.empty_like(state0)
    L = len(step.learnable)
    grad_learn = torch.zeros(L, N, dtype=opmath, device=x.device) if L else None
    if not (T and N):
        grad_state0.copy_(g_state if g_state is not None else torch.zeros_like(state0))
        return [], (grad_x, grad_state0, grad_learn)
    scalar = g_spikes.stride() == (0, 0)  # a broadcast gradient (loss = spikes.sum()): one value
    g_spikes = g_spikes.as_strided((1,), (1,)).to(x.dtype) if scalar else g_spikes.to(x.dtype).contiguous()
    g_state = None if g_state is None else g_state.to(x.dtype).contiguous()
    chunks = -(-T // BACKWARD_CHUNK)  # checkpoints in the compute type: the recompute is the forward
    ckpt = torch.empty((chunks - 1) * len(step.states) * N, dtype=opmath, device=x.device) if chunks > 1 else None
    M = arrays.shape[1] if arrays.numel() else N
    args = [T, N, M, g_spikes.data_ptr(), int(scalar), _ptr(g_state), x.data_ptr(), state0.data_ptr(),
            grad_x.data_ptr(), grad_state0.data_ptr(), _ptr(grad_learn), _ptr(ckpt), _ptr(arrays), *prm.tolist()]
    return _Args(args, keep=(g_spikes, g_state, ckpt)), (grad_x, grad_state0, grad_learn)


class _Args(list):
    """Kernel arguments that keep the temporaries their pointers refer to alive until launched."""

    def __init__(self, args: list, keep: tuple) -> None:
        super().__init__(args)
        self.keep = keep


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    from snnir.backends.torch.fused import compute_dtype as impl
    return impl(dtype)


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None or t.numel() == 0 else t.data_ptr()


_streams: dict[tuple[int, int], Any] = {}


def _stream(ptr: int, device_index: int) -> Any:
    stream = _streams.get((ptr, device_index))
    if stream is None:
        import cupy
        stream = _streams[(ptr, device_index)] = cupy.cuda.ExternalStream(ptr, device_index)
    return stream


_kernels: dict[tuple[str, torch.dtype, int], CudaKernel | None] = {}


def kernel(config: Any, dtype: torch.dtype, device: torch.device) -> CudaKernel | None:
    """The compiled kernel of ``config`` for ``dtype`` on ``device``, or ``None`` (one warning) when
    the dtype has no kernel or NVRTC refuses it: the caller then runs the torch loop."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    key = (config.key, dtype, index)
    if key not in _kernels:
        if dtype not in TORCH_DTYPES:
            _kernels[key] = None
        else:
            try:
                _kernels[key] = CudaKernel(config, dtype, torch.device("cuda", index))
            except KernelBuildError as e:
                _kernels[key] = None
                _warn_once(key, f"{e}\nFalling back to the per-step torch path for {config.step.model}.")
    return _kernels[key]


def _inputs(config: Any, x, state0, prm, arrays):
    """The kernel ABI's inputs checked (a wrong shape would read out of bounds) and made contiguous:
    ``x[T, N]``, ``state0[S, N]`` in ``x``'s dtype, ``prm`` float64 ``[U]`` (on the host: its values
    become kernel arguments), ``arrays[A, M]`` in the compute type on ``x``'s device."""
    step = config.step
    S, U, A = len(step.states), len(step.uniforms), len(config.array_uniforms)
    who = f"snnir::neuron_forward on CUDA ({step.model})"
    if x.dim() != 2 or tuple(state0.shape) != (S, x.shape[1]):
        raise ValueError(f"{who}: x must be [T, N] and state0 [{S}, N], got {tuple(x.shape)} and "
                         f"{tuple(state0.shape)}")
    if tuple(prm.shape) != (U,) or prm.dtype != torch.float64:
        raise ValueError(f"{who}: prm must be float64 [{U}], got {prm.dtype} {tuple(prm.shape)}")
    if arrays.dim() != 2 or arrays.shape[0] != A or (A and x.shape[1] % arrays.shape[1]):
        raise ValueError(f"{who}: arrays must be [{A}, M] with M dividing N = {x.shape[1]}, got {tuple(arrays.shape)}")
    arrays = arrays.to(device=x.device, dtype=compute_dtype(x.dtype)).contiguous()
    return x.contiguous(), state0.to(device=x.device, dtype=x.dtype).contiguous(), prm, arrays


def _generated(config: Any) -> bool:
    """Whether the template generates this configuration (an input affine folded into the neuron,
    ``Config.input_affine``, is not: such configurations run the torch loop)."""
    return not getattr(config, "input_affine", False)


def forward(config: Any, x, state0, prm, arrays, want_v):
    """``snnir::neuron_forward`` on CUDA tensors (``register_device_kernels`` signature)."""
    if not _generated(config):
        from snnir.backends.torch.torch_loop import forward as loop_forward
        return loop_forward(config, x, state0, prm, arrays, want_v)
    x, state0, prm, arrays = _inputs(config, x, state0, prm, arrays)
    k = kernel(config, x.dtype, x.device)
    if k is None:
        from snnir.backends.torch.torch_loop import forward as loop_forward
        return loop_forward(config, x, state0, prm, arrays, want_v)
    return k.forward(x, state0, prm, arrays, want_v)


def backward(config: Any, g_spikes, g_state, x, state0, prm, arrays, n_learn):
    """``snnir::neuron_backward`` on CUDA tensors (``register_device_kernels`` signature)."""
    if not _generated(config):
        from snnir.backends.torch.torch_loop import backward as loop_backward
        return loop_backward(config, g_spikes, g_state, x, state0, prm, arrays, n_learn)
    x, state0, prm, arrays = _inputs(config, x, state0, prm, arrays)
    k = kernel(config, x.dtype, x.device)
    if k is None:
        from snnir.backends.torch.torch_loop import backward as loop_backward
        return loop_backward(config, g_spikes, g_state, x, state0, prm, arrays, n_learn)
    return k.backward(g_spikes, g_state, x, state0, prm, arrays, n_learn)


def describe() -> dict[str, Any]:
    """Versions and devices, for benchmark logs and bug reports."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    try:
        import cupy
        from cupy.cuda import nvrtc
        info["cupy"] = cupy.__version__
        info["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
    except Exception as e:
        info["cupy"] = f"unavailable ({type(e).__name__}: {str(e)[:200]})"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["device"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                          "memory_gib": round(p.total_memory / 2**30, 1)}
    info["include_dirs"] = list(include_dirs())
    return info

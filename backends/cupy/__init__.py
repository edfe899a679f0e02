"""The CUDA backend: neuron kernels generated from the equations, compiled with CuPy (NVRTC).

For every neuron model (built-in or user-defined) and storage type (float32, float16, bfloat16,
float64), ``source.generate_source`` writes a forward kernel over all ``T`` steps (one thread per
neuron, state in registers) and a backward through time (the sympy adjoint with the surrogate
derivative, recomputing the forward from sparse checkpoints) around the per-step body that
``snnir.lowering`` prints; ``runtime`` compiles them with NVRTC and runs them on torch tensors.

- ``snn.*`` neurons on CUDA tensors use these kernels by default: the first CUDA tensor a fused
  neuron sees installs them (``install``) when CuPy and a GPU are there, else the per-step torch
  path runs as before. ``fused=False`` keeps the per-step reference path.
- ``snnir.compile(g, backend="cupy")`` is the torch backend's trainable module moved to the GPU
  with these kernels installed; stateless layers run through torch (cuDNN/cuBLAS). Autocast to
  float16/bfloat16 feeds the neurons 16-bit tensors, which run the 16-bit kernels.
- ``kernel_source(model, dtype)`` shows the generated source; it needs neither CuPy nor a GPU.

Example:
    >>> from snnir.backends.cupy import kernel_source
    >>> src = kernel_source("LIF", "float16", reset="soft")
    >>> "__global__" in src and "__half" in src and "snnir_backward" in src
    True
"""

from __future__ import annotations

from typing import Any

from snnir.neurons import NeuronModel, get_model
from snnir.surrogate import ATan, Surrogate

from .runtime import CudaUnavailableError, KernelBuildError, install, require, unavailable_reason
from .source import generate_source


def _model(model: NeuronModel | type[NeuronModel] | str) -> NeuronModel:
    if isinstance(model, str):
        return get_model(model)
    if isinstance(model, type) and issubclass(model, NeuronModel):
        return model()
    if isinstance(model, NeuronModel):
        return model
    raise TypeError(f"model must be a NeuronModel, its class or a registered name, got {type(model).__name__}")


def kernel_config(model: NeuronModel | type[NeuronModel] | str, *, reset: str = "hard", detach_reset: bool = False,
                  surrogate: Surrogate | type[Surrogate] | None = None, per_neuron: tuple[str, ...] = (),
                  learnable: tuple[str, ...] | None = None, **options: Any) -> Any:
    """The fused configuration (``snnir.backends.torch.fused.Config``) the kernels are generated for:
    the same one a neuron module with these settings dispatches to."""
    from snnir.backends.torch.fused import config, config_key

    m = _model(model)
    params = set(m.equations(reset=reset, **options).params)
    unknown = set(per_neuron) - params
    if unknown:
        raise ValueError(f"neuron model {m.name} has no parameters {sorted(unknown)}; it has {sorted(params)}")
    sg = surrogate if isinstance(surrogate, type) else type(surrogate) if surrogate is not None else ATan
    learn = tuple(m.learnable if learnable is None else learnable)
    key = config_key(type(m), reset, tuple(sorted(options.items())), sg, bool(detach_reset), learn,
                     frozenset(per_neuron))
    return config(key)


def kernel_source(model: NeuronModel | type[NeuronModel] | str, dtype: str = "float32", *, reset: str = "hard",
                  detach_reset: bool = False, surrogate: Surrogate | type[Surrogate] | None = None,
                  per_neuron: tuple[str, ...] = (), learnable: tuple[str, ...] | None = None,
                  **options: Any) -> str:
    """The CUDA C++ source of ``model``'s forward and backward kernels for ``dtype``.

    ``dtype``: ``"float32"``, ``"float16"``, ``"bfloat16"`` or ``"float64"`` (a ``torch.dtype`` works
    too). ``reset``: ``"hard"``/``"soft"``; ``per_neuron``: parameters given as per-neuron arrays
    (read per neuron in the kernel); ``learnable``: parameters that get gradients (default: the
    model's own, ParametricLIF's ``w``); further keywords are the model's options
    (``decay_input=False``). Needs neither CuPy nor a GPU: inspect, or compile with ``nvcc -ptx``.

    Example:
        >>> src = kernel_source("Izhikevich", per_neuron=("a", "d"))
        >>> "arrays[0 * M + m]" in src and "snnir_forward_neuron" in src
        True
    """
    if not isinstance(dtype, str):  # a torch.dtype
        dtype = str(dtype).removeprefix("torch.")
    cfg = kernel_config(model, reset=reset, detach_reset=detach_reset, surrogate=surrogate, per_neuron=per_neuron,
                        learnable=learnable, **options)
    return generate_source(cfg.step, dtype, cfg.per_neuron)


def compile(graph: Any, device: Any = "cuda", memory_format: Any = None, **kwargs: Any) -> Any:
    """``graph`` as a trainable ``torch.nn.Module`` on the GPU, neurons running the generated kernels.

    The torch backend's module (``snnir.backends.torch.compile``; keywords such as ``step_mode`` go
    to it) moved to ``device``, with the CUDA kernels installed. ``memory_format=torch.channels_last``
    converts the convolution weights, so cuDNN runs NHWC. Raises ``CudaUnavailableError`` naming
    what is missing (CuPy, a CUDA device) instead of silently running elsewhere.

    Example (on a machine with CuPy and a GPU)::

        m = snnir.compile(g, backend="cupy")           # module on cuda:0, fused CUDA neurons
        with torch.autocast("cuda", dtype=torch.float16):
            y = m(x.cuda())
    """
    require()
    install()
    from snnir.backends.torch import compile as torch_compile

    module = torch_compile(graph, **kwargs).to(device)
    if memory_format is not None:
        module = module.to(memory_format=memory_format)
    return module


__all__ = ["CudaUnavailableError", "KernelBuildError", "compile", "generate_source", "install", "kernel_config",
           "kernel_source", "require", "unavailable_reason"]

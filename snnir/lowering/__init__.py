"""The lowering layer: one translation of neuron equations into elementary operations.

A neuron's step (``Equations``: charge, fire, reset, initial values, hoisted constants) and the
fused kernel's adjoint (``StepProgram``: backward, previous-state recompute) are lowered once into
``Block``s: straight-line lists of ``Op(out, fn, args)`` in the exact order the equation is
written (``lower.py``), over one table of supported operations (``table.FUNCTIONS``). Values
that do not change over time are hoisted into a ``prologue`` evaluated once per call in float64
(``python.evaluate``), so constants are computed one way for every backend. A plasticity rule
(``snnir.learning``) is lowered the same way by ``lower_rule`` (``plasticity.py``): its synaptic
expressions separated into pairings a backend computes as matrix products, the rest into blocks.

Every code generator prints from these blocks: Python (``python.py``, the torch reference path
and the float64 evaluator), C in two dialects (``c.py``: C99 for the CPU kernels, CUDA C++ with
``__host__ __device__`` bodies for the GPU), and ONNX nodes (``snnir.backends.onnx_expr``). This
package imports no backend and not torch.

Example:
    >>> from snnir.neurons import LIF
    >>> lowered = lower_equations(LIF().equations(reset="hard"))
    >>> print(lowered.charge)
    # in: s_v, p_v_reset, x, p_tau  out: s_v
    c0 = sub(s_v, p_v_reset)
    c1 = sub(x, c0)
    c2 = div(c1, p_tau)
    s_v = add(s_v, c2)
"""

from .c import CDialect, c_lines, device_functions, prelude
from .lower import Block, Lowerer, Op, hoist_uniform, lower_assignments
from .plasticity import LoweredRule, Pairing, lower_rule
from .program import LoweredEquations, LoweredStep, lower_equations, lower_expression, lower_step
from .python import NUMPY, evaluate, python_function, python_source
from .table import FUNCTIONS, Function, LoweringError

__all__ = ["FUNCTIONS", "NUMPY", "Block", "CDialect", "Function", "LoweredEquations", "LoweredRule", "LoweredStep",
           "Lowerer", "LoweringError", "Op", "Pairing", "c_lines", "device_functions", "evaluate", "hoist_uniform",
           "lower_assignments", "lower_equations", "lower_expression", "lower_rule", "lower_step", "prelude",
           "python_function", "python_source"]

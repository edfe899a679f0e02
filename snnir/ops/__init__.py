"""Op declarations. Importing this package registers the built-in ops."""

from snnir.ops import elementwise, integrator, layers, neuron, spiking_pool, stateful, tensor, time_reduce  # noqa: F401  (registration side effect)
from snnir.ops.registry import REQUIRED, OpSpec, get_op, register_op, registered_ops

__all__ = ["REQUIRED", "OpSpec", "get_op", "register_op", "registered_ops"]

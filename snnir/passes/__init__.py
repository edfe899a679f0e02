"""Graph passes: each ``Graph -> Graph``, registered by name, composed by ``optimize``.

Every built-in pass is callable from here (``snnir.passes.quantize(g, bits=8)``); the function
names shadow the modules that define them, which stay importable by their full path
(``from snnir.passes.quantize import SYNAPSES``).

Example:
    >>> import numpy as np, snnir
    >>> g = snnir.Graph(); x = g.add_input((2,))
    >>> _ = g.add_output(g.add_node("linear", [x], params={"weight": np.eye(2, dtype=np.float32)}))
    >>> snnir.passes.quantize(g, bits=4).node("linear").attrs["quant"]["bits"]
    4
"""

from snnir.passes.ann_to_snn import ann_to_snn
from snnir.passes.cleanup import eliminate_dead, fold_constants
from snnir.passes.elementwise import fuse_elementwise
from snnir.passes.fold_batchnorm import fold_batchnorm
from snnir.passes.grouping import group_synapse_neuron
from snnir.passes.pipeline import DEFAULT_PIPELINE, PassCheckError, optimize
from snnir.passes.quantize import quantize
from snnir.passes.registry import get_pass, register_pass, registered_passes
from snnir.passes.schedule import schedule
from snnir.passes.to_loihi import to_loihi

__all__ = ["DEFAULT_PIPELINE", "PassCheckError", "ann_to_snn", "eliminate_dead", "fold_batchnorm", "fold_constants",
           "fuse_elementwise", "get_pass", "group_synapse_neuron", "optimize", "quantize", "register_pass",
           "registered_passes", "schedule", "to_loihi"]

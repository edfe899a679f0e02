"""The Loihi backend: lava-dl netx HDF5 export/import and a bit-accurate fixed-point simulator.

    >>> import numpy as np, snnir
    >>> g = snnir.Graph(); x = g.add_input((4,))
    >>> lin = g.add_node("linear", [x], params={"weight": np.full((2, 4), 0.1, np.float32)})
    >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "CubaLIF", "tau_syn": 4.0, "tau_mem": 8.0}))
    >>> sim = snnir.compile(g, backend="lava")                   # to_loihi, then the integer program
    >>> sim.run(np.ones((8, 1, 4))).sum(axis=(1, 2)).tolist()   # spikes per step
    [0, 2, 0, 2, 2, 2, 2, 2]

``compile`` maps with ``snnir.passes.to_loihi`` and returns a ``LoihiSimulator``; ``export``
writes the netx file that ``lava.lib.dl.netx.hdf5.Network`` loads; ``read`` loads a netx file
(ours or one written by lava-dl slayer) as an snnir graph; ``compare`` prints the float versus
fixed-point spike agreement per layer; ``run_lava`` runs a netx file through Lava when
``lava-nc``/``lava-dl`` are importable (``tests/lava_oracle/build_env.sh`` builds such a Python).
"""

from __future__ import annotations

import os

from snnir.backends.lava.compare import LayerAgreement, compare
from snnir.backends.lava.lava_run import LavaUnavailableError, lava_available, run_lava
from snnir.backends.lava.netx import read_netx, write_netx
from snnir.backends.lava.program import (
    Cuba,
    Layer,
    LoihiProgram,
    ensure_mapped,
    program_from_graph,
    program_to_graph,
)
from snnir.backends.lava.simulator import LoihiSimulator, cuba_step
from snnir.errors import LoihiMappingError
from snnir.graph import Graph


def compile(graph: Graph) -> LoihiSimulator:
    """Map ``graph`` to Loihi (``to_loihi``) and return its bit-accurate ``LoihiSimulator``."""
    return LoihiSimulator.from_graph(graph)


def export(graph: Graph, path: str | os.PathLike) -> None:
    """Write ``graph`` (mapped with ``to_loihi`` first) as a lava-dl netx HDF5 file.

    Example:
        >>> import numpy as np, snnir, tempfile, os
        >>> g = snnir.Graph(); x = g.add_input((3,))
        >>> lin = g.add_node("linear", [x], params={"weight": np.eye(3, dtype=np.float32)})
        >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "IF"}))
        >>> path = os.path.join(tempfile.mkdtemp(), "net.h5")
        >>> snnir.export(g, path, format="lava")
        >>> [n.op for n in read(path)]
        ['input', 'linear', 'neuron', 'output']
    """
    write_netx(program_from_graph(ensure_mapped(graph)), path)


def read(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None, safe: bool | None = None) -> Graph:
    """Load a netx HDF5 file (snnir's or lava-dl slayer's) as an snnir graph, in slayer's float units
    (weights, bias, threshold = integer / 64; decays = integer / 4096). ``input_shape`` is needed only
    for a file without an input layer that starts with a strided convolution; ``safe=True`` parses
    the HDF5 bytes in a child process with limits (``None``: ``snnir.limits`` decides; see ``read_netx``)."""
    return program_to_graph(read_netx(path, input_shape, safe=safe),
                            name=os.path.splitext(os.path.basename(os.fspath(path)))[0])


__all__ = ["Cuba", "LavaUnavailableError", "Layer", "LayerAgreement", "LoihiMappingError", "LoihiProgram",
           "LoihiSimulator", "compare", "compile", "cuba_step", "ensure_mapped", "export", "lava_available",
           "program_from_graph", "program_to_graph", "read", "read_netx", "run_lava", "write_netx"]

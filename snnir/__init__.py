"""snnir: spiking neural networks on one graph IR.

``trace`` a model into a ``Graph``, rewrite it with passes, ``compile`` it for a backend, and
``save``/``load`` it as a ``.snnir`` file. ``snnir.nn`` is the PyTorch authoring API.
"""

from snnir import _checkout

_checkout.install()

from snnir import limits  # noqa: E402
from snnir.errors import (  # noqa: E402
    FormatError,
    GraphError,
    LimitError,
    LoihiMappingError,
    NonFiniteError,
    ShapeError,
    SnnirError,
    TimeReductionError,
    TraceError,
)
from snnir.faces import compile, convert, export, trace  # noqa: E402
from snnir.graph import Graph, Node  # noqa: E402
from snnir.inspect import inspect, render  # noqa: E402
from snnir.neurons import NeuronModel  # noqa: E402
from snnir.passes import PassCheckError, optimize  # noqa: E402
from snnir.serialization import load, save  # noqa: E402

__version__ = "0.1.0"
__all__ = ["FormatError", "Graph", "GraphError", "LimitError", "LoihiMappingError", "NeuronModel", "Node",
           "NonFiniteError", "PassCheckError", "ShapeError", "SnnirError", "TimeReductionError", "TraceError",
           "compile", "convert", "export", "inspect", "load", "optimize", "render", "save", "trace", "nn", "analysis",
           "limits"]


def __getattr__(name: str):
    if name in ("nn", "frontends", "backends", "data", "analysis"):  # loaded on first use (nn imports torch)
        import importlib

        return importlib.import_module(f"snnir.{name}")
    raise AttributeError(f"module 'snnir' has no attribute {name!r}")

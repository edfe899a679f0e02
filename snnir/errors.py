"""Exceptions raised by snnir. Each message names the node, op or file at fault."""


class SnnirError(Exception):
    """Base class of every error snnir raises on purpose."""


class GraphError(SnnirError):
    """The graph is malformed: unknown op, missing input, bad attribute, illegal cycle."""


class ShapeError(GraphError):
    """A node's input shapes do not fit its op (e.g. Linear(64, 10) fed 32 features)."""


class FormatError(SnnirError):
    """A ``.snnir`` file is truncated, tampered with, of another version, or not a snnir file."""


class TraceError(SnnirError):
    """A model holds a module or function that the tracer cannot map to an IR op."""


class LoihiMappingError(SnnirError):
    """A node or setting that Loihi (through lava-dl netx) cannot express; the message names the
    node and the reason."""

"""The torch backend: ``snnir.nn`` modules and the graph lowering ``compile``."""

from .lower import GraphModule, builds, compile

__all__ = ["GraphModule", "builds", "compile"]

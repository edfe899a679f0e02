"""Registering snnir's ``torch.library`` custom ops once per process.

A module that defines ops calls ``define_once`` at import; the registrations last as long as the
``Library`` object, which is kept on a holder module in ``sys.modules`` so that a second import of
the same file under another name (pytest's doctest collection does this) finds them done.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

import torch


def define_once(name: str, define: Callable[[torch.library.Library], None]) -> None:
    """Run ``define`` on a fresh ``snnir`` library fragment, unless ``name``'s ops exist already.

    Example:
        >>> define_once("doc_example", lambda lib: lib.define("doc_example_identity(Tensor x) -> Tensor"))
        >>> define_once("doc_example", lambda lib: 1 / 0)  # done already: not called again
        >>> hasattr(torch.ops.snnir, "doc_example_identity")
        True
    """
    holder = sys.modules.setdefault(f"snnir.backends.torch._{name}_ops", types.ModuleType(f"_{name}_ops"))
    if not hasattr(holder, "library"):
        lib = torch.library.Library("snnir", "FRAGMENT")
        define(lib)
        holder.library = lib

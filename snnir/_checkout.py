"""Make ``snnir.frontends`` / ``snnir.backends`` importable when snnir runs from a source checkout.

The installed package maps the top-level ``frontends/`` and ``backends/`` folders to these names
(``pyproject.toml``'s package-dir). A checkout on ``sys.path`` (tests run from the repository
root) sees only ``snnir/``; this finder resolves the two names to the folders beside it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PACKAGES = ("frontends", "backends")


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[override]
        parts = fullname.split(".")
        if len(parts) < 2 or parts[0] != "snnir" or parts[1] not in _PACKAGES:
            return None
        base = os.path.join(_ROOT, *parts[1:])
        if os.path.isdir(base):
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(base, "__init__.py"), submodule_search_locations=[base])
        if os.path.isfile(base + ".py"):
            return importlib.util.spec_from_file_location(fullname, base + ".py")
        return None


def install() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if any(os.path.isdir(os.path.join(here, p)) for p in _PACKAGES):
        return  # installed layout: the subpackages are inside snnir/
    if all(os.path.isfile(os.path.join(_ROOT, p, "__init__.py")) for p in _PACKAGES):
        if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
            sys.meta_path.append(_CheckoutFinder())

"""SpikingJelly's ``spikingjelly.datasets`` as a test reference, without torchvision.

``spikingjelly.datasets`` imports torchvision (and torchaudio) at module level (for downloads, DatasetFolder and
image transforms), but its integration, collate and file-reading functions are plain numpy/torch.
Neither can be installed here (they would need another torch), so the import runs against
placeholder modules for both, which are removed from ``sys.modules`` right after.
Only functions that never touch torchvision may be used as references.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest

_STUBS = ("torchvision", "torchvision.datasets", "torchvision.datasets.utils", "torchvision.transforms",
          "torchvision.transforms.functional", "torchvision.io", "torchvision.utils", "torchaudio",
          "torchaudio.transforms", "torchaudio.functional")


def _placeholder_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def __getattr__(attr: str):  # any name: a class, so subclassing and decorating at import time work
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (), {})

    module.__getattr__ = __getattr__
    module.__path__ = []  # a package, so submodules can be imported from it
    return module


def spikingjelly_datasets() -> types.ModuleType:
    """The ``spikingjelly.datasets`` package (skips the test when SpikingJelly is not installed)."""
    if "spikingjelly.datasets" in sys.modules:
        return sys.modules["spikingjelly.datasets"]
    pytest.importorskip("spikingjelly", reason="SpikingJelly not installed: pip install --no-deps spikingjelly")
    real = {name: sys.modules.get(name) for name in _STUBS}
    try:
        importlib.import_module("torchvision")
        importlib.import_module("torchaudio")
        have_torchvision = True
    except ImportError:
        have_torchvision = False
    if not have_torchvision:
        sys.modules.update({name: _placeholder_module(name) for name in _STUBS})
    try:
        return importlib.import_module("spikingjelly.datasets")
    finally:
        if not have_torchvision:
            for name, module in real.items():
                if module is None:
                    sys.modules.pop(name, None)
                else:
                    sys.modules[name] = module

"""Apply the three edits that let lava-nc 0.10 / lava-dl 0.6 run on Python 3.11 with numpy 2.

Run with the Lava venv's Python (``build_env.sh`` does). It edits the *installed* copy in that venv
(never a copy in this project) and is idempotent: an edit already applied is left alone, and an
edit whose original text is not found stops with an error naming the file.

1. ``lava/magma/compiler/var_model.py``: ``x: ByteEncoder = ByteEncoder()`` dataclass defaults are
   mutable, which Python 3.11 rejects; they become ``field(default_factory=ByteEncoder)``.
2. ``lava/lib/dl/slayer/__init__.py`` imports ``object_detection``, which needs torchvision; the
   import is made optional.
3. ``lava/magma/core/process/ports/ports.py`` calls ``np.reshape(..., newshape=...)``; numpy 2
   names that keyword ``shape``.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path


def _site_file(relative: str) -> Path:
    # found by path, not imported: importing these modules is what fails before the edits
    path = Path(sysconfig.get_paths()["purelib"]) / relative
    if not path.is_file():
        sys.exit(f"patch_lava: {path} is missing; install lava-nc 0.10.0 and lava-dl 0.6.0 in {sys.prefix} first")
    return path


def _edit(path: Path, done: str, old: str | re.Pattern, new: str) -> None:
    text = path.read_text()
    if done in text:
        print(f"patch_lava: {path} already patched")
        return
    edited = old.sub(new, text) if isinstance(old, re.Pattern) else text.replace(old, new)
    if edited == text:
        sys.exit(f"patch_lava: {path}: the expected original text was not found (another Lava version?)")
    path.write_text(edited)
    print(f"patch_lava: patched {path}")


def main() -> None:
    var_model = _site_file("lava/magma/compiler/var_model.py")
    _edit(var_model, "field(default_factory=ByteEncoder)", re.compile(r"= ByteEncoder\(\)"),
          "= field(default_factory=ByteEncoder)")
    _edit(var_model, "from dataclasses import dataclass, InitVar, field",
          "from dataclasses import dataclass, InitVar", "from dataclasses import dataclass, InitVar, field")
    _edit(_site_file("lava/lib/dl/slayer/__init__.py"), "except ImportError:  # torchvision",
          "from . import object_detection as obd\n",
          "try:\n    from . import object_detection as obd\nexcept ImportError:  # torchvision is not installed\n"
          "    obd = None\n")
    _edit(_site_file("lava/magma/core/process/ports/ports.py"), "np.reshape, shape=",
          "np.reshape, newshape=", "np.reshape, shape=")


if __name__ == "__main__":
    main()

"""What several verbs share: argument parsing helpers, loading arrays, factories and weights.

Every failure a user can cause (a missing file, a bad shape string, a factory that raises) becomes
a ``CliError`` whose message names the argument or file and what was expected; ``main`` prints it
as ``snnir <verb>: error: ...`` and exits with status 1.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from snnir.errors import SnnirError


class CliError(SnnirError):
    """A command-line mistake: the message says which argument or file and what was expected."""


def add_verb(sub: argparse._SubParsersAction, name: str, summary: str, examples: str,
             description: str = "") -> argparse.ArgumentParser:
    """A verb's parser whose ``--help`` ends with its examples (kept as written)."""
    return sub.add_parser(name, help=summary, description=description or summary,
                          epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_shape(text: str, what: str = "--input-shape", min_rank: int = 1) -> tuple[int, ...]:
    """``"16,8,1,28,28"`` -> ``(16, 8, 1, 28, 28)``; positive integers separated by commas (or x).

    >>> parse_shape("16,8,1,28,28")
    (16, 8, 1, 28, 28)
    >>> parse_shape("4x2")
    (4, 2)
    """
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s < 1 for s in shape) or len(shape) < min_rank:
        raise CliError(f"{what} {text!r}: expected at least {min_rank} positive integers separated by commas, "
                       f"like 16,8,1,28,28 (T,N,C,H,W)")
    return shape


def existing_file(path: str, what: str) -> Path:
    """``path`` as a ``Path`` if it is a file, else a ``CliError`` naming ``what`` it should be."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"{what} {path!r}: no such file")
    if not p.is_file():
        raise CliError(f"{what} {path!r}: not a file")
    return p


def load_array(path: str, what: str = "--input") -> np.ndarray:
    """A numeric array from a ``.npy`` file, or a ``.npz`` holding exactly one array (never pickle)."""
    p = existing_file(path, what)
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CliError(f"{what} {path!r} is not a readable .npy array (or .npz holding one): {e}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            if len(data.files) != 1:
                raise CliError(f"{what} {path!r}: the .npz holds {len(data.files)} arrays {data.files}; "
                               "pass a .npy file or an .npz with one array")
            data = data[data.files[0]]
    if not np.issubdtype(data.dtype, np.number) and data.dtype != np.bool_:
        raise CliError(f"{what} {path!r}: expected a numeric array, got dtype {data.dtype}")
    if np.issubdtype(data.dtype, np.inexact) and not np.isfinite(data).all():
        bad = ~np.isfinite(data)
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), bad.shape))
        raise CliError(f"{what} {path!r}: holds NaN or Inf values ({int(bad.sum())} in all), the first "
                       f"({data[index]}) at index {index}")
    return data


GRAPH_HELP = "the graph: a .snnir file, or a netx (Loihi, .net/.h5) or NIR (.nir) HDF5 file"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_graph(path: str, what: str = "model") -> Any:
    """The graph in ``path``: a ``.snnir`` file, or an HDF5 file holding a netx (Loihi) network
    (``snnir.backends.lava.read``) or a NIR graph (``from_nir``, its default ``dt``), told apart by
    their root group (``layer`` or ``node``). HDF5 is parsed in safe mode unless ``--trusted``."""
    p = existing_file(path, what)
    with open(p, "rb") as f:
        head = f.read(len(HDF5_MAGIC))
    if head != HDF5_MAGIC or p.suffix == ".snnir":
        from snnir.serialization import load

        return load(p)
    from snnir.hdf5_tree import top_level_names

    names = top_level_names(p)
    if "layer" in names:
        from snnir.backends.lava import read

        return read(p)
    if "node" in names:
        from snnir.frontends.nir import from_nir

        return from_nir(p)
    raise CliError(f"{what} {path!r}: an HDF5 file that is neither a netx network (no 'layer' group) nor a NIR "
                   f"graph (no 'node' group); it holds {sorted(names)[:8]}")


def literal_kwargs(pairs: list[str] | None, what: str = "--arg") -> dict[str, Any]:
    """``["hidden=128", "name='a'"]`` -> ``{"hidden": 128, "name": "a"}`` (Python literals only).

    >>> literal_kwargs(["hidden=128", "tau=2.5", "mode=max"])
    {'hidden': 128, 'tau': 2.5, 'mode': 'max'}
    """
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise CliError(f"{what} {pair!r}: expected NAME=VALUE, like hidden=128")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare word is a string
    return out


def load_factory(spec: str, what: str = "factory") -> Any:
    """The callable named by ``path/to/file.py:function`` or ``package.module:function``."""
    module_part, sep, attr = spec.rpartition(":")
    if not sep or not module_part or not attr.isidentifier():
        raise CliError(f"{what} {spec!r}: expected FILE.py:FUNCTION or package.module:FUNCTION, "
                       "like models.py:make_model")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise CliError(f"{what} {spec!r}: no such file {module_part!r}")
        name = f"_snnir_factory_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)  # type: ignore[arg-type]
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        sys.path.insert(0, str(path.resolve().parent))  # so the file can import its neighbours
        try:
            loader_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:
            raise CliError(f"{what} {spec!r}: importing {module_part} raised {type(e).__name__}: {e}") from e
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(module_part)
        except Exception as e:
            raise CliError(f"{what} {spec!r}: cannot import {module_part!r} ({type(e).__name__}: {e})") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise CliError(f"{what} {spec!r}: {module_part} has no function {attr!r} (it defines: "
                       f"{', '.join(public) or 'nothing callable'})")
    return fn


def call_factory(spec: str, kwargs: dict[str, Any], what: str = "factory") -> Any:
    """Build the model: ``load_factory(spec)(**kwargs)``, its exceptions turned into a ``CliError``."""
    fn = load_factory(spec, what)
    try:
        return fn(**kwargs)
    except Exception as e:
        raise CliError(f"{what} {spec}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                       f"{type(e).__name__}: {e}") from e


def load_weights(model: Any, path: str) -> None:
    """Load a ``state_dict`` into ``model``: ``torch.load(weights_only=True)`` (no code runs) or
    safetensors; a checkpoint dict holding it under ``state_dict``/``model`` works too."""
    import pickle

    import torch

    p = existing_file(path, "--weights")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(p))
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CliError(f"--weights {path!r}: not a state_dict torch.load(weights_only=True) can read "
                           f"(it never unpickles code): {first}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CliError(f"--weights {path!r}: expected a state_dict (parameter name -> tensor), "
                       f"got {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CliError(f"--weights {path!r} does not fit the model: {e}") from None

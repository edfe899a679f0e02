"""Frontends: importers that turn user models into ``snnir.Graph`` (installed as ``snnir.frontends``).

Each importer lives in its own module and loads its dependency (torch, onnx, nir) only when called.
"""

from __future__ import annotations

from typing import Any


def from_torch_ann(module: Any, example_input: Any, name: str | None = None):
    """An ANN ``torch.nn.Module`` as a graph of ANN ops (see ``snnir.frontends.ann``)."""
    from snnir.frontends.ann import from_torch_ann as impl

    return impl(module, example_input, name)


def from_onnx(model: Any, name: str | None = None, batch_axis: int | None = None):
    """An ONNX model (path or ``onnx.ModelProto``) as a graph of ANN ops (see ``snnir.frontends.onnx``)."""
    from snnir.frontends.onnx import from_onnx as impl

    return impl(model, name, batch_axis)


def from_nir(source: Any, dt: float = 1e-4, name: str | None = None):
    """A NIR graph (``.nir`` path or ``nir.NIRGraph``) as an snnir graph (see ``snnir.frontends.nir``)."""
    from snnir.frontends.nir import from_nir as impl

    return impl(source, dt, name)


__all__ = ["from_nir", "from_onnx", "from_torch_ann"]

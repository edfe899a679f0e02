"""NIR from Rockpool 3.1's exporter: the shapes it writes load, and where the conventions meet, the values agree.

Rockpool writes the Input as ``(1, 3)`` and the Output as ``(1, 1, 1)`` for a ``(1,)`` signal (leading
batch/time axes); snnir drops leading 1s where that is unambiguous. Rockpool's ``LIFTorch`` is not
NIR's Euler CubaLIF: it decays exponentially (``exp(-dt/tau)``, 0.9512 per step for tau = 20 ms at
dt = 1 ms, against Euler's 0.95) and adds its input to the current unscaled, yet writes ``w_in = 1`` and
``r = tau/dt * exp(-dt/tau)``; NIR's equations need ``w_in = tau_syn/dt``, ``r = tau_mem/dt`` for that.
Its spike function emits several spikes per step with a subtractive reset. So the comparison is on
sub-threshold voltages, with ``w_in``/``r`` set to NIR's form: they agree to the Euler-vs-exponential
difference (about 1.4% after 60 steps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.frontends import from_nir

nir = pytest.importorskip("nir", reason="nir is a test dependency")
pytest.importorskip("rockpool", reason="Rockpool is a test reference (pip install --no-deps rockpool==3.1.0)")
from rockpool.nn.combinators import Sequential  # noqa: E402
from rockpool.nn.modules import LIFTorch, LinearTorch, to_nir  # noqa: E402


def _net(silent=False):
    torch.manual_seed(0)
    kw = {"threshold": 1e6} if silent else {}
    return Sequential(LinearTorch((3, 8)), LIFTorch(8, **kw), LinearTorch((8, 1)), LIFTorch(1, **kw))


def test_rockpool_file_with_singleton_axes_loads(tmp_path):
    graph = to_nir(_net())
    assert list(graph.nodes["output"].output_type["output"]) == [1, 1, 1]
    assert list(graph.nodes["input"].input_type["input"]) == [1, 3]
    nir.write(str(tmp_path / "rockpool.nir"), graph)
    g = from_nir(tmp_path / "rockpool.nir", dt=1e-3)
    assert g.node(g.inputs[0]).shape == (3,) and g.node(g.outputs[0]).shape == (1,)
    lif = g.node("n_1_LIFTorch")
    assert lif.attrs["model"] == "CubaLIF" and lif.attrs["tau_syn"] == pytest.approx(20.0)
    with torch.no_grad():
        assert snnir.compile(g)(torch.rand(10, 2, 3)).shape == (10, 2, 1)


def test_rockpool_subthreshold_voltages_agree_in_nir_convention():
    net = _net(silent=True)
    graph = to_nir(net)
    lif = graph.nodes["1_LIFTorch"]
    np.testing.assert_allclose(np.asarray(lif.w_in), 1.0)  # Rockpool's own values (see the module doc)
    lif.w_in = np.asarray(lif.tau_syn, np.float64) / 1e-3
    lif.r = np.asarray(lif.tau_mem, np.float64) / 1e-3
    g = from_nir(graph, dt=1e-3)
    x = torch.rand(1, 60, 3, generator=torch.Generator().manual_seed(1))
    _, _, record = net(x, record=True)
    theirs = record["1_LIFTorch"]["vmem"][0, -1].detach()
    module = snnir.compile(g)
    with torch.no_grad():
        module(x.transpose(0, 1))
    ours = module.neurons()["n_1_LIFTorch"].v[0]
    error = float((ours - theirs).abs().max() / theirs.abs().max())
    assert error < 0.03, f"relative voltage difference {error:.4f}"

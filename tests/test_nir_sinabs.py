"""NIR against Sinabs 3.1 (its exporter and importer) and the IF input convention shared with SpikingJelly.

Sinabs writes ``IF`` with ``r = 1`` for ``v += I``; SpikingJelly writes ``r = 1 / dt`` for the same
neuron (and refuses any other ``r``); Norse and snnTorch read ``r = 1`` as ``v += I``. snnir reads IF's
``r`` as the per-step gain and ``r = 1 / dt`` as a gain of 1 too, so every one of these files means
``v += I`` (before, snnir scaled by ``r dt`` and the paper's Sinabs CNN was silent at dt = 1e-4).

Sinabs' importer builds ``IAFSqueeze`` with a subtractive reset and ``min_v_mem = -v_threshold``
(not NIR's reset to ``v_reset``), so against it the spikes agree up to each neuron's first spike;
Sinabs networks built with ``MembraneReset`` and ``SingleSpike`` are NIR's IF and agree exactly.
Sinabs 3.1.3 declares ``nir<=1.0.4`` but runs with nir 1.0.8 (installed ``--no-deps``, plus ``pbr``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.frontends import from_nir

nir = pytest.importorskip("nir", reason="nir is a test dependency")
sinabs = pytest.importorskip("sinabs", reason="Sinabs is a test reference (pip install --no-deps sinabs==3.1.3 pbr)")
import sinabs.layers as sl  # noqa: E402
import sinabs.nir as sinabs_nir  # noqa: E402
from sinabs.activation import MembraneReset, SingleSpike  # noqa: E402


def _reset(net):
    for m in net.modules():
        if hasattr(m, "reset_states"):
            m.reset_states()


def _run_sinabs(net, x):
    """``x``: [T, B, ...] -> [T, B, ...] through Sinabs' squeezed layers (batch-major [B * T, ...])."""
    T, B = x.shape[:2]
    _reset(net)
    with torch.no_grad():
        out = net(x.transpose(0, 1).reshape(B * T, *x.shape[2:]))
    if isinstance(out, tuple):  # an imported graph (nirtorch's executor) returns (output, state)
        out = out[0]
    return out.reshape(B, T, *out.shape[1:]).transpose(0, 1)


def _run_snnir(g, x):
    with torch.no_grad():
        return snnir.compile(g)(x)


def _first_spikes(s):
    """Step of each neuron's first spike ([B, ...]; T where it never fires)."""
    fired = s.cumsum(0) > 0
    return (~fired).sum(0)


def test_sinabs_cnn_export_imports_with_identical_spikes():
    """The paper's case: a Sinabs CNN (IF with r = 1) spikes in snnir exactly as in Sinabs."""
    torch.manual_seed(0)
    B, T = 2, 30
    iaf = dict(batch_size=B, spike_fn=SingleSpike, reset_fn=MembraneReset())
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(**iaf),
                              sl.SumPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 5, bias=False),
                              sl.IAFSqueeze(**iaf))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[4].weight.abs_().mul_(2)
    x = (torch.rand(T, B, 2, 8, 8) < 0.3).float()
    graph = sinabs_nir.to_nir(net, x[0])
    assert all(np.all(np.asarray(n.r) == 1) for n in graph.nodes.values() if isinstance(n, nir.IF))
    g = from_nir(graph, dt=1e-4)
    ref = _run_sinabs(net, x)
    assert ref.sum() > 50
    assert torch.equal(ref, _run_snnir(g, x))


def _if_graph(r):
    rng = np.random.default_rng(3)
    n = 6
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([8])),
               "fc": nir.Affine(weight=rng.uniform(0, 0.6, (n, 8)).astype(np.float32), bias=np.zeros(n, np.float32)),
               "if": nir.IF(r=np.full(n, r), v_threshold=np.full(n, 1.0), v_reset=np.zeros(n)),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "if"), ("if", "output")])


def test_if_convention_against_sinabs_and_spikingjelly_importers():
    """One graph per convention (r = 1/dt as SpikingJelly writes it, r = 1 as Sinabs does): snnir reads
    both as v += I; SpikingJelly's importer agrees exactly on its form, Sinabs' up to the first spike."""
    sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange", reason="SpikingJelly is a test reference")
    from spikingjelly.activation_based import functional

    dt, T, B = 1e-4, 40, 3
    x = (torch.rand(T, B, 8, generator=torch.Generator().manual_seed(4)) < 0.5).float()
    ours = {r: _run_snnir(from_nir(_if_graph(r), dt=dt), x) for r in (1 / dt, 1.0)}
    assert ours[1.0].sum() > 20 and torch.equal(ours[1 / dt], ours[1.0])
    peer = sj.import_from_nir(_if_graph(1 / dt), dt=dt, step_mode="m")
    functional.reset_net(peer)
    with torch.no_grad():
        out, _ = peer(x, None)
    assert torch.equal(out, ours[1 / dt])
    with pytest.raises(ValueError, match="r must equal 1 / dt"):
        sj.import_from_nir(_if_graph(1.0), dt=dt, step_mode="m")  # SpikingJelly refuses Sinabs' form
    for r in (1 / dt, 1.0):  # Sinabs ignores r: v += I in both
        peer = sinabs_nir.from_nir(_if_graph(r), batch_size=B)
        theirs = _run_sinabs(peer, x)
        assert torch.equal(_first_spikes(theirs), _first_spikes(ours[r]))
        assert theirs.sum() > 20

"""NIR against SpikingJelly 2.0's exporter and importer (its convention: forward Euler, dt = 1e-4).

SpikingJelly fires at ``v >= threshold`` as snnir does, so no tie convention differs here.
"""

from __future__ import annotations

import pytest
import torch

import snnir
from snnir.frontends import from_nir

nir = pytest.importorskip("nir", reason="nir is a test dependency (pip install nir==1.0.8)")
sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange",
                         reason="SpikingJelly is a test reference (pip install --no-deps spikingjelly==2.0.0)")
from spikingjelly.activation_based import functional, layer, neuron  # noqa: E402


def _run_sj(net, x):
    functional.set_step_mode(net, "m")
    functional.reset_net(net)
    with torch.no_grad():
        return net(x)


def _run_snnir(g, x):
    with torch.no_grad():
        return snnir.compile(g)(x)


@pytest.mark.parametrize("build", ["conv", "cuba"])
def test_spikingjelly_export_imports_with_identical_spikes(tmp_path, build):
    torch.manual_seed(0)
    if build == "conv":  # conv + LIF + avg pooling, ParametricLIF (decay_input=False), IF
        net = torch.nn.Sequential(
            layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(tau=2.0), layer.AvgPool2d(2), layer.Flatten(),
            layer.Linear(64, 10), neuron.ParametricLIFNode(init_tau=3.0, decay_input=False),
            layer.Linear(10, 4), neuron.IFNode())
        x = torch.rand(20, 3, 1, 8, 8) * 3
    else:
        net = torch.nn.Sequential(layer.Linear(8, 12), neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75),
                                  layer.Linear(12, 4), neuron.LIFNode(tau=2.0, v_reset=0.1, v_threshold=0.8))
        with torch.no_grad():
            net[0].weight.abs_()
            net[2].weight.abs_()
        x = torch.rand(30, 3, 8)
    functional.set_step_mode(net, "m")
    sj.export_to_nir(net, x, save_path=tmp_path / "sj.nir")
    g = from_nir(tmp_path / "sj.nir", dt=1e-4)
    ref = _run_sj(net, x)
    assert 10 <= ref.sum() <= ref.numel() - 10
    assert torch.equal(ref, _run_snnir(g, x))


def test_snnir_to_spikingjelly_import(tmp_path):
    from snnir import nn as snn

    torch.manual_seed(1)
    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(1, 4, 3, padding=1), snn.LIF(tau=2.0), snn.AvgPool2d(2), snn.Flatten(),
        snn.Linear(64, 10), snn.LIF(tau=3.0, decay_input=False), snn.Linear(10, 4), snn.IF()), "m")
    x = torch.rand(20, 3, 1, 8, 8) * 3
    g = snnir.trace(net, x)
    snnir.export(g, tmp_path / "m.nir", format="nir")
    peer = sj.import_from_nir(str(tmp_path / "m.nir"), step_mode="m")
    with torch.no_grad():
        out, _ = peer(x, None)
    ref = _run_snnir(g, x)
    assert 10 <= ref.sum() <= ref.numel() - 10
    assert torch.equal(ref, out)

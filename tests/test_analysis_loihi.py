"""``loihi_resources``: cores and synapse memory of the mapped program, counted independently here."""

import math

import numpy as np
import pytest

import snnir
from snnir.analysis import LOIHI2, LoihiLimits, loihi_resources
from snnir.errors import LoihiMappingError


def _graph(rng, pool=False):
    g = snnir.Graph()
    x = g.add_input((2, 8, 8))
    c = g.add_node("conv2d", [x], params={"weight": rng.standard_normal((6, 1, 3, 3)).astype(np.float32)},
                   attrs={"stride": 2, "padding": 1, "groups": 2}, id="conv")
    n = g.add_node("neuron", [c], attrs={"model": "IF"}, id="n1")
    if pool:
        n = g.add_node("maxpool2d", [n], attrs={"kernel_size": 2}, id="pool")
    f = g.add_node("flatten", [n], id="flat")
    features = 24 if pool else 96
    fc = g.add_node("linear", [f], params={"weight": rng.standard_normal((10, features)).astype(np.float32)}, id="fc")
    g.add_output(g.add_node("neuron", [fc], attrs={"model": "LIF", "tau": 4.0, "decay_input": False}, id="n2"))
    return g


def _conv_connections(in_shape, out_shape, kernel, stride, padding, groups, cout):
    """Loop over output neurons and kernel taps: count the taps that land inside the input."""
    cin_per_group = in_shape[0] // groups
    total = 0
    for _oc in range(cout):
        for oh in range(out_shape[1]):
            for ow in range(out_shape[2]):
                for _ in range(cin_per_group):
                    for kh in range(kernel[0]):
                        for kw in range(kernel[1]):
                            h, w = oh * stride - padding + kh, ow * stride - padding + kw
                            total += 0 <= h < in_shape[1] and 0 <= w < in_shape[2]
    return total


def test_default_loihi2_limits(rng):
    r = loihi_resources(_graph(rng))
    assert [(u.kind, u.neurons) for u in r.layers] == [("input", 128), ("conv", 96), ("dense", 10)]
    conv = r.layers[1]
    assert conv.synapses == _conv_connections((2, 8, 8), (6, 4, 4), (3, 3), 2, 1, 2, 6)
    assert conv.synapse_bytes == 6 * 1 * 9  # one 8-bit kernel, shared by the layer's neurons
    assert r.layers[2].synapses == 96 * 10 and r.layers[2].synapse_bytes == 960
    assert r.cores == 3 and r.chips == 1
    assert "3 cores on 1 Loihi 2 chip" in str(r)
    assert LOIHI2.neurons_per_core == 8192 and LOIHI2.cores_per_chip == 128


def test_small_cores_split_layers(rng):
    limits = LoihiLimits(neurons_per_core=50, synapse_bytes_per_core=300, cores_per_chip=4, name="tiny")
    r = loihi_resources(_graph(rng), limits)
    inp, conv, dense = r.layers
    assert inp.cores == math.ceil(128 / 50)
    assert conv.cores == math.ceil(96 / 50)                     # each core keeps the 6 kernels (54 B)
    assert dense.cores == math.ceil(960 / 300)                  # 960 weight bytes, 300 per core
    assert r.cores == inp.cores + conv.cores + dense.cores and r.chips == math.ceil(r.cores / 4)
    with pytest.raises(LoihiMappingError, match="one neuron's 96 bytes"):
        loihi_resources(_graph(rng), LoihiLimits(synapse_bytes_per_core=64))


def test_unmappable_graph_names_the_node(rng):
    with pytest.raises(LoihiMappingError, match="'pool'"):
        loihi_resources(_graph(rng, pool=True))


def test_analysis_package_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, snnir, snnir.analysis; snnir.analysis.loihi_resources; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

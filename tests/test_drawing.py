"""Drawings of graphs: the layered layout, node text, DOT, and the matplotlib PNG without Graphviz."""

import shutil
import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.drawing import KINDS, GraphvizHint, layered_layout, node_lines, op_kind, to_dot


class Branchy(torch.nn.Module):
    """20+ nodes: a residual block, a recurrent layer, a filter and a delay."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1, self.l1 = snn.Conv2d(2, 8, 3, stride=2, padding=1), snn.BatchNorm2d(8), snn.LIF()
        self.c2, self.l2 = snn.Conv2d(8, 8, 3, padding=1), snn.LIF()
        self.c3, self.l3 = snn.Conv2d(8, 8, 3, padding=1), snn.LIF()
        self.pool, self.flat = snn.AvgPool2d(2), snn.Flatten()
        self.fc, self.l4 = snn.Linear(8 * 4 * 4, 32), snn.LIF(tau=4.0)
        self.rec = snn.Recurrent(snn.LIF(), snn.Linear(32, 32, bias=False))
        self.filt, self.delay = snn.SynapseFilter(tau=3.0), snn.Delay(2)
        self.out, self.l5 = snn.Linear(32, 10), snn.CubaLIF(tau_syn=2.0, tau_mem=4.0)

    def forward(self, x):
        h = self.l1(self.b1(self.c1(x)))
        h = h + self.l3(self.c3(self.l2(self.c2(h))))
        h = self.rec(self.l4(self.fc(self.flat(self.pool(h)))))
        return self.l5(self.out(self.delay(self.filt(h))))


@pytest.fixture(scope="module")
def graph():
    return snnir.optimize(snnir.trace(snn.set_step_mode(Branchy(), "m").eval(), torch.rand(3, 1, 2, 16, 16)))


def test_layers_respect_every_forward_edge(graph):
    layers = layered_layout(graph)
    layer = {n: k for k, lay in enumerate(layers) for n in lay}
    assert sorted(layer) == sorted(n.id for n in graph)
    delayed = {(e.src, e.dst, e.port) for e in graph.delayed_edges()}
    assert delayed  # the recurrent layer's feedback
    for e in graph.edges():
        if (e.src, e.dst, e.port) not in delayed:
            assert layer[e.src] < layer[e.dst], e
    assert layers[0] == graph.inputs and graph.outputs[0] in layers[-1]


def test_barycentre_ordering_removes_crossings():
    g = snnir.Graph()
    x = g.add_input((4,))
    a, b = g.add_node("relu", [x], id="a"), g.add_node("relu", [x], id="b")
    # b's child inserted first: in insertion order the two edges cross
    cb = g.add_node("scale", [b], attrs={"factor": 2.0}, id="cb")
    ca = g.add_node("scale", [a], attrs={"factor": 2.0}, id="ca")
    g.add_output(g.add_node("add", [ca, cb], id="sum"))
    layers = layered_layout(g.validate())
    assert layers[1].index("a") < layers[1].index("b")
    assert layers[2].index("ca") < layers[2].index("cb")


def test_node_text_names_op_shape_and_params(graph):
    lines = {n.id: node_lines(n) for n in graph}
    assert lines["c1"] == ["c1: conv2d 3x3 s2 p1", "(8, 8, 8)", "b[8] w[8,2,3,3]"] or \
        lines["c1"] == ["c1: conv2d 3x3 s2 p1", "(8, 8, 8)", "w[8,2,3,3] b[8]"]
    assert lines["l4"][0] == "l4: LIF τ=4" and lines["l5"][0].startswith("l5: CubaLIF τ_mem=4 τ_syn=2")
    assert lines["delay"][0] == "delay steps=2"  # the id is the op's name: said once
    assert {op_kind(graph.node(n)) for n in ("c1", "l1", "filt", "pool", "flat", graph.inputs[0])} == \
        {"synapse", "neuron", "stateful", "pool", "structure", "io"}


def test_dot_has_kinds_regions_recurrence_and_a_legend(graph):
    dot = to_dot(graph)
    assert dot.startswith('digraph "Branchy"') and "subgraph cluster_legend" in dot
    assert 'label="c1: conv2d 3x3 s2 p1\\n(8, 8, 8)' in dot
    assert "style=dashed" in dot and 'label="t-1"' in dot
    for kind in ("synapse", "neuron", "stateful", "pool", "structure", "io"):
        assert f'"legend_{kind}"' in dot and KINDS[kind][0] in dot


def test_png_without_graphviz_is_drawn_and_hints_at_graphviz(graph, tmp_path):
    import matplotlib.image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = snnir.render(graph, tmp_path / "g.png", engine="auto" if not shutil.which("dot") else "matplotlib")
    if not shutil.which("dot"):
        hints = [w for w in caught if issubclass(w.category, GraphvizHint)]
        assert len(hints) == 1 and "apt install graphviz" in str(hints[0].message)
    image = matplotlib.image.imread(path)[..., :3]
    height, width = image.shape[:2]
    assert height > 900 and width > 700  # room for 20 boxes of three text lines each
    pixels = {tuple(np.round(p * 255).astype(int)) for p in image.reshape(-1, 3)[::7]}
    for kind in ("synapse", "neuron", "stateful", "pool"):  # every kind's fill appears
        fill = KINDS[kind][0]
        rgb = tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5))
        assert any(sum(abs(a - b) for a, b in zip(rgb, p)) <= 6 for p in pixels), kind
    svg = snnir.render(graph, tmp_path / "g.svg", engine="matplotlib").read_text()
    assert "c1: conv2d 3x3 s2 p1" in svg or "conv2d" in svg


def test_small_graphs_draw_without_a_hint_and_bad_requests_fail(tmp_path):
    g = snnir.Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("neuron", [x], attrs={"model": "LIF"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphvizHint)
        assert snnir.render(g, tmp_path / "s.png", engine="matplotlib").stat().st_size > 1000
        if not shutil.which("dot"):
            assert snnir.render(g, tmp_path / "a.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="engine must be"):
        snnir.render(g, tmp_path / "s.png", engine="tikz")
    if not shutil.which("dot"):
        with pytest.raises(FileNotFoundError, match="needs Graphviz's 'dot'"):
            snnir.render(g, tmp_path / "s.png", engine="graphviz")

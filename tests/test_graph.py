"""The IR: construction, attribute checks, shape inference, cycles, copying."""

import numpy as np
import pytest

import snnir
from snnir import Graph
from snnir.errors import GraphError, ShapeError
from snnir.ops import registered_ops


def w(*shape):
    return np.zeros(shape, np.float32)


def small_graph() -> Graph:
    g = Graph("small")
    x = g.add_input((2, 10, 10))
    c = g.add_node("conv2d", [x], attrs={"stride": 2, "padding": 1}, params={"weight": w(4, 2, 3, 3)})
    n = g.add_node("neuron", [c], attrs={"model": "LIF", "tau": 3.0})
    p = g.add_node("maxpool2d", [n], attrs={"kernel_size": 2})
    f = g.add_node("flatten", [p])
    lin = g.add_node("linear", [f], params={"weight": w(3, 16), "bias": w(3)})
    g.add_output(lin)
    return g


def test_shapes_inferred_per_sample():
    g = small_graph().validate()
    assert [n.shape for n in g] == [(2, 10, 10), (4, 5, 5), (4, 5, 5), (4, 2, 2), (16,), (3,), (3,)]


def test_linear_mismatch_names_node():
    g = small_graph()
    g.node("linear").params["weight"] = w(3, 36)
    expected = "node 'linear' \\(linear\\): linear expects a last axis of 36 features, got input shape \\(16,\\)"
    with pytest.raises(ShapeError, match=expected):
        g.validate()


@pytest.mark.parametrize("size,kernel,stride,pad,ceil", [(7, 3, 2, 1, False), (7, 2, 2, 0, True), (8, 3, 3, 1, True)])
def test_pool_shape_matches_torch(size, kernel, stride, pad, ceil):
    torch = pytest.importorskip("torch")
    g = Graph()
    x = g.add_input((1, size, size))
    p = g.add_node("maxpool2d", [x], attrs={"kernel_size": kernel, "stride": stride, "padding": pad, "ceil_mode": ceil})
    g.add_output(p)
    ref = torch.nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)(torch.zeros(1, 1, size, size)).shape[1:]
    assert g.validate().node(p).shape == tuple(ref)


def test_neuron_state_spec_and_defaults():
    g = Graph()
    x = g.add_input((5,))
    n = g.add_node("neuron", [x], attrs={"model": "CubaLIF"})
    g.add_output(n)
    node = g.validate().node(n)
    assert node.state_spec() == {"i": (5,), "v": (5,)}
    assert node.attrs["tau_syn"] == 2.0 and node.attrs["v_reset"] == 0.0
    assert node.attrs["surrogate"] == {"name": "ATan", "alpha": 2.0}


@pytest.mark.parametrize("op,attrs,params,match", [
    ("neuron", {"model": "LIF", "taux": 1.0}, None, "has no attribute \\['taux'\\]"),
    ("neuron", {"model": "Nope"}, None, "unknown neuron model 'Nope'"),
    ("maxpool2d", {}, None, "missing required attribute 'kernel_size'"),
    ("relu", {"alpha": 1}, None, "unknown attributes \\['alpha'\\]"),
    ("linear", {}, {}, "required \\['weight'\\]"),
    ("linear", {}, {"weight": np.full((2, 2), np.nan)}, "NaN or Inf"),
    ("nope", {}, None, "unknown op 'nope'"),
])
def test_bad_nodes_are_refused(op, attrs, params, match):
    g = Graph()
    x = g.add_input((2,))
    with pytest.raises(GraphError, match=match):
        g.add_node(op, [x], attrs=attrs, params=params)


def test_structure_errors():
    g = Graph()
    x = g.add_input((3,))
    with pytest.raises(GraphError, match="reads 'missing'"):
        g.add_node("relu", ["missing"])
    with pytest.raises(GraphError, match="takes 1 input"):
        g.add_node("relu", [x, x])
    with pytest.raises(GraphError, match="must be an identifier"):
        g.add_node("relu", [x], id="a.b")
    with pytest.raises(GraphError, match="no output node"):
        g.validate()
    with pytest.raises(GraphError, match="no input node"):
        Graph().validate()


def test_cycle_without_state_is_rejected_with_its_nodes():
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    r = g.add_node("scale", [s], attrs={"factor": 0.5}, id="half")
    g.add_edge(r, s, port=1)  # sum = x + half(sum): instantaneous feedback
    g.add_output(r)
    with pytest.raises(GraphError, match="cycle through \\['sum', 'half'\\] has no edge with time offset 1 and "
                       "no stateful node.*feedback edge \\('half' -> 'sum' \\(port 1\\)\\) with offset=1"):
        g.validate()
    with pytest.raises(GraphError, match="cycle through"):
        g.topological_order()


def test_stateless_cycle_through_an_offset_1_edge_is_legal():
    """sum[t] = x[t] + half[t-1]: a linear IIR filter needs no stateful node."""
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    r = g.add_node("scale", [s], attrs={"factor": 0.5}, id="half")
    g.add_edge(r, s, port=1, offset=1)
    g.add_output(r)
    g.validate()
    assert [(e.src, e.offset) for e in g.in_edges("sum")] == [("input", 0), ("half", 1)]
    assert g.topological_order() == ["input", "sum", "half", "output"] and g.is_recurrent()


def test_cycle_through_neuron_is_legal_and_its_back_edge_is_recurrent():
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    n = g.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    g.add_edge(n, s, port=1)  # offset 0 through a neuron: the feedback edge reads t-1 (insertion order)
    g.add_output(n)
    assert g.in_edges("sum")[1].offset == 0 and g.recurrent_edges() == {("lif", "sum")}
    g.validate()  # writes the offset down
    assert g.in_edges("sum")[1] == snnir.graph.Edge("lif", "sum", 1, 1)
    assert g.recurrent_edges() == {("lif", "sum")}
    assert g.topological_order() == ["input", "sum", "lif", "output"]
    assert g.node("sum").shape == (3,) and g.node("lif").shape == (3,)


def test_recurrent_input_shape_mismatch_is_reported():
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    n = g.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    fb = g.add_node("linear", [n], params={"weight": w(4, 3)}, id="fb")
    g.add_edge(fb, s, port=1)
    g.add_output(n)
    with pytest.raises(ShapeError, match="node 'sum' \\(add\\): add needs inputs of one shape"):
        g.validate()


def test_insertion_order_decides_which_edge_of_an_offset_0_loop_reads_the_previous_step():
    """The rule of format version 1: inside the loop, an edge into a node added no later than its
    source reads t-1, whatever order the edges were added in."""
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    n = g.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    d = g.add_node("delay", [n], attrs={"steps": 1}, id="d")
    g.add_edge(d, s, port=1)
    g.add_output(n)
    g.validate()
    assert [(e.src, e.dst) for e in g.delayed_edges()] == [("d", "sum")]
    # a loop whose explicit offset-1 edge sits elsewhere keeps it: nothing implicit is added
    h = Graph()
    x = h.add_input((3,))
    s = h.add_node("add", [x], id="sum")
    n = h.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    d = h.add_node("delay", [n], attrs={"steps": 1}, offsets=[1], id="d")
    h.add_edge(d, s, port=1)
    h.add_output(n)
    h.validate()
    assert [(e.src, e.dst) for e in h.delayed_edges()] == [("lif", "d")]
    assert h.topological_order() == ["input", "d", "sum", "lif", "output"]


def test_two_edges_between_the_same_nodes():
    g = Graph()
    x = g.add_input((3,))
    h = g.add_node("relu", [x], id="h")
    a = g.add_node("add", [h, h], id="twice")
    c = g.add_node("cat", [h, h], attrs={"axis": 0}, id="both")
    g.add_output(a)
    g.add_output(c)
    g.validate()
    assert g.predecessors("twice") == ["h", "h"] and g.successors("h") == ["twice", "both"]
    assert [e.port for e in g.out_edges("h")] == [0, 1, 0, 1]
    assert g.node("both").shape == (6,)
    assert g.copy().to_dict()[0]["edges"] == g.to_dict()[0]["edges"]
    g.remove_edge(h, a, port=1)
    assert g.predecessors("twice") == ["h"]


def test_edge_errors_name_the_edge():
    g = Graph()
    x = g.add_input((3,))
    r = g.add_node("relu", [x], id="r")
    a = g.add_node("add", [x], id="a")
    with pytest.raises(GraphError, match="input port 0 of 'a' is already fed by 'input'"):
        g.add_edge(r, a, port=0)
    with pytest.raises(GraphError, match="edge 'r' -> 'a': time offset must be 0 .* or 1 .*, got 2; longer "
                                         "delays are a 'delay' node"):
        g.add_edge(r, a, port=1, offset=2)
    with pytest.raises(GraphError, match="edge 'r' -> 'nope': no node 'nope'"):
        g.add_edge(r, "nope")
    with pytest.raises(GraphError, match="port must be an int >= 0, got -1"):
        g.add_edge(r, a, port=-1)
    with pytest.raises(GraphError, match="no edge 'r' -> 'a' on port 1"):
        g.remove_edge(r, a, port=1)
    with pytest.raises(GraphError, match="2 offsets for 1 inputs"):
        g.add_node("relu", [x], offsets=[0, 1])
    g.add_edge(r, a, port=2)
    g.add_output(a)
    with pytest.raises(GraphError, match=r"node 'a' \(add\) has input ports \[0, 2\], expected 0..1"):
        g.validate()
    h = Graph()
    h.add_output(h.add_input((3,)), id="y")
    h.remove_edge("input", "y", 0)
    h.add_edge("input", "y", 0, offset=1)
    with pytest.raises(GraphError, match="output node 'y' must read 'input' with offset 0"):
        h.validate()


def test_feed_forward_offset_1_edge():
    """y[t] = x[t] + x[t-1]: an offset-1 edge outside any loop."""
    g = Graph()
    x = g.add_input((2,))
    s = g.add_node("add", [x, x], offsets=[0, 1], id="s")
    g.add_output(s)
    g.validate()
    assert g.is_recurrent() and [(e.src, e.port) for e in g.delayed_edges()] == [("input", 1)]
    assert g.recurrent_edges() == {("input", "s")}


def test_copy_is_deep_and_equal():
    g = small_graph()
    g.node("linear").params["weight"] = w(3, 16)
    g.validate()
    h = g.copy()
    assert h.to_dict()[0] == g.to_dict()[0]
    h.node("linear").params["weight"][0, 0] = 1.0
    assert g.node("linear").params["weight"][0, 0] == 0.0


def test_registry_lists_core_ops():
    assert {"linear", "conv2d", "neuron", "batchnorm", "cat", "add", "scale", "dropout"} <= set(registered_ops())


def test_import_snnir_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, snnir; g = snnir.Graph(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert snnir.Graph is Graph

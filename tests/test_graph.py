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
    with pytest.raises(GraphError, match="cycle through \\['half', 'sum'\\] has no stateful node"):
        g.validate()


def test_cycle_through_neuron_is_legal_and_its_back_edge_is_recurrent():
    g = Graph()
    x = g.add_input((3,))
    s = g.add_node("add", [x], id="sum")
    n = g.add_node("neuron", [s], attrs={"model": "LIF"}, id="lif")
    g.add_edge(n, s, port=1)  # recurrent: lif output at t-1 feeds sum at t
    g.add_output(n)
    g.validate()
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

"""NIR import and export without peers: NIR's equations, round trips, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import FormatError, GraphError
from snnir.frontends import from_nir

nir = pytest.importorskip("nir", reason="nir is a test dependency (pip install nir==1.0.8)")
h5py = pytest.importorskip("h5py", reason="h5py is a test dependency")

@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the spike-count floors below hold for these inputs


DT = 1e-4


def _run(g, x):
    with torch.no_grad():
        return snnir.compile(g)(x)


def _graph(*nodes):
    return nir.NIRGraph.from_list(*nodes, type_check=False)


# --- NIR's continuous equations, stepped by forward Euler in float64 (the independent reference) ---
def _euler(kind, p, current, dt):
    """``current``: [T, N, n] input currents. Returns the node's output sequence."""
    T = current.shape[0]
    v = np.zeros(current.shape[1:]) + p.get("v_reset", p.get("v_leak", 0.0))  # snnir starts at v_reset
    syn = np.zeros(current.shape[1:])
    out = []
    for t in range(T):
        i_in = current[t]
        if kind in ("CubaLI", "CubaLIF"):
            syn = syn + dt / p["tau_syn"] * (-syn + p["w_in"] * i_in)
            i_in = syn
        if kind in ("I", "IF"):  # r is the per-step gain (Sinabs, Norse, snnTorch), not r dt
            v = v + p["r"] * i_in
        else:
            tau = p["tau"] if "tau" in p else p["tau_mem"]
            v = v + dt / tau * ((p["v_leak"] - v) + p["r"] * i_in)
        if kind in ("IF", "LIF", "CubaLIF"):
            z = (v > p["v_threshold"]).astype(np.float64)
            v = np.where(z > 0, p["v_reset"], v)
            out.append(z)
        else:
            out.append(v.copy())
    return np.stack(out)


def _params(kind, n, rng):
    # per neuron: imported as a per-channel gain (a float32 parameter: values exact in float32)
    r = rng.integers(4, 16, n) / 8
    if kind == "I":
        return {"r": r}
    if kind == "IF":
        return {"r": r, "v_threshold": np.full(n, 1.0), "v_reset": np.full(n, 0.0)}
    leak = {"v_leak": np.full(n, 0.2)}
    if kind == "LI":
        return {"tau": np.full(n, 2e-3), "r": r * 20, **leak}
    if kind == "LIF":
        return {"tau": np.full(n, 2e-3), "r": r * 20, "v_leak": rng.integers(-8, 8, n) / 16,
                "v_threshold": np.full(n, 1.0), "v_reset": np.full(n, 0.125)}
    cuba = {"tau_syn": np.full(n, 5e-4), "tau_mem": np.full(n, 1e-3), "r": r * 10, "w_in": np.full(n, 5.0)}
    if kind == "CubaLI":
        return {**cuba, **leak}
    return {**cuba, "v_leak": np.full(n, 0.1), "v_threshold": np.full(n, 1.0), "v_reset": np.full(n, 0.1)}


@pytest.mark.parametrize("kind", ["I", "IF", "LI", "LIF", "CubaLI", "CubaLIF"])
def test_import_follows_nir_equations_in_float64(kind):
    rng = np.random.default_rng(0)
    n = 6
    p = _params(kind, n, rng)
    node = getattr(nir, kind)(**p)
    g = from_nir(_graph(nir.Input(input_type=np.array([n])), node, nir.Output(output_type=np.array([n]))), dt=DT)
    current = rng.uniform(0, 2.0, (80, 3, n))
    ours = _run(g, torch.tensor(current)).numpy()  # float64 all the way
    ref = _euler(kind, p, current, DT)
    if kind in ("IF", "LIF", "CubaLIF"):
        assert 10 < ref.sum() < ref.size - 10
        np.testing.assert_array_equal(ours, ref)
    else:  # input gains are float32 parameters (I's gain r dt is not exact in float32)
        np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-12)


def test_integrator_op_float64_reference():
    """The ``integrator`` op (CubaLIF, no firing): i - i/tau_syn + x, v - (v - v_reset)/tau_mem + i."""
    g = snnir.Graph()
    x = g.add_input((4,))
    g.add_output(g.add_node("integrator", [x], attrs={"model": "CubaLIF", "tau_syn": 3.0, "tau_mem": 5.0,
                                                     "v_reset": -0.2}))
    xs = np.random.default_rng(1).normal(size=(30, 2, 4))
    i, v, ref = np.zeros((2, 4)), np.full((2, 4), -0.2), []
    for t in range(30):
        i = i - i / 3.0 + xs[t]
        v = v - (v + 0.2) / 5.0 + i
        ref.append(v)
    np.testing.assert_allclose(_run(g, torch.tensor(xs)).numpy(), np.stack(ref), rtol=1e-13, atol=1e-13)


def test_threshold_delay_scale_sumpool_import():
    thr = _graph(nir.Input(input_type=np.array([1, 4, 4])),
                 nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.zeros(2)),
                 nir.Scale(scale=np.full((1, 2, 2), 0.5)), nir.Delay(delay=np.full((1, 2, 2), 3 * DT)),
                 nir.Threshold(threshold=np.full((1, 2, 2), 0.9)), nir.Output(output_type=np.array([1, 2, 2])))
    g = from_nir(thr, dt=DT)
    x = torch.rand(8, 2, 1, 4, 4)
    pooled = torch.nn.functional.avg_pool2d(x.flatten(0, 1), 2).view(8, 2, 1, 2, 2) * 4 * 0.5
    delayed = torch.cat([torch.zeros(3, 2, 1, 2, 2), pooled[:-3]])
    assert torch.equal(_run(g, x), (delayed >= 0.9).float())


# --- round trips ---------------------------------------------------------------------------------
def _feedforward_graph():
    from snnir import nn as snn

    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(2, 4, 3, padding=1), snn.LIF(tau=3.0, v_threshold=0.8, v_reset=0.1),
        snn.AvgPool2d(2), snn.Flatten(), snn.Linear(64, 16), snn.CubaLIF(tau_syn=2.0, tau_mem=4.0),
        snn.Linear(16, 8, bias=False), snn.Scale(2.0), snn.LIF(tau=5.0, decay_input=False), snn.Delay(2),
        snn.SynapseFilter(tau=2.0), snn.IF(v_threshold=1.5)), "m")
    for m in net:
        if hasattr(m, "weight"):
            with torch.no_grad():
                m.weight.mul_(3)
    return snnir.trace(net, torch.rand(4, 2, 2, 8, 8))


def test_roundtrip_snnir_nir_snnir(tmp_path):
    g = _feedforward_graph()
    path = tmp_path / "model.nir"
    snnir.export(g, path, format="nir", dt=DT)
    back = from_nir(path, dt=DT)
    expected = [{"synapse_filter": "integrator"}.get(n.op, n.op) for n in g]  # NIR's LI
    assert [n.op for n in back] == expected
    for a, b in zip([n for n in g if n.op == "neuron"], [n for n in back if n.op == "neuron"]):
        assert a.attrs == b.attrs
    x = torch.rand(30, 3, 2, 8, 8) * 2
    ref = _run(g, x)
    assert ref.sum() > 20
    assert torch.equal(ref, _run(back, x))


def test_roundtrip_integrators_threshold_and_affine(tmp_path):
    g = snnir.Graph()
    x = g.add_input((3,))
    a = g.add_node("affine", [x], params={"weight": np.array([1.0, 2.0, 0.5], np.float32),
                                          "bias": np.zeros(3, np.float32)})
    li = g.add_node("integrator", [a], attrs={"model": "LIF", "tau": 4.0, "v_reset": 0.25})
    cli = g.add_node("integrator", [li], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 3.0})
    i = g.add_node("integrator", [cli], attrs={"model": "IF"})
    g.add_output(g.add_node("neuron", [i], attrs={"model": "Threshold", "v_threshold": 3.0}))
    g.add_output(li, id="voltage")
    snnir.export(g, tmp_path / "m.nir", format="nir")
    back = from_nir(tmp_path / "m.nir")
    assert sorted(n.op for n in back) == sorted(n.op for n in g)
    xs = torch.rand(20, 2, 3)
    (s1, v1), (s2, v2) = _run(g, xs), _run(back, xs)
    assert s1.sum() > 5 and torch.equal(s1, s2) and torch.equal(v1, v2)


def test_roundtrip_recurrent(tmp_path):
    from snnir import nn as snn

    net = snn.set_step_mode(torch.nn.Sequential(
        snn.Linear(6, 10), snn.Recurrent(snn.CubaLIF(tau_syn=2.0, tau_mem=3.0), snn.Linear(10, 10, bias=False))), "m")
    with torch.no_grad():
        net[0].weight.abs_()
    x = torch.rand(30, 2, 6) * 2
    g = snnir.trace(net, x)
    snnir.export(g, tmp_path / "r.nir", format="nir")
    graph = nir.read(str(tmp_path / "r.nir"))
    assert len(graph.edges) == 5  # input, linear, neuron <-> feedback, output: the cycle is kept
    back = from_nir(graph)
    assert back.is_recurrent()
    ref = _run(g, x)
    assert ref.sum() > 20 and torch.equal(ref, _run(back, x))


def test_parametric_lif_exports_its_current_tau(tmp_path):
    from snnir import nn as snn

    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(5, 7), snn.ParametricLIF(init_tau=3.0)), "m")
    with torch.no_grad():
        net[0].weight.abs_()
    x = torch.rand(20, 2, 5) * 3
    g = snnir.trace(net, x)
    snnir.export(g, tmp_path / "p.nir", format="nir")
    lif = nir.read(str(tmp_path / "p.nir")).nodes["_1"]
    np.testing.assert_allclose(lif.tau, 3.0 * DT, rtol=1e-6)
    back = from_nir(tmp_path / "p.nir")
    ref = _run(g, x)
    assert ref.sum() > 10 and torch.equal(ref, _run(back, x))


# --- what NIR cannot express ---------------------------------------------------------------------
@pytest.mark.parametrize("attrs, why", [
    ({"model": "LIF", "v_reset": None}, "soft reset"),
    ({"model": "QIF"}, r"non-linear \(term v\*\*2\)"),
    ({"model": "EIF"}, "not a polynomial"),
    ({"model": "Izhikevich"}, "the update of 'u' must depend on itself and the input"),
    ({"model": "AdaptiveLIF"}, "the update of 'w' must depend on itself and the input"),
    ({"model": "CubaLIFDecay", "c_decay": 1.0}, "infinite time constant"),
])
def test_export_refuses_what_nir_cannot_express(tmp_path, attrs, why):
    from snnir.backends.nir import UnsupportedNodeError

    g = snnir.Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("neuron", [x], attrs=attrs, id="layer1"))
    with pytest.raises(UnsupportedNodeError, match=f"'layer1'.*{why}"):
        snnir.export(g, tmp_path / "x.nir", format="nir")


def test_export_refuses_batchnorm_with_a_hint(tmp_path):
    from snnir.backends.nir import UnsupportedNodeError

    g = snnir.Graph()
    x = g.add_input((3, 4, 4))
    g.add_output(g.add_node("batchnorm", [x], params={"running_mean": np.zeros(3), "running_var": np.ones(3)}))
    with pytest.raises(UnsupportedNodeError, match="'batchnorm'.*snnir.optimize"):
        snnir.export(g, tmp_path / "x.nir", format="nir")


# --- bad NIR input -------------------------------------------------------------------------------
def _write_small(path):
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])),
                                "fc": nir.Linear(weight=np.ones((2, 3), np.float32)),
                                "lif": nir.LIF(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2),
                                               v_threshold=np.ones(2)),
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(str(path), graph)


def test_unknown_node_type_is_named(tmp_path):
    path = tmp_path / "bad.nir"
    _write_small(path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif/type"]
        f["node/nodes/lif/type"] = b"Izhikevich"
    with pytest.raises(FormatError, match=r"bad.nir.*'node/nodes/lif'.*unknown type 'Izhikevich'"):
        from_nir(path)


def test_missing_field_is_named(tmp_path):
    path = tmp_path / "bad.nir"
    _write_small(path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif/tau"]
    with pytest.raises(FormatError, match=r"'node/nodes/lif' \(LIF\) is missing a field"):
        from_nir(path)


def test_inconsistent_shapes_name_the_node():
    graph = _graph(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 5), np.float32)),
                   nir.Output(output_type=np.array([2])))
    with pytest.raises(GraphError, match="linear"):
        from_nir(graph)
    wrong = nir.LIF(tau=np.full(4, 1e-3), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    with pytest.raises(GraphError, match=r"'lif' \(LIF\): tau has shape \(4,\), but its input has shape \(2,\)"):
        from_nir(nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])), "lif": wrong,
                                     "output": nir.Output(output_type=np.array([4]))},
                              edges=[("input", "lif"), ("lif", "output")], type_check=False))
    with pytest.raises(GraphError, match=r"'output' \(Output\) declares shape \(3,\), but receives \(2,\)"):
        from_nir(_graph(nir.Input(input_type=np.array([3])), nir.Linear(weight=np.ones((2, 3), np.float32)),
                        nir.Output(output_type=np.array([3]))))
    short = nir.LIF(tau=np.array([1e-3, 5e-5]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(GraphError, match="NIR node 'lif'.*tau = 5e-05 s is shorter than dt"):
        from_nir(nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])), "lif": short,
                                     "output": nir.Output(output_type=np.array([2]))},
                              edges=[("input", "lif"), ("lif", "output")]))


@pytest.mark.parametrize("kind", ["LIF", "CubaLIF", "LI", "IF"])
def test_per_neuron_parameters_import_exactly_and_round_trip(tmp_path, kind):
    """Spyx writes a time constant per neuron: time constants, thresholds and reset potentials per
    neuron are imported as per-neuron parameter arrays, follow the float64 Euler reference, and export
    back to the same NIR values."""
    rng = np.random.default_rng(2)
    n = 6
    p = _params(kind, n, rng)
    for field in ("tau", "tau_syn", "tau_mem"):
        if field in p:
            p[field] = p[field] * rng.integers(1, 5, n)  # one time constant per neuron
    if "v_threshold" in p:
        p["v_threshold"] = rng.integers(6, 12, n) / 8
        p["v_reset"] = rng.integers(-2, 2, n) / 8
        if kind == "CubaLIF":
            p["v_leak"] = p["v_reset"]
    node = getattr(nir, kind)(**p)
    g = from_nir(_graph(nir.Input(input_type=np.array([n])), node, nir.Output(output_type=np.array([n]))), dt=DT)
    neuron = next(x for x in g if x.op in ("neuron", "integrator"))
    assert neuron.params, "per-neuron values are parameter arrays"
    current = rng.uniform(0, 2.0, (80, 3, n))
    ours, ref = _run(g, torch.tensor(current)).numpy(), _euler(kind, p, current, DT)
    if kind == "LI":
        np.testing.assert_allclose(ours, ref, rtol=1e-7, atol=1e-12)
    else:
        assert 10 < ref.sum() < ref.size - 10
        np.testing.assert_array_equal(ours, ref)
    snnir.export(g, tmp_path / "per_neuron.nir", format="nir", dt=DT)
    back = nir.read(str(tmp_path / "per_neuron.nir")).nodes[neuron.id]
    for field in ("tau", "tau_syn", "tau_mem", "v_threshold", "v_reset"):
        if field in p:
            np.testing.assert_allclose(np.asarray(getattr(back, field)), p[field], rtol=1e-12, err_msg=field)


def test_time_constant_shorter_than_dt_is_refused():
    li = nir.LI(tau=np.full(2, 1e-5), r=np.ones(2), v_leak=np.zeros(2))
    with pytest.raises(GraphError, match=r"NIR node 'li': tau = 1e-05 s is shorter than dt = 0.0001 s"):
        from_nir(_graph(nir.Input(input_type=np.array([2])), li, nir.Output(output_type=np.array([2]))), dt=1e-4)


def test_not_a_nir_file(tmp_path):
    path = tmp_path / "empty.nir"
    with h5py.File(path, "w") as f:
        f["x"] = 1
    with pytest.raises(FormatError, match="not a NIR file"):
        from_nir(path)
    (tmp_path / "text.nir").write_text("hello")
    with pytest.raises(FormatError, match="cannot open"):
        from_nir(tmp_path / "text.nir")


def test_nested_graph_is_inlined_like_the_flat_graph():
    rng = np.random.default_rng(3)
    w_in, w_rec = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 5)).astype(np.float32) * 0.5

    def lif():
        return nir.LIF(tau=np.full(5, 3e-4), r=np.full(5, 3.0), v_leak=np.zeros(5), v_threshold=np.ones(5))

    inner = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([5])), "lif": lif(),
                                "w_rec": nir.Linear(weight=w_rec), "output": nir.Output(output_type=np.array([5]))},
                         edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    outer = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])), "fc": nir.Linear(weight=w_in),
                                "rnn": inner, "output": nir.Output(output_type=np.array([5]))},
                         edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "output")])
    flat = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])), "fc": nir.Linear(weight=w_in),
                               "lif": lif(), "w_rec": nir.Linear(weight=w_rec),
                               "output": nir.Output(output_type=np.array([5]))},
                        edges=[("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    nested, ref = from_nir(outer), from_nir(flat)
    assert "rnn_lif" in nested and nested.is_recurrent()
    x = torch.rand(30, 2, 4) * 2
    out = _run(nested, x)
    assert out.sum() > 10 and torch.equal(out, _run(ref, x))


def test_import_is_linear_in_the_graph_size(monkeypatch):
    """Shapes are inferred once per node: importing a chain neither copies the graph nor re-infers
    shapes per node (that made 2,000 nodes take minutes; see benchmarks/nir_import_scaling.py)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nir_import_scaling import chain

    calls = {"copy": 0, "infer": 0}
    copy, infer = snnir.Graph.copy, snnir.Graph.infer_shapes

    def counting_copy(self):
        calls["copy"] += 1
        return copy(self)

    def counting_infer(self):
        calls["infer"] += 1
        return infer(self)

    monkeypatch.setattr(snnir.Graph, "copy", counting_copy)
    monkeypatch.setattr(snnir.Graph, "infer_shapes", counting_infer)
    g = from_nir(chain(600))
    assert len(g) == 602 and calls["copy"] == 0 and calls["infer"] <= 2

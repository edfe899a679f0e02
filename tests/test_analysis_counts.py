"""``snnir.analysis.count_ops`` against an independent count written here.

The reference reads each node's values through ``GraphModule.capture`` (not the monitor hooks
``count_ops`` uses) and counts with explicit loops: over every spike, over every kernel tap, the
output positions it reaches. Graphs: linear with a recurrent edge, convolutions (stride, padding,
dilation, groups), max/avg pooling, residual add and concatenation.
"""

import math

import numpy as np
import pytest
import torch

import snnir
from snnir.analysis import EnergyModel, count_ops
from snnir.errors import GraphError

T, N = 5, 3


def _weights(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _captured(g: snnir.Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's values [T, N, ...] from the compiled graph's own capture mechanism."""
    module = snnir.compile(g).eval()
    module.capture = {n.id for n in g if n.op not in ("input", "output")}
    with torch.no_grad():
        module(torch.from_numpy(x))
    values = {k: v.numpy() for k, v in module.captured.items()}
    values[g.inputs[0]] = x
    return values


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.isin(a, (0.0, 1.0)).all())


def ref_window_events(values, out_spatial, kernel, stride, padding, dilation, out_per_input):
    """Loop over every nonzero input value and every kernel tap: count the output positions reached."""
    total = 0
    for idx in zip(*np.nonzero(values)):
        pos = idx[3:]  # (t, n, c, *spatial)
        for tap in np.ndindex(*kernel):
            for p, k, s, pad, d, o in zip(pos, tap, stride, padding, dilation, out_spatial):
                num = p + pad - k * d  # output o reads input o * s - pad + k * d
                if num % s or not 0 <= num // s < o:
                    break
            else:  # every axis lands on an output position
                total += out_per_input
    return total


def ref_conv_dense(T_used, N_, out_shape, weight_shape):
    return T_used * N_ * math.prod(out_shape) * math.prod(weight_shape[1:])


def _conv_graph(rng, in_shape, cout, kernel, stride, padding, dilation, groups):
    g = snnir.Graph()
    x = g.add_input(in_shape)
    w = _weights(rng, cout, in_shape[0] // groups, *kernel, scale=0.5)
    c = g.add_node("conv2d", [x], params={"weight": w, "bias": _weights(rng, cout)}, id="conv",
                   attrs={"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    g.add_output(g.add_node("neuron", [c], attrs={"model": "LIF", "tau": 2.0}, id="lif"))
    return g.validate()


def _pairs(v, n=2):
    return (v,) * n if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", [
    ((3, 3), 1, 0, 1, 1),
    ((3, 3), 2, 1, 1, 1),
    ((3, 3), 1, 2, 2, 2),
    ((2, 3), (2, 1), (1, 0), (1, 2), 4),
    ((4, 4), 3, 2, 1, 4),
])
def test_conv_synops_equal_a_loop_over_spikes_and_kernel_taps(rng, kernel, stride, padding, dilation, groups):
    in_shape = (4, 9, 8)
    g = _conv_graph(rng, in_shape, 8, kernel, stride, padding, dilation, groups)
    spikes = (rng.random((T, N, *in_shape)) < 0.3).astype(np.float32)
    ops = count_ops(g, spikes)
    conv = g.node("conv")
    ref = ref_window_events(spikes, conv.shape[1:], kernel, _pairs(stride), _pairs(padding), _pairs(dilation),
                            8 // groups)
    nc = ops.nodes["conv"]
    assert nc.input == "spikes"
    assert nc.synops == nc.acs == ref > 0
    assert nc.macs == 0
    assert nc.dense_macs == ref_conv_dense(T, N, conv.shape, conv.params["weight"].shape)
    assert nc.weight_read_bytes == 4 * ref and nc.bias_read_bytes == 4 * T * N * math.prod(conv.shape)
    # the neuron: one update per element and step, its spikes counted
    values = _captured(g, spikes)
    assert ops.nodes["lif"].updates == T * N * math.prod(conv.shape)
    assert ops.nodes["lif"].spikes == int(values["lif"].sum())
    assert ops.nodes["lif"].state_read_bytes == ops.nodes["lif"].state_write_bytes == 4 * T * N * math.prod(conv.shape)


def test_real_valued_input_makes_dense_macs(rng):
    g = _conv_graph(rng, (2, 7, 7), 4, (3, 3), 2, 1, 1, 1)
    x = rng.random((T, N, 2, 7, 7)).astype(np.float32)  # analog pixels: not spikes
    nc = count_ops(g, x).nodes["conv"]
    assert nc.input == "real" and nc.acs == 0
    assert nc.macs == nc.dense_macs == T * N * 4 * 4 * 4 * 2 * 9  # padded taps included, as torch computes them
    # synops: nonzero inputs times their (exact, unpadded) fan-out
    assert nc.synops == ref_window_events(x, (4, 4), (3, 3), (2, 2), (1, 1), (1, 1), 4)
    assert nc.weight_read_bytes == 4 * nc.macs


def test_linear_and_recurrent_edge(rng):
    g = snnir.Graph()
    x = g.add_input((12,))
    fc1 = g.add_node("linear", [x], params={"weight": _weights(rng, 10, 12)}, id="fc1")
    s = g.add_node("add", [fc1], id="sum")
    n1 = g.add_node("neuron", [s], attrs={"model": "LIF", "tau": 2.0}, id="n1")
    rec = g.add_node("linear", [n1], params={"weight": _weights(rng, 10, 10, scale=0.5)}, id="rec")
    g.add_edge(rec, s, port=1)  # the previous step's recurrent current
    g.add_edge(n1, s, port=2)   # and the previous step's spikes themselves
    fc2 = g.add_node("linear", [n1], params={"weight": _weights(rng, 5, 10), "bias": _weights(rng, 5)}, id="fc2")
    g.add_output(g.add_node("neuron", [fc2], attrs={"model": "IF"}, id="n2"))
    spikes = (rng.random((T, N, 12)) < 0.4).astype(np.float32)
    ops = count_ops(g, spikes)
    v = _captured(g, spikes)
    assert 0 < v["n1"].sum() < v["n1"].size

    def ref_linear(values, out_features):
        total = 0
        for _ in zip(*np.nonzero(values)):  # every spike reaches every output
            total += out_features
        return total

    assert ops.nodes["fc1"].acs == ref_linear(spikes, 10)
    assert ops.nodes["rec"].acs == ref_linear(v["n1"], 10)  # rec runs every step; the sum reads it a step later
    assert ops.nodes["rec"].dense_macs == T * N * 100
    assert ops.nodes["fc2"].acs == ref_linear(v["n1"], 5)
    assert ops.nodes["fc2"].bias_read_bytes == T * N * 5 * 4
    # the add reads fc1's current (dense, T steps), rec's current (dense, steps 0 .. T-2 arrive) and
    # n1's spikes through the offset-1 edge (one accumulate per spike of steps 0 .. T-2)
    assert ops.nodes["sum"].input == "mixed"
    assert ops.nodes["sum"].acs == T * N * 10 + (T - 1) * N * 10 + ref_linear(v["n1"][:-1], 1)
    assert ops.nodes["sum"].synops == int(np.count_nonzero(v["fc1"]) + np.count_nonzero(v["rec"][:-1])) + \
        ref_linear(v["n1"][:-1], 1)
    assert ops.nodes["n2"].spikes == int(v["n2"].sum())


@pytest.mark.parametrize("op,attrs", [
    ("maxpool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("maxpool2d", {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ("maxpool2d", {"kernel_size": 2, "stride": 1, "dilation": 2}),
    ("avgpool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avgpool2d", {"kernel_size": (2, 3)}),
])
def test_pooling_counts_equal_a_loop_over_spikes_and_windows(rng, op, attrs):
    g = snnir.Graph()
    x = g.add_input((3, 9, 9))
    c = g.add_node("conv2d", [x], params={"weight": _weights(rng, 4, 3, 3, 3)}, attrs={"padding": 1}, id="conv1")
    n = g.add_node("neuron", [c], attrs={"model": "LIF", "tau": 2.0, "v_threshold": 0.5}, id="lif1")
    p = g.add_node(op, [n], attrs=attrs, id="pool")
    c2 = g.add_node("conv2d", [p], params={"weight": _weights(rng, 2, 4, 2, 2)}, id="conv2")
    g.add_output(g.add_node("neuron", [c2], attrs={"model": "IF"}, id="lif2"))
    g.validate()
    x_in = (rng.random((T, N, 3, 9, 9)) < 0.5).astype(np.float32)
    ops = count_ops(g, x_in)
    v = _captured(g, x_in)
    pool = g.node("pool")
    kernel = _pairs(attrs["kernel_size"])
    stride = _pairs(attrs.get("stride") or attrs["kernel_size"])
    ref = ref_window_events(v["lif1"], pool.shape[1:], kernel, stride, _pairs(attrs.get("padding", 0)),
                            _pairs(attrs.get("dilation", 1)), 1)
    assert ops.nodes["pool"].acs == ops.nodes["pool"].synops == ref > 0
    assert ops.nodes["pool"].dense_macs == 0
    # after max pooling spikes stay spikes (ACs); after average pooling they are fractions (MACs)
    nc2 = ops.nodes["conv2"]
    if _is_binary(v["pool"]):
        assert nc2.input == "spikes" and nc2.acs == ref_window_events(v["pool"], g.node("conv2").shape[1:], (2, 2),
                                                                      (1, 1), (0, 0), (1, 1), 2)
    else:
        assert op == "avgpool2d"
        assert nc2.input == "real" and nc2.acs == 0
        assert nc2.macs == ref_conv_dense(T, N, g.node("conv2").shape, (2, 4, 2, 2))


def test_residual_add_and_cat(rng):
    g = snnir.Graph()
    x = g.add_input((3, 6, 6))
    a = g.add_node("conv2d", [x], params={"weight": _weights(rng, 4, 3, 3, 3)}, attrs={"padding": 1}, id="conv_a")
    na = g.add_node("neuron", [a], attrs={"model": "IF", "v_threshold": 0.5}, id="A")
    b = g.add_node("conv2d", [na], params={"weight": _weights(rng, 4, 4, 3, 3)}, attrs={"padding": 1}, id="conv_b")
    nb = g.add_node("neuron", [b], attrs={"model": "IF", "v_threshold": 0.5}, id="B")
    res = g.add_node("add", [na, nb], id="res")
    cat = g.add_node("cat", [na, nb], attrs={"axis": 0}, id="cat")
    c = g.add_node("conv2d", [res], params={"weight": _weights(rng, 2, 4, 1, 1)}, id="conv_res")
    d = g.add_node("conv2d", [cat], params={"weight": _weights(rng, 2, 4, 3, 3)},
                   attrs={"groups": 2, "stride": 2}, id="conv_cat")
    g.add_output(c)
    g.add_output(d)
    g.validate()
    x_in = (rng.random((T, N, 3, 6, 6)) < 0.5).astype(np.float32)
    ops = count_ops(g, x_in)
    v = _captured(g, x_in)
    assert 0 < v["A"].mean() < 1 and 0 < v["B"].mean() < 1
    # residual add of two spike trains: one accumulate per spike (SpikingJelly's ACCounter agrees)
    assert ops.nodes["res"].input == "spikes"
    assert ops.nodes["res"].acs == ops.nodes["res"].synops == int(np.count_nonzero(v["A"]) + np.count_nonzero(v["B"]))
    # the sum holds 2 where both fired: real-valued, so the 1x1 conv after it does dense MACs
    assert not _is_binary(v["res"])
    assert ops.nodes["conv_res"].macs == ref_conv_dense(T, N, (2, 6, 6), (2, 4, 1, 1))
    # concatenation only routes: spikes of both halves reach the grouped conv with their own fan-out
    assert ops.nodes["cat"].acs == 0 and ops.nodes["cat"].memory_bytes == 0
    ref = ref_window_events(v["cat"], g.node("conv_cat").shape[1:], (3, 3), (2, 2), (0, 0), (1, 1), 1)
    assert ops.nodes["conv_cat"].acs == ref > 0


def test_totals_energy_and_overrides(rng):
    g = _conv_graph(rng, (2, 6, 6), 3, (3, 3), 1, 1, 1, 1)
    x = (rng.random((T, N, 2, 6, 6)) < 0.3).astype(np.float32)
    ops = count_ops(g, x)
    total = ops.total
    assert total.acs == sum(nc.acs for nc in ops.nodes.values())
    e = ops.energy_pj()
    update = ops.nodes["lif"]
    # LIF hard reset as the kernel runs it: v + (x - (v - v_reset)) / tau: 3 adds, 1 div; v - vth, >= : 2 adds;
    # (1 - s) v + s v_reset: 2 adds, 2 muls
    assert (update.update_adds, update.update_muls) == (7 * update.updates, 3 * update.updates)
    assert e["ac"] == pytest.approx(total.acs * 0.9)
    assert e["update"] == pytest.approx(update.updates * (7 * 0.9 + 3 * 3.7))
    assert e["memory"] == pytest.approx(total.memory_bytes * 2.5)
    assert e["total"] == pytest.approx(e["mac"] + e["ac"] + e["update"] + e["memory"])
    assert e["per_sample"] == pytest.approx(e["total"] / N)
    cheap = count_ops(g, x, energy=EnergyModel(ac_pj=0.1, memory_pj_per_byte=0.0)).energy_pj()
    assert cheap["ac"] == pytest.approx(total.acs * 0.1) and cheap["memory"] == 0
    text = str(ops)
    assert "conv" in text and "Horowitz" in text and "per sample" in text
    d = ops.to_dict()
    assert d["nodes"]["conv"]["acs"] == ops.nodes["conv"].acs and d["energy_model"]["mac_pj"] == 4.6


def test_uncounted_ops_are_listed_not_dropped(rng):
    g = snnir.Graph()
    x = g.add_input((4,))
    f = g.add_node("synapse_filter", [x], attrs={"tau": 2.0}, id="filt")
    d = g.add_node("delay", [f], attrs={"steps": 2}, id="dly")
    g.add_output(g.add_node("neuron", [d], attrs={"model": "CubaLIF"}, id="cuba"))
    ops = count_ops(g, rng.random((T, N, 4)).astype(np.float32))
    assert ops.nodes["filt"].update_adds == 2 * T * N * 4 and ops.nodes["filt"].update_muls == T * N * 4
    assert ops.nodes["dly"].state_write_bytes == 4 * T * N * 4
    assert ops.nodes["cuba"].state_read_bytes == 2 * 4 * T * N * 4  # i and v
    assert not ops.uncounted


def test_bad_inputs_are_refused_with_the_expected_shape(rng):
    g = _conv_graph(rng, (2, 6, 6), 3, (3, 3), 1, 1, 1, 1)
    with pytest.raises(GraphError, match=r"input 'input': expected an array \[T, N, 2, 6, 6\]"):
        count_ops(g, np.zeros((N, 2, 6, 6), np.float32))  # no time axis
    with pytest.raises(GraphError, match="NaN or Inf"):
        count_ops(g, np.full((T, N, 2, 6, 6), np.nan, np.float32))
    with pytest.raises(GraphError, match="has inputs"):
        count_ops(g, (np.zeros((T, N, 2, 6, 6)), np.zeros((T, N, 2, 6, 6))))


def test_count_ops_traces_a_torch_module():
    from snnir import nn as snn

    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(snn.Flatten(), snn.Linear(16, 4), snn.LIF()), "m")
    x = (torch.rand(T, N, 1, 4, 4) < 0.5).float()
    ops = count_ops(net, x)
    linear = next(nc for nc in ops.nodes.values() if nc.op == "linear")
    assert linear.acs == int(x.sum()) * 4


def test_cli_inspect_ops(rng, tmp_path, capsys):
    from snnir.cli import main

    g = _conv_graph(rng, (2, 6, 6), 3, (3, 3), 1, 1, 1, 1)
    snnir.save(g, tmp_path / "m.snnir")
    x = (rng.random((T, N, 2, 6, 6)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["inspect", str(tmp_path / "m.snnir"), "--ops", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    acs = count_ops(g, x).nodes["conv"].acs
    conv_row = [line for line in out.splitlines() if line.startswith("conv ")][-1]  # the ops table's row
    assert conv_row.split()[2] == "spikes" and f"{acs / 1e3:.3g}k" in conv_row
    assert "per sample" in out and "Horowitz" in out
    assert "Loihi mapping:" in out and "cores on 1 Loihi 2 chip" in out
    np.save(tmp_path / "bad.npy", x[0])
    assert main(["inspect", str(tmp_path / "m.snnir"), "--ops", str(tmp_path / "bad.npy")]) == 1
    assert "expected an array [T, N, 2, 6, 6]" in capsys.readouterr().err
    (tmp_path / "empty.npy").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "m.snnir"), "--ops", str(tmp_path / "empty.npy")]) == 1
    assert "is not a readable .npy array" in capsys.readouterr().err


def test_spiking_maxpool_counts_its_window_reads_and_its_state(rng):
    g = snnir.Graph()
    x = g.add_input((2, 4, 4))
    g.add_output(g.add_node("spiking_maxpool2d", [x], attrs={"kernel_size": 2}, id="smp"))
    spikes = (rng.random((T, N, 2, 4, 4)) < 0.5).astype(np.float32)
    nc = count_ops(g, spikes).nodes["smp"]
    assert nc.acs == int(spikes.sum())  # non-overlapping windows: each spike is read once
    assert nc.updates == nc.update_adds == T * N * 32  # one spike count per input element and step


def test_an_op_without_a_rule_is_listed_as_uncounted():
    from snnir.analysis import Activity, count_from_activity
    from snnir.ops import OpSpec, register_op

    register_op(OpSpec("test_analysis_identity", lambda attrs, params, shapes: shapes[0]))
    g = snnir.Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("test_analysis_identity", [x], id="mystery"))
    act = {n: Activity(np.ones((T, 3), np.int64), True, N) for n in ("input", "mystery")}
    ops = count_from_activity(g, act)
    assert ops.uncounted == ["mystery (test_analysis_identity)"] and not ops.nodes
    assert "not counted (no rule for the op): mystery (test_analysis_identity)" in str(ops)
    with pytest.raises(GraphError, match=r"no recorded activity for nodes \['mystery'\]"):
        count_from_activity(g, {"input": act["input"]})


def test_multi_edges_and_feed_forward_offsets(rng):
    g = snnir.Graph()
    x = g.add_input((6,))
    fc = g.add_node("linear", [x], params={"weight": _weights(rng, 6, 6)}, id="fc")
    n = g.add_node("neuron", [fc], attrs={"model": "IF", "v_threshold": 0.5}, id="n")
    twice = g.add_node("add", [n, n], id="twice")                      # h + h: two edges, same nodes
    late = g.add_node("add", [n, n], offsets=[0, 1], id="late")        # h[t] + h[t-1]
    g.add_output(twice)
    g.add_output(late)
    spikes = (rng.random((T, N, 6)) < 0.5).astype(np.float32)
    ops = count_ops(g, spikes)
    h = _captured(g, spikes)["n"]
    assert 0 < h.sum() < h.size
    assert ops.nodes["twice"].acs == 2 * int(h.sum())
    assert ops.nodes["late"].acs == int(h.sum()) + int(h[:-1].sum())

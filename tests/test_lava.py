"""Loihi backend: the simulator against an independent integer loop, netx files, the mapping pass."""

from fractions import Fraction

import h5py
import numpy as np
import pytest
import torch

import snnir
from snnir.backends.lava import (
    Cuba,
    LavaUnavailableError,
    Layer,
    LoihiMappingError,
    LoihiProgram,
    LoihiSimulator,
    compare,
    lava_available,
    read,
    read_netx,
    run_lava,
    write_netx,
)
from snnir.errors import FormatError
from snnir.passes.to_loihi import to_loihi

# --- an independent reference, written from ../shared/reference/loihi-netx.md in plain Python ints ---


def ref_rtz(x: int, n: int) -> int:
    return int(Fraction(x, 2 ** n))  # int() of a Fraction truncates toward zero


def ref_wrap24(x: int) -> int:
    return (x + 2 ** 23) % 2 ** 24 - 2 ** 23


def ref_shift(a: int, e: int) -> int:
    return a * 2 ** e if e >= 0 else a // 2 ** (-e)  # arithmetic shift = floor division


def ref_dense_input(w, e, spikes):
    return [ref_shift(sum(int(w[j][i]) * int(spikes[i]) for i in range(len(spikes))), e) for j in range(len(w))]


def ref_conv_input(w, e, spikes, shape_in, shape_out, stride, pad, groups):
    C, H, W = shape_in
    n_out, Ho, Wo = shape_out
    cg, og = C // groups, n_out // groups
    out = []
    for o in range(n_out):
        g = o // og
        for y in range(Ho):
            for x in range(Wo):
                total = 0
                for c in range(cg):
                    for ky in range(w.shape[2]):
                        for kx in range(w.shape[3]):
                            iy, ix = y * stride - pad + ky, x * stride - pad + kx
                            if 0 <= iy < H and 0 <= ix < W:
                                total += int(w[o, c, ky, kx]) * int(spikes[((g * cg + c) * H + iy) * W + ix])
                out.append(ref_shift(total, e))
    return out


def ref_neuron(u, v, a, i_decay, v_decay, vth, bias, bias_exp):
    """One Loihi CUBA neuron step in plain ints: returns (u, v, spike)."""
    u = ref_wrap24(ref_rtz(u * (4096 - i_decay), 12) + a * 64)
    v = ref_rtz(v * (4096 - v_decay), 12) + u + bias * 2 ** bias_exp
    v = max(-(2 ** 23 - 1), min(2 ** 23 - 1, v))
    if v > vth * 64:
        return u, 0, 1
    return u, v, 0


def ref_run(program: LoihiProgram, x: np.ndarray):
    """Raw chip-time spikes and voltages of every layer, one neuron at a time."""
    T, N = x.shape[:2]
    layers = program.layers
    spikes = [np.zeros((T, N, int(np.prod(layer.shape))), np.int64) for layer in layers]
    volts = [np.zeros_like(s) for s in spikes]
    for n in range(N):
        size = [int(np.prod(layer.shape)) for layer in layers]
        u = [[0] * k for k in size]
        v = [[0] * k for k in size]
        prev = [[0] * k for k in size]
        for t in range(T):
            cur = []
            for li, layer in enumerate(layers):
                c = layer.neuron
                if li == 0:
                    a = [0] * size[0]
                    inp = x[t, n].reshape(-1)
                    bias = [int(2 * 64 * float(b) - 64) for b in inp]
                else:
                    if layer.kind == "dense":
                        a = ref_dense_input(layer.weight, layer.weight_exp, prev[li - 1])
                        if layer.rec_weight is not None:
                            r = ref_dense_input(layer.rec_weight, layer.weight_exp, prev[li])
                            a = [p + q for p, q in zip(a, r)]
                    else:
                        a = ref_conv_input(layer.weight, layer.weight_exp, prev[li - 1], layers[li - 1].shape,
                                           layer.shape, layer.stride[0], layer.padding[0], layer.groups)
                    bias = [0] * size[li] if c.bias is None else [int(b) for b in c.bias]
                out = []
                for k in range(size[li]):
                    u[li][k], v[li][k], s = ref_neuron(u[li][k], v[li][k], a[k], c.i_decay, c.v_decay, c.vth_mant,
                                                      bias[k], c.bias_exp if li else 6)
                    out.append(s)
                    spikes[li][t, n, k], volts[li][t, n, k] = s, v[li][k]
                cur.append(out)
            prev = cur
    return spikes, volts


def _input_layer(shape) -> Layer:
    return Layer("input", shape, Cuba(4096, 4096, 0), name="in")


def _random_dense_program(rng, i_decay, v_decay, weight_exp, bias_exp, recurrent=False) -> LoihiProgram:
    w1 = rng.integers(-128, 128, (7, 5))
    w2 = rng.integers(-128, 128, (4, 7))
    rec = rng.integers(-60, 60, (4, 4)) if recurrent else None
    bias = rng.integers(-40, 40, 4)
    return LoihiProgram([
        _input_layer((5,)),
        Layer("dense", (7,), Cuba(i_decay, v_decay, int(rng.integers(5, 200))), w1, weight_exp, name="h"),
        Layer("dense", (4,), Cuba(4096 - i_decay, v_decay, int(rng.integers(5, 200)), bias, bias_exp), w2,
              weight_exp, rec, name="out"),
    ])


def _assert_matches_reference(program, x):
    sim = LoihiSimulator(program)
    sim.run(x, aligned=False, record_voltage=True)
    spikes, volts = ref_run(program, x)
    for li, name in enumerate(sim.spikes):
        got_s = sim.spikes[name].reshape(x.shape[0], x.shape[1], -1)
        got_v = sim.voltages[name].reshape(x.shape[0], x.shape[1], -1)
        np.testing.assert_array_equal(got_s, spikes[li], err_msg=f"spikes of layer {name}")
        np.testing.assert_array_equal(got_v, volts[li], err_msg=f"voltages of layer {name}")
    return sim, spikes


@pytest.mark.parametrize("i_decay,v_decay", [(0, 0), (4095, 4095), (4096, 0), (0, 4095), (1024, 300)])
@pytest.mark.parametrize("weight_exp", [-1, 0, 1, 2])
def test_simulator_matches_independent_integer_loop(i_decay, v_decay, weight_exp):
    rng = np.random.default_rng(i_decay + 7 * v_decay + weight_exp + 2)
    program = _random_dense_program(rng, i_decay, v_decay, weight_exp, bias_exp=int(rng.integers(0, 8)))
    x = (rng.random((25, 3, 5)) < 0.5).astype(np.float32)
    _, spikes = _assert_matches_reference(program, x)
    assert 0 < spikes[1].mean() < 1  # the case exercises both outcomes


def test_simulator_recurrent_layer_and_state_wrap():
    rng = np.random.default_rng(5)
    program = _random_dense_program(rng, 0, 0, 2, 6, recurrent=True)
    program.layers[1].neuron.vth_mant = 2 ** 17 - 1
    program.layers[1].weight = np.full((7, 5), 127)  # positive input only: u grows until it wraps
    x = np.ones((60, 1, 5), np.float32)
    sim, _ = _assert_matches_reference(program, x)
    assert sim.voltages["h"].min() < 0  # the 24-bit current register wrapped to negative


def test_simulator_conv_layers_match_reference():
    rng = np.random.default_rng(3)
    w1 = rng.integers(-128, 128, (4, 2, 3, 3))
    w2 = rng.integers(-128, 128, (4, 2, 3, 3))  # groups=2: 2 of the 4 input channels per group
    program = LoihiProgram([
        _input_layer((2, 6, 6)),
        Layer("conv", (4, 3, 3), Cuba(2000, 100, 150), w1, 0,
              stride=(2, 2), padding=(1, 1), name="c1"),
        Layer("conv", (4, 3, 3), Cuba(4096, 1000, 90, np.repeat(rng.integers(-20, 20, 4), 9), 6), w2, 1,
              stride=(1, 1), padding=(1, 1), groups=2, name="c2"),
        Layer("dense", (3,), Cuba(4096, 0, 200), rng.integers(-128, 128, (3, 36)), 0, flatten=True, name="d"),
    ])
    x = (rng.random((12, 2, 2, 6, 6)) < 0.4).astype(np.float32)
    _assert_matches_reference(program, x)


def test_threshold_is_strict():
    """v exactly at the threshold does not spike; one unit above does."""
    program = LoihiProgram([_input_layer((1,)),
                            Layer("dense", (1,), Cuba(4096, 0, 10), np.array([[10]]), 0, name="n")])
    x = np.array([1, 0, 1, 0], np.float32).reshape(4, 1, 1)
    sim = LoihiSimulator(program)
    out = sim.run(x, aligned=False, record_voltage=True)
    assert sim.voltages["n"].ravel().tolist() == [0, 640, 640, 0]  # 640 = 10 << 6 is not > 640
    assert out.ravel().tolist() == [0, 0, 0, 1]


def test_aligned_output_is_shifted_by_the_synaptic_delays():
    rng = np.random.default_rng(0)
    program = _random_dense_program(rng, 4096, 0, 0, 6)
    x = (rng.random((10, 2, 5)) < 0.5).astype(np.float32)
    sim = LoihiSimulator(program)
    raw = sim.run(np.concatenate([x, np.zeros_like(x[:2])]), aligned=False)
    np.testing.assert_array_equal(sim.run(x), raw[2:])
    with pytest.raises(ValueError, match=r"expects input \[T, N, \*\(5,\)\]"):
        sim.run(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        sim.run(np.full((3, 1, 5), np.nan))


# --- netx files ---


def _conv_program(rng) -> LoihiProgram:
    return LoihiProgram([
        _input_layer((2, 6, 6)),
        Layer("conv", (4, 3, 3), Cuba(4096, 1024, 300), rng.integers(-128, 128, (4, 2, 3, 3)), 1,
              stride=(2, 2), padding=(1, 1), name="c1"),
        Layer("dense", (5,), Cuba(2048, 512, 400), rng.integers(-128, 128, (5, 36)), 1,
              rec_weight=rng.integers(-128, 128, (5, 5)), flatten=True, name="rec"),
        Layer("dense", (3,), Cuba(4096, 0, 200, rng.integers(-100, 100, 3), 6), rng.integers(-128, 128, (3, 5)), 0,
              name="out"),
    ])


def test_netx_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(1)
    program = _conv_program(rng)
    path = tmp_path / "net.h5"
    write_netx(program, path)
    with h5py.File(path, "r") as f:
        assert sorted(f["layer"].keys()) == ["0", "1", "2", "3", "4"]
        types = [f[f"layer/{i}/type"] for i in range(5)]
        assert all(t.dtype == np.dtype("S10") and t.shape == (1,) for t in types)
        assert [t[0] for t in types] == [b"input", b"conv", b"flatten", b"dense_rec", b"dense"]
        conv, rec, dense = f["layer/1"], f["layer/3"], f["layer/4"]
        assert conv["weight"].dtype == np.float32 and conv["weight"].shape == (4, 2, 3, 3)
        np.testing.assert_array_equal(conv["weight"][()], program.layers[1].weight * 2)  # mantissa << exponent
        assert [conv[k][()].tolist() for k in ("stride", "padding", "dilation")] == [[2, 2], [1, 1], [1, 1]]
        assert conv["shape"][()].tolist() == [4, 3, 3] and int(conv["groups"][()]) == 1
        assert rec["weight"].shape == (5, 36) and rec["weight_rec"].shape == (5, 5)
        assert dense["weight"].dtype == np.float32 and dense["weight"].shape == (3, 5)
        np.testing.assert_array_equal(dense["bias"][()], program.layers[3].neuron.bias)
        neuron = rec["neuron"]
        assert neuron["type"][0] == b"CUBA"
        assert [int(neuron[k][()]) for k in ("iDecay", "vDecay", "vThMant")] == [2048, 512, 400]
        assert {"refDelay", "gradedSpike"} <= set(neuron.keys())
    back = read_netx(path)
    assert [layer.kind for layer in back.layers] == ["input", "conv", "dense", "dense"]
    for a, b in zip(program.layers[1:], back.layers[1:]):
        np.testing.assert_array_equal(a.weight << a.weight_exp, b.weight << b.weight_exp)
        assert (a.stride, a.padding, a.neuron.i_decay, a.neuron.v_decay, a.neuron.vth_mant) == \
               (b.stride, b.padding, b.neuron.i_decay, b.neuron.v_decay, b.neuron.vth_mant)
    x = (rng.random((8, 2, 2, 6, 6)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(LoihiSimulator(program).run(x), LoihiSimulator(back).run(x))
    write_netx(back, tmp_path / "again.h5")  # the graph view round-trips too
    g = read(path)
    assert [n.op for n in g] == ["input", "conv2d", "neuron", "flatten", "linear", "add", "neuron", "linear",
                                 "linear", "neuron", "output"]


def _corrupt(path, edit):
    with h5py.File(path, "a") as f:
        edit(f)


@pytest.mark.parametrize("edit,message", [
    (lambda f: f["layer/1"].__delitem__("weight"), r"layer/1: missing dataset 'weight'"),
    (lambda f: (f["layer/1"].__delitem__("weight"), f["layer/1"].create_dataset("weight", data=np.array([b"x"]))),
     r"layer/1: 'weight' must be numeric"),
    (lambda f: (f["layer/3"].__delitem__("type"), f["layer/3"].create_dataset("type", (1,), "S10", [b"spiral"])),
     r"layer/3: unknown layer type 'spiral'"),
    (lambda f: (f["layer/3"].__delitem__("type"), f["layer/3"].create_dataset("type", (1,), "S10", [b"pool"])),
     r"layer/3: layer type 'pool' is not implemented by netx"),
    (lambda f: (f["layer/4"].__delitem__("weight"), f["layer/4"].create_dataset("weight", data=np.full((3, 5), .5))),
     r"layer/4: 'weight' must hold integers"),
    (lambda f: (f["layer/4"].__delitem__("weight"), f["layer/4"].create_dataset("weight", data=np.ones((3, 4)))),
     r"layer/4: 'weight' has shape \(3, 4\), expected \(3, 5\)"),
    (lambda f: f["layer/1/neuron"].__delitem__("vDecay"), r"layer/1/neuron: missing dataset 'vDecay'"),
    (lambda f: (f["layer/1/neuron"].__delitem__("iDecay"), f["layer/1/neuron"].create_dataset("iDecay", data=5000)),
     r"iDecay=5000 is outside the 12-bit decay range"),
    (lambda f: f.__delitem__("layer/2"), r"layers must be numbered 0..3"),
])
def test_netx_reader_rejects_malformed_files(tmp_path, edit, message):
    path = tmp_path / "net.h5"
    write_netx(_conv_program(np.random.default_rng(2)), path)
    _corrupt(path, edit)
    with pytest.raises(FormatError, match=message) as e:
        read_netx(path)
    assert str(path) in str(e.value)


def test_netx_reader_rejects_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "net.h5"
    write_netx(_conv_program(np.random.default_rng(2)), path)
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match="cut.h5"):
        read_netx(tmp_path / "cut.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(FormatError, match="not a readable HDF5 file"):
        read_netx(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=1)
    with pytest.raises(FormatError, match="missing group 'layer'"):
        read_netx(tmp_path / "other.h5")


def test_reads_a_slayer_style_file(tmp_path):
    """The layout lava-dl slayer's export_hdf5 writes: float32 weights x 64 (even integers), 5-d conv
    weights, variable-length strings, an input layer with its own neuron."""
    rng = np.random.default_rng(4)
    w_conv = (rng.integers(-128, 128, (3, 1, 3, 3, 1)) * 2).astype(np.float32)
    w_dense = (rng.integers(-128, 128, (2, 48)) * 2).astype(np.float32)
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as f:
        def layer(i, kind, shape, neuron=True):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])
            g.create_dataset("shape", data=np.array(shape))
            if neuron:
                for key, value in {"type": "CUBA", "iDecay": 1024, "vDecay": 128, "vThMant": 80, "refDelay": 1,
                                   "gradedSpike": False}.items():
                    g.create_dataset(f"neuron/{key}", data=value)
            return g
        layer(0, "input", [1, 8, 8])
        g = layer(1, "conv", [3, 4, 4])
        g.create_dataset("weight", data=w_conv)
        for key, value in {"stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "groups": 1}.items():
            g.create_dataset(key, data=value)
        layer(2, "flatten", [48], neuron=False)
        layer(3, "dense", [2]).create_dataset("weight", data=w_dense)
    program = read_netx(path)
    np.testing.assert_array_equal(program.layers[1].weight << program.layers[1].weight_exp, w_conv[..., 0])
    np.testing.assert_array_equal(program.layers[2].weight << program.layers[2].weight_exp, w_dense)
    assert program.layers[2].flatten and program.layers[1].neuron.vth_mant == 80
    g = read(path)
    conv = g.node(next(n.id for n in g if n.op == "conv2d"))
    np.testing.assert_array_equal(conv.params["weight"], w_conv[..., 0] / 64)  # slayer's units
    neuron = g.node(next(n.id for n in g if n.op == "neuron"))
    assert neuron.attrs["model"] == "CubaLIF" and neuron.attrs["tau_syn"] == 4.0 and neuron.attrs["tau_mem"] == 32.0


# --- the mapping pass ---


def _chain(model_attrs, *, pool=False, relu=False, bias=False, conv1d=False):
    g = snnir.Graph()
    x = g.add_input((1, 6) if conv1d else (2, 6, 6))
    rng = np.random.default_rng(0)
    params = {"weight": rng.normal(0, 0.3, (4, 1, 3) if conv1d else (4, 2, 3, 3)).astype(np.float32)}
    if bias:
        params["bias"] = np.full(4, 0.1, np.float32)
    h = g.add_node("conv1d" if conv1d else "conv2d", [x], params=params, attrs={"stride": 2, "padding": 1}, id="conv")
    if relu:
        h = g.add_node("relu", [h], id="act")
    h = g.add_node("neuron", [h], attrs=model_attrs, id="lif")
    if pool:
        h = g.add_node("maxpool2d", [h], attrs={"kernel_size": 3}, id="pool")
    h = g.add_node("flatten", [h])
    size = 4 * 3 if conv1d else (4 if pool else 36)
    h = g.add_node("linear", [h], params={"weight": rng.normal(0, 0.3, (3, size)).astype(np.float32)})
    g.add_output(g.add_node("neuron", [h], attrs={"model": "IF"}, id="out"))
    return g


@pytest.mark.parametrize("kwargs,node,reason", [
    ({"model_attrs": {"model": "LIF", "v_reset": None}}, "lif", "soft reset"),
    ({"model_attrs": {"model": "LIF", "v_reset": -0.5}}, "lif", "v_reset=-0.5"),
    ({"model_attrs": {"model": "QIF"}}, "lif", "QIF has no Loihi equivalent"),
    ({"model_attrs": {"model": "LIF"}, "pool": True}, "pool", "use a strided conv"),
    ({"model_attrs": {"model": "LIF"}, "relu": True}, "act", "ReLU"),
    ({"model_attrs": {"model": "LIF"}, "conv1d": True}, "conv", "convolutions are 2-d"),
    ({"model_attrs": {"model": "CubaLIF", "tau_syn": 4.0}, "bias": True}, "lif", "adds the bias to the voltage"),
])
def test_to_loihi_refuses_what_loihi_cannot_express(kwargs, node, reason):
    with pytest.raises(LoihiMappingError, match=reason) as e:
        to_loihi(_chain(**kwargs))
    assert repr(node) in str(e.value)


def test_to_loihi_refuses_branches():
    g = snnir.Graph()
    x = g.add_input((4,))
    a = g.add_node("linear", [x], params={"weight": np.eye(4, dtype=np.float32)})
    b = g.add_node("linear", [x], params={"weight": np.eye(4, dtype=np.float32)})
    g.add_output(g.add_node("neuron", [g.add_node("add", [a, b], id="merge")], attrs={"model": "IF"}))
    with pytest.raises(LoihiMappingError, match="one chain"):
        to_loihi(g)


def _run_float(g, x):
    module = snnir.compile(g, backend="torch").eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("attrs", [
    {"model": "IF"},
    {"model": "LIF", "tau": 2.0, "decay_input": True},
    {"model": "LIF", "tau": 4.0, "decay_input": False},
    {"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 8.0},
    {"model": "ParametricLIF", "init_tau": 2.0},
])
def test_mapped_graph_keeps_the_float_behaviour(attrs):
    """Quantization to 8 bits and the fixed-point arithmetic change few spikes; on IF the mapped float
    graph and the chip agree exactly (no decay rounding, ties resolved by the mapped threshold)."""
    attrs = dict(attrs)
    if attrs["model"] == "ParametricLIF":
        attrs.pop("init_tau")
    g = _chain(attrs)
    if attrs["model"] == "ParametricLIF":
        g.node("lif").params["w"] = np.zeros((), np.float32)  # tau = 2
        g.validate()
    rng = np.random.default_rng(1)
    x = (rng.random((24, 8, 2, 6, 6)) < 0.4).astype(np.float32)
    mapped = to_loihi(g)
    assert (_run_float(g, x) == _run_float(mapped, x)).mean() > 0.97
    rows = compare(mapped, x, verbose=False)
    assert [r.layer for r in rows] == ["input", "lif", "out"]
    least = 1.0 if attrs["model"] == "IF" else 0.97
    assert all(r.agreement >= least for r in rows), rows
    assert rows[1].float_rate > 0.02  # the comparison is not between silent layers


def test_decay_input_is_folded_exactly():
    """LIF(decay_input=True): v + (x - v)/tau equals LIF(decay_input=False) fed x/tau, so with weights
    already on the 8-bit grid the mapped layer's voltage is k times the original's."""
    g = snnir.Graph()
    x = g.add_input((3,))
    w = np.array([[0.5, -0.25, 0.75], [0.125, 1.0, -0.5]], np.float32)
    lin = g.add_node("linear", [x], params={"weight": w})
    g.add_output(g.add_node("neuron", [lin], attrs={"model": "LIF", "tau": 2.0, "v_threshold": 100.0}, id="n"))
    m = to_loihi(g)
    k = m.node("linear").params["weight"][0, 0] * 2.0 / 0.5  # weights became k * w / tau
    assert m.node("n").attrs["decay_input"] is False and m.node("n").attrs["tau"] == 2.0
    xs = np.random.default_rng(0).random((10, 4, 3)).astype(np.float32)
    finals = []
    for graph in (g, m):
        module = snnir.compile(graph).eval()
        with torch.no_grad():
            module(torch.from_numpy(xs))
        finals.append(module.neurons()["n"].v.numpy())
    np.testing.assert_allclose(finals[1], k * finals[0], rtol=1e-6)


def test_compile_export_read_round_trip(tmp_path):
    g = _chain({"model": "LIF", "tau": 2.0})
    x = (np.random.default_rng(2).random((12, 3, 2, 6, 6)) < 0.5).astype(np.float32)
    sim = snnir.compile(g, backend="lava")
    assert isinstance(sim, LoihiSimulator)
    snnir.export(g, tmp_path / "net.h5", format="lava")
    back = read(tmp_path / "net.h5")
    np.testing.assert_array_equal(snnir.compile(back, backend="lava").run(x), sim.run(x))
    # the graph read back is the mapped float network: torch runs it too
    assert (_run_float(back, x) == sim.run(x)).mean() > 0.97
    snnir.save(back, tmp_path / "net.snnir")
    np.testing.assert_array_equal(snnir.compile(snnir.load(tmp_path / "net.snnir"), backend="lava").run(x), sim.run(x))


@pytest.mark.skipif(lava_available(), reason="lava-nc is importable here; the unavailable path is not taken")
def test_run_lava_says_clearly_when_lava_is_missing(tmp_path):
    write_netx(_conv_program(np.random.default_rng(0)), tmp_path / "net.h5")
    with pytest.raises(LavaUnavailableError, match="Python < 3.11"):
        run_lava(tmp_path / "net.h5", np.zeros((2, 1, 2, 6, 6)))


@pytest.mark.skipif(not lava_available(), reason="lava-nc/lava-dl need Python < 3.11; not importable here")
def test_lava_matches_the_simulator(tmp_path):  # pragma: no cover - runs only where Lava installs
    program = _conv_program(np.random.default_rng(0))
    write_netx(program, tmp_path / "net.h5")
    x = (np.random.default_rng(1).random((10, 1, 2, 6, 6)) < 0.5).astype(np.float32)
    np.testing.assert_array_equal(run_lava(tmp_path / "net.h5", x), LoihiSimulator(program).run(x, aligned=False))


def test_loihi_digits_example_keeps_its_accuracy():
    """A short run of examples/loihi_digits.py: the chip's accuracy stays within 1 point."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "loihi_digits.py"
    spec = importlib.util.spec_from_file_location("loihi_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(epochs=4, T=8)
    assert result["accuracy_float"] > 0.85
    assert abs(result["accuracy_loihi"] - result["accuracy_mapped_float"]) <= 0.01
    assert abs(result["accuracy_loihi"] - result["accuracy_float"]) <= 0.02
    assert all(a > 0.95 for a in result["agreement"].values())


def test_recurrent_dense_layer_maps_to_dense_rec(tmp_path):
    """A neuron fed back through its own linear (an snnir cycle) becomes a netx dense_rec layer; the
    chip's one-step delay matches the cycle's previous-step read."""
    rng = np.random.default_rng(3)
    g = snnir.Graph()
    x = g.add_input((6,))
    syn = g.add_node("linear", [x], params={"weight": rng.normal(0, 0.6, (5, 6)).astype(np.float32)}, id="syn")
    add = g.add_node("add", [syn], id="sum")
    n = g.add_node("neuron", [add], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 4.0}, id="n")
    rec = g.add_node("linear", [n], params={"weight": rng.normal(0, 0.4, (5, 5)).astype(np.float32)}, id="rec")
    g.add_edge(rec, add, port=1, offset=1)
    g.add_output(n)
    spikes = (rng.random((30, 6, 6)) < 0.4).astype(np.float32)
    rows = compare(g, spikes, verbose=False)
    assert rows[1].float_rate > 0.05 and rows[1].agreement > 0.97
    snnir.export(g, tmp_path / "rec.h5", format="lava")
    with h5py.File(tmp_path / "rec.h5", "r") as f:
        assert f["layer/1/type"][0] == b"dense_rec" and f["layer/1/weight_rec"].shape == (5, 5)
    np.testing.assert_array_equal(snnir.compile(read(tmp_path / "rec.h5"), backend="lava").run(spikes),
                                  snnir.compile(g, backend="lava").run(spikes))

"""Loihi backend: the simulator against an independent integer loop, netx files, the mapping pass."""

from fractions import Fraction

import h5py
import netx_files
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


def ref_wrap32(x: int) -> int:
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def ref_wrap24(x: int) -> int:
    """Lava's current wrap (lava.proc.lif PyLifModelBitAcc): one step of 2^24, +2^23 stays."""
    if x > 2 ** 23:
        return x - 2 ** 24
    if x <= -(2 ** 23):
        return x + 2 ** 24
    return x


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
                out.append((ref_shift(total, e) + 2 ** 23) % 2 ** 24 - 2 ** 23)  # Lava's signed_clamp
    return out


def ref_neuron(u, v, a, i_decay, v_decay, vth, bias, bias_exp):
    """One Loihi CUBA neuron step in plain ints: returns (u, v, spike)."""
    u = ref_wrap24(ref_wrap32(ref_rtz(u * (4096 - i_decay), 12) + ref_wrap32(a * 64)))
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
                if li == 0 and c is None:  # the input spikes pass on
                    out = [int(b) for b in x[t, n].reshape(-1)]
                    spikes[0][t, n], volts[0][t, n] = out, out
                    cur.append(out)
                    continue
                if li == 0:  # input neurons: current trunc(weight x + bias)
                    w_in, b_in = layer.extra.get("weight", 64), layer.extra.get("bias", 0)
                    a = [int(w_in * float(b) + b_in) for b in x[t, n].reshape(-1)]  # int() truncates
                    bias = [0] * size[0]
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
                                                      bias[k], c.bias_exp)
                    out.append(s)
                    spikes[li][t, n, k], volts[li][t, n, k] = s, v[li][k]
                cur.append(out)
            prev = cur
    return spikes, volts


def _input_layer(shape) -> Layer:
    return Layer("input", shape, None, name="in")


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
        Layer("conv", (4, 3, 3), Cuba(4096, 1024, 300, np.repeat([-7, 12, 0, 31], 9)),
              rng.integers(-128, 128, (4, 2, 3, 3)), 1, stride=(2, 2), padding=(1, 1), name="c1"),
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
        assert set(f["layer/0"].keys()) == {"type", "shape"}  # net.inp feeds the first synapse
        conv, rec, dense = f["layer/1"], f["layer/3"], f["layer/4"]
        np.testing.assert_array_equal(conv["bias"][()], [-7, 12, 0, 31])  # per channel, as netx stores it
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
    assert back.layers[0].neuron is None
    for a, b in zip(program.layers[1:], back.layers[1:]):
        np.testing.assert_array_equal(a.effective_weight(), b.effective_weight())
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


def _replace(group, key, **kwargs):
    if key in group:
        del group[key]
    group.create_dataset(key, **kwargs)


@pytest.mark.parametrize("edit,message", [
    (lambda f: f["layer/1"].__delitem__("weight"), r"layer/1/weight: missing"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.array([b"x"] * 15)), r"layer/4/weight: must be numeric"),
    (lambda f: _replace(f["layer/3"], "type", shape=(1,), dtype="S10", data=[b"spiral"]),
     r"layer/3/type: unknown layer type 'spiral'"),
    (lambda f: _replace(f["layer/3"], "type", shape=(1,), dtype="S10", data=[b"pool"]),
     r"layer/3/type: layer type 'pool' is not implemented by netx"),
    (lambda f: _replace(f["layer/3"], "type", data=np.array([7])), r"layer/3/type: must be one string"),
    (lambda f: _replace(f["layer/3"], "type", shape=(1,), dtype="S10", data=[b"input"]),
     r"layer/3/type: only the first layer may be of type 'input'"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.full((3, 5), .5)), r"layer/4/weight: must hold integers"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.full((3, 5), np.nan)), r"layer/4/weight: must hold integers"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.ones((3, 4))),
     r"layer/4/weight: has shape \(3, 4\), expected \(3, 5\)"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.full((3, 5), 300.0)),
     r"layer/4/weight: weights in \[300, 300\] are beyond what netx loads"),
    (lambda f: _replace(f["layer/4"], "weight", data=np.zeros((3, 5))), r"layer/4/weight: every weight is 0"),
    (lambda f: _replace(f["layer/4"], "weight", shape=(1 << 31,), dtype="f4", chunks=(1 << 16,)),
     r"layer/4/weight' \(shape \(2147483648,\), float32\) declares 8 GiB, above the limit"),
    (lambda f: _replace(f["layer/4"], "delay", data=np.ones(3)), r"layer/4/delay: synaptic delays"),
    (lambda f: (f["layer/4"].__delitem__("weight"), f["layer/4"].create_dataset("weight/real", data=np.ones((3, 5)))),
     r"layer/4/weight: complex weights"),
    (lambda f: _replace(f["layer/4"], "bias", data=np.full(3, 5000.0)), r"layer/4/bias: value 5000 is above 4095"),
    (lambda f: _replace(f["layer/4"], "bias", data=np.ones(2)), r"layer/4/bias: a dense bias has one value per neuron"),
    (lambda f: _replace(f["layer/4"], "shape", data=np.array([1 << 40])), r"layer/4/shape: value 1099511627776 is "),
    (lambda f: _replace(f["layer/4"], "shape", data=np.array([4096, 4096, 4096])),
     r"layer/4/shape: \(4096, 4096, 4096\) declares more than"),
    (lambda f: _replace(f["layer/1"], "shape", data=np.array([4, 0, 3])), r"layer/1/shape: value 0 is below 1"),
    (lambda f: _replace(f["layer/1"], "shape", data=np.array([4, 4, 4])), r"layer/1/shape: \(4, 4, 4\) does not match"),
    (lambda f: _replace(f["layer/1"], "stride", data=np.array([0, 2])), r"layer/1/stride: value 0 is below 1"),
    (lambda f: _replace(f["layer/1"], "padding", data=np.array([1, 1, 1])), r"layer/1/padding: declares 3 elements"),
    (lambda f: _replace(f["layer/1"], "groups", data=3), r"layer/1/weight: weight \(4, 2, 3, 3\) with groups=3"),
    (lambda f: _replace(f["layer/1"], "bias", data=np.ones(5)), r"layer/1/bias: a conv bias has one value per channel"),
    (lambda f: _replace(f["layer/1"], "weight", data=np.ones((4, 2, 3))), r"layer/1/weight: conv weights must be"),
    (lambda f: f["layer/1"].__delitem__("neuron"), r"layer/1/neuron: missing \(netx needs a neuron group"),
    (lambda f: f["layer/1/neuron"].__delitem__("vDecay"), r"layer/1/neuron/vDecay: missing"),
    (lambda f: _replace(f["layer/1/neuron"], "iDecay", data=5000), r"layer/1/neuron/iDecay: value 5000 is above 4096"),
    (lambda f: _replace(f["layer/1/neuron"], "vThMant", data=-1), r"layer/1/neuron/vThMant: value -1 is below 0"),
    (lambda f: _replace(f["layer/1/neuron"], "vDecay", data=np.ones(3)), r"layer/1/neuron/vDecay: declares 3 elements"),
    (lambda f: _replace(f["layer/1/neuron"], "type", shape=(1,), dtype="S10", data=[b"SDNN"]),
     r"layer/1/neuron/type: neuron type 'SDNN' is not supported"),
    (lambda f: _replace(f["layer/1/neuron"], "messageBits", data=16), r"layer/1/neuron/messageBits: graded spikes"),
    (lambda f: (f["layer/1"].__delitem__("neuron"), f["layer/1"].create_dataset("neuron", data=1)),
     r"layer/1/neuron: must be a group"),
    (lambda f: f.__delitem__("layer/2"), r"layers must be numbered 0..3"),
    (lambda f: f["layer"].create_group("x"), r"layers must be numbered 0..5"),
    (lambda f: (f.__delitem__("layer/2"), f["layer"].create_dataset("2", data=1)), r"layer/2: must be a group"),
])
def test_netx_reader_rejects_malformed_files(tmp_path, edit, message):
    """Every malformed field is a FormatError naming the file and layer/<i>/<field>; nothing is allocated
    for a huge declared size (a 2^31-element chunked dataset occupies a few bytes on disk)."""
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
    with pytest.raises(FormatError, match="cannot open it as an HDF5 file"):
        read_netx(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=1)
    with pytest.raises(FormatError, match="layer: missing group"):
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
    np.testing.assert_array_equal(program.layers[1].effective_weight(), w_conv[..., 0])
    np.testing.assert_array_equal(program.layers[2].effective_weight(), w_dense)
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
    ({"model_attrs": {"model": "QIF"}}, "lif", r"QIF: the update of 'v' is non-linear \(term v\*\*2\)"),
    ({"model_attrs": {"model": "AdaptiveLIF"}}, "lif", "the update of 'w' must depend on itself and the input"),
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


# --- files in the layouts lava-dl slayer writes (tests/netx_files.py; the same run in real Lava in
# --- tests/test_lava_oracle.py) ---


@pytest.mark.parametrize("name", [*netx_files.SLAYER_LAYOUTS, *netx_files.LIMITS])
def test_slayer_layouts_read_simulate_and_round_trip(tmp_path, name):
    """Each file reads, simulates as the independent integer loop does, and its graph view exports
    back to a file that simulates identically (input neurons, their transform and decays kept)."""
    path, x = {**netx_files.SLAYER_LAYOUTS, **netx_files.LIMITS}[name](tmp_path)
    program = read_netx(path)
    _assert_matches_reference(program, x)
    g = read(path)
    snnir.export(g, tmp_path / "again.h5", format="lava")
    again = LoihiSimulator(read_netx(tmp_path / "again.h5"))
    first = LoihiSimulator(program)
    np.testing.assert_array_equal(again.run(x, aligned=False), first.run(x, aligned=False))
    assert [s.sum() for s in again.spikes.values()] == [s.sum() for s in first.spikes.values()]


def test_slayer_input_neuron_keeps_its_dynamics_and_transform(tmp_path):
    """slayer's Input block: the neurons keep their decays and threshold; weight/bias (written as (1,)
    arrays) are the input transform only - the current is trunc(96 x + 6), no neuron bias."""
    path, x = netx_files.tiny_conv(tmp_path)
    program = read_netx(path)
    first = program.layers[0]
    assert (first.neuron.i_decay, first.neuron.v_decay, first.neuron.vth_mant) == (1024, 123, 64)
    assert first.extra == {"weight": 96, "bias": 6} and first.neuron.bias is None
    sim = LoihiSimulator(program)
    x = np.zeros((1, 1, 2, 8, 8))
    x[0, 0, 0] = 0.5  # graded input: trunc(96 * 0.5 + 6) = 54
    sim.run(x, aligned=False, record_voltage=True)
    v = sim.voltages["layer0"][0, 0]  # after one step v = u = current << 6, below the threshold 64 << 6
    assert np.all(v[0] == 54 << 6) and np.all(v[1] == 6 << 6)
    g = read(path)
    assert [g.node(n).op for n in ("layer0_transform", "layer0")] == ["affine", "neuron"]
    assert g.node("layer0_transform").params["weight"] == 1.5 and g.node("layer0_transform").params["bias"] == 6 / 64


def test_dense_shape_n11_default_neuron_and_zero_decays(tmp_path):
    path, x = netx_files.decays_and_defaults(tmp_path)
    program = read_netx(path)
    assert program.layers[1].shape == (5,)  # slayer's (5, 1, 1): netx uses the product
    c = program.layers[2].neuron  # no neuron group: netx's non-leaky integrator that never fires
    assert (c.i_decay, c.v_decay, c.vth_mant) == (0, 4096, 1 << 17)
    g = read(path)  # decays of 0 are infinite time constants: CubaLIFDecay (decay factors of 1) holds them
    assert g.node("layer1").attrs["model"] == "CubaLIFDecay" and g.node("layer1").attrs["c_decay"] == 1.0
    sim = LoihiSimulator(program)
    sim.run(x, aligned=False)
    assert sim.spikes["layer1"].sum() > 0 and sim.spikes["layer2"].sum() == 0


def test_lava_weight_handling_at_the_limits(tmp_path):
    """What Lava's Dense does with file weights (measured with real Lava, tests/test_lava_oracle.py):
    -256 in a matrix without positive weights acts as -254; a mixed matrix is clipped to [-256, 254];
    odd weights get exponent -1 and stay exact; 255 in an all-positive matrix stays."""
    program = read_netx(netx_files.inhibitory_256(tmp_path)[0])
    w = program.layers[1]
    with h5py.File(tmp_path / "inhibitory.net") as f:
        raw = f["layer/1/weight"][()].astype(int)
    expected = raw.copy()
    expected[raw == -256] = -254
    np.testing.assert_array_equal(w.float_weight(), expected)
    program = read_netx(netx_files.clipped_and_odd(tmp_path)[0])
    with h5py.File(tmp_path / "clipped.net") as f:
        raws = [f[f"layer/{i}/weight"][()].astype(int) for i in (1, 2, 3)]
    np.testing.assert_array_equal(program.layers[1].float_weight(), np.clip(raws[0], -256, 254))
    assert program.layers[2].weight_exp == -1
    np.testing.assert_array_equal(program.layers[2].float_weight(), raws[1])
    np.testing.assert_array_equal(program.layers[3].float_weight(), raws[2])


def test_current_wraps_as_lava_does(tmp_path):
    """The current reaches exactly +2^23 and -2^23 at step 128: Lava keeps +2^23 and maps -2^23 to
    +2^23, so both spike (a modular wrap makes both -2^23: silent); a step later neuron 0 wraps negative."""
    path, x = netx_files.current_wrap(tmp_path)
    sim = LoihiSimulator(read_netx(path))
    sim.run(x, aligned=False, record_voltage=True)
    assert [sim.spikes["layer1"][t, 0].tolist() for t in (127, 128, 129)] == [[1, 0], [1, 1], [0, 1]]


def test_reader_input_shape_for_a_strided_first_conv(tmp_path):
    with h5py.File(tmp_path / "c.net", "w") as f:
        netx_files.layer(f, 0, "conv", [3, 4, 4], {"iDecay": 4096, "vDecay": 0, "vThMant": 10},
                         **netx_files.conv_fields(np.random.default_rng(0), 3, 2))
    with pytest.raises(FormatError, match="pass input_shape"):
        read_netx(tmp_path / "c.net")
    assert read_netx(tmp_path / "c.net", input_shape=(2, 8, 8)).input_shape == (2, 8, 8)
    with pytest.raises(FormatError, match=r"does not match the convolution's output"):
        read_netx(tmp_path / "c.net", input_shape=(2, 20, 20))


def test_writer_refuses_weights_lava_would_change(tmp_path):
    base = [_input_layer((3,)), Layer("dense", (2,), Cuba(4096, 0, 10), np.array([[127, -128, 5], [0, 1, 2]]), 2)]
    with pytest.raises(LoihiMappingError, match="would clip these weights"):
        write_netx(LoihiProgram(base), tmp_path / "x.h5")  # 127 << 2 = 508
    inhibitory = [_input_layer((3,)), Layer("dense", (2,), Cuba(4096, 0, 10), np.array([[-128, -3, 0], [-1, 0, 0]]), 1)]
    with pytest.raises(LoihiMappingError, match="must not contain -256"):
        write_netx(LoihiProgram(inhibitory), tmp_path / "x.h5")
    zero = [_input_layer((3,)), Layer("dense", (2,), Cuba(4096, 0, 10), np.zeros((2, 3), int), 0)]
    with pytest.raises(LoihiMappingError, match="every weight is 0"):
        write_netx(LoihiProgram(zero), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()  # checked before anything is written


def test_example_netx_in_lava_runs_without_lava(monkeypatch):
    import sys
    from pathlib import Path

    monkeypatch.delenv("SNNIR_LAVA_PYTHON", raising=False)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import netx_in_lava

    rows = netx_in_lava.main(T=10)
    assert all(sim > 0 and lava is None for sim, lava, _ in rows.values()), rows


@pytest.mark.parametrize("name", ["tiny_conv", "pilotnet", "no_input"])
def test_graph_view_of_slayer_files_runs_in_torch_like_the_chip(tmp_path, name):
    """``read`` gives the float network (input neurons included); torch runs it within float rounding
    of the fixed-point chip (rounding toward zero of the decays is the difference)."""
    path, x = netx_files.SLAYER_LAYOUTS[name](tmp_path)
    rows = compare(read(path), x, verbose=False)
    assert all(r.agreement > 0.95 for r in rows), rows
    assert all(r.fixed_rate > 0 for r in rows)

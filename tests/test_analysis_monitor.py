"""``snnir.analysis.record``: recorded spikes and rates equal the modules' outputs, recorded voltages
equal ``store_v_seq``, the memory bound holds, and nothing stays attached after the block."""

import sys

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.analysis import record

T, N = 12, 3


def _net(step_mode="m", fused=True):
    torch.manual_seed(0)
    block = torch.nn.Sequential(snn.Linear(10, 10), snn.LIF(tau=2.0, fused=fused))
    net = torch.nn.Sequential(snn.Linear(6, 10), snn.LIF(tau=2.0, fused=fused), block, snn.Linear(10, 4),
                              snn.IF(fused=fused))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.25, 0.8)
    return snn.set_step_mode(net, step_mode)


def _x(seed=1, steps=T):
    return torch.rand(steps, N, 6, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fused", [True, False])
def test_spikes_rates_and_voltages_equal_the_modules(fused):
    net, x = _net(fused=fused), _x()
    with record(net, what=("spikes", "v"), traces=True) as rec:
        out = net(x)
    assert rec.keys == ["1", "2.1", "4"]  # module paths, nesting included
    assert torch.equal(rec.spikes("4"), out)
    snn.reset(net)
    hidden = net[:2](x).detach()
    assert torch.equal(rec.spikes("1"), hidden)
    assert 0.05 < hidden.mean() < 0.95
    assert rec.rate("1") == pytest.approx(hidden.mean().item())
    np.testing.assert_allclose(rec.neuron_rates("1"), hidden.mean((0, 1)).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(rec.spike_counts("2.1"), rec.spikes("2.1").sum((0, 1)).numpy())
    # voltages: what the neuron itself keeps with store_v_seq
    snn.reset(net)
    for m in net.modules():
        if isinstance(m, snn.Neuron):
            m.store_v_seq = True
    net(x)
    for key, m in (("1", net[1]), ("2.1", net[2][1]), ("4", net[4])):
        assert torch.equal(rec.v(key), m.v_seq), key
        mean_v = m.v_seq.detach().double().mean((0, 1)).numpy()
        np.testing.assert_allclose(rec.mean(key, "v"), mean_v, rtol=1e-6, atol=1e-9)


def test_single_step_calls_are_stacked_in_time():
    multi, x = _net("m"), _x()
    for m in multi.modules():
        if isinstance(m, snn.Neuron):
            m.store_v_seq = True
    out = multi(x).detach()
    expected_v = multi[2][1].v_seq.detach().clone()
    single = _net("s")
    with record(single, what=("spikes", "v"), traces=True) as rec:
        for t in range(T):
            single(x[t])
    assert rec.steps["4"] == T
    assert torch.equal(rec.spikes("4"), out)
    # a [N, 10] GEMM per step may round differently from one [T*N, 10] GEMM: equal to float32 rounding
    torch.testing.assert_close(rec.v("2.1"), expected_v, rtol=0, atol=1e-5)


def test_nothing_stays_attached_and_store_v_seq_comes_back():
    net = _net()
    lifs = [m for m in net.modules() if isinstance(m, snn.Neuron)]
    with record(net, what="v") as rec:
        net(_x())
        assert all(m.store_v_seq for m in lifs) and all(m._forward_hooks for m in lifs)
    assert not any(m.store_v_seq for m in lifs) and not any(m._forward_hooks for m in lifs)
    assert all(m.v_seq is None for m in lifs)
    steps = rec.steps["1"]
    net(_x())  # after the block nothing is recorded
    assert rec.steps["1"] == steps
    with pytest.raises(KeyError, match="'spikes' was not recorded"):
        rec.rate("1")


def test_memory_bound_rates_only_and_max_steps():
    net = _net()
    with record(net) as short:
        net(_x(steps=10))
    snn.reset(net)
    with record(net) as long:
        for seed in range(5):
            snn.reset(net)
            net(_x(seed, steps=200))
    # rates only: one float64 per neuron, however many steps ran
    assert long.nbytes() == short.nbytes() == 8 * (10 + 10 + 4)
    assert long.steps["1"] == 1000
    snn.reset(net)
    with record(net, traces=True, max_steps=7) as rec:
        outs = []
        for seed in range(3):
            outs.append(net(_x(seed, steps=5)))  # 15 steps of one continuing sequence
    assert rec.spikes("4").shape == (7, N, 4)
    assert torch.equal(rec.spikes("4"), torch.cat(outs)[-7:])
    assert rec.nbytes() <= 8 * 24 + 7 * N * 24  # the sums + at most 7 one-byte steps per neuron
    assert rec.rate("4") == pytest.approx(torch.cat(outs).mean().item())  # rates still cover every step


def test_compiled_graph_is_keyed_by_node_id_including_recurrent_regions(rng):
    g = snnir.Graph()
    x = g.add_input((6,))
    fc = g.add_node("linear", [x], params={"weight": rng.standard_normal((8, 6)).astype(np.float32) * 2}, id="fc")
    s = g.add_node("add", [fc], id="sum")
    hid = g.add_node("neuron", [s], attrs={"model": "LIF", "tau": 2.0}, id="hid")
    rec_w = g.add_node("linear", [hid], params={"weight": rng.standard_normal((8, 8)).astype(np.float32)}, id="rec")
    g.add_edge(rec_w, s, port=1)
    fc2 = g.add_node("linear", [hid], params={"weight": rng.standard_normal((3, 8)).astype(np.float32) * 2}, id="fc2")
    g.add_output(g.add_node("neuron", [fc2], attrs={"model": "IF"}, id="out"))
    module = snnir.compile(g).eval()
    module.capture = {"hid", "out"}
    xs = torch.rand(T, N, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), record(module, what=("spikes", "v"), traces=True) as rec:
        module(xs)
    assert rec.keys == ["hid", "out"]
    assert torch.equal(rec.spikes("hid"), module.captured["hid"])  # a step region: called once per step
    assert torch.equal(rec.spikes("out"), module.captured["out"])
    assert torch.equal(rec.v("hid")[-1], module.layer("hid").v)
    # nested in a network: the graph's path is the prefix
    outer = torch.nn.Sequential(snn.Flatten(start_dim=2), module)
    module.reset()
    with torch.no_grad(), record(outer, keys="1.*") as rec2:
        outer(xs.reshape(T, N, 2, 3))
    assert sorted(rec2.rates()) == ["1.hid", "1.out"]
    assert rec2.rate("1.out") == pytest.approx(module.captured["out"].mean().item())


def test_outputs_records_every_layer():
    net, x = _net(), _x()
    with record(net, what="outputs", traces=True) as rec:
        net(x)
    assert rec.keys == ["0", "1", "2.0", "2.1", "3", "4"]
    snn.reset(net)
    np.testing.assert_allclose(rec.trace("0", "outputs").numpy(), net[0](x).detach().numpy())


def test_bad_arguments_are_named():
    net = _net()
    with pytest.raises(ValueError, match="choose from"):
        record(net, what="voltage")
    with pytest.raises(KeyError, match=r"no recordable module matches \['nope\*'\]"):
        record(net, keys="nope*")
    with pytest.raises(ValueError, match="max_steps"):
        record(net, traces=True, max_steps=0)
    with pytest.raises(ValueError, match="no snnir neuron"):
        record(torch.nn.Sequential(snn.Linear(2, 2)))
    with record(net) as rec:
        net(_x())
    with pytest.raises(ValueError, match="traces=True"):
        rec.spikes("1")
    with pytest.raises(KeyError, match="no recorded node 'x'"):
        rec.rate("x")


def test_plots(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    net = _net()
    with record(net, traces=True) as rec:
        net(_x())
    ax = rec.plot_raster("1", sample=1)
    assert len(ax.collections[0].get_offsets()) == int(rec.spikes("1")[:, 1].sum())
    fig = rec.plot_rates()
    assert len([a for a in fig.axes if a.has_data()]) == 3
    first = rec.summary().splitlines()[1].split()
    assert first[0] == "1" and float(first[3]) == pytest.approx(rec.rate("1"), abs=1e-4)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        rec.plot_rates()


def test_analyze_digits_example_runs(tmp_path):
    import re
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "analyze_digits.py"
    out = subprocess.run([sys.executable, str(script), "--epochs", "1", "--plots", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(re.search(r"test accuracy ([0-9.]+)", out.stdout).group(1)) > 0.3  # one epoch: well above chance (0.1)
    assert re.search(r"^total .* uJ$", out.stdout, re.M) and "ANN equivalent" in out.stdout
    assert (tmp_path / "raster.png").stat().st_size > 0 and (tmp_path / "rates.png").stat().st_size > 0

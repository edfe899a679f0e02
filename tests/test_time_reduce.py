"""Reductions over the time axis (``x.mean(0)`` / ``x.sum(0)`` on ``[T, N, ...]``): the ``time_reduce``
op, traced from torch modules, compiled (values and gradients against hand-written torch), run
streaming, saved, exported, counted, and refused where a graph running one step at a time cannot
hold the model."""

import numpy as np
import pytest
import torch
from peer_agreement import outputs_and_input_grads
from torch import nn

import snnir
from snnir import GraphError, TraceError
from snnir import nn as snn


def _graph(mode: str = "mean", head: bool = True) -> snnir.Graph:
    rng = np.random.default_rng(0)
    g = snnir.Graph()
    x = g.add_input((4,))
    h = g.add_node("linear", [x], params={"weight": rng.normal(size=(5, 4)).astype(np.float32)}, id="fc")
    r = g.add_node("time_reduce", [h], attrs={"mode": mode}, id="reduce")
    if head:
        r = g.add_node("tanh", [r], id="act")
        r = g.add_node("linear", [r], params={"weight": rng.normal(size=(3, 5)).astype(np.float32)}, id="head")
    g.add_output(r)
    return g.validate()


def _loop_reference(g: snnir.Graph, x: torch.Tensor, mode: str) -> torch.Tensor:
    """The graph by hand: a running sum over the steps, the head on the last one."""
    fc, head = (torch.tensor(g.node(n).params["weight"]) for n in ("fc", "head"))
    s = torch.zeros(x.shape[1], fc.shape[0])
    for t in range(x.shape[0]):
        s = s + x[t] @ fc.T
    reduced = s / x.shape[0] if mode == "mean" else s
    return torch.tanh(reduced) @ head.T


@pytest.mark.parametrize("mode", ["mean", "sum"])
def test_values_and_gradients_equal_a_hand_written_loop(mode):
    g = _graph(mode)
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    m = snnir.compile(g)
    y = m(xs[0])
    ref = _loop_reference(g, xs[1], mode)
    assert y.shape == (3, 3)  # the final step only: [N, ...], as the model's x.mean(0)
    torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
    w = torch.linspace(-1, 1, 9).view(3, 3)
    (y * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-6, atol=1e-7)
    fc = m.layer("fc").weight
    assert fc.grad is not None and fc.grad.abs().sum() > 0


def test_sum_is_mean_times_steps_and_equals_torch():
    x = torch.randn(5, 2, 4)
    outs = {mode: snnir.compile(_graph(mode, head=False))(x) for mode in ("mean", "sum")}
    fc = torch.tensor(_graph().node("fc").params["weight"])
    per_step = x @ fc.T
    torch.testing.assert_close(outs["sum"], per_step.sum(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outs["mean"], per_step.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outs["sum"] / 5, outs["mean"], rtol=1e-6, atol=1e-6)


def test_streaming_gives_the_running_value_and_chunks_continue_it():
    g = _graph("mean")
    x = torch.randn(6, 2, 4)
    single = snnir.compile(g, step_mode="s")
    running = [single(x[t]) for t in range(6)]
    fc, head = (torch.tensor(g.node(n).params["weight"]) for n in ("fc", "head"))
    for t in (0, 2, 5):  # step t: the head on the mean of steps 0..t
        torch.testing.assert_close(running[t], torch.tanh((x[:t + 1] @ fc.T).mean(0)) @ head.T, rtol=1e-5, atol=1e-6)
    whole = snnir.compile(g)(x)
    chunked = snnir.compile(g)
    chunked(x[:2])
    torch.testing.assert_close(chunked(x[2:]), whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(running[-1], whole, rtol=1e-5, atol=1e-6)


class _CSNN(nn.Module):
    """A SpikingJelly multi-step convolutional SNN that averages its output spikes over time."""

    def __init__(self, head_after_mean: bool) -> None:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate

        super().__init__()
        self.features = nn.Sequential(
            layer.Conv2d(1, 4, 3, padding=1), layer.BatchNorm2d(4), neuron.LIFNode(surrogate_function=surrogate.ATan()),
            layer.MaxPool2d(2), layer.Flatten(), layer.Linear(4 * 4 * 4, 10), neuron.IFNode())
        functional.set_step_mode(self, "m")
        with torch.no_grad():
            self.features[5].weight.mul_(6.0)  # so the last layer spikes
        self.head = nn.Linear(10, 3)
        self.head_after_mean = head_after_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.features(x)
        if self.head_after_mean:
            return self.head(s.mean(0))
        return s.mean(0)


@pytest.mark.parametrize("head_after_mean", [True, False])
def test_spikingjelly_multistep_csnn_with_mean_over_time(head_after_mean):
    pytest.importorskip("spikingjelly", reason="pip install --no-deps spikingjelly==2.0.0 (test reference)")
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    net = _CSNN(head_after_mean).eval()
    x = torch.rand(4, 3, 1, 8, 8) * 2
    g = snnir.trace(net, x)
    assert [n.op for n in g].count("time_reduce") == 1
    compiled = snnir.compile(g)
    outs, grads = outputs_and_input_grads((net, compiled), x, lambda: functional.reset_net(net))
    assert outs[0].shape == (3, 3 if head_after_mean else 10) and outs[0].abs().sum() > 0
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5 * float(grads[0].abs().max()))


def test_training_through_the_reduction_with_fused_neurons():
    torch.manual_seed(0)
    net = nn.Sequential(snn.Linear(6, 8), snn.LIF(), snn.Linear(8, 8), snn.LIF())
    snn.set_step_mode(net, "m")

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.head = net, nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.net(x).mean(0))

    model = Model()
    x = torch.rand(8, 4, 6) * 2
    compiled = snnir.compile(snnir.trace(model, x))
    assert compiled.training
    ys, grads = [], []
    for m in (model, compiled):
        snn.reset(m)
        m.zero_grad()
        y = m(x)
        y.square().sum().backward()
        ys.append(y.detach())
        grads.append([p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(ys[1], ys[0], rtol=1e-6, atol=1e-6)
    for a, b in zip(grads[1], grads[0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_reductions_of_sample_axes_and_of_time_and_sample_together():
    class M(nn.Module):  # multi-step (a step module in mode 'm'): forward sees [T, N, ...]
        def __init__(self) -> None:
            super().__init__()
            self.scale = snn.Scale(1.0, step_mode="m")

        def forward(self, x):
            x = self.scale(x)
            return x.mean(-1) * 2, x.sum((0, 2)), torch.mean(x, dim=0)

    x = torch.randn(5, 3, 4, 6)
    g = snnir.trace(M(), x)
    assert sorted(n.op for n in g if n.op in ("mean", "sum", "time_reduce")) == ["mean", "sum", "time_reduce",
                                                                                 "time_reduce"]
    a, b, c = snnir.compile(g)(x)
    assert a.shape == (5, 3, 4) and b.shape == (3, 6) and c.shape == (3, 4, 6)
    torch.testing.assert_close(a, x.mean(-1) * 2)
    torch.testing.assert_close(b, x.sum((0, 2)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, x.mean(0))


# --- what a graph running one step at a time cannot hold ------------------------------------------------
class _Fn(nn.Module):
    """A multi-step model (its first module runs in mode 'm'): ``fn`` sees ``[T, N, ...]``."""

    def __init__(self, fn, *modules) -> None:
        super().__init__()
        self.fn, self.scale, self.mods = fn, snn.Scale(1.0, step_mode="m"), nn.ModuleList(modules)

    def forward(self, x):
        return self.fn(self.scale(x), *self.mods)


@pytest.mark.parametrize("fn, modules, match", [
    (lambda x, lif: lif(x.mean(0)), [snn.LIF(step_mode="m")],
     r"cannot trace _Fn: node 'mods_0' \(neuron:LIF\) is stateful but runs after the reduction over time 'mean'"),
    (lambda x: x.mean(0).mean(0), [], r"touches the batch axis"),
    (lambda x: x.mean(0, keepdim=True), [], r"keepdim=True keeps a time axis of size 1"),
    (lambda x: x - x.mean(0), [], r"one was reduced over time \(x.mean\(0\)\), the other has a value per time step"),
    (lambda x: x.softmax(0), [], r"only a mean or sum \(x.mean\(0\), x.sum\(0\)\) has an IR form"),
])
def test_refused_with_the_reason(fn, modules, match):
    with pytest.raises(TraceError, match=match):
        snnir.trace(_Fn(fn, *modules), torch.rand(3, 2, 4))


def test_merged_time_and_batch_is_not_a_time_axis():
    with pytest.raises(TraceError, match=r"mean over dim 0 touches the time\*batch axis"):
        snnir.trace(_Fn(lambda x: x.flatten(0, 1).mean(0)), torch.rand(3, 2, 4))


def _chain(*ops: tuple[str, dict]) -> tuple[snnir.Graph, list[str]]:
    g = snnir.Graph()
    ids = [g.add_input((3,))]
    for op, attrs in ops:
        ids.append(g.add_node(op, [ids[-1]], attrs=attrs, id=f"n{len(ids)}"))
    g.add_output(ids[-1])
    return g, ids


def test_graph_rules_name_the_node():
    g, _ = _chain(("time_reduce", {}), ("time_reduce", {"mode": "sum"}))
    with pytest.raises(GraphError, match=r"node 'n2' \(time_reduce\) reduces over time a value already reduced over "
                                         r"time by 'n1'"):
        g.validate()
    g, _ = _chain(("time_reduce", {}), ("synapse_filter", {"tau": 2.0}))
    with pytest.raises(GraphError, match=r"node 'n2' \(synapse_filter\) is stateful"):
        g.validate()
    g, ids = _chain(("neuron", {"model": "IF"}), ("time_reduce", {}), ("scale", {"factor": 2.0}))
    g.add_node("add", [ids[3], ids[1]], id="mix")
    with pytest.raises(GraphError, match=r"node 'mix' \(add\) combines the reduction over time 'n2' with 'n1', a "
                                         r"value of every time step"):
        g.validate()
    g, ids = _chain(("time_reduce", {}), ("scale", {"factor": 2.0}))
    g.add_node("add", [ids[0]], id="entry")
    g.add_edge(ids[2], "entry", port=1, offset=1)
    with pytest.raises(GraphError, match=r"reads 'n2' with time offset 1"):
        g.validate()
    with pytest.raises(GraphError, match=r"mode='max' is out of range: expected one of \('mean', 'sum'\)"):
        _chain(("time_reduce", {"mode": "max"}))


def test_constants_may_join_after_the_reduction():
    g, ids = _chain(("time_reduce", {}),)
    c = g.add_node("constant", [], params={"value": np.arange(3, dtype=np.float32)}, id="bias")
    g.add_output(g.add_node("add", [ids[1], c], id="shifted"))
    x = torch.randn(4, 2, 3)
    reduced, shifted = snnir.compile(g.validate())(x)
    torch.testing.assert_close(shifted, x.mean(0) + torch.arange(3.0))


# --- around the graph: files, ONNX, NIR, Loihi, counts, inspect -------------------------------------
def test_save_load_keeps_the_reduction_and_its_final_region(tmp_path):
    g = snnir.optimize(_graph("sum"))
    assert g.meta["schedule"]["regions"][-1] == {"mode": "final", "nodes": ["act", "head", "output"]}
    snnir.save(g, tmp_path / "m.snnir")
    h = snnir.load(tmp_path / "m.snnir")
    assert h.node("reduce").attrs == {"mode": "sum"} and h.final_step_nodes() == {"act", "head", "output"}
    x = torch.randn(3, 2, 4)
    assert torch.equal(snnir.compile(g)(x), snnir.compile(h)(x))


def test_onnx_streaming_and_unrolled_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from snnir.backends.onnx import StreamingSession

    g = _graph("mean")
    x = torch.randn(5, 2, 4)
    snnir.export(g, tmp_path / "s.onnx", format="onnx")
    session = StreamingSession(tmp_path / "s.onnx")
    assert session.state_names == ["reduce.sum", "reduce.count"]
    single = snnir.compile(g, step_mode="s")
    for t in range(5):
        np.testing.assert_allclose(session(x[t].numpy()), single(x[t]).detach().numpy(), rtol=1e-5, atol=1e-6)
    snnir.export(g, tmp_path / "u.onnx", format="onnx", unroll=5)
    unrolled = StreamingSession(tmp_path / "u.onnx")(x.numpy())
    assert unrolled.shape == (2, 3)
    np.testing.assert_allclose(unrolled, snnir.compile(g)(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_nir_and_loihi_refuse_naming_the_node(tmp_path):
    pytest.importorskip("nir")
    g = snnir.Graph()
    x = g.add_input((4,))
    h = g.add_node("linear", [x], params={"weight": np.ones((3, 4), np.float32)})
    s = g.add_node("neuron", [h], attrs={"model": "LIF", "tau": 2.0})
    g.add_output(g.add_node("time_reduce", [s], id="rate"))
    with pytest.raises(snnir.SnnirError, match=r"node 'rate' \(time_reduce\) cannot be exported to NIR: NIR has no "
                                               r"primitive for 'time_reduce' \(a reduction over time steps"):
        snnir.export(g, tmp_path / "m.nir", format="nir")
    from snnir.passes.to_loihi import LoihiMappingError, loihi_layers

    with pytest.raises(LoihiMappingError, match=r"rate.*a reduction over time steps"):
        loihi_layers(g)


def test_count_ops_counts_the_head_once_and_inspect_shows_the_final_region():
    from snnir.analysis import count_ops

    g = _graph("mean")
    x = np.random.default_rng(1).normal(size=(6, 2, 4)).astype(np.float32)
    counts = count_ops(g, x)
    assert counts.nodes["fc"].dense_macs == 6 * 2 * 4 * 5
    assert counts.nodes["head"].dense_macs == 1 * 2 * 5 * 3  # once, at the final step
    assert counts.nodes["reduce"].updates == 6 * 2 * 5
    text = snnir.inspect(snnir.optimize(g))
    assert "time_reduce:mean" in text and "final" in text

"""trace -> (save/load) -> compile reproduces the model: outputs, final states, gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnir
from snnir import TraceError
from snnir import nn as snn


def conv_snn() -> nn.Sequential:
    return nn.Sequential(
        snn.Conv2d(2, 8, 3, padding=1), snn.BatchNorm2d(8), snn.LIF(tau=2.0),
        snn.MaxPool2d(2), snn.Conv2d(8, 8, 3, padding="same", bias=False), snn.BatchNorm2d(8),
        snn.ParametricLIF(init_tau=3.0, v_reset=None), snn.AvgPool2d(2), snn.Dropout2d(0.3),
        snn.Flatten(), snn.Linear(32, 16), snn.Dropout(0.2), snn.CubaLIF(tau_syn=3.0),
        snn.Linear(16, 4), snn.IF(v_threshold=0.5, detach_reset=True),
    )


class Branchy(nn.Module):
    """Residual add, concat, functional relu, flatten and scaling, in multi-step form."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = snn.Conv2d(1, 4, 3, padding=1)
        self.lif1 = snn.LIF(surrogate=snn.surrogate.Sigmoid())
        self.left = snn.Conv2d(4, 4, 3, padding=1)
        self.right = snn.Conv2d(4, 2, 1)
        self.pool = snn.AdaptiveAvgPool2d((2, 2))
        self.fc = snn.Linear(24, 5)
        self.out = snn.EIF()

    def forward(self, x):
        h = self.lif1(self.stem(x))
        res = F.relu(self.left(h)) + h          # residual
        cat = torch.cat([res, self.right(h)], dim=2)  # [T, N, C, H, W]: channels are dim 2
        flat = torch.flatten(self.pool(cat * 0.5), 2)
        return self.out(self.fc(flat))


class SingleStepTorchLayers(nn.Module):
    """Plain torch layers in a single-step model (one call per time step)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm1d(6)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.lif = snn.AdaptiveLIF(a=0.1)
        self.apool = nn.AvgPool1d(2)
        self.fc = nn.Linear(12, 3)
        self.neuron = snn.QIF()
        self.skip = nn.Identity()

    def forward(self, x):
        h = self.lif(self.pool(self.relu(self.bn(self.conv(x)))))
        h = torch.add(self.apool(h), self.apool(h) / 2.0)
        return self.neuron(self.fc(self.skip(h.flatten(1))))


def _boost(net: nn.Module, gain: float) -> nn.Module:
    """Scale synaptic weights so that random networks spike at every layer."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(gain)
    return net


def _matched_grads(net: nn.Module, compiled) -> list:
    """(name, original grad, compiled grad) for every parameter, matched through the node ids
    (fx names a module path 'a.0' node 'a_0', and a top-level '0' node '_0')."""
    by_id = {}
    for name, m in net.named_modules():
        key = name.replace(".", "_")
        by_id[key if not key[:1].isdigit() else "_" + key] = m
    pairs = []
    for node_id, key in compiled._key.items():
        for pname, q in compiled.layers[key].named_parameters():
            p = dict(by_id[node_id].named_parameters())[pname]
            pairs.append((f"{node_id}.{pname}", p.grad, q.grad))
    assert len(pairs) == len(list(net.parameters()))
    return pairs


def _run(net, x, mode):
    snn.reset(net)
    if mode == "m":
        return net(x)
    return torch.stack([net(xt) for xt in x.unbind(0)])


CASES = [
    (conv_snn, (6, 3, 2, 8, 8), ("m", "s"), 4.0),
    (Branchy, (5, 2, 1, 6, 6), ("m",), 3.0),
    (SingleStepTorchLayers, (7, 4, 3, 8), ("s",), 6.0),
]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("factory,shape,modes,gain", CASES, ids=[c[0].__name__ for c in CASES])
def test_compiled_equals_traced(factory, shape, modes, gain, train, tmp_path):
    for mode in modes:
        torch.manual_seed(0)
        net = _boost(factory(), gain)
        snn.set_step_mode(net, mode)
        net.train(train)
        x = torch.rand(shape) * 2
        graph = snnir.trace(net, x)
        snnir.save(graph, tmp_path / "net.snnir")
        # fuse=False: op for op the traced modules (the fused chains round BatchNorm differently,
        # tested against this path in test_fused_training.py)
        compiled = snnir.compile(snnir.load(tmp_path / "net.snnir"), backend="torch", step_mode=mode, fuse=False,
                                 memory_format=torch.contiguous_format)  # the eager model's layout
        compiled.train(train)
        outs, grads_x = [], []
        for model in (net, compiled):
            torch.manual_seed(1)  # dropout masks drawn in the same order
            xi = x.clone().requires_grad_()
            y = _run(model, xi, mode) if model is net else (
                compiled(xi) if mode == "m" else torch.stack([compiled(t) for t in xi.unbind(0)]))
            weights = torch.linspace(0.5, 1.5, y.numel()).view_as(y)
            (y * weights).sum().backward()
            outs.append(y.detach())
            grads_x.append(xi.grad)
        assert torch.equal(outs[0], outs[1]), f"{mode}: outputs differ"
        assert outs[0].sum() > 0, "the test network should spike"
        torch.testing.assert_close(grads_x[1], grads_x[0], rtol=1e-6, atol=0)
        for name, g_orig, g_comp in _matched_grads(net, compiled):
            torch.testing.assert_close(g_comp, g_orig, rtol=1e-6, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}")
        # final states, neuron by neuron in execution order
        orig = [m for m in net.modules() if isinstance(m, snn.Neuron)]
        comp = list(compiled.neurons().values())
        assert len(orig) == len(comp)
        for a, b in zip(orig, comp):
            for k, v in a.state().items():
                assert torch.equal(v, b.state()[k]), f"{mode}: state {k} of {type(a).__name__} differs"
        if train:  # BatchNorm running statistics moved identically
            for a, b in zip([m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)],
                            [m for m in compiled.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]):
                assert torch.equal(a.running_mean, b.running_mean)


def test_trace_records_ops_and_attrs():
    net = Branchy()
    g = snnir.trace(snn.set_step_mode(net, "m"), torch.rand(2, 1, 1, 6, 6))
    ops = [n.op for n in g]
    assert ops == ["input", "conv2d", "neuron", "conv2d", "relu", "add", "conv2d", "cat", "scale",
                   "adaptive_avgpool2d", "flatten", "linear", "neuron", "output"]
    cat = next(n for n in g if n.op == "cat")
    assert cat.attrs["axis"] == 0 and cat.shape == (6, 6, 6)
    assert next(n for n in g if n.op == "scale").attrs["factor"] == 0.5
    assert g.node("lif1").attrs["surrogate"] == {"name": "Sigmoid", "alpha": 4.0}


def test_single_step_input_without_time_axis():
    net = nn.Sequential(nn.Linear(4, 3), snn.LIF())
    g = snnir.trace(net, torch.rand(2, 4), time_axis=False)
    assert g.node(g.inputs[0]).shape == (4,)


def test_api_example_from_issue(tmp_path):
    net = nn.Sequential(snn.Flatten(), snn.Linear(64, 10, bias=False),
                        snn.LIF(tau=2.0, surrogate=snn.surrogate.ATan(alpha=2.0)))
    x = torch.rand(8, 32, 1, 8, 8) * 4
    y = snn.multi_step(net, x)
    snn.reset(net)
    g = snnir.trace(net, x)
    snnir.save(g, tmp_path / "model.snnir")
    m = snnir.compile(snnir.load(tmp_path / "model.snnir"), backend="torch")
    assert torch.equal(m(x), y)
    m.reset()
    assert all(n.v is None for n in m.neurons().values())


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))

    def forward(self, x):
        return self.body(x)


class SharedLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.fc(self.relu(self.fc(self.relu(x))))  # ReLU reuse is fine, fc reuse is not


class WithCumsum(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, -1)


class Squares(nn.Module):
    def forward(self, x):
        return x ** 2


class ReadsParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, 4))

    def forward(self, x):
        return x * self.w  # [T, N, 4] * [3, 4]: the parameter would grow a per-sample axis in front of N


@pytest.mark.parametrize("model,match", [
    (WithLSTM(), r"fx node 'body_1' \(module 'body.1', class torch.nn.modules.rnn.LSTM\): no snnir op.*Supported: "),
    (SharedLayer(), r"module 'fc' \(Linear\) is called more than once \(fx nodes \['fc', 'fc_1'\]\)"),
    (WithCumsum(), r"fx node 'cumsum' \(call_function cumsum\): no snnir op for call_function 'cumsum'.*Wrap"),
    (Squares(), r"fx node 'pow.*no snnir op for call_function 'pow'"),
    (ReadsParameter(), r"fx node 'mul' .*constant of shape \(3, 4\) varies along the batch axis"),
    (nn.Sequential(snn.PoissonEncoder(4), snn.LIF()), r"PoissonEncoder creates the time axis"),
    (nn.Sequential(nn.Flatten(0), snn.LIF()), r"would merge the batch axis"),
    (nn.Sequential(nn.Linear(8, 2), snn.LIF()), r"linear expects a last axis of 8 features, got input shape \(4,\)"),
    (nn.Sequential(snn.Linear(4, 2), snn.LIF(step_mode="m")), r"mixes single-step and multi-step"),
])
def test_unsupported_and_inconsistent_models(model, match):
    with pytest.raises(TraceError, match=match):
        snnir.trace(model, torch.rand(2, 3, 4))


def test_bad_trace_arguments():
    with pytest.raises(TraceError, match="expects a torch.nn.Module"):
        snnir.trace(lambda x: x, torch.rand(2, 2, 2))
    with pytest.raises(TraceError, match="needs an example input"):
        snnir.trace(nn.Sequential(snn.LIF()))
    with pytest.raises(TraceError, match=r"\[T, N, \.\.\.\]"):
        snnir.trace(nn.Sequential(snn.LIF()), torch.rand(3))


def test_compile_errors():
    g = snnir.Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("relu", [x]))
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        snnir.compile(g, backend="tpu")
    m = snnir.compile(g)
    with pytest.raises(TypeError, match="takes 1 input"):
        m(torch.rand(2, 2, 3), torch.rand(2, 2, 3))
    with pytest.raises(TypeError, match="unknown options"):
        snnir.compile(g, fusion=True)

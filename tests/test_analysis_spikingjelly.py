"""``count_ops`` against SpikingJelly 2.0's op counters, on the same network with the same weights.

Where the definitions coincide the numbers must be equal:
- ``SynOpCounter`` (spike-driven mm/conv) == snnir's ACs (== SynOps) of linear/conv nodes with
  spike inputs, per layer and in total (SpikingJelly's conv rule is also exact with padding);
- ``MACCounter`` (dense mm/conv on real inputs) == snnir's MACs of the real-valued first layer;
- ``ACCounter`` on a residual ``a + b`` of two spike tensors == snnir's ACs of the ``add`` node;
- ``NeuromorphicMemoryAccessCounter`` == snnir's weight, bias and neuron-state bytes.

Where they differ (not compared): SpikingJelly's ACCounter counts the additions inside its torch
neuron implementation (aten ops, backend-dependent) where snnir counts the model's equations; it
prices average pooling as ``out x (k - 1)`` dense additions where snnir counts each spike times
the windows it enters; its SynOpCounter does not count graded (non-binary) inputs, for which
snnir reports event counts in ``synops`` and dense MACs in ``macs``.
"""

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir.analysis import count_ops

sj_layer = pytest.importorskip("spikingjelly.activation_based.layer",
                               reason="SpikingJelly not installed: pip install --no-deps spikingjelly loguru")
from spikingjelly.activation_based import functional, neuron  # noqa: E402
from spikingjelly.activation_based.op_counter import (  # noqa: E402
    ACCounter,
    DispatchCounterMode,
    MACCounter,
    ModuleCounterMode,
    NeuromorphicMemoryAccessCounter,
    SynOpCounter,
)

aten = torch.ops.aten
T, N = 6, 4
MEAN = 0.14


class Add(nn.Module):
    def forward(self, a, b):
        return a + b


class Net(nn.Module):
    """conv(real input) -> LIF -> conv(stride 2, groups 2) -> LIF -> conv -> LIF -> residual add
    -> maxpool -> flatten -> linear (the sum holds 2s: real-valued) -> LIF -> linear -> LIF."""

    def __init__(self) -> None:
        super().__init__()
        m = {"step_mode": "m"}
        self.conv0 = sj_layer.Conv2d(2, 8, 3, padding=1, **m)
        self.lif0 = neuron.LIFNode(tau=2.0, **m)
        self.conv1 = sj_layer.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, **m)
        self.lif1 = neuron.LIFNode(tau=2.0, **m)
        self.conv2 = sj_layer.Conv2d(8, 8, 3, padding=1, bias=False, **m)
        self.lif2 = neuron.LIFNode(tau=2.0, **m)
        self.add = Add()
        self.pool = sj_layer.MaxPool2d(2, **m)
        self.flat = sj_layer.Flatten(**m)
        self.fc = sj_layer.Linear(8 * 2 * 2, 5, **m)
        self.lif3 = neuron.LIFNode(tau=2.0, **m)
        self.fc2 = sj_layer.Linear(5, 3, **m)
        self.lif4 = neuron.LIFNode(tau=2.0, **m)

    def forward(self, x):
        a = self.lif1(self.conv1(self.lif0(self.conv0(x))))
        b = self.lif2(self.conv2(a))
        return self.lif4(self.fc2(self.lif3(self.fc(self.flat(self.pool(self.add(a, b)))))))


def _graph(net: Net) -> snnir.Graph:
    """The same network written in the IR, with the same weights."""
    g = snnir.Graph()
    p = {k: v.detach().numpy() for k, v in net.state_dict().items()}

    def conv(name, src, **attrs):
        params = {"weight": p[f"{name}.weight"], **({"bias": p[f"{name}.bias"]} if f"{name}.bias" in p else {})}
        return g.add_node("conv2d", [src], params=params, attrs=attrs, id=name)

    def lif(name, src):
        return g.add_node("neuron", [src], attrs={"model": "LIF", "tau": 2.0}, id=name)

    x = g.add_input((2, 8, 8))
    a = lif("lif1", conv("conv1", lif("lif0", conv("conv0", x, padding=1)), stride=2, padding=1, groups=2))
    b = lif("lif2", conv("conv2", a, padding=1))
    pool = g.add_node("maxpool2d", [g.add_node("add", [a, b], id="add")], attrs={"kernel_size": 2}, id="pool")
    fc = g.add_node("linear", [g.add_node("flatten", [pool], id="flat")],
                    params={"weight": p["fc.weight"], "bias": p["fc.bias"]}, id="fc")
    fc2 = g.add_node("linear", [lif("lif3", fc)], params={"weight": p["fc2.weight"], "bias": p["fc2.bias"]},
                     id="fc2")
    g.add_output(lif("lif4", fc2))
    return g.validate()


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(3)
    net = Net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):  # every layer fires at a moderate rate
                m.weight.normal_(MEAN, 1.0 / m.weight[0].numel() ** 0.5)
    x = torch.rand(T, N, 2, 8, 8)
    g = _graph(net)
    with torch.no_grad():
        ours = snnir.compile(g).eval()(x)
        functional.reset_net(net)
        theirs = net(x)
    assert torch.equal(ours, theirs), "the two networks must be the same before their counts are compared"
    counters = [SynOpCounter(), MACCounter(), ACCounter()]
    functional.reset_net(net)
    with torch.no_grad(), DispatchCounterMode(counters):
        net(x)
    memory = NeuromorphicMemoryAccessCounter()
    functional.reset_net(net)
    with torch.no_grad(), ModuleCounterMode([memory], model=net):
        net(x)
    ops = count_ops(g, x.numpy())
    rates = [nc.spikes / nc.updates for nc in ops.nodes.values() if nc.op == "neuron:LIF"]
    assert all(0.05 < r < 0.95 for r in rates), f"every layer must fire sometimes, not always: {rates}"
    return ops, counters, memory.get_counts()


def _sj(counter, scope: str, op=aten.convolution.default) -> int:
    return int(counter.get_counts().get(f"Net.{scope}", {}).get(op, 0))


def test_synops_equal_spikingjelly_per_layer_and_in_total(setup):
    ops, (synop, mac, ac), _ = setup
    for name, op in (("conv1", aten.convolution.default), ("conv2", aten.convolution.default),
                     ("fc2", aten.addmm.default)):
        nc = ops.nodes[name]
        assert nc.input == "spikes"
        assert nc.acs == nc.synops == _sj(synop, name, op) > 0, name
    total_ours = sum(nc.acs for nc in ops.nodes.values() if nc.op in ("conv2d", "linear"))
    assert total_ours == synop.get_total()


def test_real_input_macs_equal_spikingjelly(setup):
    ops, (synop, mac, ac), _ = setup
    for name, op in (("conv0", aten.convolution.default), ("fc", aten.addmm.default)):
        nc = ops.nodes[name]  # the first layer (pixels) and the layer after the residual sum
        assert nc.input == "real" and nc.acs == 0
        assert nc.macs == nc.dense_macs == _sj(mac, name, op) > 0
        assert _sj(synop, name, op) == 0
    assert sum(v.macs for v in ops.nodes.values()) == mac.get_total()


def test_residual_add_acs_equal_spikingjelly(setup):
    ops, (synop, mac, ac), _ = setup
    assert ops.nodes["add"].input == "spikes"
    assert ops.nodes["add"].acs == _sj(ac, "add", aten.add.Tensor) > 0


def test_memory_traffic_equals_spikingjelly(setup):
    ops, _, memory = setup
    for name in ("conv0", "conv1", "conv2", "fc", "fc2"):
        assert ops.nodes[name].weight_read_bytes == memory[f"Net.{name}"]["weight_read_bytes"] > 0, name
        assert ops.nodes[name].bias_read_bytes == memory[f"Net.{name}"]["bias_read_bytes"], name
    for name in ("lif0", "lif1", "lif2", "lif3", "lif4"):
        assert ops.nodes[name].state_read_bytes == memory[f"Net.{name}"]["neuron_state_read_bytes"] > 0, name
        assert ops.nodes[name].state_write_bytes == memory[f"Net.{name}"]["neuron_state_write_bytes"], name
    assert ops.total.memory_bytes == sum(memory["Global"].values())


def test_report_figures(setup, capsys):
    """Not an assertion of its own: prints the agreement figures the issue asks for (-s to see)."""
    ops, (synop, mac, ac), memory = setup
    rows = [(n, ops.nodes[n].acs, _sj(synop, n, aten.addmm.default if n == "fc2" else aten.convolution.default))
            for n in ("conv1", "conv2", "fc2")]
    print("\nSynOps (snnir ACs vs SpikingJelly SynOpCounter):", rows)
    print("MACs conv0, fc:", ops.nodes["conv0"].macs, _sj(mac, "conv0"), ops.nodes["fc"].macs,
          _sj(mac, "fc", aten.addmm.default))
    print("add ACs:", ops.nodes["add"].acs, _sj(ac, "add", aten.add.Tensor))
    print("memory bytes:", ops.total.memory_bytes, sum(memory["Global"].values()))
    assert np.all([a == b for _, a, b in rows])


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", [
    ((3, 3), 2, 1, 1, 1), ((3, 3), 1, 2, 2, 2), ((2, 3), (2, 1), (1, 0), (1, 2), 4)])
def test_conv_synops_equal_spikingjelly_on_the_compiled_graph(kernel, stride, padding, dilation, groups):
    """SpikingJelly's SynOpCounter intercepts the compiled graph's own aten.convolution calls."""
    rng = np.random.default_rng(7)
    g = snnir.Graph()
    x = g.add_input((4, 9, 8))
    w = rng.standard_normal((8, 4 // groups, *kernel)).astype(np.float32)
    conv = g.add_node("conv2d", [x], params={"weight": w}, id="conv",
                      attrs={"stride": stride, "padding": padding, "dilation": dilation, "groups": groups})
    g.add_output(g.add_node("neuron", [conv], attrs={"model": "IF"}))
    spikes = (rng.random((T, N, 4, 9, 8)) < 0.3).astype(np.float32)
    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        snnir.compile(g).eval()(torch.from_numpy(spikes))
    assert count_ops(g, spikes).nodes["conv"].acs == counter.get_total() > 0

"""ANN import (torch and ONNX), ANN -> SNN conversion, and weight quantization."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnir
from snnir import nn as snn
from snnir.frontends import from_onnx, from_torch_ann
from snnir.frontends.onnx import UnsupportedOpError
from snnir.passes.quantize import quantize

onnx = pytest.importorskip("onnx", reason="pip install onnx onnxruntime (test extras)")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime (test extras)")


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.c3 = nn.Conv2d(2, 3, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(7 * 3 * 3, 5)

    def forward(self, x):
        h = F.relu(self.bn(self.c1(x)))
        h = F.relu(self.c2(h)) + h                      # residual
        h = torch.cat([h, F.relu6(self.c3(x))], dim=1)  # concat with a clipped branch
        h = self.pool(h)
        return self.fc(torch.flatten(h, 1))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 20), nn.ReLU(), nn.Dropout(0.3), nn.Linear(20, 4))


def cnn_maxpool():
    return nn.Sequential(nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), nn.Identity(),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 3))


def conv1d_net():
    return nn.Sequential(nn.Conv1d(3, 5, 3, padding=1), nn.ReLU6(), nn.MaxPool1d(2), nn.AvgPool1d(2),
                         nn.Flatten(), nn.Linear(10, 2))


def global_pool_net():
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


class ViewNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        h = torch.relu(self.c(x))
        return self.fc(h.view(h.size(0), -1))


ANNS = [(mlp, (2, 6, 3)), (Residual, (2, 6, 6)), (cnn_maxpool, (2, 6, 6)), (conv1d_net, (3, 8)),
        (global_pool_net, (2, 6, 6)), (ViewNet, (2, 4, 4))]


def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def _run_ann_graph(g, x):
    with torch.no_grad():
        return snnir.compile(g, step_mode="s").eval()(x).numpy()


@pytest.mark.parametrize("factory,shape", ANNS, ids=[f.__name__ for f, _ in ANNS])
def test_torch_ann_and_onnx_import_reproduce_the_ann(factory, shape, tmp_path):
    torch.manual_seed(0)
    ann = _randomize_bn(factory())
    x = torch.randn(7, *shape)
    with torch.no_grad():
        ref = ann(x).numpy()
    np.testing.assert_allclose(_run_ann_graph(from_torch_ann(ann, x), x), ref, rtol=1e-5, atol=1e-5)
    path = tmp_path / "ann.onnx"
    torch.onnx.export(ann, x[:1], str(path), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ort_out = session.run(None, {"x": x.numpy()})[0]
    g = from_onnx(path)
    assert not any(n.op == "dropout" for n in g)
    np.testing.assert_allclose(_run_ann_graph(g, x), ort_out, rtol=1e-5, atol=1e-5)


def test_onnx_gemm_matmul_clip_and_errors(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, b1, w2 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 6), (6,), (6, 3)))
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="gemm", transB=0),
             helper.make_node("Clip", ["h", "lo", "hi"], ["c"], name="clip"),
             helper.make_node("MatMul", ["c", "w2"], ["m"], name="matmul"),
             helper.make_node("Add", ["m", "b2"], ["y"], name="bias")]
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"),
                                                       (np.float32(0.0), "lo"), (np.float32(6.0), "hi"),
                                                       (np.full(3, 0.5, np.float32), "b2"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    x = rng.standard_normal((5, 4)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"x": x})[0]
    # a dynamic batch needs a static per-sample shape only
    g = from_onnx(model)
    assert [n.op for n in g] == ["input", "linear", "clip", "linear", "output"]
    np.testing.assert_allclose(_run_ann_graph(g, torch.from_numpy(x)), ref, rtol=1e-5, atol=1e-5)

    bad = helper.make_model(helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]), opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOpError, match=r"ONNX op 'Sin' \(node 'act', opset 13\) is not supported"):
        from_onnx(bad)
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(snnir.FormatError, match="junk.onnx"):
        from_onnx(tmp_path / "junk.onnx")


def _train(ann, x, y, epochs=60):
    opt = torch.optim.Adam(ann.parameters(), lr=5e-3)
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(ann(x), y).backward()
        opt.step()
    return ann.eval()


def _toy_data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, 6, 6, generator=g)
    y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long() + 2 * (x[:, :, :3].mean((1, 2, 3)) > 0.5).long()
    return x, y


@pytest.mark.parametrize("mode", ["max", "99.9%", 0.95])
@pytest.mark.parametrize("channel_wise", [False, True])
def test_conversion_approaches_the_ann(mode, channel_wise):
    """A trained residual/concat/maxpool CNN: the SNN's accuracy approaches the ANN's as T grows,
    and its time-averaged output approximates the ANN's logits."""
    torch.manual_seed(0)
    x, y = _toy_data()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(2, 8, 3, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.c3 = nn.Conv2d(2, 4, 1)
            self.fc = nn.Linear(12 * 3 * 3, 4)

        def forward(self, x):
            h = F.relu(self.c1(x))
            h = F.relu(self.c2(h)) + h
            h = torch.cat([h, nn.functional.relu(self.c3(x))], 1)
            return self.fc(torch.flatten(F.max_pool2d(h, 2), 1))

    ann = _train(Net(), x, y)
    with torch.no_grad():
        ann_logits = ann(x[:200])
    ann_acc = (ann_logits.argmax(1) == y[:200]).float().mean().item()
    g = snnir.convert(ann, calibration=list(x[:256].split(64)), mode=mode, channel_wise=channel_wise, T=64,
                      progress=False)
    assert sum(n.op == "neuron" for n in g) == 3 and any(n.op == "spiking_maxpool2d" for n in g)
    assert all(n.attrs["v_reset"] is None and n.attrs["model"] == "IF" for n in g if n.op == "neuron")
    m = snnir.compile(g).eval()
    accs = []
    for T in (4, 64):
        m.reset()
        with torch.no_grad():
            out = m(snn.direct(x[:200], T)).mean(0)
        accs.append((out.argmax(1) == y[:200]).float().mean().item())
    assert accs[1] >= ann_acc - 0.05 and accs[1] >= accs[0] - 0.01
    corr = np.corrcoef(out.flatten().numpy(), ann_logits.flatten().numpy())[0, 1]
    assert corr > 0.9


def test_relu_module_and_functional_convert_identically():
    torch.manual_seed(0)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(5, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    f = Functional()
    m = nn.Sequential(f.a, nn.ReLU(), f.b)
    data = [torch.rand(32, 5) for _ in range(3)]
    g1 = snnir.convert(f, calibration=data, mode="max", progress=False)
    g2 = snnir.convert(m, calibration=data, mode="max", progress=False)
    x = snn.direct(torch.rand(10, 5), 16)
    with torch.no_grad():
        assert torch.equal(snnir.compile(g1)(x), snnir.compile(g2)(x))


def test_rate_decoding_and_calibration_errors():
    ann = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    data = [torch.rand(16, 4) for _ in range(2)]
    g = snnir.convert(ann, calibration=data, decode="rate", progress=False)
    (last,) = g.predecessors(g.outputs[0])
    (spiking,) = g.predecessors(last)
    assert g.node(last).op == "scale" and g.node(spiking).attrs["model"] == "IF"
    out = snnir.compile(g)(snn.direct(torch.rand(8, 4), 20))
    assert set((out / g.node(last).attrs["factor"]).unique().tolist()) <= {0.0, 1.0}  # scaled spikes
    with pytest.raises(ValueError, match="needs calibration data"):
        snnir.convert(ann)
    with pytest.raises(ValueError, match="NaN or Inf"):
        snnir.convert(ann, calibration=[torch.full((4, 4), float("nan"))], progress=False)
    with pytest.raises(ValueError, match="mode must be"):
        snnir.convert(ann, calibration=data, mode="median", progress=False)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        snnir.convert(ann, calibration=data, mode=1.5, progress=False)
    with pytest.raises(ValueError, match="yielded no batches|needs calibration"):
        snnir.convert(ann, calibration=[], progress=False)
    from snnir.errors import GraphError

    with pytest.raises(GraphError, match="needs calibrated activation scales"):
        snnir.optimize(snnir.frontends.from_torch_ann(ann, data[0]), ["ann_to_snn"])


def test_spiking_maxpool_follows_the_most_active_input():
    from snnir.backends.torch.layers import SpikingMaxPool2d

    pool = SpikingMaxPool2d(2, step_mode="m")
    torch.manual_seed(0)
    rates = torch.tensor([0.2, 0.7, 0.4, 0.1]).view(1, 1, 2, 2)
    spikes = (torch.rand(2000, 1, 1, 2, 2) < rates).float()
    out = pool(spikes)
    assert abs(out.mean().item() - 0.7) < 0.03          # the max rate, not the OR of the inputs
    assert spikes.amax((3, 4)).mean().item() > 0.8     # what plain max pooling of spikes gives
    # single steps keep the same counts: the same output
    step = SpikingMaxPool2d(2, step_mode="s")
    assert torch.equal(torch.stack([step(s) for s in spikes[:50]]), out[:50])


@pytest.mark.parametrize("bits,per_channel,pot", [(8, True, False), (8, False, False), (4, True, False),
                                                  (8, True, True)])
def test_quantize_grid_and_accuracy(bits, per_channel, pot):
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    data = [torch.rand(32, 6) for _ in range(3)]
    g = snnir.convert(ann, calibration=data, mode="max", progress=False)
    q = quantize(g, bits=bits, per_channel=per_channel, power_of_two=pot)
    m = snnir.compile(q)
    qmax = 2 ** (bits - 1) - 1
    for layer in (mod for mod in m.modules() if isinstance(mod, nn.Linear)):
        w = layer.weight.detach()  # the parametrized (fake-quantized) weight
        s = layer.parametrizations.weight[0].scale
        s = s.view(-1, 1) if s.dim() else s
        ints = w / s
        assert torch.allclose(ints, ints.round(), atol=1e-4) and ints.abs().max() <= qmax + 1e-4
        if pot:
            assert torch.allclose(torch.log2(s), torch.log2(s).round())
    x = snn.direct(torch.rand(50, 6), 32)
    with torch.no_grad():
        a, b = snnir.compile(g)(x).mean(0), m(x).mean(0)
    tol = {8: 0.05, 4: 0.35}[bits]
    assert (a - b).abs().max() < tol * a.abs().max()
    # quantization-aware fine-tuning: gradients reach the float weights through the STE
    m.zero_grad()
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="supports 2..8 or 16 bits"):
        quantize(g, bits=1)

"""ResNet-18, VGG-11, SqueezeNet 1.1, MobileNetV2 and ConvNeXt-T (the real layer structure at reduced
width and resolution) import as torch modules and as ONNX files and match onnxruntime to 1e-5
relative; the ReLU networks convert to SNNs, ConvNeXt is refused naming its LayerNorm.
Full-size figures (224 px, width 1): benchmarks/bench_ann_import.py."""

import io
import warnings

import numpy as np
import pytest
import torch
from ann_zoo import ZOO, CNBlock

import snnir
from snnir import nn as snn
from snnir.errors import GraphError
from snnir.frontends import from_onnx, from_torch_ann

onnx = pytest.importorskip("onnx", reason="pip install onnx onnxruntime (test extras)")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime (test extras)")

# (width, resolution): VGG's 7x7 adaptive pooling exports to ONNX only when it divides (224 px)
SIZES = {"resnet18": (0.25, 32), "vgg11": (1 / 16, 224), "squeezenet1_1": (0.5, 64), "mobilenet_v2": (0.25, 32),
         "convnext_tiny": (0.125, 32)}


def _model(name: str, px: int | None = None) -> tuple[torch.nn.Module, torch.Tensor]:
    """A seeded network with non-trivial batch-norm statistics and layer scales (a fresh
    initialization leaves BatchNorm the identity and ConvNeXt's residual branches at 1e-6)."""
    torch.manual_seed(0)
    width, size = SIZES[name]
    model = ZOO[name](num_classes=10, width=width)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
        elif isinstance(m, CNBlock):
            m.layer_scale.data.uniform_(0.2, 1.0)
    px = px or size
    return model.eval(), torch.rand(2, 3, px, px, generator=torch.Generator().manual_seed(1))


def _export(model: torch.nn.Module, x: torch.Tensor, opset: int | None = None) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x[:1], buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}},
                          **({"opset_version": opset} if opset else {}))
    return buf.getvalue()


def _relative_error(out: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(out.detach().numpy() - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", sorted(SIZES))
def test_torch_and_onnx_routes_match_onnxruntime(name):
    model, x = _model(name)
    proto = _export(model, x)
    ref = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    traced = snnir.compile(from_torch_ann(model, x), step_mode="s")
    imported = snnir.compile(from_onnx(onnx.load_from_string(proto)), step_mode="s")
    with torch.no_grad():
        assert not traced.training and not imported.training  # traced from an eval-mode model
        torch.testing.assert_close(traced(x), model(x), rtol=1e-6, atol=1e-6)
        assert _relative_error(traced(x), ref) <= 1e-5
        assert _relative_error(imported(x), ref) <= 1e-5


def test_convnext_from_an_older_opset_imports_the_spelled_out_norms():
    """Before opset 17/20 LayerNorm and GELU are exported as ReduceMean/Sub/Pow/Sqrt/Div and Erf."""
    model, x = _model("convnext_tiny")
    proto = _export(model, x, opset=14)
    ops = {n.op_type for n in onnx.load_from_string(proto).graph.node}
    assert {"Pow", "Sqrt", "Erf", "ReduceMean"} <= ops and "LayerNormalization" not in ops
    ref = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert _relative_error(snnir.compile(from_onnx(onnx.load_from_string(proto)), step_mode="s")(x), ref) <= 1e-5


@pytest.mark.parametrize("name,px", [("resnet18", 32), ("vgg11", 32)])
def test_relu_networks_convert_and_approach_the_ann(name, px):
    model, _ = _model(name, px)
    data = torch.rand(40, 3, px, px, generator=torch.Generator().manual_seed(2))
    g = snnir.convert(model, calibration=list(data[:32].split(16)), mode="99.9%", T=64, progress=False)
    relus = sum(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert sum(n.op == "neuron" for n in g) >= relus - 1  # ResNet reuses each block's ReLU module twice
    assert any(n.op == "spiking_maxpool2d" for n in g)
    snn_model = snnir.compile(g).eval()
    with torch.no_grad():
        out = snn_model(snn.direct(data[32:], 64)).mean(0)
        ref = model(data[32:])
    cosine = torch.nn.functional.cosine_similarity(out, ref, dim=1).mean().item()
    assert cosine > 0.9, f"{name}: SNN/ANN cosine {cosine:.3f}"


def test_other_convertible_networks_and_the_refusal():
    for name in ("squeezenet1_1", "mobilenet_v2"):  # ReLU / ReLU6, depthwise convs, concat, residuals
        model, x = _model(name)
        g = snnir.convert(model, calibration=[x], mode="max", T=8, progress=False)
        assert sum(n.op == "neuron" for n in g) > 10
    model, x = _model("convnext_tiny")
    with pytest.raises(GraphError, match=r"node '\w+' \(layernorm\) cannot be converted to spiking neurons"):
        snnir.convert(model, calibration=[x], progress=False)

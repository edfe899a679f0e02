"""SpikingJelly's model zoo traced and compiled by snnir: spiking_resnet18, sew_resnet18,
spiking_vgg11_bn and the PLIF networks, on small inputs, against SpikingJelly's own outputs and
gradients (eval mode; train mode where batch statistics allow).
"""

from __future__ import annotations

import pytest
import torch

import snnir

sj = pytest.importorskip("spikingjelly.activation_based", reason="SpikingJelly is a test reference "
                         "(pip install --no-deps spikingjelly==2.0.0)")
from spikingjelly.activation_based import functional, layer, neuron, surrogate  # noqa: E402

from snnir.frontends.peers.spikingjelly import import_zoo_module  # noqa: E402


def _zoo(name: str):
    # the zoo modules import torchvision only for pretrained-weight downloads; torchvision is no
    # dependency of snnir, so this imports them with a stand-in for that one function (see its docstring)
    return import_zoo_module(name)


def _calibrate_batchnorm(net: torch.nn.Module, x: torch.Tensor) -> None:
    """Trained-looking BatchNorm: statistics of this input (one train-mode pass with momentum 1)
    and scales/shifts that make the normalized currents cross the threshold, so every stage spikes."""
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in norms:
            m.momentum = 1.0
            m.weight.uniform_(1.0, 2.0)
            m.bias.uniform_(0.0, 0.5)
        functional.reset_net(net)
        net.train()(x)
    for m in norms:
        m.momentum = 0.1


def _vgg11_bn():
    """spiking_vgg11_bn with its real feature stack; the 4096-wide classifier layers are 64 wide
    (built on the meta device first: 120 M weights would cost the suite seconds for no coverage)."""
    vgg = _zoo("spiking_vgg")
    with torch.device("meta"):
        net = vgg.spiking_vgg11_bn(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.Sigmoid(),
                                   num_classes=10)
    net.classifier[0] = layer.Linear(512 * 7 * 7, 64)
    net.classifier[3] = layer.Linear(64, 64)
    net.classifier[6] = layer.Linear(64, 10)
    net.to_empty(device="cpu")
    for m in net.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    with torch.no_grad():
        for m in net.classifier:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(8)  # default init leaves the classifier's LIF layers silent
    return net


def _build(name: str):
    torch.manual_seed(0)
    kw = {"surrogate_function": surrogate.ATan(), "detach_reset": True}
    if name == "spiking_resnet18":
        return _zoo("spiking_resnet").spiking_resnet18(spiking_neuron=neuron.IFNode, num_classes=10, **kw), "conv1"
    if name == "sew_resnet18":
        return _zoo("sew_resnet").sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, num_classes=10, **kw), "conv1"
    if name == "spiking_vgg11_bn":
        return _vgg11_bn(), "features.0"
    plif = _zoo("parametric_lif_net")
    cls = {"MNISTNet": plif.MNISTNet, "CIFAR10Net": plif.CIFAR10Net, "DVSGestureNet": plif.DVSGestureNet}[name]
    net = cls(channels=4, spiking_neuron=neuron.ParametricLIFNode, **kw)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(8)  # the classifier has no BatchNorm: default init leaves its neurons silent
    return net, "conv_fc.0"


INPUTS = {"spiking_resnet18": (2, 2, 3, 16, 16), "sew_resnet18": (2, 2, 3, 16, 16),
          "spiking_vgg11_bn": (2, 2, 3, 32, 32), "MNISTNet": (3, 2, 1, 28, 28), "CIFAR10Net": (3, 2, 3, 32, 32),
          "DVSGestureNet": (2, 1, 2, 128, 128)}


@pytest.mark.parametrize("name", list(INPUTS))
def test_zoo_model_matches_spikingjelly(name):
    if name in ("MNISTNet", "CIFAR10Net", "DVSGestureNet") and "reshape" not in snnir.ops.registered_ops():
        pytest.skip("the PLIF nets end in VotingLayer, which needs the reshape op (another branch adds it)")
    net, first = _build(name)
    functional.set_step_mode(net, "m")
    torch.manual_seed(1)
    x = torch.rand(INPUTS[name]) * 2
    _calibrate_batchnorm(net, x)
    for train in ([False, True] if name == "spiking_resnet18" else [False]):
        if train:  # BN batch statistics over T*N; SpikingJelly's and snnir's dropout masks differ
            for m in net.modules():
                if isinstance(m, layer.Dropout):
                    m.p = 0.0
        net.train(train)
        compiled = snnir.compile(snnir.trace(net, x))
        assert compiled.training == train
        spikes: list[float] = []  # rate per neuron layer of the compiled model: all must be exercised

        def record(module, inputs, out, spikes=spikes):
            spikes.append(float(out.detach().mean()))

        for neuron_layer in compiled.neurons().values():
            neuron_layer.register_forward_hook(record)
        results = []
        for model in (net, compiled):
            net.zero_grad()
            functional.reset_net(net)
            xi = x.clone().requires_grad_()
            y = model(xi)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            weight = net.get_submodule(first) if model is net else \
                compiled.layers[compiled._key[first.replace(".", "_")]]  # node ids: module paths, "." -> "_"
            results.append((y.detach(), xi.grad, weight.weight.grad))
        (y_sj, gx_sj, gw_sj), (y, gx, gw) = results
        assert torch.equal(y, y_sj), f"{name} (train={train}): max abs diff {(y - y_sj).abs().max():.3g}"
        assert min(spikes) > 0 and max(spikes) < 0.95, f"{name}: neuron layers' spike rates {spikes}"
        torch.testing.assert_close(gx, gx_sj, rtol=1e-4, atol=1e-4 * float(gx_sj.abs().max()))
        torch.testing.assert_close(gw, gw_sj, rtol=1e-4, atol=1e-4 * float(gw_sj.abs().max()))
        if train:
            bn = compiled.layers[compiled._key["bn1"]]
            torch.testing.assert_close(bn.running_mean, net.bn1.running_mean, rtol=1e-6, atol=1e-7)

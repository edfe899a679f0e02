"""SpikingJelly 2.0's own Spikformer and Spike-Driven Transformer (small configurations) trace and
match SpikingJelly: the attention reshapes, chunks, matmuls and Hadamard products map to IR ops,
SpikingJelly's neurons to snnir neurons (snnir.frontends.peers)."""

import pytest
import torch
from peer_agreement import outputs_and_input_grads
from torch import nn

import snnir

pytest.importorskip("snnir.frontends.peers", reason="SpikingJelly's neurons are mapped by snnir.frontends.peers")
pytest.importorskip("spikingjelly", reason="pip install --no-deps spikingjelly==2.0.0 (test reference)")
from spikingjelly.activation_based import functional  # noqa: E402
from spikingjelly.activation_based.model import spike_driven_transformer, spikformer  # noqa: E402


def _calibrated(net: nn.Module, x: torch.Tensor) -> nn.Module:
    """BatchNorm statistics of the input (one training pass, momentum 1) and a gain of 2, so every
    neuron layer, attention included, spikes."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(x)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.fill_(2.0)
    functional.reset_net(net)
    return net.eval()


def _spike_rates(net: nn.Module, x: torch.Tensor) -> list[float]:
    from spikingjelly.activation_based import neuron

    rates: list[float] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: rates.append(float(o.detach().mean())))
             for m in net.modules() if isinstance(m, neuron.BaseNode)]
    functional.reset_net(net)
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    functional.reset_net(net)
    return rates


def test_spikformer_matches_spikingjelly():
    torch.manual_seed(0)
    net = spikformer.Spikformer(T=2, in_channels=3, img_size_h=32, img_size_w=32, patch_size=4, num_classes=10,
                                embed_dims=32, num_heads=2, mlp_ratio=2.0, depths=1)
    x = torch.rand(2, 2, 3, 32, 32)
    _calibrated(net, x)
    assert min(_spike_rates(net, x)) > 0, "every neuron layer should spike in this test"
    g = snnir.trace(net, x)
    assert {"matmul", "slice", "reshape", "mean", "neuron"} <= {n.op for n in g}
    compiled = snnir.compile(g)
    outs, grads = outputs_and_input_grads((net, compiled), x, lambda: functional.reset_net(net))
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4 * float(grads[0].abs().max()))


def test_spike_driven_transformer_matches_spikingjelly_through_its_time_average():
    """The whole model, ``head(x.mean(0))`` included: the mean over time is a ``time_reduce`` node, the
    head runs at the final step, and the compiled module returns ``[N, classes]`` logits."""
    torch.manual_seed(0)
    net = spike_driven_transformer.SpikeDrivenTransformer(T=2, in_channels=3, num_classes=10, embed_dims=32,
                                                          num_heads=2, depths=1, mlp_ratio=2.0)
    x = torch.rand(2, 2, 3, 32, 32)
    _calibrated(net, x)
    assert min(_spike_rates(net, x)) > 0, "every neuron layer should spike in this test"
    g = snnir.trace(net, x)
    assert {"mul", "sum", "transpose", "neuron", "time_reduce"} <= {n.op for n in g}
    assert g.final_step_nodes() == {"head", "output"}
    compiled = snnir.compile(g)
    outs, grads = outputs_and_input_grads((net, compiled), x, lambda: functional.reset_net(net))
    assert outs[0].shape == (2, 10)
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4 * float(grads[0].abs().max()))

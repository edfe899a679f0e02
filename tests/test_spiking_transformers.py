"""Spiking transformer blocks built from snnir.nn neurons and torch layers, written the way
SpikingJelly writes them ([T, N, ...] code that folds time into the batch and reads T and N from
x.shape): trace -> save/load -> compile reproduces outputs, neuron states and gradients."""

import pytest
import torch
from torch import nn

import snnir
from snnir import nn as snn


class SpikingSelfAttention(nn.Module):
    """Spikformer's SSA (Zhou et al., ICLR 2023), SpikingJelly's layout: input [T, N, C, L];
    1x1 Conv1d + BatchNorm on [T*N, C, L], LIF spikes for q, k, v, softmax-free attention
    (v k^T) q * 0.125, an LIF at threshold 0.5, projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv_conv_bn = nn.Sequential(nn.Conv1d(dim, 3 * dim, 1, bias=False), nn.BatchNorm1d(3 * dim))
        self.qkv_lif = snn.LIF(tau=2.0, detach_reset=True, step_mode="m")
        self.attn_lif = snn.LIF(tau=2.0, v_threshold=0.5, detach_reset=True, step_mode="m")
        self.proj_conv_bn = nn.Sequential(nn.Conv1d(dim, dim, 1, bias=False), nn.BatchNorm1d(dim))
        self.proj_lif = snn.LIF(tau=2.0, detach_reset=True, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected [T, N, C, L], got {x.shape}")
        T, N, C, L = x.shape
        qkv = self.qkv_lif(self.qkv_conv_bn(x.flatten(0, 1)).reshape(T, N, 3 * C, L))
        qkv = qkv.reshape(T, N, 3, self.heads, C // self.heads, L)
        q, k, v = qkv.flatten(2, 3).chunk(3, dim=2)
        y = ((v @ k.transpose(-2, -1)) @ q) * 0.125
        y = self.attn_lif(y).reshape(T, N, C, L)
        return self.proj_lif(self.proj_conv_bn(y.flatten(0, 1)).reshape(T, N, C, L))


class SpikformerBlock(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads)
        self.fc1 = nn.Sequential(nn.Conv1d(dim, 2 * dim, 1, bias=False), nn.BatchNorm1d(2 * dim))
        self.lif1 = snn.LIF(tau=2.0, detach_reset=True, step_mode="m")
        self.fc2 = nn.Sequential(nn.Conv1d(2 * dim, dim, 1, bias=False), nn.BatchNorm1d(dim))
        self.lif2 = snn.LIF(tau=2.0, detach_reset=True, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, N, C, H, W]
        T, N, C, H, W = x.shape
        tokens = x.flatten(3)
        tokens = tokens + self.attn(tokens)
        hidden = self.lif1(self.fc1(tokens.flatten(0, 1)).reshape(T, N, -1, H * W))
        tokens = tokens + self.lif2(self.fc2(hidden.flatten(0, 1)).reshape(T, N, C, H * W))
        return tokens.reshape(T, N, C, H, W)


class SpikeDrivenSelfAttention(nn.Module):
    """Spike-Driven Transformer's SDSA (Yao et al., NeurIPS 2023): Hadamard products of spike
    tensors and a column sum instead of matrix products; multi-step snnir.nn layers."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.shortcut_lif = snn.LIF(tau=2.0, detach_reset=True, step_mode="m")
        for name in "qkv":
            setattr(self, f"{name}_conv", snn.Conv2d(dim, dim, 1, bias=False, step_mode="m"))
            setattr(self, f"{name}_bn", snn.BatchNorm2d(dim, step_mode="m"))
            setattr(self, f"{name}_lif", snn.LIF(tau=2.0, detach_reset=True, step_mode="m"))
        self.attn_lif = snn.LIF(tau=2.0, v_threshold=0.5, detach_reset=True, step_mode="m")
        self.proj_conv = snn.Conv2d(dim, dim, 1, step_mode="m")
        self.proj_bn = snn.BatchNorm2d(dim, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, N, C, H, W]
        T, N, C, H, W = x.shape
        identity = x
        x = self.shortcut_lif(x)

        def heads(name: str) -> torch.Tensor:
            s = getattr(self, f"{name}_lif")(getattr(self, f"{name}_bn")(getattr(self, f"{name}_conv")(x)))
            s = s.flatten(3).transpose(-1, -2)
            return s.reshape(T, N, H * W, self.heads, self.head_dim).permute(0, 1, 3, 2, 4)

        q, k, v = heads("q"), heads("k"), heads("v")
        kv = self.attn_lif((k * v).sum(dim=-2, keepdim=True))
        y = (q * kv).transpose(3, 4).reshape(T, N, C, H, W)
        return self.proj_bn(self.proj_conv(y)) + identity


def _boost(net: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                m.weight.mul_(6.0)  # every layer, attention included, spikes (batch statistics too)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.data.fill_(3.0)
    return net


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("factory", [SpikformerBlock, SpikeDrivenSelfAttention])
def test_spiking_transformer_blocks_trace_and_compile_identically(factory, train, tmp_path):
    torch.manual_seed(0)
    net = _boost(factory()).train(train)
    x = torch.rand(4, 2, 16, 4, 4) * 3  # [T, N, C, H, W], as a patch embedding's BatchNorm output
    g = snnir.trace(net, x)
    expected = {"matmul", "slice", "scale"} if factory is SpikformerBlock else {"mul", "sum", "transpose"}
    assert expected | {"neuron", "reshape"} <= {n.op for n in g}
    snnir.save(g, tmp_path / "block.snnir")
    loaded = snnir.load(tmp_path / "block.snnir")
    # unfused: the same torch ops in the same order, so bit-identical; fused (the default): BatchNorm
    # runs inside the neuron kernel (statistics summed in float64), so states agree to rounding
    for fuse in (False, True):
        compiled = snnir.compile(loaded, fuse=fuse, memory_format=torch.contiguous_format)  # the eager layout
        assert compiled.training == train
        outs, grads = [], []
        for model in (net, compiled):
            snn.reset(model)
            torch.manual_seed(1)
            xi = x.clone().requires_grad_()
            y = model(xi)
            (y * torch.linspace(0.5, 1.5, y.numel()).view_as(y)).sum().backward()
            outs.append(y.detach())
            grads.append(xi.grad)
        assert torch.equal(outs[0], outs[1])
        assert outs[0].abs().sum() > 0
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
        spikes = [m for m in net.modules() if isinstance(m, snn.Neuron)]
        compiled_neurons = list(compiled.neurons().values())
        assert len(spikes) == len(compiled_neurons)
        for a, b in zip(spikes, compiled_neurons):
            if fuse:
                torch.testing.assert_close(b.v, a.v, rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(a.v, b.v)
    attn_lif = net.attn.attn_lif if factory is SpikformerBlock else net.attn_lif
    fired = []
    attn_lif.register_forward_hook(lambda m, i, o: fired.append(float(o.detach().sum())))
    snn.reset(net)
    with torch.no_grad():
        net(x)
    assert fired[0] > 0, "the attention neurons should spike in this test"


def test_transformers_example_runs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "transformers.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "compiled == eager: True" in out.stdout
    errors = [float(line.split(":")[1].split()[0]) for line in out.stdout.splitlines() if "vs onnxruntime" in line]
    assert len(errors) == 2 and max(errors) <= 1e-5
    assert "(layernorm) cannot be converted" in out.stdout

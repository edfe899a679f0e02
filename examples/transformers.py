"""Transformers in snnir: a small vision transformer (ANN) traced from torch and imported from ONNX,
checked against onnxruntime and exported for streaming; then a Spikformer-style spiking block
built from snnir.nn neurons, traced and compiled with identical spikes.

    python examples/transformers.py
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

import snnir
from snnir import nn as snn
from snnir.backends.onnx import StreamingSession
from snnir.frontends import from_onnx


class Attention(nn.Module):
    """Multi-head self-attention as timm's ViT writes it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # [N, 16, dim]
        return self.head(self.blocks(tokens).mean(dim=1))


class SpikformerBlock(nn.Module):
    """Spiking self-attention (Spikformer, Zhou et al. 2023): spike q, k, v, no softmax."""

    def __init__(self, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Sequential(nn.Linear(dim, 3 * dim, bias=False), snn.LIF(tau=2.0, step_mode="m"))
        self.attn_lif = snn.LIF(tau=2.0, v_threshold=0.5, step_mode="m")
        self.proj = nn.Sequential(nn.Linear(dim, dim), snn.LIF(tau=2.0, step_mode="m"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, N, L, dim]
        T, N, L, C = x.shape
        q, k, v = self.qkv(x).reshape(T, N, L, 3, self.heads, C // self.heads).permute(3, 0, 1, 4, 2, 5)
        y = self.attn_lif((q @ k.transpose(-2, -1)) @ v * 0.125)
        return x + self.proj(y.transpose(2, 3).reshape(T, N, L, C))


def main() -> None:
    import onnx
    import onnxruntime as ort

    torch.manual_seed(0)
    vit, x = TinyViT().eval(), torch.rand(4, 3, 16, 16)
    graph = snnir.trace(vit, x, time_axis=False)
    print("traced TinyViT:", dict(Counter(n.op for n in graph)))

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(vit, x[:1], buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    reference = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    imported = from_onnx(onnx.load_from_string(buf.getvalue()))
    with torch.no_grad():
        for route, g in (("torch", graph), ("ONNX", imported)):
            out = snnir.compile(g, step_mode="s")(x).numpy()
            print(f"{route:5} route vs onnxruntime: {np.abs(out - reference).max() / np.abs(reference).max():.1e} "
                  "(largest error / largest output)")

    with tempfile.TemporaryDirectory() as tmp:
        snnir.export(graph, Path(tmp) / "vit.onnx", format="onnx")
        streamed = StreamingSession(Path(tmp) / "vit.onnx")(x.numpy())
    print(f"streaming ONNX export vs torch: {np.abs(streamed - vit(x).detach().numpy()).max():.1e}")

    try:
        snnir.convert(vit, calibration=[x], progress=False)
    except snnir.GraphError as e:
        print("conversion:", str(e).split(". Rate-coded")[0])

    block = SpikformerBlock()
    with torch.no_grad():  # untrained weights, scaled so that every layer spikes
        block.qkv[0].weight.mul_(8)
        block.proj[0].weight.mul_(6)
    tokens = torch.rand(8, 2, 16, 32)  # [T, N, L, dim]
    g = snnir.trace(block, tokens)
    compiled = snnir.compile(g)
    rates = {}
    for name, m in block.named_modules():
        if isinstance(m, snn.Neuron):
            m.register_forward_hook(lambda mod, i, o, name=name: rates.__setitem__(name, round(float(o.mean()), 3)))
    snn.reset(block)
    with torch.no_grad():
        same = torch.equal(compiled(tokens), block(tokens))
    print(f"Spikformer block: {len(g)} nodes, compiled == eager: {same}, spike rates {rates}")


if __name__ == "__main__":
    main()

"""Tensor ops, activations and attention: traced from torch and imported from ONNX, run by the torch
backend in both step modes, saved and loaded, exported to streaming ONNX; references: the torch
module itself and onnxruntime on torch's own ONNX export."""

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snnir
from snnir import TraceError
from snnir.backends.onnx import StreamingSession
from snnir.frontends import from_onnx
from snnir.frontends.onnx import UnsupportedOpError

onnx = pytest.importorskip("onnx", reason="pip install onnx onnxruntime (test extras)")
ort = pytest.importorskip("onnxruntime", reason="pip install onnxruntime (test extras)")


class Attention(nn.Module):
    """timm's ViT attention: the batch moves behind the q/k/v axis and comes back."""

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.qkv, self.proj, self.norm = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim), nn.LayerNorm(dim)
        self.heads = heads

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        y = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return x + F.gelu(self.proj(y))


class Shapes(nn.Module):
    """Symbolic batch sizes in view/reshape, chunk/split, indexing, stack, expand, squeeze."""

    def forward(self, x):  # [N, 4, 6, 6]
        B, C, H, W = x.shape
        tokens = x.reshape(B, C, -1).transpose(1, 2)            # [B, 36, 4]
        a, b = tokens.chunk(2, dim=-1)
        first, rest = torch.split(tokens, [1, 35], dim=1)
        mixed = torch.stack([a, b], dim=1).flatten(1, 2)        # [B, 72, 2]
        picked = x[:, 1, 2:5, ::2].unsqueeze(1).squeeze(1)      # [B, 3, 3]
        grown = picked[..., :1].expand(-1, -1, 3) + picked      # broadcasting add
        return torch.cat([x.view(x.shape[0], -1), x.flatten(1), mixed.reshape(B, -1), rest.mean(1),
                          first.squeeze(1), grown.reshape(x.size(0), -1)], dim=1)


class Products(nn.Module):
    """matmul/bmm of two activations, and of an activation with constants on either side."""

    def __init__(self):
        super().__init__()
        self.left = nn.Parameter(torch.randn(3, 5))        # W @ x
        self.right = nn.Parameter(torch.randn(2, 16, 4))   # x @ W, batched over a per-sample axis
        self.vec = nn.Parameter(torch.randn(16))

    def forward(self, x):  # [N, 5, 16]
        B, L, C = x.shape
        a = torch.bmm(x, x.transpose(1, 2))                       # [N, 5, 5]
        b = self.left @ x                                         # [N, 3, 16]
        c = x.reshape(B, L, 2, 8).transpose(1, 2) @ self.right[:, :8]   # [N, 2, 5, 4]
        d = x @ self.vec                                          # [N, 5]
        tokens = x.reshape(B, -1, C // 2)                         # reshape(B, -1, C)
        gram = torch.matmul(tokens, tokens.transpose(-1, -2))
        return torch.cat([a.flatten(1), b.flatten(1), c.flatten(1), d, gram.flatten(1)], 1)


class Activations(nn.Module):
    def __init__(self):
        super().__init__()
        self.gelu, self.ln, self.sm = nn.GELU(approximate="tanh"), nn.LayerNorm([6, 6], eps=1e-6), nn.Softmax(dim=1)
        self.acts = nn.ModuleList([nn.Sigmoid(), nn.Tanh(), nn.SiLU(), nn.Hardswish(), nn.Hardsigmoid(), nn.ReLU6()])

    def forward(self, x):
        parts = [F.gelu(x), self.gelu(x), self.ln(x), self.sm(x), F.layer_norm(x, (6,)), torch.erf(x),
                 x.sum(dim=(2, 3), keepdim=True).expand_as(x), x.mean(-1, keepdim=True) - x, x / 3.0, 1 - x]
        parts += [a(x) for a in self.acts]
        return torch.cat(parts, dim=1)


class Resample(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):  # [N, C, 5, 6]
        outs = [self.up(x), F.interpolate(x, size=(7, 9), mode="nearest"),
                F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
                F.interpolate(x, size=(7, 9), mode="bilinear", align_corners=True),
                F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=False)]
        return torch.cat([o.flatten(1) for o in outs], dim=1)


class GroupedConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)  # ConvNeXt's layer scale: a parameter in forward
        self.shift = nn.Parameter(torch.rand(6))

    def forward(self, x):
        y = self.scale * self.grouped(F.relu(self.dw(x)))
        return (y.permute(0, 2, 3, 1) * self.shift[:, None]).permute(0, 3, 1, 2).contiguous()


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        out, weights = self.mha(x, x, x)
        return out, weights


class SDPA(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x))


CASES = [(Attention, (3, 5, 16)), (Shapes, (2, 4, 6, 6)), (Products, (2, 5, 16)),
         (Activations, (2, 3, 6, 6)), (Resample, (2, 3, 5, 6)),
         (GroupedConvs, (2, 4, 6, 6)), (SelfAttention, (3, 5, 16)), (SDPA, (2, 4, 8))]


def _inputs(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _outs(y):
    return [t.detach() for t in (y if isinstance(y, tuple) else (y,))]


@pytest.mark.parametrize("factory,shape", CASES, ids=[c[0].__name__ for c in CASES])
def test_traced_ops_match_torch_in_both_step_modes(factory, shape, tmp_path):
    torch.manual_seed(0)
    model = factory().eval()
    x = _inputs(shape)
    g = snnir.trace(model, x, time_axis=False)
    snnir.save(g, tmp_path / "g.snnir")
    g = snnir.load(tmp_path / "g.snnir")
    with torch.no_grad():
        ref = _outs(model(x))
        single = _outs(snnir.compile(g, step_mode="s")(x))
        xs = torch.stack([x, _inputs(shape, 1)])
        multi = _outs(snnir.compile(g, step_mode="m")(xs))
        ref2 = _outs(model(xs[1]))
    for r, s, m, r2 in zip(ref, single, multi, ref2):
        torch.testing.assert_close(s, r, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(m[0], r, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(m[1], r2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("factory,shape", CASES, ids=[c[0].__name__ for c in CASES])
def test_streaming_onnx_export_matches_torch(factory, shape, tmp_path):
    torch.manual_seed(0)
    model = factory().eval()
    x = _inputs(shape)
    g = snnir.trace(model, x, time_axis=False)
    snnir.export(g, tmp_path / "m.onnx", format="onnx")
    y = StreamingSession(tmp_path / "m.onnx")(x.numpy())
    with torch.no_grad():
        ref = _outs(model(x))
    for r, o in zip(ref, y if isinstance(y, tuple) else (y,)):
        np.testing.assert_allclose(o, r.numpy(), rtol=1e-5, atol=1e-5 * float(r.abs().max()))


def _onnx_model(model, x, **kwargs):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, buf, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}, **kwargs)
    return onnx.load_from_string(buf.getvalue())


def _ort(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("opset", [None, 14])
@pytest.mark.parametrize("factory,shape", [c for c in CASES if c[0] is not SelfAttention],
                         ids=[c[0].__name__ for c in CASES if c[0] is not SelfAttention])
def test_onnx_import_matches_onnxruntime(factory, shape, opset):
    """Opset 20 (torch's default) has Gelu and LayerNormalization; opset 14 spells them out with
    Erf, ReduceMean, Pow, Sqrt: both import. The batch is dynamic, so shapes are computed in the graph."""
    torch.manual_seed(0)
    model = factory().eval()
    x = _inputs(shape)
    proto = _onnx_model(model, x[:1], **({"opset_version": opset} if opset else {}))
    ref = _ort(proto, x.numpy())
    with torch.no_grad():
        out = _outs(snnir.compile(from_onnx(proto), step_mode="s")(x))
    for r, o in zip(ref, out):
        assert np.abs(o.numpy() - r).max() <= 1e-5 * np.abs(r).max()


def test_onnx_identity_on_initializers_and_shared_weights():
    """torch's exporter deduplicates equal initializers through Identity nodes (SqueezeNet's biases,
    all zero at initialization): the weights stay constants."""
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
            nn.init.zeros_(self.a.bias)
            nn.init.zeros_(self.b.bias)

        def forward(self, x):
            return self.b(F.relu(self.a(x)))

    model = Shared().eval()
    x = _inputs((2, 3, 4, 4))
    proto = _onnx_model(model, x[:1])
    assert any(n.op_type == "Identity" for n in proto.graph.node)
    g = from_onnx(proto)
    assert [n.op for n in g] == ["input", "conv2d", "relu", "conv2d", "output"]
    np.testing.assert_allclose(snnir.compile(g, step_mode="s")(x).detach().numpy(), _ort(proto, x.numpy())[0],
                               rtol=1e-5, atol=1e-6)


def test_multi_head_attention_weights_emitted_only_when_used():
    class OutOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    g = snnir.trace(OutOnly().eval(), _inputs((2, 3, 16)), time_axis=False)
    assert [n.op for n in g].count("mean") == 0 and [n.op for n in g].count("softmax") == 1
    g = snnir.trace(SelfAttention().eval(), _inputs((2, 3, 16)), time_axis=False)
    assert [n.op for n in g].count("mean") == 1  # the head-averaged weights


def test_gradients_flow_through_attention_like_torch():
    torch.manual_seed(0)
    model = Attention().train()
    x = _inputs((3, 5, 16))
    compiled = snnir.compile(snnir.trace(model, x, time_axis=False), step_mode="s").train()
    grads = []
    for m in (model, compiled):
        xi = x.clone().requires_grad_()
        (m(xi) * torch.linspace(0.5, 1.5, 5 * 16).view(5, 16)).sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn,match", [
    (lambda x: x.reshape(-1, 16), r"fx node 'reshape'.*mixes the batch axis"),
    (lambda x: x.mean(0), r"mean over dim 0 touches the batch axis"),
    (lambda x: x.sum(), r"sum over all axes reduces the batch axis"),
    (lambda x: x[0], r"index 0 on dim 0 selects along the batch axis"),
    (lambda x: x.permute(1, 0, 2), r"model output 0 has its batch axis behind per-sample axes"),
    (lambda x: x.transpose(0, 2), r"transpose over dim 0 touches the batch axis"),
    (lambda x: x.unsqueeze(0).repeat(2, 1, 1, 1), r"no snnir op for call_method 'repeat'"),
    (lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"), r"interpolate mode 'bicubic'"),
    (lambda x: torch.softmax(x, dim=0), r"softmax over dim 0 touches the batch axis"),
    (lambda x: x @ x, r"matmul of per-sample shapes \(5, 16\) by \(5, 16\): inner sizes 16 and 5 differ|inner sizes"),
])
def test_refusals_name_the_call(fn, match):
    with pytest.raises(TraceError, match=match):
        snnir.trace(_Fn(fn), _inputs((3, 5, 16)), time_axis=False)


def test_multi_head_attention_with_batch_second_is_refused():
    with pytest.raises(TraceError, match="batch_first=False"):
        snnir.trace(_Fn(nn.MultiheadAttention(16, 2)), _inputs((3, 5, 16)), time_axis=False)


def test_onnx_refusals_name_the_node():
    # torch's multi-head attention export folds the batch into rows: it imports (tests/test_onnx_mha.py);
    # a batch split across two axes cannot be per-sample data
    proto = _onnx_model(_Fn(lambda t: t.reshape(5, -1, 16)), _inputs((2, 5, 16)))
    with pytest.raises(UnsupportedOpError, match=r"ONNX op 'Reshape'.*mixes the batch axis"):
        from_onnx(proto)


def test_symbolic_batch_in_multi_step_code():
    """SpikingJelly-style code: [T, N, ...] flattened to [T*N, ...] for a stateless layer and
    reshaped back with the sizes read from x.shape."""
    from snnir import nn as snn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.lif = nn.Conv1d(4, 6, 1), snn.LIF(step_mode="m")

        def forward(self, x):  # [T, N, C, L]
            T, N, C, L = x.shape
            y = self.conv(x.flatten(0, 1)).reshape(T, N, -1, L)
            return self.lif(y).transpose(-1, -2).reshape(T, N, L, 2, 3).sum(-1)

    torch.manual_seed(0)
    net = Block()
    x = torch.rand(5, 2, 4, 7) * 3
    g = snnir.trace(net, x)
    assert g.node(g.inputs[0]).shape == (4, 7)
    snn.reset(net)
    with torch.no_grad():
        assert torch.equal(snnir.compile(g)(x), net(x))
    merge_batch = nn.Sequential(snn.LIF(step_mode="m"), _Fn(lambda t: t.reshape(t.shape[0], -1)))
    with pytest.raises(TraceError, match=r"reshape to \(T=5, -1\) mixes the time and batch axes"):
        snnir.trace(merge_batch, torch.rand(5, 2, 4))

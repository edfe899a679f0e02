"""torch's ONNX export of nn.MultiheadAttention and nn.TransformerEncoderLayer imports and matches
onnxruntime at batch sizes other than the export's.

The export folds the batch with the heads (``[L, N*H, hd]``) and with the sequence (``[L*N, E]``);
the importer keeps such values per sample (``Value.fold``) and the graph stays batch-independent.
With ``batch_first=False`` the batch is axis 1 of the input and output: the snnir graph takes and
returns them batch-first (``g.meta["batch_axes"]`` says so).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir.frontends import from_onnx
from snnir.frontends.onnx import UnsupportedOpError

onnx = pytest.importorskip("onnx", reason="pip install onnx onnxruntime (test extras)")
ort = pytest.importorskip("onnxruntime", reason="pip install onnx onnxruntime (test extras)")

E, HEADS, L = 16, 2, 5


class SelfAttention(nn.Module):
    def __init__(self, batch_first: bool, need_weights: bool, mask: torch.Tensor | None = None):
        super().__init__()
        self.mha = nn.MultiheadAttention(E, HEADS, batch_first=batch_first)
        self.need_weights, self.mask = need_weights, mask

    def forward(self, x):
        y, w = self.mha(x, x, x, need_weights=self.need_weights, attn_mask=self.mask)
        return (y, w) if self.need_weights else y


class Encoder(nn.Module):
    """``is_causal=False`` spelled out: torch's TorchScript export of a bare call fails in torch itself."""

    def __init__(self, batch_first: bool, norm_first: bool):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(E, HEADS, dim_feedforward=32, dropout=0.0,
                                                batch_first=batch_first, norm_first=norm_first)

    def forward(self, x):
        return self.layer(x, is_causal=False)


def _export(model: nn.Module, x: torch.Tensor, axis: int | None, dynamo: bool = False):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(model, (x,), buf, dynamo=True, input_names=["x"],
                              dynamic_shapes={"x": {axis: torch.export.Dim("n")}})
        else:
            torch.onnx.export(model, x, buf, dynamo=False, input_names=["x"],
                              dynamic_axes=None if axis is None else {"x": {axis: "n"}})
    return onnx.load_from_string(buf.getvalue())


def _shape(batch_first: bool, n: int) -> tuple[int, ...]:
    return (n, L, E) if batch_first else (L, n, E)


def _run(g, x: np.ndarray, axis: int) -> list[np.ndarray]:
    """The compiled graph on ``x`` (batch at ``axis``), outputs moved back where the file has them."""
    with torch.no_grad():
        out = snnir.compile(g, step_mode="s")(torch.from_numpy(x).movedim(axis, 0))
    outs = out if isinstance(out, tuple) else (out,)
    moved = g.meta.get("batch_axes", {})
    return [o.movedim(0, moved.get(out_id, 0)).numpy() for o, out_id in zip(outs, g.outputs, strict=True)]


def _max_rel_error(proto, g, batch_first: bool, sizes=(3, 7)) -> float:
    axis = 0 if batch_first else 1
    rng = np.random.default_rng(0)
    errors = []
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in sizes:
        x = rng.standard_normal(_shape(batch_first, n)).astype(np.float32)
        for ref, out in zip(session.run(None, {"x": x}), _run(g, x, axis), strict=True):
            assert out.shape == ref.shape
            errors.append(float(np.abs(out - ref).max() / np.abs(ref).max()))
    return max(errors)


@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "no_weights"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "batch_second"])
def test_multihead_attention_matches_onnxruntime(batch_first, need_weights):
    torch.manual_seed(0)
    model = SelfAttention(batch_first, need_weights).eval()
    axis = 0 if batch_first else 1
    proto = _export(model, torch.randn(_shape(batch_first, 2)), axis)
    g = from_onnx(proto)
    assert _max_rel_error(proto, g, batch_first) <= 1e-5
    ops = [n.op for n in g]
    assert ops.count("softmax") == 1 and ops.count("mean") == int(need_weights)
    if batch_first:
        assert "batch_axes" not in g.meta
    else:  # y is [L, N, E]; the head-averaged weights are [N, L, L]
        assert g.meta["batch_axes"] == {g.inputs[0]: 1, g.outputs[0]: 1}


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "batch_second"])
def test_multihead_attention_from_the_dynamo_exporter(batch_first):
    torch.manual_seed(0)
    model = SelfAttention(batch_first, True).eval()
    proto = _export(model, torch.randn(_shape(batch_first, 2)), 0 if batch_first else 1, dynamo=True)
    assert _max_rel_error(proto, from_onnx(proto), batch_first) <= 1e-5


@pytest.mark.parametrize("mask", ["float", "bool"])
def test_constant_causal_mask(mask):
    """torch exports a boolean mask as -inf where masked; IR constants are finite, so the importer
    uses float32's lowest value, which softmax turns into the same zero weights."""
    torch.manual_seed(0)
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
    m = causal if mask == "bool" else torch.zeros(L, L).masked_fill(causal, float("-inf"))
    model = SelfAttention(True, True, m).eval()
    proto = _export(model, torch.randn(_shape(True, 2)), 0)
    assert _max_rel_error(proto, from_onnx(proto), True) <= 1e-5


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_norm", "pre_norm"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "batch_second"])
def test_transformer_encoder_layer_matches_onnxruntime(batch_first, norm_first):
    torch.manual_seed(0)
    model = Encoder(batch_first, norm_first).eval()
    proto = _export(model, torch.randn(_shape(batch_first, 2)), 0 if batch_first else 1)
    assert _max_rel_error(proto, from_onnx(proto), batch_first) <= 1e-5


def test_static_batch_export_is_located_and_runs_at_any_batch():
    """An export without dynamic axes bakes N=2 into the reshape targets ([5, 4, 8]); the one axis
    that can hold the batch is found, and the graph runs at other batch sizes like the torch model."""
    torch.manual_seed(0)
    model = SelfAttention(True, True).eval()
    proto = _export(model, torch.randn(2, L, E), None)
    g = from_onnx(proto)
    x = torch.randn(6, L, E)
    with torch.no_grad():
        ref = model(x)
        out = snnir.compile(g, step_mode="s")(x)
    for r, o in zip(ref, out, strict=True):
        np.testing.assert_allclose(o.numpy(), r.numpy(), rtol=1e-5, atol=1e-5 * float(r.abs().max()))


def test_static_batch_of_one_is_ambiguous_and_says_how_to_export():
    proto = _export(SelfAttention(True, False).eval(), torch.randn(1, L, E), None)
    with pytest.raises(UnsupportedOpError, match=r"node '/mha/Reshape_\d'.*fixed the batch size \(1\).*dynamic_axes"):
        from_onnx(proto)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("fn,match", [
    (lambda t: t.reshape(-1, E).softmax(0),
     r"node '/Softmax' \(Softmax\): Softmax over dim 0 of a tensor of shape \(N\*5, 16\): that axis holds the batch "
     r"folded"),
    (lambda t: t.reshape(-1, E).sum(0), r"node '/ReduceSum' \(ReduceSum\): ReduceSum over dim 0 .*folded"),
    (lambda t: t.reshape(-1, E), r"graph output '\d+' has the batch folded with per-sample axes \(a tensor of shape "
                                 r"\(N\*5, 16\)\)"),
    (lambda t: t.reshape(L, -1, E), r"node '/Reshape'.*to \['5', '-1', '16'\] mixes the batch axis"),
    (lambda t: t.transpose(0, 1).reshape(L, -1) @ torch.ones(32, 3),
     r"MatMul.*matmul of a tensor of shape \(5, N\*16\): its last axis must be per-sample"),
])
def test_a_folded_batch_used_where_it_cannot_be_is_refused_by_node(fn, match):
    x = torch.randn(2, L, E)
    proto = _export(_Fn(fn), x, 0)
    with pytest.raises(UnsupportedOpError, match=match):
        from_onnx(proto)


def test_folded_reshapes_that_keep_the_batch_whole_match_onnxruntime():
    """[N, 5, 16] -> [N*5, 16] -> linear -> [N, 5, 3]: the fold is undone before the output."""
    class Rows(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(E, 3)

        def forward(self, t):
            return self.lin(t.reshape(-1, E)).reshape(t.shape[0], L, 3)

    torch.manual_seed(0)
    proto = _export(Rows().eval(), torch.randn(2, L, E), 0)
    g = from_onnx(proto)
    assert [n.op for n in g] == ["input", "linear", "output"]
    assert _max_rel_error(proto, g, True) <= 1e-5


def test_batch_axis_of_inputs():
    """Several dynamic axes need ``batch_axis=``; given, it picks the batch."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Fn(lambda t: t * 2), torch.randn(L, 2, E), buf, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "l", 1: "n"}})
    proto = onnx.load_from_string(buf.getvalue())
    with pytest.raises(snnir.errors.FormatError, match=r"input 'x' has several dynamic axes \[0, 1\].*batch_axis="):
        from_onnx(proto)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = L
    g = from_onnx(proto, batch_axis=1)
    assert g.node(g.inputs[0]).attrs["shape"] == (L, E) and g.meta["batch_axes"] == {g.inputs[0]: 1, g.outputs[0]: 1}
    assert _max_rel_error(proto, g, False) == 0.0


@pytest.mark.parametrize("target,allowzero,match", [
    ([0, 5, 16], 1, "mixes the batch axis"),
    ([-1, 0], 1, "the sizes do not fit"),
    ([2 ** 40, 16], 0, "mixes the batch axis"),
    ([-1, 3, 16], 0, "the sizes do not fit"),
])
def test_malformed_reshape_targets_are_refused_by_node(target, allowzero, match):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"], name="bad", allowzero=allowzero),
         helper.make_node("Relu", ["y"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", L, E])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [])],
        [helper.make_tensor("s", TensorProto.INT64, [len(target)], target)])
    with pytest.raises(UnsupportedOpError, match=rf"node 'bad'.*{match}"):
        from_onnx(helper.make_model(graph))

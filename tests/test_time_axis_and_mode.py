"""``compile`` keeps the traced model's training mode; the time axis is checked against the shapes
recorded at trace time, at compile-time call and at trace time, with messages naming the shapes."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

import snnir
from snnir import Graph, TraceError
from snnir import nn as snn


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return snn.set_step_mode(nn.Sequential(snn.Linear(4, 6), snn.BatchNorm1d(6), snn.Dropout(0.5), snn.LIF(),
                                           snn.Linear(6, 2)), "m")


def _warm_batchnorm(net: nn.Module) -> None:
    """Running statistics that differ from any batch's, so eval and train modes disagree."""
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        bn.running_mean.fill_(0.3)
        bn.running_var.fill_(2.0)


# --- training mode -----------------------------------------------------------------------------------
def test_eval_model_compiles_to_an_eval_module_with_the_same_outputs(tmp_path):
    net = _mlp()
    _warm_batchnorm(net)
    net.eval()
    x = torch.rand(5, 8, 4) * 2
    ref = net(x)
    snn.reset(net)
    assert not torch.equal(copy.deepcopy(net).train()(x), ref)  # the modes differ on this input
    g = snnir.trace(net, x)
    assert g.meta["training"] is False and "training_nodes" not in g.meta
    snnir.save(g, tmp_path / "m.snnir")
    for graph in (g, snnir.load(tmp_path / "m.snnir")):
        m = snnir.compile(graph)
        assert not m.training and not any(sub.training for sub in m.modules())
        assert torch.equal(m(x), ref)  # running statistics, dropout off
        m.reset()
        assert torch.equal(m(x), ref)


def test_training_model_compiles_to_a_training_module():
    net = _mlp().train()
    x = torch.rand(5, 8, 4)
    m = snnir.compile(snnir.trace(net, x))
    assert m.training and all(sub.training for sub in m.modules())
    bn = next(sub for sub in m.modules() if isinstance(sub, nn.BatchNorm1d))
    before = bn.running_mean.clone()
    m(x)
    assert not torch.equal(bn.running_mean, before)  # batch statistics in use


def test_a_frozen_batchnorm_in_a_training_model_stays_frozen():
    net = _mlp().train()
    _warm_batchnorm(net)
    net[1].eval()
    x = torch.rand(5, 8, 4)
    g = snnir.trace(net, x)
    bn_id = next(n.id for n in g if n.op == "batchnorm")
    assert g.meta["training"] is True and g.meta["training_nodes"] == {bn_id: False}
    m = snnir.compile(g)
    assert m.training and not m.layer(bn_id).training and m.layer(next(n.id for n in g if n.op == "dropout")).training
    m(x)
    assert torch.equal(m.layer(bn_id).running_mean, torch.full((6,), 0.3))


def test_a_graph_without_a_record_compiles_in_training_mode():
    g = Graph()
    x = g.add_input((3,))
    g.add_output(g.add_node("dropout", [x], attrs={"p": 0.5}))
    assert "training" not in g.meta
    assert snnir.compile(g).training


def test_onnx_checkpoints_import_in_eval_mode(tmp_path):
    pytest.importorskip("onnx", reason="onnx is a test dependency")
    from snnir.frontends.onnx import from_onnx

    ann = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU()).eval()
    _warm_batchnorm(ann)
    torch.onnx.export(ann, torch.rand(1, 4), str(tmp_path / "a.onnx"), dynamo=False)
    g = from_onnx(tmp_path / "a.onnx")
    assert g.meta["training"] is False and not snnir.compile(g).training


# --- the time axis at call time ------------------------------------------------------------------------
def _compiled(step_mode: str):
    net = snn.set_step_mode(nn.Sequential(snn.Conv2d(1, 2, 3), snn.LIF(), snn.Flatten(), snn.Linear(18, 2)), "m")
    return snnir.compile(snnir.trace(net, torch.rand(2, 1, 1, 5, 5)), step_mode=step_mode)


def test_multi_step_module_given_one_step_names_the_expected_shape():
    m = _compiled("m")
    assert m(torch.rand(3, 2, 1, 5, 5)).shape == (3, 2, 2)
    with pytest.raises(ValueError, match=re.escape(
            "graph 'Sequential' (step_mode='m') expects input 'input' of shape [T, N, 1, 5, 5] (per-sample shape "
            "(1, 5, 5), recorded at trace time), got [2, 1, 5, 5]: the time axis is missing")):
        m(torch.rand(2, 1, 5, 5))


def test_single_step_module_given_a_sequence_says_so():
    m = _compiled("s")
    assert m(torch.rand(2, 1, 5, 5)).shape == (2, 2)
    with pytest.raises(ValueError, match=re.escape(
            "expects input 'input' of shape [N, 1, 5, 5] (per-sample shape (1, 5, 5), recorded at trace time), got "
            "[3, 2, 1, 5, 5]: this is a sequence, but a single-step module takes one time step per call")):
        m(torch.rand(3, 2, 1, 5, 5))


def test_wrong_per_sample_shape_is_named():
    with pytest.raises(ValueError, match=re.escape("expects input 'input' of shape [T, N, 1, 5, 5] (per-sample shape "
                                                   "(1, 5, 5), recorded at trace time), got [3, 2, 1, 6, 6]")):
        _compiled("m")(torch.rand(3, 2, 1, 6, 6))


def test_vector_input_without_time_axis_is_not_read_as_time():
    """[N, F] would otherwise run as N time steps of F scalars."""
    g = snnir.trace(snn.set_step_mode(nn.Sequential(snn.Linear(4, 4), snn.LIF()), "m"), torch.rand(3, 2, 4))
    with pytest.raises(ValueError, match=re.escape("of shape [T, N, 4] (per-sample shape (4,), recorded at trace "
                                                   "time), got [8, 4]: the time axis is missing")):
        snnir.compile(g)(torch.rand(8, 4))


# --- the time axis at trace time ------------------------------------------------------------------------
@pytest.mark.parametrize("net, example, sample", [
    (nn.Sequential(snn.Linear(4, 3), snn.LIF()), torch.rand(8, 4), "(4,)"),
    (nn.Sequential(snn.Conv2d(1, 2, 3), snn.LIF()), torch.rand(8, 1, 5, 5), "(1, 5, 5)"),
])
def test_tracing_an_example_without_time_axis_asks_for_time_axis_false(net, example, sample):
    got = str(list(example.shape))
    with pytest.raises(TraceError, match=re.escape(f"example input {got} has no time axis: Sequential takes "
                                                   f"per-sample shape {sample}, so this is [N, ...]. Pass "
                                                   "time_axis=False")):
        snnir.trace(net, example)
    g = snnir.trace(net, example, time_axis=False)
    assert str(g.node(g.inputs[0]).shape) == sample
    y = snnir.compile(g, step_mode="s")(example)
    assert y.shape[0] == 8


def test_an_example_that_fits_no_way_keeps_the_shape_error():
    # the tracer maps each call as it runs, so the error names the module whose shapes do not fit
    expected = r"module '0'.*linear expects a last axis of 4 features, got input shape \(5,\)"
    with pytest.raises(TraceError, match=expected) as info:
        snnir.trace(nn.Sequential(snn.Linear(4, 3)), torch.rand(2, 8, 5))
    assert "time_axis" not in str(info.value)


def test_compiled_outputs_of_single_step_trace_match_eager():
    torch.manual_seed(3)
    net = nn.Sequential(snn.Linear(4, 3), snn.LIF())
    xs = torch.rand(6, 2, 4) * 2
    ref = torch.stack([net(xt) for xt in xs])
    m = snnir.compile(snnir.trace(net, xs[0], time_axis=False), step_mode="s")
    np.testing.assert_array_equal(torch.stack([m(xt) for xt in xs]).detach().numpy(), ref.detach().numpy())


# --- snnir.nn layers with a fixed input layout ------------------------------------------------------------
@pytest.mark.parametrize("layer, x, message", [
    (snn.Conv2d(1, 2, 3, step_mode="m"), torch.rand(4, 1, 5, 5),
     "Conv2d (step_mode='m') expects [T, N, C, H, W], got shape [4, 1, 5, 5]: the time axis is missing"),
    (snn.Conv2d(1, 2, 3), torch.rand(3, 4, 1, 5, 5),
     "Conv2d (step_mode='s') expects [N, C, H, W], got shape [3, 4, 1, 5, 5]: this is a sequence"),
    (snn.MaxPool2d(2, step_mode="m"), torch.rand(4, 1, 6, 6),  # would pool with T taken for N
     "MaxPool2d (step_mode='m') expects [T, N, C, H, W], got shape [4, 1, 6, 6]: the time axis is missing"),
    (snn.BatchNorm1d(3, step_mode="m"), torch.rand(4, 3),
     "BatchNorm1d (step_mode='m') expects [T, N, F] or [T, N, C, L], got shape [4, 3]: the time axis is missing"),
    (snn.Conv1d(2, 2, 3, step_mode="m"), torch.rand(4, 2, 2, 2, 9),
     "Conv1d (step_mode='m') expects [T, N, C, L], got shape [4, 2, 2, 2, 9]"),
])
def test_multi_and_single_step_layers_name_a_time_axis_mistake(layer, x, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(x)

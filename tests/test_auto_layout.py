"""``snnir.compile``'s automatic layout: 2-d convolutions on CPU tensors run channels-last.

Reference: the same compiled graph with ``memory_format=torch.contiguous_format`` (NCHW throughout,
the eager model's layout) — in float64, where the two layouts' convolutions agree to ~1e-15 and so
spikes must be identical; in float32 to convolution rounding.
"""

from __future__ import annotations

import pytest
import torch
from test_fused_training import _step  # (output, input grad, parameter grads) of one backward

import snnir
from snnir import nn as snn
from snnir.backends.torch import layers as L

pytestmark = pytest.mark.skipif(not L.onednn_enabled(), reason="torch here runs CPU convolutions without oneDNN")


def conv_net() -> torch.nn.Module:
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        snn.Conv2d(2, 8, 3, padding=1, bias=False), snn.BatchNorm2d(8), snn.LIF(tau=2.0),
        snn.Conv2d(8, 8, 3, padding=1, stride=2), snn.LIF(tau=2.0), snn.MaxPool2d(2),
        snn.Flatten(), snn.Linear(8 * 2 * 2, 10), snn.LIF(tau=2.0))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(2.5)
        net[1].weight.fill_(3.0)  # every layer spikes (checked in the tests)
        net[3].weight.mul_(2.0)
        net[7].weight.abs_().mul_(4.0)
    return snn.set_step_mode(net, "m")


def _conv_ids(graph) -> list[str]:
    return [n.id for n in graph if n.op == "conv2d"]


def test_auto_layout_runs_convolutions_channels_last_and_equals_nchw_in_float64():
    x = torch.rand(3, 4, 2, 8, 8, dtype=torch.float64) * 2
    graph = snnir.trace(conv_net().double(), x)
    nchw = snnir.compile(graph, memory_format=torch.contiguous_format).double()
    auto = snnir.compile(graph).double()
    neurons = [n.id for n in graph if n.op == "neuron"]
    for m, channels_last in ((nchw, False), (auto, True)):
        m.capture = set(_conv_ids(graph)) | set(neurons)
        m(x)
        for node in _conv_ids(graph):
            frame = m.captured[node].flatten(0, 1)
            assert frame.is_contiguous(memory_format=torch.channels_last) == channels_last, node
            assert frame.is_contiguous() != channels_last, node
        assert all(0 < float(m.captured[n].detach().mean()) < 1 for n in neurons)
        m.capture = set()
        m.reset()  # the states held the captured run's graph
    ref, got = _step(nchw, x), _step(auto, x)
    assert 0 < ref[0].mean() < 1
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)
    for name, g in ref[2].items():
        torch.testing.assert_close(got[2][name], g, rtol=1e-10, atol=1e-12, msg=name)
        # parameters and their gradients keep their layout: only activations change
        assert auto.get_parameter(name).is_contiguous() and got[2][name].is_contiguous(), name


def test_auto_layout_float32_agrees_to_convolution_rounding():
    x = torch.rand(3, 4, 2, 8, 8) * 2
    graph = snnir.trace(conv_net(), x)
    ref = _step(snnir.compile(graph, memory_format=torch.contiguous_format), x)
    got = _step(snnir.compile(graph), x)
    assert (got[0] == ref[0]).float().mean() > 0.95  # a neuron within rounding of its threshold may flip
    for name, g in ref[2].items():
        cos = torch.nn.functional.cosine_similarity(got[2][name].flatten(), g.flatten(), dim=0)
        assert cos > 0.99, name


def test_image_outputs_are_returned_contiguous_in_both_step_modes():
    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(snn.Conv2d(3, 4, 3, padding=1), snn.IF()), "m")
    x = torch.rand(2, 2, 3, 6, 6)
    graph = snnir.trace(net, x)
    multi = snnir.compile(graph)
    multi.capture = set(_conv_ids(graph))
    y = multi(x)
    assert multi.captured[_conv_ids(graph)[0]].flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (2, 2, 4, 6, 6) and y.is_contiguous()
    y.view(2, 2, -1)  # a contiguous output: views work as on the eager model
    single = snnir.compile(graph, step_mode="s")
    steps = torch.stack([single(t) for t in x])
    assert all(single(t).is_contiguous() for t in x)
    torch.testing.assert_close(steps, y, rtol=0, atol=0)


def test_layouts_left_alone_without_onednn_or_off_cpu(monkeypatch):
    x = torch.rand(2, 2, 2, 8, 8)
    graph = snnir.trace(conv_net(), x)
    conv = _conv_ids(graph)[0]
    m = snnir.compile(graph)
    m.capture = {conv}
    torch.backends.mkldnn.enabled = False  # torch's own NCHW kernels: no reason to convert
    try:
        m(x)
    finally:
        torch.backends.mkldnn.enabled = True
    assert m.captured[conv].flatten(0, 1).is_contiguous()
    m.reset()
    monkeypatch.setattr(L, "onednn_enabled", lambda: False)
    m(x)
    assert m.captured[conv].flatten(0, 1).is_contiguous()
    m.reset()
    m.to("meta")  # another device: not converted (cuDNN's choice is the user's, memory_format=...)
    m.capture = set()
    monkeypatch.undo()
    layer = m.layer(conv)
    assert layer.channels_last_on_cpu
    y = layer(torch.empty(2, 2, 2, 8, 8, device="meta"))
    assert y.flatten(0, 1).is_contiguous()


def test_explicit_formats_and_bad_values():
    x = torch.rand(2, 2, 2, 8, 8)
    graph = snnir.trace(conv_net(), x)
    conv = _conv_ids(graph)[0]
    cl = snnir.compile(graph, memory_format=torch.channels_last)
    assert cl.layer(conv).weight.is_contiguous(memory_format=torch.channels_last)
    assert not cl.layer(conv).channels_last_on_cpu
    plain = snnir.compile(graph, memory_format=None)  # layouts as the tensors come
    plain.capture = {conv}
    plain(x)
    assert plain.captured[conv].flatten(0, 1).is_contiguous()
    with pytest.raises(ValueError, match="memory_format must be 'auto'.*got 'nhwc'"):
        snnir.compile(graph, memory_format="nhwc")


def test_graphs_without_2d_convolutions_are_untouched():
    torch.manual_seed(0)
    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(4, 3), snn.LIF()), "m")
    m = snnir.compile(snnir.trace(net, torch.rand(2, 2, 4)))
    assert not m._auto_layout

"""API habits users bring from torch/onnxruntime: callable passes, session.run, readable help()."""

import inspect
import pydoc

import numpy as np
import pytest
import torch

import snnir
from snnir import faces
from snnir import nn as snn


def test_every_registered_pass_is_callable_from_snnir_passes():
    from snnir.passes import get_pass, registered_passes

    for name in registered_passes():
        fn = getattr(snnir.passes, name)
        assert callable(fn) and fn is get_pass(name), name
    g = snnir.Graph()
    x = g.add_input((2,))
    g.add_output(g.add_node("linear", [x], params={"weight": np.array([[0.5, -1.0], [0.1, 0.2]], np.float32)}))
    q = snnir.passes.quantize(g, bits=4, per_channel=False)
    assert q.node("linear").attrs["quant"]["scale"] == pytest.approx(1.0 / 7)
    from snnir.passes.quantize import SYNAPSES  # the module stays importable by its path

    assert "linear" in SYNAPSES


def test_help_shows_each_neurons_real_defaults():
    for cls, expected in [(snn.LIF, {"tau": 2.0, "v_threshold": 1.0, "v_reset": 0.0, "decay_input": True}),
                          (snn.Izhikevich, {"v_threshold": 30.0, "v_reset": -65.0, "a": 0.02}),
                          (snn.CubaLIF, {"tau_syn": 2.0, "tau_mem": 2.0}),
                          (snn.ParametricLIF, {"init_tau": 2.0})]:
        params = inspect.signature(cls).parameters
        for name, default in expected.items():
            assert params[name].default == default, (cls.__name__, name)
        made = cls()  # the defaults shown are the ones used
        assert made.v_threshold == params["v_threshold"].default
        text = pydoc.render_doc(cls)
        assert "object object at" not in text and "tau" in text or cls is snn.Izhikevich
    assert "<model default>" in str(inspect.signature(snn.Neuron))
    from snnir.neurons import NeuronModel

    class Leaky(NeuronModel):
        params = {"tau": 7.0}

        def charge(self, s, **options):
            return {"v": s.v + (s.x - s.v) / s.tau}

    assert inspect.signature(snn.neuron_class(Leaky)).parameters["tau"].default == 7.0


def test_compile_docstring_lists_every_backend():
    for name in faces.BACKENDS:
        assert f'``"{name}"``' in faces.compile.__doc__, name


def test_streaming_session_run_as_onnxruntime_users_expect(tmp_path):
    pytest.importorskip("onnxruntime")
    from snnir.backends.onnx import StreamingSession

    net = snn.set_step_mode(torch.nn.Sequential(snn.Linear(3, 4), snn.LIF(tau=2.0)), "m")
    g = snnir.trace(net, torch.zeros(2, 1, 3))
    snnir.export(g, tmp_path / "m.onnx", format="onnx")
    x = np.random.default_rng(0).random((6, 2, 3), dtype=np.float32) * 2
    a, b = StreamingSession(tmp_path / "m.onnx"), StreamingSession(tmp_path / "m.onnx")
    name = a.input_names[0]
    for t in range(6):  # three spellings, one state sequence each
        expected = a(x[t])
        np.testing.assert_array_equal(b.run(x[t]) if t % 2 else b.run(None, {name: x[t]})[0], expected)
    assert b.run([b.output_names[0]], {name: x[0]})[0].shape == (2, 4)
    with pytest.raises(ValueError, match="unknown output names"):
        b.run(["nope"], {name: x[0]})
    with pytest.raises(ValueError, match="unknown \\['wrong'\\]"):
        b.run(None, {"wrong": x[0]})

"""The ``snnir`` command line: every verb on its normal path and on the mistakes users make.

References are the Python API (``snnir.trace``, ``snnir.convert``, ``snnir.compile``) and, for the
firing-rate summary, spike counts taken by hand from the compiled module's captured values.
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.cli import VERBS, main

FACTORIES = textwrap.dedent("""
    import torch
    from snnir import nn as snn

    def make_model(hidden=12):
        return snn.set_step_mode(torch.nn.Sequential(
            snn.Conv2d(1, 4, 3, padding=1), snn.BatchNorm2d(4), snn.LIF(), snn.Flatten(),
            snn.Linear(4 * 6 * 6, hidden), snn.LIF(), snn.Linear(hidden, 3), snn.LIF()), "m")

    def make_ann():
        return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.Linear(4 * 6 * 6, 3))

    def loihi_net():
        return torch.nn.Sequential(snn.Conv2d(1, 4, 3, stride=2, padding=1), snn.LIF(tau=2.0), snn.Flatten(),
                                   snn.Linear(4 * 3 * 3, 3), snn.LIF(tau=2.0))

    def broken():
        raise RuntimeError("no GPU here")

    def not_a_module():
        return 42
""")


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.py").write_text(FACTORIES)
    return tmp_path


def _cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``snnir argv``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _factory(work, name):
    sys.path.insert(0, str(work))
    try:
        import importlib

        import models
        importlib.reload(models)
        return getattr(models, name)
    finally:
        sys.path.remove(str(work))


def _spiky_model(work):
    """The factory's model with weights that make every layer fire, saved as a state_dict."""
    torch.manual_seed(0)
    model = _factory(work, "make_model")()
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.0, 0.6)
    torch.save(model.state_dict(), work / "w.pt")
    return model.eval()


# -- the parser ------------------------------------------------------------------------------------
def test_every_verb_has_help_with_examples(capsys):
    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: snnir {verb}" in out
        if verb != "version":
            assert "examples:" in out and f"snnir {verb} " in out.split("examples:")[1], verb


def test_console_entry_point_runs_as_a_module(tmp_path):
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["snnir"] == "snnir.cli:main"
    out = subprocess.run([sys.executable, "-m", "snnir.cli", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for verb in ("trace", "convert", "run", "bench", "export", "optimize", "inspect"):
        assert verb in out.stdout
    out = subprocess.run([sys.executable, "-m", "snnir.cli", "run", "missing.snnir", "--input", "x.npy"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "snnir run: error:" in out.stderr and "Traceback" not in out.stderr


def test_backend_choices_come_from_the_registry(capsys, monkeypatch):
    from snnir import faces

    monkeypatch.setitem(faces.BACKENDS, "mychip", "mychip_backend")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "mychip" in capsys.readouterr().out


# -- trace -----------------------------------------------------------------------------------------
def test_trace_factory_with_weights_matches_the_api(work, capsys):
    model = _spiky_model(work)
    code, out, err = _cli(capsys, "trace", "models.py:make_model", "--weights", "w.pt",
                          "--input-shape", "5,2,1,6,6", "-o", "m.snnir")
    assert code == 0, err
    assert "nodes written to m.snnir" in out
    g = snnir.load(work / "m.snnir")
    x = torch.rand(5, 3, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    snn.reset(model)
    with torch.no_grad():
        expected = model(x)
    assert expected.sum() > 0  # the comparison sees spikes
    assert torch.equal(snnir.compile(g).eval()(x), expected)
    # the factory's keyword arguments
    assert _cli(capsys, "trace", "models.py:make_model", "--arg", "hidden=7", "--input-shape", "5,2,1,6,6",
                "-o", "h.snnir")[0] == 0
    assert snnir.load(work / "h.snnir").node("_4").params["weight"].shape == (7, 144)


@pytest.mark.parametrize("argv, message", [
    (["missing.py:make_model", "--input-shape", "5,2,1,6,6"], "no such file 'missing.py'"),
    (["models.py", "--input-shape", "5,2,1,6,6"], "expected FILE.py:FUNCTION"),
    (["models.py:nope", "--input-shape", "5,2,1,6,6"], "has no function 'nope' (it defines: "),
    (["models.py:broken", "--input-shape", "5,2,1,6,6"], "broken() raised RuntimeError: no GPU here"),
    (["models.py:not_a_module", "--input-shape", "5,2,1,6,6"], "returned int, expected a torch.nn.Module"),
    (["models.py:make_model", "--input-shape", "5,x,1"], "--input-shape '5,x,1': expected at least 2 positive"),
    (["models.py:make_model", "--input-shape", "5"], "expected at least 2 positive integers"),
    (["models.py:make_model", "--input-shape", "5,2,1,6,6", "--weights", "nowhere.pt"],
     "--weights 'nowhere.pt': no such file"),
    (["models.py:make_model", "--input-shape", "5,2,3,6,6"], "expects 1 input channels, got 3"),
    (["nosuchpackage.mod:f", "--input-shape", "5,2"], "cannot import 'nosuchpackage.mod'"),
])
def test_trace_bad_input(work, capsys, argv, message):
    code, out, err = _cli(capsys, "trace", *argv, "-o", "m.snnir")
    assert code == 1
    assert message in err, err
    assert not (work / "m.snnir").exists()


def test_trace_refuses_weights_that_hold_code_or_do_not_fit(work, capsys):
    torch.save({"not": "tensors", "f": np.float64(1.0)}, work / "bad.pt")
    code, _, err = _cli(capsys, "trace", "models.py:make_model", "--weights", "bad.pt", "--input-shape", "5,2,1,6,6",
                        "-o", "m.snnir")
    assert code == 1 and "--weights 'bad.pt'" in err
    torch.save(_factory(work, "make_model")(hidden=5).state_dict(), work / "small.pt")
    code, _, err = _cli(capsys, "trace", "models.py:make_model", "--weights", "small.pt", "--input-shape",
                        "5,2,1,6,6", "-o", "m.snnir")
    assert code == 1 and "does not fit the model" in err and "size mismatch" in err
    torch.save({"model": _factory(work, "make_model")().state_dict(), "epoch": 3}, work / "ckpt.pt")
    assert _cli(capsys, "trace", "models.py:make_model", "--weights", "ckpt.pt", "--input-shape", "5,2,1,6,6",
                "-o", "m.snnir")[0] == 0  # a checkpoint dict holding the state_dict


# -- convert ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ann_source(tmp_path_factory):
    """A trained-looking ANN exported as users do: torch.onnx.export with its defaults (the dynamo
    exporter, which needs onnxscript: the onnx extra installs it), once for the module."""
    root = tmp_path_factory.mktemp("ann")
    (root / "models.py").write_text(FACTORIES)
    torch.manual_seed(0)
    ann = _factory(root, "make_ann")().eval()
    torch.onnx.export(ann, (torch.rand(1, 1, 6, 6),), str(root / "ann.onnx"), verbose=False)
    torch.save(ann.state_dict(), root / "ann.pt")
    calib = np.random.default_rng(0).random((40, 1, 6, 6), dtype=np.float32)
    np.save(root / "calib.npy", calib)
    return root, ann, calib


def _ann_files(work, ann_source):
    import shutil

    root, ann, calib = ann_source
    for name in ("ann.onnx", "ann.onnx.data", "ann.pt", "calib.npy"):  # .data: the exporter's external weights
        if (root / name).exists():
            shutil.copy(root / name, work / name)
    return ann, calib


@pytest.mark.parametrize("source", ["ann.onnx", "models.py:make_ann"])
def test_convert_matches_the_api(work, capsys, ann_source, source):
    ann, calib = _ann_files(work, ann_source)
    extra = ["--weights", "ann.pt"] if source.endswith("make_ann") else []
    code, out, err = _cli(capsys, "convert", source, *extra, "--calibration", "calib.npy", "-T", "16",
                          "--mode", "99.9%", "--batch-size", "16", "-o", "snn.snnir")
    assert code == 0, err
    got = snnir.load(work / "snn.snnir")
    batches = [calib[i:i + 16] for i in range(0, 40, 16)]
    ref = snnir.convert(str(work / "ann.onnx") if source.endswith(".onnx") else ann, calibration=batches,
                        mode="99.9%", T=16, progress=False)
    assert got.meta["T"] == 16 and [n.op for n in got] == [n.op for n in ref]
    assert got.meta["calibration"]["scales"] == ref.meta["calibration"]["scales"]
    for a, b in zip(got, ref):
        for k in a.params:
            np.testing.assert_array_equal(a.params[k], b.params[k])


@pytest.mark.parametrize("argv, message", [
    (["ann.onnx", "--calibration", "calib.npy", "--mode", "most"], "--mode 'most': expected 'max'"),
    (["ann.onnx", "--calibration", "calib.npy", "--mode", "150%"], "percentile mode must be in (0, 100]"),
    (["ann.onnx", "--calibration", "none.npy"], "--calibration 'none.npy': no such file"),
    (["ann.onnx", "--calibration", "nan.npy"], "holds NaN or Inf"),
    (["ann.onnx", "--calibration", "calib.npy", "-T", "0"], "T must be a positive int"),
    (["missing.onnx", "--calibration", "calib.npy"], "ANN 'missing.onnx': no such file"),
    (["models.py:broken", "--calibration", "calib.npy"], "raised RuntimeError: no GPU here"),
    (["ann.onnx", "--calibration", "calib.npy", "--weights", "ann.pt"], "apply to a torch factory"),
])
def test_convert_bad_input(work, capsys, ann_source, argv, message):
    _ann_files(work, ann_source)
    np.save(work / "nan.npy", np.full((4, 1, 6, 6), np.nan, np.float32))
    code, _, err = _cli(capsys, "convert", *argv, "-o", "snn.snnir")
    assert code == 1 and message in err, err


# -- run -------------------------------------------------------------------------------------------
def test_run_outputs_rates_and_accuracy(work, capsys):
    model = _spiky_model(work)
    g = snnir.trace(model, torch.zeros(4, 1, 1, 6, 6))
    snnir.save(g, work / "m.snnir")
    x = np.random.default_rng(3).random((7, 10, 1, 6, 6), dtype=np.float32)
    np.save(work / "x.npy", x)
    code, out, err = _cli(capsys, "run", "m.snnir", "--input", "x.npy", "--batch-size", "4", "-o", "out.npy")
    assert code == 0, err
    # reference: the whole batch at once, spikes counted from the captured node values
    module = snnir.compile(g).eval()
    neurons = [n.id for n in g if n.op == "neuron"]
    module.capture = set(neurons)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(np.load(work / "out.npy"), expected)
    for node_id in neurons:
        spikes = module.captured[node_id].numpy()
        per_unit = spikes.reshape(-1, *spikes.shape[2:]).mean(0)
        row = re.search(rf"^{node_id}\s+LIF\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)%$", out, re.M)
        assert row, out
        assert int(row.group(1)) == per_unit.size
        assert float(row.group(2)) == pytest.approx(per_unit.mean(), abs=6e-5)
        assert float(row.group(3)) == pytest.approx(per_unit.max(), abs=6e-5)
        assert float(row.group(4)) == pytest.approx((per_unit == 0).mean() * 100, abs=0.06)
    assert float(re.search(r"^_2\s+LIF\s+\d+\s+([0-9.]+)", out, re.M).group(1)) > 0

    # --repeat: [N, ...] images shown for T steps; --labels: accuracy of the time-averaged output
    images = x[0]
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    np.save(work / "img.npy", images)
    np.save(work / "y.npy", labels)
    code, out, err = _cli(capsys, "run", "m.snnir", "--input", "img.npy", "--repeat", "5", "--labels", "y.npy", "-q")
    assert code == 0, err
    module.reset()
    with torch.no_grad():
        ref = module(torch.from_numpy(np.broadcast_to(images, (5, *images.shape)).copy())).numpy()
    hits = int(np.sum(ref.mean(0).argmax(-1) == labels))
    assert f"accuracy {hits / 10 * 100:.2f}% ({hits} of 10" in out


def test_run_on_the_loihi_simulator(work, capsys):
    torch.manual_seed(0)
    net = _factory(work, "loihi_net")()
    spikes = (torch.rand(12, 5, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    g = snnir.trace(net, spikes)
    snnir.save(g, work / "chip.snnir")
    np.save(work / "s.npy", spikes.numpy())
    code, out, err = _cli(capsys, "run", "chip.snnir", "--input", "s.npy", "--backend", "lava", "-o", "o.npy")
    assert code == 0, err
    sim = snnir.compile(g, backend="lava")
    np.testing.assert_array_equal(np.load(work / "o.npy"), sim.run(spikes.numpy()))
    for name, s in sim.spikes.items():  # every layer the simulator recorded, with its rate
        assert re.search(rf"^{re.escape(name)}\s+\S+\s+{s[0, 0].size}\s+{s.mean():.4f}\s", out, re.M), out


@pytest.mark.parametrize("argv, message", [
    (["m.snnir", "--input", "nope.npy"], "--input 'nope.npy': no such file"),
    (["nope.snnir", "--input", "x.npy"], "nope.snnir"),
    (["m.snnir", "--input", "wrong.npy"], "has shape (4, 2, 1, 5, 5); graph input 'input' takes [T, N, 1, 6, 6]"),
    (["m.snnir", "--input", "img.npy"], "without a time axis; graph input 'input' takes [T, N, 1, 6, 6]: pass"),
    (["m.snnir", "--input", "text.npy"], "is not a readable .npy array"),
    (["m.snnir", "--input", "x.npy", "--labels", "x.npy"], "expected 2 integer labels [N]"),
    (["m.snnir", "--input", "x.npy", "--backend", "lava", "--device", "cpu"], "--device applies to torch-module"),
])
def test_run_bad_input(work, capsys, argv, message):
    snnir.save(snnir.trace(_factory(work, "make_model")(), torch.zeros(2, 1, 1, 6, 6)), work / "m.snnir")
    np.save(work / "x.npy", np.zeros((3, 2, 1, 6, 6), np.float32))
    np.save(work / "wrong.npy", np.zeros((4, 2, 1, 5, 5), np.float32))
    np.save(work / "img.npy", np.zeros((2, 1, 6, 6), np.float32))
    (work / "text.npy").write_text("not an array")
    code, _, err = _cli(capsys, "run", *argv)
    assert code == 1 and message in err, err


def test_a_backend_that_cannot_run_here_says_why(work, capsys):
    snnir.save(snnir.trace(_factory(work, "make_model")(), torch.zeros(2, 1, 1, 6, 6)), work / "m.snnir")
    np.save(work / "x.npy", np.zeros((3, 2, 1, 6, 6), np.float32))
    from snnir.backends.cupy import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("CuPy and a GPU are here: the cupy backend runs")
    for verb, extra in (("run", ["--input", "x.npy"]), ("bench", ["--input-shape", "3,2"])):
        code, _, err = _cli(capsys, verb, "m.snnir", *extra, "--backend", "cupy")
        assert code == 1 and f"snnir {verb}: error: CudaUnavailableError:" in err and "Traceback" not in err


def test_run_unknown_backend_is_refused_by_the_parser(work, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "m.snnir", "--input", "x.npy", "--backend", "tpu"])
    assert e.value.code == 2 and "invalid choice: 'tpu'" in capsys.readouterr().err


# -- bench -----------------------------------------------------------------------------------------
def test_bench_reports_times_memory_and_every_node(work, capsys):
    g = snnir.trace(_spiky_model(work), torch.zeros(4, 1, 1, 6, 6))
    snnir.save(g, work / "m.snnir")
    code, out, err = _cli(capsys, "bench", "m.snnir", "--input-shape", "6,4", "--repeats", "3", "--warmup", "1", "-q")
    assert code == 0, err
    assert "input [6, 4, 1, 6, 6]" in out
    fwd = float(re.search(r"^forward\s+([0-9.]+) ms\s+\(([0-9.]+)\.\.([0-9.]+), 3 runs\)", out, re.M).group(1))
    fb = float(re.search(r"^forward\+backward\s+([0-9.]+) ms", out, re.M).group(1))
    assert 0 < fwd and 0 < fb
    assert re.search(r"^peak memory\s+(-?[0-9.]+ MiB|n/a)", out, re.M)
    for node in g:
        if node.op not in ("input", "output"):
            assert re.search(rf"^  {node.id}\s+\S+\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+%$", out, re.M), out
    code, out, _ = _cli(capsys, "bench", "m.snnir", "--input-shape", "6,4,1,6,6", "--repeats", "1", "--no-backward",
                        "--spikes", "0.2", "-q")
    assert code == 0 and "forward+backward" not in out


@pytest.mark.parametrize("argv, message", [
    (["--input-shape", "6"], "expected at least 2 positive integers"),
    (["--input-shape", "6,4,3,6,6"], "graph input 'input' takes [T, N, 1, 6, 6]; give T,N or the full shape"),
    (["--input-shape", "6,4", "--spikes", "2"], "--spikes is a firing probability"),
    (["--input-shape", "6,4", "--repeats", "0"], "--repeats must be >= 1"),
])
def test_bench_bad_input(work, capsys, argv, message):
    snnir.save(snnir.trace(_factory(work, "make_model")(), torch.zeros(2, 1, 1, 6, 6)), work / "m.snnir")
    code, _, err = _cli(capsys, "bench", "m.snnir", *argv)
    assert code == 1 and message in err, err


# -- export, optimize ------------------------------------------------------------------------------
def test_export_picks_the_format_from_the_extension(work, capsys):
    import h5py
    import onnx

    net = torch.nn.Sequential(snn.Linear(4, 3), snn.LIF(tau=2.0, decay_input=False))
    snnir.save(snnir.trace(net, torch.zeros(2, 1, 4)), work / "m.snnir")
    assert _cli(capsys, "export", "m.snnir", "m.onnx")[0] == 0
    onnx.checker.check_model(onnx.load(str(work / "m.onnx")))
    assert _cli(capsys, "export", "m.snnir", "m.nir", "--dt", "1e-3")[0] == 0
    assert [n.op for n in snnir.frontends.from_nir(work / "m.nir", dt=1e-3)].count("neuron") == 1
    for name in ("network.net", "m.h5"):
        code, out, _ = _cli(capsys, "export", "m.snnir", name)
        assert code == 0 and "(lava)" in out
        with h5py.File(work / name, "r") as f:
            assert f["layer/0/type"][0] in (b"input", b"dense")
    assert _cli(capsys, "export", "m.snnir", "model.bin", "--format", "onnx")[0] == 0
    onnx.checker.check_model(onnx.load(str(work / "model.bin")))
    code, _, err = _cli(capsys, "export", "m.snnir", "m.txt")
    assert code == 1 and "cannot tell the export format of 'm.txt' from its extension '.txt'" in err
    code, _, err = _cli(capsys, "export", "m.snnir", "m.onnx", "--dt", "1e-3")
    assert code == 1 and "--dt applies to NIR export" in err


def test_optimize_check_prints_the_verdict_and_names_a_bad_pass(work, capsys, monkeypatch):
    from snnir.passes import registry

    snnir.save(snnir.trace(_spiky_model(work).train(False), torch.zeros(2, 1, 1, 6, 6)), work / "m.snnir")
    code, out, err = _cli(capsys, "optimize", "m.snnir", "o.snnir", "--check")
    assert code == 0, err
    assert "check passed: every pass of eliminate_dead" in out
    assert re.search(r"output 0: spikes \(6, 4, 3\), 0 of 72 differ", out), out

    def breaks(g):
        g = g.copy()
        for n in g:
            if n.op == "linear":
                n.params["weight"] = -n.params["weight"]
        return g

    monkeypatch.setitem(registry._PASSES, "test_cli_breaks_weights", breaks)  # registered for this test only

    code, _, err = _cli(capsys, "optimize", "m.snnir", "bad.snnir", "--passes", "test_cli_breaks_weights", "--check")
    assert code == 1 and "pass 'test_cli_breaks_weights' changed output 0" in err
    assert not (work / "bad.snnir").exists()


def test_inspect_draws_and_says_when_graphviz_would_help(work, capsys):
    import shutil

    snnir.save(snnir.trace(_spiky_model(work), torch.zeros(2, 1, 1, 6, 6)), work / "m.snnir")
    code, out, err = _cli(capsys, "inspect", "m.snnir", "--render", "m.png")
    assert code == 0 and "drawn to m.png" in out and (work / "m.png").stat().st_size > 10_000
    assert "_4      linear" in out or re.search(r"^_4\s+linear", out, re.M)
    if not shutil.which("dot"):  # 10 nodes, no branches: no hint
        assert "note:" not in err
    chain = torch.nn.Sequential(*[m for _ in range(8) for m in (snn.Linear(4, 4), snn.LIF())])
    snnir.save(snnir.trace(chain, torch.zeros(2, 1, 4)), work / "long.snnir")
    code, out, err = _cli(capsys, "inspect", "long.snnir", "--render", "long.png")
    assert code == 0
    if not shutil.which("dot"):
        assert "note: drew 'Sequential' (18 nodes) with matplotlib's layered layout" in err
    code, _, err = _cli(capsys, "inspect", "m.snnir", "--render", "m.pdf")
    assert code == 1 and "render writes .dot, .svg or .png files" in err

"""Real Lava as the oracle: netx files run in lava-nc 0.10 + lava-dl 0.6, spikes compared layer by layer.

Lava cannot be installed beside snnir (it declares Python < 3.11), so it lives in its own virtual
environment (``tests/lava_oracle/build_env.sh``; ``.ci/run`` builds it) and runs here in a subprocess:
``SNNIR_LAVA_PYTHON`` names that environment's Python. Every file runs in Lava's fixed-point CPU
simulation (``Loihi2SimCfg(select_tag="fixed_pt")``) through ``snnir.backends.lava.run_lava`` and in
snnir's ``LoihiSimulator``; every layer's spikes *and* integer voltages must be identical.

Files: networks exported by ``snnir.export(..., format="lava")`` (dense CubaLIF, LIF with bias, IF,
strided conv with bias + dense, a recurrent dense layer), files written by lava-dl slayer itself
(``tests/lava_oracle/slayer_nets.py``), files in slayer's layouts written with h5py, and files that
probe Lava at its limits (``tests/netx_files.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import netx_files
import numpy as np
import pytest

import snnir
from snnir.backends.lava import LoihiSimulator, read_netx

ROOT = Path(__file__).resolve().parents[1]
LAVA_PYTHON = os.environ.get("SNNIR_LAVA_PYTHON", "")
pytestmark = pytest.mark.skipif(
    not LAVA_PYTHON or not os.path.exists(LAVA_PYTHON),
    reason="real Lava is not available: " + (os.environ.get("SNNIR_LAVA_UNAVAILABLE") or
                                             "set SNNIR_LAVA_PYTHON to the Python of a Lava environment "
                                             "(tests/lava_oracle/build_env.sh builds one)"))


# --- networks exported by snnir ------------------------------------------------------------------
def _dense_chain(sizes, neuron_attrs, seed, bias=False, gain=1.0):
    rng = np.random.default_rng(seed)
    g = snnir.Graph()
    h = g.add_input((sizes[0],))
    for k, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        params = {"weight": (gain * rng.normal(0.15, 0.5, (n_out, n_in))).astype(np.float32)}
        if bias:
            params["bias"] = rng.normal(0.1, 0.2, n_out).astype(np.float32)
        h = g.add_node("linear", [h], params=params, id=f"fc{k}")
        h = g.add_node("neuron", [h], attrs=neuron_attrs, id=f"n{k}")
    g.add_output(h)
    return g


def dense_cubalif(seed=0):
    return _dense_chain([12, 10, 6], {"model": "CubaLIF", "tau_syn": 4.0, "tau_mem": 8.0}, seed), (12,)


def lif_with_bias(seed=1):
    return _dense_chain([12, 10, 6], {"model": "LIF", "tau": 5.0, "decay_input": True}, seed, bias=True,
                        gain=4.0), (12,)


def integrate_and_fire(seed=2):
    return _dense_chain([12, 10, 6], {"model": "IF", "v_threshold": 1.5}, seed), (12,)


def conv_with_bias_and_dense(seed=3):
    rng = np.random.default_rng(seed)
    g = snnir.Graph()
    x = g.add_input((2, 10, 10))
    c = g.add_node("conv2d", [x], attrs={"stride": 2, "padding": 1}, id="conv",
                   params={"weight": rng.normal(0.1, 0.4, (4, 2, 3, 3)).astype(np.float32),
                           "bias": np.array([0.3, -0.2, 0.05, 0.0], np.float32)})
    n = g.add_node("neuron", [c], attrs={"model": "LIF", "tau": 4.0, "decay_input": False}, id="conv_lif")
    f = g.add_node("flatten", [n])
    d = g.add_node("linear", [f], params={"weight": rng.normal(0.05, 0.3, (5, 100)).astype(np.float32)}, id="fc")
    g.add_output(g.add_node("neuron", [d], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 4.0}, id="out"))
    return g, (2, 10, 10)


def recurrent_dense(seed=4):
    rng = np.random.default_rng(seed)
    g = snnir.Graph()
    x = g.add_input((8,))
    syn = g.add_node("linear", [x], params={"weight": rng.normal(0.2, 0.6, (6, 8)).astype(np.float32)}, id="syn")
    add = g.add_node("add", [syn], id="sum")
    n = g.add_node("neuron", [add], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 4.0}, id="rec_lif")
    rec = g.add_node("linear", [n], params={"weight": rng.normal(-0.1, 0.5, (6, 6)).astype(np.float32)}, id="rec")
    g.add_edge(rec, add, port=1, offset=1)  # the recurrent synapse reads the previous step's spikes
    out = g.add_node("linear", [n], params={"weight": rng.normal(0.2, 0.5, (3, 6)).astype(np.float32)}, id="fc")
    g.add_output(g.add_node("neuron", [out], attrs={"model": "IF"}, id="out"))
    return g, (8,)


EXPORTED = {"dense_cubalif": dense_cubalif, "lif_with_bias": lif_with_bias, "integrate_and_fire": integrate_and_fire,
            "conv_with_bias_and_dense": conv_with_bias_and_dense, "recurrent_dense": recurrent_dense}
SLAYER = ("slayer_tiny_conv", "slayer_pilotnet", "slayer_no_input")
CASES = [*EXPORTED, *SLAYER, *netx_files.SLAYER_LAYOUTS, *netx_files.LIMITS]


@pytest.fixture(scope="module")
def lava_runs(tmp_path_factory):
    """Every case's file and input, and what Lava computed for it (one Lava process for all)."""
    d = tmp_path_factory.mktemp("lava_oracle")
    cases: dict[str, tuple[Path, np.ndarray]] = {}
    for k, (name, build) in enumerate(EXPORTED.items()):
        g, shape = build()
        path = d / f"{name}.h5"
        snnir.export(g, path, format="lava")
        cases[name] = path, (np.random.default_rng(100 + k).random((40, 1, *shape)) < 0.4).astype(np.float32)
    subprocess.run([LAVA_PYTHON, str(ROOT / "tests" / "lava_oracle" / "slayer_nets.py"), str(d / "slayer")],
                   check=True, timeout=300, capture_output=True)
    for k, (name, shape) in enumerate(zip(SLAYER, [(2, 8, 8), (3, 16, 32), (10,)])):
        x = (np.random.default_rng(200 + k).random((16, 1, *shape)) < 0.4).astype(np.float32)
        cases[name] = d / "slayer" / f"{name.removeprefix('slayer_')}.net", x
    for name, build in {**netx_files.SLAYER_LAYOUTS, **netx_files.LIMITS}.items():
        cases[name] = build(d)
    args = []
    for name, (path, x) in cases.items():
        np.save(d / f"{name}_x.npy", x)
        args += [str(path), str(d / f"{name}_x.npy"), str(d / f"{name}_lava.npz")]
    driver = "import sys; from snnir.backends.lava.lava_run import main; main(sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([LAVA_PYTHON, "-c", driver, *args], env=env, timeout=900, capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"Lava failed:\n{done.stderr[-3000:]}")
    return {name: (path, x, dict(np.load(d / f"{name}_lava.npz"))) for name, (path, x) in cases.items()}


@pytest.mark.parametrize("name", CASES)
def test_lava_and_the_simulator_agree_layer_by_layer(lava_runs, name):
    path, x, lava = lava_runs[name]
    sim = LoihiSimulator(read_netx(path))
    sim.run(x, aligned=False, record_voltage=True)
    counts = {}
    for key, expected in lava.items():
        layer = key.removesuffix(".v")
        got = sim.voltages[layer] if key.endswith(".v") else sim.spikes[layer]
        np.testing.assert_array_equal(got, expected, err_msg=f"{name}: {key} differs from Lava")
        if not key.endswith(".v"):
            counts[layer] = int(expected.sum())
    print(f"\n{name}: Lava spikes per layer {counts} (identical in snnir's simulator, voltages too)")
    if name in EXPORTED or name in SLAYER or name in netx_files.SLAYER_LAYOUTS:
        assert all(c > 0 for c in counts.values()), f"{name}: a silent layer makes the comparison vacuous: {counts}"


def test_exported_networks_in_lava_match_the_float_graph_they_came_from(lava_runs):
    """The mapped float graph, run by the torch backend, fires as Lava does (aligned for the delays)."""
    import torch

    from snnir.passes.to_loihi import to_loihi

    for name, build in EXPORTED.items():
        g, _ = build()
        path, x, lava = lava_runs[name]
        module = snnir.compile(to_loihi(g), backend="torch").eval()
        with torch.no_grad():
            out = module(torch.from_numpy(x)).numpy()
        chip = lava[max((k for k in lava if not k.endswith(".v")), key=lambda k: int(k.removeprefix("layer")))]
        delay = len([k for k in lava if not k.endswith(".v")])
        agree = (out[: len(x) - delay] == chip[delay:].reshape(out[: len(x) - delay].shape)).mean()
        assert agree > 0.97, f"{name}: float graph vs Lava agreement {agree:.3f}"


def test_run_lava_reports_lava_missing_in_this_python():
    if "lava" in sys.modules:
        pytest.skip("Lava is importable in this Python")
    from snnir.backends.lava import LavaUnavailableError, run_lava

    with pytest.raises(LavaUnavailableError, match="build_env.sh"):
        run_lava("net.h5", np.zeros((2, 1, 3)))


def test_example_netx_in_lava_reports_identical_layers():
    sys.path.insert(0, str(ROOT / "examples"))
    import netx_in_lava

    rows = netx_in_lava.main(T=15)
    assert all(sim > 0 and sim == lava and same for sim, lava, same in rows.values()), rows

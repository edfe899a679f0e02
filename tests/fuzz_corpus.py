"""Seed files for the loader fuzzer: small valid files of every format snnir reads.

Each ``seeds_<format>(directory)`` writes a few valid files with the format's own writer (snnir's
``save``, ``nir.write``, ``torch.onnx.export``, h5py, numpy, scipy.io, the byte layouts of
``event_writers``) and returns their paths. The fuzzer mutates these.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from event_writers import aedat2, aedat31, atis_bin, random_events, shd_h5, td_dat


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.5).astype(np.float32)


# --- .snnir --------------------------------------------------------------------------------------------
def snnir_graphs() -> list:
    """Graphs covering the built-in ops, neuron models, recurrence and the meta snnir reads."""
    import snnir

    rng = np.random.default_rng(0)
    out = []
    g = snnir.Graph("mlp")
    x = g.add_input((6,))
    h = g.add_node("linear", [x], params={"weight": _w(rng, 5, 6), "bias": _w(rng, 5)})
    h = g.add_node("neuron", [h], attrs={"model": "LIF", "tau": 3.0, "v_reset": None})
    h = g.add_node("linear", [h], params={"weight": _w(rng, 3, 5)})
    h = g.add_node("neuron", [h], attrs={"model": "IF", "surrogate": {"name": "Sigmoid", "alpha": 4.0}})
    g.add_output(h)
    out.append(snnir.optimize(g.validate()))  # schedule and groups in meta

    g = snnir.Graph("cnn")
    x = g.add_input((1, 8, 8))
    h = g.add_node("conv2d", [x], attrs={"stride": 1, "padding": 1}, params={"weight": _w(rng, 3, 1, 3, 3)})
    h = g.add_node("batchnorm", [h], params={"running_mean": _w(rng, 3), "running_var": np.ones(3, np.float32),
                                              "weight": _w(rng, 3), "bias": _w(rng, 3)})
    h = g.add_node("neuron", [h], attrs={"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 4.0})
    h = g.add_node("maxpool2d", [h], attrs={"kernel_size": 2})
    a = g.add_node("avgpool2d", [h], attrs={"kernel_size": 2, "stride": 1, "padding": 1})
    a = g.add_node("adaptive_avgpool2d", [a], attrs={"output_size": (4, 4)})
    h = g.add_node("cat", [h, a], attrs={"axis": 0})
    h = g.add_node("flatten", [h])
    h = g.add_node("dropout", [h], attrs={"p": 0.1})
    h = g.add_node("linear", [h], params={"weight": _w(rng, 4, 96)})
    h = g.add_node("neuron", [h], attrs={"model": "AdaptiveLIF", "tau": 2.0, "tau_w": 10.0})
    g.add_output(h)
    out.append(g.validate())

    g = snnir.Graph("recurrent")
    x = g.add_input((4,))
    c = g.add_node("constant", params={"value": _w(rng, 4)})
    s = g.add_node("add", [x, c])
    h = g.add_node("linear", [s], params={"weight": _w(rng, 4, 4)})
    h = g.add_node("synapse_filter", [h], attrs={"tau": 2.0})
    n = g.add_node("neuron", [h], attrs={"model": "EIF"})
    d = g.add_node("delay", [n], attrs={"steps": 2})
    g.add_edge(d, s, 2)
    i = g.add_node("integrator", [n], attrs={"model": "LIF", "tau": 4.0, "decay_input": False})
    i = g.add_node("affine", [i], params={"weight": _w(rng, 4), "bias": _w(rng)})
    i = g.add_node("clip", [i], attrs={"min": 0.0, "max": 6.0})
    i = g.add_node("scale", [i], attrs={"factor": 0.5})
    g.add_output(i)
    g.add_output(g.add_node("neuron", [s], attrs={"model": "Izhikevich"}), id="spikes")
    out.append(g.validate())

    g = snnir.Graph("per_neuron")  # neuron parameters as per-neuron arrays
    x = g.add_input((2, 3))
    per_neuron = {"tau": np.array([[2.0], [4.0]], np.float32), "v_threshold": np.full((2, 3), 0.5, np.float32)}
    h = g.add_node("neuron", [x], attrs={"model": "LIF", "v_reset": None}, params=per_neuron)
    h = g.add_node("integrator", [h], attrs={"model": "CubaLIF"}, params={"tau_mem": np.full(3, 3.0, np.float32)})
    g.add_output(h)
    out.append(g.validate())
    return out


def seeds_snnir(directory: Path) -> list[Path]:
    import snnir

    paths = []
    for g in snnir_graphs():
        paths.append(directory / f"{g.name}.snnir")
        snnir.save(g, paths[-1])
    return paths


# --- NIR -----------------------------------------------------------------------------------------------
def nir_graphs() -> list:
    import nir

    rng = np.random.default_rng(1)
    n = 4
    lif = {"tau": np.full(n, 2e-3), "r": np.full(n, 20.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
           "v_reset": np.zeros(n)}
    out = [nir.NIRGraph.from_list(nir.Affine(_w(rng, n, 3), _w(rng, n)), nir.LIF(**lif), type_check=False)]
    conv = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([1, 6, 6])),
        "conv": nir.Conv2d(input_shape=(6, 6), weight=_w(rng, 2, 1, 3, 3), stride=1, padding=1, dilation=1,
                           groups=1, bias=_w(rng, 2)),
        "if": nir.IF(r=np.full((2, 6, 6), 1e4), v_threshold=np.ones((2, 6, 6)), v_reset=np.zeros((2, 6, 6))),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
        "lin": nir.Linear(weight=_w(rng, 3, 18)),
        "li": nir.LI(tau=np.full(3, 1e-3), r=np.ones(3), v_leak=np.zeros(3)),
        "output": nir.Output(output_type=np.array([3])),
    }, edges=[("input", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "lin"), ("lin", "li"),
              ("li", "output")], type_check=False)
    out.append(conv)
    cuba = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([n])),
        "scale": nir.Scale(scale=np.full(n, 2.0)),
        "cuba": nir.CubaLIF(tau_syn=np.full(n, 5e-4), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0),
                            v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, 5.0)),
        "delay": nir.Delay(delay=np.full(n, 2e-4)),
        "thr": nir.Threshold(threshold=np.full(n, 0.5)),
        "back": nir.Affine(weight=_w(rng, n, n), bias=_w(rng, n)),
        "output": nir.Output(output_type=np.array([n])),
    }, edges=[("input", "scale"), ("scale", "cuba"), ("cuba", "delay"), ("delay", "thr"), ("thr", "output"),
              ("cuba", "back"), ("back", "cuba")], type_check=False)
    out.append(cuba)
    inner = nir.NIRGraph.from_list(nir.LI(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n)), type_check=False)
    out.append(nir.NIRGraph(nodes={"x": nir.Input(input_type=np.array([n])), "sub": inner,
                                   "i": nir.I(r=np.full(n, 1e3)), "y": nir.Output(output_type=np.array([n]))},
                            edges=[("x", "sub"), ("sub", "i"), ("i", "y")], type_check=False))
    return out


def seeds_nir(directory: Path) -> list[Path]:
    import nir

    paths = []
    for i, g in enumerate(nir_graphs()):
        paths.append(directory / f"g{i}.nir")
        nir.write(paths[-1], g, compression=None if i % 2 else "gzip")
    return paths


# --- ONNX ----------------------------------------------------------------------------------------------
def seeds_onnx(directory: Path) -> list[Path]:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 1)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1) + 0.5
            return torch.clamp(y.view(y.size(0), -1), 0.0, 6.0)

    models = {
        "mlp": (nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 3)), (1, 3, 4)),
        "cnn": (nn.Sequential(nn.Conv2d(1, 4, 3, stride=1, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.MaxPool2d(2), nn.AvgPool2d(2), nn.Identity(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)), (1, 1, 8, 8)),
        "branches": (Branches(), (1, 2, 4, 4)),
        "conv1d": (nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)), (1, 2, 6)),
    }
    paths = []
    for name, (model, shape) in models.items():
        model.eval()
        buf = io.BytesIO()
        torch.onnx.export(model, torch.rand(*shape), buf, dynamo=False)
        paths.append(directory / f"{name}.onnx")
        paths[-1].write_bytes(buf.getvalue())
    return paths


# --- dataset formats -------------------------------------------------------------------------------------
def _events(seed: int, n: int = 12) -> list[tuple[int, int, int, int]]:
    return random_events(np.random.default_rng(seed), n, 128, 128, 10_000)


def seeds_npy(directory: Path) -> list[Path]:
    ev = np.array(_events(2), dtype=[("t", "<i4"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    paths = [directory / "lip.npy", directory / "lip_f.npy"]
    np.save(paths[0], ev)
    np.save(paths[1], np.asfortranarray(ev))
    return paths


def seeds_npz(directory: Path) -> list[Path]:
    ev = np.array(_events(3))
    paths = [directory / "hardvs.npz", directory / "hardvs_z.npz"]
    np.savez(paths[0], t=ev[:, 0], x=ev[:, 1], y=ev[:, 2], p=ev[:, 3])
    np.savez_compressed(paths[1], t=ev[:, 0].astype(np.float64), x=ev[:, 1], y=ev[:, 2], p=ev[:, 3] * 2 - 1)
    return paths


def seeds_es_imagenet(directory: Path) -> list[Path]:
    rng = np.random.default_rng(4)
    paths = [directory / "es.npz"]
    np.savez_compressed(paths[0], pos=rng.integers(0, 8, (6, 3)), neg=rng.integers(0, 8, (5, 3)))
    return paths


def seeds_shd(directory: Path) -> list[Path]:
    rng = np.random.default_rng(5)
    samples = [(np.sort(rng.random(k)).astype(np.float32), rng.integers(0, 700, k)) for k in (5, 0, 9)]
    paths = [directory / "shd.h5"]
    shd_h5(paths[0], samples, [1, 4, 19])
    return paths


def seeds_labels(directory: Path) -> list[Path]:
    paths = [directory / "user01_fluorescent_labels.csv"]
    paths[0].write_text("class,startTime_usec,endTime_usec\n1,100,900\n11,1000,5000\n")
    return paths


def seeds_aedat2(directory: Path) -> list[Path]:
    paths = [directory / "cifar.aedat"]
    paths[0].write_bytes(aedat2(_events(6)))
    return paths


def seeds_aedat31(directory: Path) -> list[Path]:
    paths = [directory / "gesture.aedat"]
    paths[0].write_bytes(aedat31(_events(7)))
    return paths


def seeds_atis(directory: Path) -> list[Path]:
    ev = [(t, x % 34, y % 34, p) for t, x, y, p in _events(8)]
    paths = [directory / "nmnist.bin"]
    paths[0].write_bytes(atis_bin(ev))
    return paths


def seeds_td(directory: Path) -> list[Path]:
    ev = [(t, x, y, p) for t, x, y, p in _events(9)]
    paths = [directory / "nav_td.dat", directory / "nav_raw_td.dat"]
    paths[0].write_bytes(td_dat(ev))
    paths[1].write_bytes(td_dat(ev, header=False))
    return paths


def seeds_mat(directory: Path) -> list[Path]:
    import scipy.io

    ev = np.array(_events(10))
    cols = {"x": ev[:, 1:2], "y": ev[:, 2:3], "ts": ev[:, 0:1], "pol": ev[:, 3:4]}
    paths = [directory / "a_0001.mat", directory / "a_0002.mat"]
    scipy.io.savemat(paths[0], cols)
    scipy.io.savemat(paths[1], cols, do_compression=True)
    return paths


# --- netx (Loihi) ---------------------------------------------------------------------------------------
def seeds_netx(directory: Path) -> list[Path]:
    """slayer's layouts (``tests/netx_files.py``: input neurons, strided conv, flatten, no input layer,
    layers without neurons, weights at Lava's limits), a ``dense_rec`` layer, and snnir's own export."""
    import h5py
    import netx_files

    import snnir

    builders = {**netx_files.SLAYER_LAYOUTS, **netx_files.LIMITS}
    paths = [build(directory)[0] for name, build in builders.items() if name != "current_wrap"]
    rng = np.random.default_rng(11)
    paths.append(directory / "rec.net")
    with h5py.File(paths[-1], "w") as f:
        netx_files.layer(f, 0, "input", [4])
        netx_files.layer(f, 1, "dense_rec", [3], {"iDecay": 1024, "vDecay": 512, "vThMant": 100},
                         **netx_files.dense_fields(rng, 3, 4), weight_rec=(rng.integers(-50, 50, (3, 3)) * 2)
                         .astype(np.float32), bias=np.array([10.0, -3.0, 0.0], np.float32))
    g = snnir.Graph("exported")
    x = g.add_input((5,))
    h = g.add_node("linear", [x], params={"weight": (rng.integers(-60, 60, (4, 5)) / 64).astype(np.float32)})
    g.add_output(g.add_node("neuron", [h], attrs={"model": "CubaLIF", "tau_syn": 4.0, "tau_mem": 8.0}))
    paths.append(directory / "exported.h5")
    snnir.export(g, paths[-1], format="lava")
    return paths


def write_seeds(directory: Path, builders: dict) -> dict[str, list[bytes]]:
    """Run each builder in its own sub-directory; returns the seed files' bytes per format."""
    out = {}
    for name, build in builders.items():
        sub = directory / name
        os.makedirs(sub, exist_ok=True)
        out[name] = [Path(p).read_bytes() for p in build(sub)]
    return out

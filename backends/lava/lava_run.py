"""Run a netx file through Intel's Lava (``lava-nc`` + ``lava-dl``), where they are importable.

Lava declares Python < 3.11 and pins old numpy, so it is never a dependency of snnir: where it is
absent, ``lava_available()`` says so and ``run_lava`` raises ``LavaUnavailableError`` with the way to
get it (``tests/lava_oracle/build_env.sh`` builds a separate Python 3.11 environment in which it runs
after three small edits). The bit-accurate ``LoihiSimulator`` computes what Lava's fixed-point
simulation (``Loihi2SimCfg(select_tag="fixed_pt")``) computes; the tests check that against this.

How the input reaches the network, as lava-dl does it:

- a layer 0 with only ``type`` and ``shape`` (what snnir writes, and slayer for ``Input(None)``): the
  input spikes go to ``net.inp``, the first synapse's port;
- a layer 0 with its own neuron group (slayer's ``Input`` block): netx never connects its input port,
  so the input is fed as the input neurons' synaptic current ``a = trunc(weight * x + bias)``
  (``weight``/``bias`` from the file, default 64 and 0: a 0/1 spike adds 64 to the current).

From the command line (the tests run it with a Lava environment's Python), every layer's spikes
and voltages go to an ``.npz``::

    python -c "import sys; from snnir.backends.lava.lava_run import main; main(sys.argv[1:])" net.h5 x.npy out.npz ...
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from typing import Any

import numpy as np

from snnir.errors import SnnirError


class LavaUnavailableError(SnnirError):
    """``lava-nc``/``lava-dl`` cannot be imported here."""


def lava_available() -> bool:
    """Whether ``lava.lib.dl.netx`` can be imported."""
    try:
        return importlib.util.find_spec("lava") is not None and importlib.util.find_spec("lava.lib.dl.netx") is not None
    except (ImportError, ValueError):
        return False


def _to_lava(a: np.ndarray) -> np.ndarray:
    """``[T, *shape]`` in snnir's (C, H, W) order -> Lava's ``[*shape, T]`` in (W, H, C) order."""
    return np.moveaxis(a, 0, -1) if a.ndim == 2 else a.transpose(3, 2, 1, 0)


def _from_lava(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A monitor's ``[T, *lava_shape]`` -> ``[T, *shape]`` in snnir's order."""
    a = np.asarray(a)
    if len(shape) == 3:
        return a.reshape(a.shape[0], *shape[::-1]).transpose(0, 3, 2, 1)
    return a.reshape(a.shape[0], *shape)


def _input_transform(path: str) -> tuple[bool, float, float, str]:
    """Whether layer 0 is an input layer with its own neuron, its ``weight``/``bias`` transform, and
    layer 0's type (the file was validated by ``read_netx``)."""
    import h5py

    with h5py.File(path, "r") as f:
        first = f["layer/0"]
        kind = np.asarray(first["type"][()]).reshape(-1)[0]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind != "input" or "neuron" not in first:
            return False, 64.0, 0.0, kind

        def scalar(key: str, default: float) -> float:
            return float(np.asarray(first[key][()]).reshape(-1)[0]) if key in first else default

        return True, scalar("weight", 64.0), scalar("bias", 0.0), kind


def _scalar_transform_copy(path: str, directory: str) -> str:
    """A copy of ``path`` whose input ``weight``/``bias`` are 0-d: slayer writes them as ``(1,)``
    arrays, on which netx 0.6 calls ``int()``, which numpy 2 refuses."""
    import shutil

    import h5py

    copy = os.path.join(directory, os.path.basename(path))
    shutil.copyfile(path, copy)
    with h5py.File(copy, "a") as f:
        first = f["layer/0"]
        for key in ("weight", "bias"):
            if key in first and first[key].shape != ():
                value = np.asarray(first[key][()]).reshape(-1)[0]
                del first[key]
                first.create_dataset(key, data=value)
    return copy


def run_lava(path: str | os.PathLike, x: Any, all_layers: bool = False,
             voltages: bool = False) -> np.ndarray | dict[str, np.ndarray]:
    """Spikes of the netx network at ``path`` for input ``x`` ([T, N, *input_shape]) run by Lava's
    fixed-point CPU simulation, in raw chip time (each synapse adds one step, as
    ``LoihiSimulator.run(x, aligned=False)``).

    Returns the output layer's spikes ``[T, N, *output_shape]`` (int8), or with ``all_layers`` a dict
    from layer name (``layer<i>``, ``i`` the file's layer index, as ``read_netx`` names them) to that
    layer's spikes, for every layer Lava builds a neuron group for; ``voltages`` adds each layer's
    integer voltage after the step (after the reset) as ``layer<i>.v`` (int64), which is what
    ``LoihiSimulator.run(..., record_voltage=True)`` keeps.
    """
    if not lava_available():
        raise LavaUnavailableError(
            f"lava-nc and lava-dl are not importable in this Python ({sys.executable}); they declare "
            "Python < 3.11. Use snnir's bit-accurate LoihiSimulator here, or build the Lava environment with "
            "tests/lava_oracle/build_env.sh (Python 3.11 with three small edits) and run there.")
    from lava.lib.dl import netx

    from snnir.backends.lava.netx import read_netx

    path = os.fspath(path)
    program = read_netx(path)  # validates the file and names the layers as the simulator does
    names = [layer.name for layer in program.layers if layer.neuron is not None]
    shapes = [tuple(layer.shape) for layer in program.layers if layer.neuron is not None]
    input_neuron, weight, bias, first_kind = _input_transform(path)
    options = {}
    if first_kind == "conv":  # no input layer: netx needs the input shape, in its (x, y, c) order
        options["input_shape"] = tuple(program.layers[0].shape[::-1])
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, np.float64)
    T, N = x.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        config = _scalar_transform_copy(path, tmp) if input_neuron else path
        runs = [_run_one(netx.hdf5.Network(net_config=config, **options), x[:, n], input_neuron, weight, bias,
                         names, shapes, voltages) for n in range(N)]
    out = {key: np.stack([r[key] for r in runs], axis=1) for key in runs[0]}
    out = {key: v.astype(np.int64 if key.endswith(".v") else np.int8) for key, v in out.items()}
    return out if all_layers else out[names[-1]]


def _run_one(net: Any, x: np.ndarray, input_neuron: bool, weight: float, bias: float, names: list[str],
             shapes: list[tuple[int, ...]], voltages: bool) -> dict[str, np.ndarray]:
    """One sample ``x`` ([T, *input_shape]) through a freshly built netx ``Network``."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.monitor.process import Monitor

    T = x.shape[0]
    if input_neuron:  # lava-dl's Input block: the input is the input neurons' current
        source = RingBuffer(data=_to_lava(np.trunc(weight * x + bias)).astype(np.int32))
        source.s_out.connect(net.in_layer.neuron.a_in)
    else:
        source = RingBuffer(data=_to_lava(x).astype(np.int32))
        source.s_out.connect(net.inp)
    if len(net.layers) != len(names):
        raise SnnirError(f"Lava built {len(net.layers)} layers, snnir's reader {len(names)}")
    probes = []  # (key, shape, monitor, process, var)
    for name, shape, layer in zip(names, shapes, net.layers):
        for key, var in [(name, "s_out"), *([(f"{name}.v", "v")] if voltages else [])]:
            monitor = Monitor()
            monitor.probe(getattr(layer.neuron, var), T)
            probes.append((key, shape, monitor, layer.neuron, var))
    try:
        net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return {key: _from_lava(m.get_data()[proc.name][var], shape) for key, shape, m, proc, var in probes}
    finally:
        net.stop()


def main(argv: list[str] | None = None) -> None:
    """``main([NET, X.npy, OUT.npz, ...])``: for each triple, every layer's spikes and voltages for
    input ``X`` to ``OUT`` (one process for many files: Lava takes seconds to import)."""
    args = argv if argv is not None else sys.argv[1:]
    if not args or len(args) % 3:
        raise SystemExit("usage: main([NET, X.npy, OUT.npz, ...]) (triples)")
    for net, inputs, out in zip(args[::3], args[1::3], args[2::3]):
        np.savez(out, **run_lava(net, np.load(inputs, allow_pickle=False), all_layers=True, voltages=True))


if __name__ == "__main__":
    main()

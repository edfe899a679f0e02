"""Run a netx file through Intel's Lava (``lava-nc`` + ``lava-dl``), where they are importable.

Lava needs Python < 3.11 and pins old numpy/torch, so it is never a dependency of snnir: on this
project's Python it is absent, ``lava_available()`` says so, and ``run_lava`` raises
``LavaUnavailableError`` with the way to get it. The bit-accurate ``LoihiSimulator`` predicts
what Lava's fixed-point simulation (``Loihi2SimCfg(select_tag="fixed_pt")``) computes.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from snnir.errors import SnnirError


class LavaUnavailableError(SnnirError):
    """``lava-nc``/``lava-dl`` cannot be imported here."""


def lava_available() -> bool:
    """Whether ``lava.lib.dl.netx`` can be imported (it needs Python < 3.11)."""
    try:
        return importlib.util.find_spec("lava") is not None and importlib.util.find_spec("lava.lib.dl.netx") is not None
    except (ImportError, ValueError):
        return False


def run_lava(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Spikes of the netx network at ``path`` for input ``x`` ([T, N, *input_shape], 0/1), run by
    Lava's fixed-point CPU simulation, as ``[T, N, *output_shape]``; raw chip time (each synapse
    adds one step, as in ``LoihiSimulator.run(x, aligned=False)``).
    """
    if not lava_available():
        raise LavaUnavailableError(
            f"lava-nc and lava-dl are not importable on Python {sys.version_info.major}.{sys.version_info.minor} "
            "(they require Python < 3.11). Use snnir's bit-accurate LoihiSimulator here, or run this file in a "
            "Python 3.10 environment with `pip install lava-nc lava-dl`.")
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    x = np.asarray(x)
    T = x.shape[0]
    outputs = []
    for n in range(x.shape[1]):
        net = netx.hdf5.Network(net_config=os.fspath(path))
        sample = x[:, n]
        # Lava orders a layer as (X, Y, C) = (W, H, C) with time last
        data = np.moveaxis(sample, 0, -1) if sample.ndim == 2 else sample.transpose(3, 2, 1, 0)
        source = io.source.RingBuffer(data=data.astype(np.int32))
        sink = io.sink.RingBuffer(shape=net.out.shape, buffer=T)
        source.s_out.connect(net.inp)
        net.out.connect(sink.a_in)
        net.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
        net.stop()
        outputs.append(np.moveaxis(out, -1, 0) if out.ndim == 2 else out.transpose(3, 2, 1, 0))
    return np.stack(outputs, axis=1).astype(np.int8)

"""Export a network to lava-dl's netx format and check it in real Lava, layer by layer.

    python examples/netx_in_lava.py                      # snnir's bit-accurate simulator only
    bash tests/lava_oracle/build_env.sh /tmp/snnir-lava-venv
    SNNIR_LAVA_PYTHON=/tmp/snnir-lava-venv/bin/python python examples/netx_in_lava.py

Lava (lava-nc 0.10 + lava-dl 0.6) needs its own Python 3.11 environment; the script runs the file there
in a subprocess and prints, per layer, the spike counts of Lava and of ``LoihiSimulator`` and whether
spikes and voltages are identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import snnir
from snnir import nn as snn
from snnir.backends import lava

ROOT = Path(__file__).resolve().parents[1]


def main(T: int = 30) -> dict[str, tuple[int, int | None, bool | None]]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(snn.Conv2d(2, 6, 3, stride=2, padding=1), snn.LIF(tau=4.0, decay_input=False),
                              snn.Flatten(), snn.Linear(6 * 5 * 5, 10, bias=False),
                              snn.CubaLIF(tau_syn=2.0, tau_mem=4.0), snn.Linear(10, 3), snn.IF())
    with torch.no_grad():
        for m in net:
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.add_(0.2)
    x = (torch.rand(T, 1, 2, 10, 10) < 0.3).float()
    g = snnir.trace(net, x)
    tmp = Path(tempfile.mkdtemp())
    snnir.export(g, tmp / "net.h5", format="lava")
    sim = lava.LoihiSimulator(lava.read_netx(tmp / "net.h5"))
    sim.run(x.numpy(), aligned=False, record_voltage=True)
    theirs: dict[str, np.ndarray] = {}
    python = os.environ.get("SNNIR_LAVA_PYTHON")
    if python:
        np.save(tmp / "x.npy", x.numpy())
        driver = "import sys; from snnir.backends.lava.lava_run import main; main(sys.argv[1:])"
        subprocess.run([python, "-c", driver, str(tmp / "net.h5"), str(tmp / "x.npy"), str(tmp / "lava.npz")],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
        theirs = dict(np.load(tmp / "lava.npz"))
    rows = {}
    for name, spikes in list(sim.spikes.items())[1:]:
        same = None
        if theirs:
            same = bool(np.array_equal(theirs[name], spikes)
                        and np.array_equal(theirs[f"{name}.v"], sim.voltages[name]))
        rows[name] = (int(spikes.sum()), int(theirs[name].sum()) if theirs else None, same)
        lava_part = f"Lava {rows[name][1]:>5}  identical: {same}" if theirs else "(set SNNIR_LAVA_PYTHON to run Lava)"
        print(f"{name:<8} simulator {rows[name][0]:>5} spikes   {lava_part}")
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)

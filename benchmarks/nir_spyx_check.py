"""Spyx's NIR export against snnir's import (a measurement, not a unit test: Spyx needs JAX).

Step 1, in a Python with JAX and Spyx (``pip install jax jaxlib flax grain jax-tqdm dm-haiku optax h5py
nir==1.0.8`` then ``pip install --no-deps spyx==1.0.0``)::

    python benchmarks/nir_spyx_check.py export OUT_DIR

writes ``spyx.nir`` (Linear -> LIF(beta 0.8) -> Linear -> LIF(beta 0.7), thresholds out of reach so the
voltages are compared), ``spyx_per_neuron.nir`` (a LIF with Spyx's default per-neuron beta), an input
and the LIF voltages Spyx computes. Step 2, in snnir's environment::

    python benchmarks/nir_spyx_check.py compare OUT_DIR

Measured (Spyx 1.0.0, JAX 0.10): Spyx writes ``tau = dt / (1 - beta)`` (right) and ``r = beta``, but its
LIF adds the input unscaled (``V = beta V + x``), which NIR's equations write as ``r = tau / dt``; as
written the voltages differ (relative error 0.84), with ``r = tau / dt`` they agree to float32 rounding
(1.3e-7), also with Spyx's default per-neuron ``beta`` (one ``tau`` per neuron, imported as per-neuron
parameters). Spyx fires from the previous step's voltage and subtracts the threshold, which NIR cannot
express, so spikes are not compared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def export(out: Path) -> None:
    import jax.numpy as jnp
    import nir
    import spyx.nir as snir
    import spyx.nn as snn
    from flax import nnx

    out.mkdir(parents=True, exist_ok=True)
    rngs = nnx.Rngs(0)
    model = snn.Sequential(nnx.Linear(6, 8, rngs=rngs), snn.LIF((8,), beta=0.8, threshold=1e6, rngs=rngs),
                           nnx.Linear(8, 3, rngs=rngs), snn.LIF((3,), beta=0.7, threshold=1e6, rngs=rngs))
    nir.write(str(out / "spyx.nir"), snir.to_nir(model, {"input": np.array([6])}, {"output": np.array([3])}, dt=1e-3))
    per_neuron = snn.Sequential(nnx.Linear(6, 8, rngs=rngs), snn.LIF((8,), threshold=1e6, rngs=rngs))
    nir.write(str(out / "spyx_per_neuron.nir"),
              snir.to_nir(per_neuron, {"input": np.array([6])}, {"output": np.array([8])}, dt=1e-3))
    x = np.random.default_rng(0).random((40, 2, 6)).astype(np.float32)
    for name, net in (("v_first", model), ("v_per_neuron", per_neuron)):
        v = jnp.zeros((2, 8))
        for t in range(len(x)):
            _, v = net.layers[1](net.layers[0](x[t]), v)
        np.save(out / f"{name}.npy", np.asarray(v))
    np.save(out / "x.npy", x)


def compare(out: Path) -> None:
    import nir
    import torch

    import snnir
    from snnir.frontends import from_nir

    x, ref = np.load(out / "x.npy"), np.load(out / "v_first.npy")

    def voltage(graph) -> np.ndarray:
        module = snnir.compile(from_nir(graph, dt=1e-3))
        with torch.no_grad():
            module(torch.from_numpy(x))
        return module.neurons()["layer_1"].v.numpy()

    def nir_form(path: Path):  # r = tau / dt: Spyx's V = beta V + x in NIR's equations
        graph = nir.read(str(path))
        for node in graph.nodes.values():
            if isinstance(node, nir.LIF):
                node.r = np.asarray(node.tau, np.float64) / 1e-3
        return graph

    per_neuron_ref = np.load(out / "v_per_neuron.npy")
    for name, v, expected in (("as written (r = beta)", voltage(out / "spyx.nir"), ref),
                              ("with r = tau / dt", voltage(nir_form(out / "spyx.nir")), ref),
                              ("per-neuron beta, r = tau/dt", voltage(nir_form(out / "spyx_per_neuron.nir")),
                               per_neuron_ref)):
        print(f"{name:<28} relative voltage error {np.abs(v - expected).max() / np.abs(expected).max():.3g}")


if __name__ == "__main__":
    {"export": export, "compare": compare}[sys.argv[1]](Path(sys.argv[2]))

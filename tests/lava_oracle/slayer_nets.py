"""Write netx files with lava-dl slayer itself (run with the Lava environment's Python).

``python slayer_nets.py OUT_DIR`` builds three small slayer CUBA networks with seeded random weights
and exports each with the blocks' own ``export_hdf5`` (as lava-dl's tutorials do):

- ``tiny_conv.net``: an ``Input`` block with its own neurons, a strided conv, flatten, dense;
- ``pilotnet.net``: a 9-layer PilotNet-style net (input neurons, 4 strided convs, flatten, 4 dense);
- ``no_input.net``: dense layers only, without an input layer.

snnir's reader must load them and its simulator must match Lava on them (tests/test_lava_oracle.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

# h5py, torch and lava are imported inside the functions: pytest collects this file for doctests in
# snnir's environment, where Lava is absent.


def neuron(current_decay: float, voltage_decay: float, threshold: float) -> dict:
    return {"threshold": threshold, "current_decay": current_decay, "voltage_decay": voltage_decay,
            "requires_grad": False}


def export(blocks: list, path: Path, input_shape: tuple[int, ...]) -> None:
    import h5py
    import torch

    x = (torch.rand(1, *input_shape, 4) < 0.5).float()
    with torch.no_grad():  # a forward pass sets the shapes the blocks export (as after training)
        for block in blocks:
            x = block(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))


def randomize(blocks: list, seed: int) -> None:
    """Spread the weights so that every layer spikes (slayer's init is small for short runs)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in blocks:
            synapse = getattr(block, "synapse", None)
            if synapse is not None:
                w = synapse.weight
                w.copy_(torch.randn(w.shape, generator=g) * 2.0 / max(1.0, (w[0].numel()) ** 0.5) + 0.3)


def main(out: Path) -> None:
    import torch
    from lava.lib.dl import slayer

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tiny = [slayer.block.cuba.Input(neuron(0.25, 0.03, 1.0), weight=1.5, bias=0.1),
            slayer.block.cuba.Conv(neuron(0.5, 0.1, 1.0), 2, 4, 3, stride=2, padding=1),
            slayer.block.cuba.Flatten(),
            slayer.block.cuba.Dense(neuron(1.0, 0.1, 1.0), 4 * 4 * 4, 3)]
    randomize(tiny, 1)
    export(tiny, out / "tiny_conv.net", (2, 8, 8))
    pilot = [slayer.block.cuba.Input(neuron(1.0, 0.1, 0.5)),
             slayer.block.cuba.Conv(neuron(1.0, 0.1, 1.0), 3, 6, 3, stride=2, padding=1),
             slayer.block.cuba.Conv(neuron(1.0, 0.1, 1.0), 6, 8, 3, stride=2, padding=1),
             slayer.block.cuba.Conv(neuron(1.0, 0.1, 1.0), 8, 8, 3, stride=2, padding=1),
             slayer.block.cuba.Conv(neuron(1.0, 0.1, 1.0), 8, 8, 3, stride=1, padding=1),
             slayer.block.cuba.Flatten(),
             slayer.block.cuba.Dense(neuron(1.0, 0.1, 1.0), 8 * 2 * 4, 20),
             slayer.block.cuba.Dense(neuron(1.0, 0.1, 1.0), 20, 12),
             slayer.block.cuba.Dense(neuron(1.0, 0.1, 1.0), 12, 6),
             slayer.block.cuba.Dense(neuron(1.0, 0.1, 1.0), 6, 2)]
    randomize(pilot, 2)
    export(pilot, out / "pilotnet.net", (3, 16, 32))
    plain = [slayer.block.cuba.Dense(neuron(0.2, 0.05, 1.0), 10, 8),
             slayer.block.cuba.Dense(neuron(0.0, 0.1, 1.0), 8, 4)]
    randomize(plain, 3)
    export(plain, out / "no_input.net", (10,))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

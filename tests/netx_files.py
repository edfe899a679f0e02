"""netx files in the layouts lava-dl slayer writes, built with h5py for the tests (no Lava needed).

Each builder writes one file and returns ``(path, x)``: the file and a seeded 0/1 input
``[T, 1, *input_shape]``. The layouts follow slayer's ``export_hdf5`` (tests/lava_oracle/slayer_nets.py
writes the same networks with slayer itself): ``type`` as a 1-element ``S10`` dataset, the neuron
type as a variable-length string, weights as float32 integers (float weight x 64), a flatten layer
with shape ``(n, 1, 1)``, the input block's weight/bias as ``(1,)`` arrays. The edge cases probe
what Lava does with weights and states at the limits (measured with real Lava).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

CUBA_KEYS = {"refDelay": 1, "gradedSpike": False}


def layer(f: h5py.File, i: int, kind: str, shape, neuron: dict | None = None, **data) -> h5py.Group:
    g = f.create_group(f"layer/{i}")
    g.create_dataset("type", (1,), "S10", [kind.encode("ascii")])
    g.create_dataset("shape", data=np.array(shape))
    for key, value in data.items():
        g.create_dataset(key, data=value)
    if neuron is not None:
        g.create_dataset("neuron/type", data="CUBA", dtype=h5py.string_dtype("ascii"))
        for key, value in {**CUBA_KEYS, **neuron}.items():
            g.create_dataset(f"neuron/{key}", data=value)
    return g


def conv_fields(rng, cout, cin, k=3, stride=2, padding=1, bias=None) -> dict:
    fields = {"weight": (rng.integers(-100, 128, (cout, cin, k, k)) * 2).astype(np.float32),
              "stride": np.array([stride, stride]), "padding": np.array([padding, padding]),
              "dilation": np.array([1, 1]), "groups": 1, "inChannels": cin, "outChannels": cout,
              "kernelSize": np.array([k, k])}
    if bias is not None:
        fields["bias"] = np.asarray(bias, np.float32)
    return fields


def dense_fields(rng, out, inp, low=-100, high=128) -> dict:
    return {"weight": (rng.integers(low, high, (out, inp)) * 2).astype(np.float32), "inFeatures": inp,
            "outFeatures": out}


def spikes(seed: int, T: int, shape, p: float = 0.4) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, 1, *shape)) < p).astype(np.float32)


# --- slayer's layouts -----------------------------------------------------------------------------
def tiny_conv(d: Path) -> tuple[Path, np.ndarray]:
    """slayer's Input block with its own neurons and transform (weight 1.5, bias 0.1 -> 96, 6), a
    strided conv, flatten, dense."""
    rng, path = np.random.default_rng(11), d / "tiny_conv.net"
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [2, 8, 8], {"iDecay": 1024, "vDecay": 123, "vThMant": 64},
              weight=np.array([96.0], np.float32), bias=np.array([6.0], np.float32))
        layer(f, 1, "conv", [4, 4, 4], {"iDecay": 2048, "vDecay": 410, "vThMant": 64}, **conv_fields(rng, 4, 2))
        layer(f, 2, "flatten", [64, 1, 1])
        layer(f, 3, "dense", [3], {"iDecay": 4096, "vDecay": 410, "vThMant": 64}, **dense_fields(rng, 3, 64))
    return path, spikes(1, 16, (2, 8, 8))


def pilotnet(d: Path) -> tuple[Path, np.ndarray]:
    """A 9-layer PilotNet-style LIF net as slayer writes it: input neurons, 4 convs, flatten, 4 dense
    (the last with a bias)."""
    rng, path = np.random.default_rng(12), d / "pilotnet.net"
    lif = {"iDecay": 4096, "vDecay": 410, "vThMant": 64}
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [3, 16, 32], {"iDecay": 4096, "vDecay": 410, "vThMant": 32})
        layer(f, 1, "conv", [6, 8, 16], lif, **conv_fields(rng, 6, 3, bias=rng.integers(-20, 20, 6)))
        layer(f, 2, "conv", [8, 4, 8], lif, **conv_fields(rng, 8, 6))
        layer(f, 3, "conv", [8, 2, 4], lif, **conv_fields(rng, 8, 8))
        layer(f, 4, "conv", [8, 2, 4], lif, **conv_fields(rng, 8, 8, stride=1))
        layer(f, 5, "flatten", [64, 1, 1])
        layer(f, 6, "dense", [20], lif, **dense_fields(rng, 20, 64))
        layer(f, 7, "dense", [12], lif, **dense_fields(rng, 12, 20))
        layer(f, 8, "dense", [6], lif, **dense_fields(rng, 6, 12))
        layer(f, 9, "dense", [2], lif, **dense_fields(rng, 2, 6), bias=np.array([30.0, -10.0], np.float32))
    return path, spikes(2, 12, (3, 16, 32))


def no_input(d: Path) -> tuple[Path, np.ndarray]:
    """Dense layers only, no input layer (slayer networks that start with a Dense block)."""
    rng, path = np.random.default_rng(13), d / "no_input.net"
    with h5py.File(path, "w") as f:
        layer(f, 0, "dense", [8], {"iDecay": 819, "vDecay": 205, "vThMant": 64}, **dense_fields(rng, 8, 10))
        layer(f, 1, "dense", [4], {"iDecay": 0, "vDecay": 410, "vThMant": 64}, **dense_fields(rng, 4, 8))
    return path, spikes(3, 20, (10,))


def no_input_conv(d: Path) -> tuple[Path, np.ndarray]:
    """No input layer and a conv first (stride 1, so the input size follows from the output)."""
    rng, path = np.random.default_rng(14), d / "no_input_conv.net"
    with h5py.File(path, "w") as f:
        layer(f, 0, "conv", [3, 5, 5], {"iDecay": 2048, "vDecay": 410, "vThMant": 80},
              **conv_fields(rng, 3, 2, stride=1, padding=0))
        layer(f, 1, "flatten", [75, 1, 1])
        layer(f, 2, "dense", [2], {"iDecay": 4096, "vDecay": 410, "vThMant": 80}, **dense_fields(rng, 2, 75))
    return path, spikes(4, 16, (2, 7, 7))


# --- what Lava does at the limits -----------------------------------------------------------------
def inhibitory_256(d: Path) -> tuple[Path, np.ndarray]:
    """A matrix without positive weights containing -256: Lava's Dense clips it to -255 and then drops
    the low bit netx found unused, so it acts as -254."""
    rng, path = np.random.default_rng(15), d / "inhibitory.net"
    w = -rng.integers(0, 129, (5, 6)) * 2
    w[:, 0] = -256
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [6])
        layer(f, 1, "dense", [5], {"iDecay": 4096, "vDecay": 100, "vThMant": 300}, weight=w.astype(np.float32),
              bias=np.full(5, 600.0, np.float32))
    return path, spikes(5, 40, (6,), 0.3)


def clipped_and_odd(d: Path) -> tuple[Path, np.ndarray]:
    """A mixed matrix beyond [-256, 254] (netx clips it), then odd weights (netx shifts them up one
    bit: a negative weight exponent), then an all-positive matrix reaching 255."""
    rng, path = np.random.default_rng(16), d / "clipped.net"
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [6])
        layer(f, 1, "dense", [8], {"iDecay": 2000, "vDecay": 100, "vThMant": 150},
              weight=rng.integers(-300, 330, (8, 6)).astype(np.float32))
        layer(f, 2, "dense", [6], {"iDecay": 2000, "vDecay": 100, "vThMant": 100},
              weight=(rng.integers(-128, 128, (6, 8)) | 1).astype(np.float32))
        excit = rng.integers(0, 256, (3, 6))
        excit[0, 0] = 255
        layer(f, 3, "dense", [3], {"iDecay": 4096, "vDecay": 300, "vThMant": 200}, weight=excit.astype(np.float32))
    return path, spikes(6, 40, (6,), 0.5)


def decays_and_defaults(d: Path) -> tuple[Path, np.ndarray]:
    """iDecay = vDecay = 0 (infinite time constants), a dense shape (n, 1, 1), and a dense layer
    without a neuron group (netx's default: iDecay 0, vDecay 4096, vThMant 1 << 17)."""
    rng, path = np.random.default_rng(17), d / "decays.net"
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [6])
        layer(f, 1, "dense", [5, 1, 1], {"iDecay": 0, "vDecay": 0, "vThMant": 3000}, **dense_fields(rng, 5, 6, 0))
        layer(f, 2, "dense", [3], None, **dense_fields(rng, 3, 5))
    return path, spikes(7, 40, (6,), 0.5)


def current_wrap(d: Path) -> tuple[Path, np.ndarray]:
    """A current that never decays grows by 2^16 per step and reaches exactly +2^23 (neuron 0) and
    -2^23 (neuron 1) at step 128: Lava keeps +2^23 and turns -2^23 into +2^23 (both spike)."""
    path = d / "wrap.net"
    w = np.zeros((2, 9))
    w[0, :8], w[1, :8], w[1, 8] = 128, -128, 1
    with h5py.File(path, "w") as f:
        layer(f, 0, "input", [9])
        layer(f, 1, "dense", [2], {"iDecay": 0, "vDecay": 4096, "vThMant": 1000}, weight=w.astype(np.float32))
    x = np.zeros((132, 1, 9), np.float32)
    x[:, :, :8] = 1
    return path, x


SLAYER_LAYOUTS = {"tiny_conv": tiny_conv, "pilotnet": pilotnet, "no_input": no_input, "no_input_conv": no_input_conv}
LIMITS = {"inhibitory_256": inhibitory_256, "clipped_and_odd": clipped_and_odd,
          "decays_and_defaults": decays_and_defaults, "current_wrap": current_wrap}

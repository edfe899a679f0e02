"""Read and write lava-dl netx HDF5 files (the layout ``lava.lib.dl.netx.hdf5.Network`` loads).

Layout (``../shared/reference/loihi-netx.md``; lava-dl slayer's ``export_hdf5`` writes the same):

    layer/<i>/type      1-element S10 dataset: input | dense | dense_rec | conv | flatten
    layer/<i>/shape     int array: (N,) or (C, H, W)
    layer/<i>/weight    float32 holding integers: (out, in) or (out, in/groups, kH, kW)
    layer/<i>/weight_rec  dense_rec only: (out, out)
    layer/<i>/bias      optional, float32 integers (bias mantissa; netx uses bias_exp = 6)
    layer/<i>/stride, padding, dilation (2,) in (H, W) order; groups (scalar)     conv only
    layer/<i>/neuron/   type = CUBA, iDecay, vDecay (x 4096), vThMant (x 64), refDelay, gradedSpike

Layers are numbered from 0 and read in numeric order. Reading validates every field and raises
``FormatError`` naming the file, the layer and what was expected. No code is executed on load.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from snnir.backends.lava.program import NETX_BIAS_EXP, Cuba, Layer, LoihiProgram, split_exponent
from snnir.errors import FormatError, LoihiMappingError

KNOWN_TYPES = ("input", "dense", "dense_rec", "conv", "flatten")
UNSUPPORTED_TYPES = ("pool", "average", "concat", "convT", "unpool")  # netx 0.6 raises on these


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the lava extra
        raise ImportError("the lava backend reads and writes netx HDF5 with h5py: pip install 'snnir[lava]'") from e
    return h5py


def _write_type(group, value: str) -> None:
    group.create_dataset("type", (1,), "S10", [value.encode("ascii")])


def _write_neuron(group, c: Cuba) -> None:
    n = group.create_group("neuron")
    _write_type(n, "CUBA")
    for key, value in (("iDecay", c.i_decay), ("vDecay", c.v_decay), ("vThMant", c.vth_mant),
                       ("refDelay", 1), ("gradedSpike", 0)):
        n.create_dataset(key, data=np.int64(value))


def _bias_mantissa(layer: Layer) -> np.ndarray:
    c = layer.neuron
    if c.bias_exp < NETX_BIAS_EXP:
        raise LoihiMappingError(f"layer {layer.name!r}: bias exponent {c.bias_exp} < 6 cannot be stored in netx "
                                "(netx loads every bias with exponent 6)")
    return c.bias << (c.bias_exp - NETX_BIAS_EXP)


def write_netx(program: LoihiProgram, path: str | os.PathLike) -> None:
    """Write ``program`` as a netx HDF5 file at ``path``."""
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        root = f.create_group("layer")
        index = 0
        for k, layer in enumerate(program.layers):
            if layer.flatten:
                g = root.create_group(str(index))
                _write_type(g, "flatten")
                g.create_dataset("shape", data=np.array([int(np.prod(program.layers[k - 1].shape))], np.int64))
                index += 1
            g = root.create_group(str(index))
            kind = "dense_rec" if layer.rec_weight is not None else layer.kind
            _write_type(g, kind)
            g.create_dataset("shape", data=np.array(layer.shape, np.int64))
            if layer.kind != "input":
                g.create_dataset("weight", data=layer.effective_weight().astype(np.float32))
            if layer.rec_weight is not None:
                g.create_dataset("weight_rec", data=layer.effective_weight(layer.rec_weight).astype(np.float32))
            if layer.kind == "dense":
                g.create_dataset("inFeatures", data=np.int64(layer.weight.shape[1]))
                g.create_dataset("outFeatures", data=np.int64(layer.weight.shape[0]))
            if layer.kind == "conv":
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.array(getattr(layer, key), np.int64))
                g.create_dataset("groups", data=np.int64(layer.groups))
            if layer.neuron.bias is not None:
                g.create_dataset("bias", data=_bias_mantissa(layer).astype(np.float32))
            for key in ("weight", "bias"):
                if layer.kind == "input" and key in layer.extra:
                    g.create_dataset(key, data=np.float32(layer.extra[key]))
            _write_neuron(g, layer.neuron)
            index += 1


class _Reader:
    """Validating access to one netx file; every error names the file and the dataset path."""

    def __init__(self, f, path: str) -> None:
        self.f, self.path = f, path

    def fail(self, where: str, why: str) -> FormatError:
        return FormatError(f"{self.path}: {where}: {why}")

    def get(self, group, key: str, where: str, required: bool = True):
        if key not in group:
            if required:
                raise self.fail(where, f"missing dataset {key!r}")
            return None
        item = group[key]
        if not hasattr(item, "dtype"):
            raise self.fail(where, f"{key!r} must be a dataset, found a group")
        return item[()]

    def text(self, group, key: str, where: str) -> str:
        value = self.get(group, key, where)
        value = np.asarray(value).reshape(-1)
        if value.size != 1 or value.dtype.kind not in "SOU":
            raise self.fail(where, f"{key!r} must be one ASCII string, got dtype {value.dtype} shape {value.shape}")
        item = value[0]
        return item.decode("ascii") if isinstance(item, bytes) else str(item)

    def integers(self, group, key: str, where: str, shape: tuple[int, ...] | None = None,
                 required: bool = True) -> np.ndarray | None:
        value = self.get(group, key, where, required)
        if value is None:
            return None
        value = np.asarray(value)
        if value.dtype.kind not in "iuf" and value.dtype != bool:
            raise self.fail(where, f"{key!r} must be numeric, got dtype {value.dtype}")
        if value.dtype.kind == "f" and (not np.all(np.isfinite(value)) or np.any(value != np.round(value))):
            raise self.fail(where, f"{key!r} must hold integers (netx reads it with astype(int))")
        if shape is not None and value.shape != shape:
            raise self.fail(where, f"{key!r} has shape {value.shape}, expected {shape}")
        return value.astype(np.int64)


def _read_neuron(r: _Reader, group, where: str, size: int) -> Cuba:
    if "neuron" not in group:
        raise r.fail(where, "missing group 'neuron'")
    n, w = group["neuron"], f"{where}/neuron"
    kind = r.text(n, "type", w)
    if kind not in ("CUBA", "LOIHI"):
        raise r.fail(w, f"neuron type {kind!r} is not supported (the Loihi backend runs CUBA neurons)")
    values = {k: int(r.integers(n, k, w).reshape(-1)[0]) for k in ("iDecay", "vDecay", "vThMant")}
    for k in ("iDecay", "vDecay"):
        if not 0 <= values[k] <= 4096:
            raise r.fail(w, f"{k}={values[k]} is outside the 12-bit decay range [0, 4096]")
    if not 0 <= values["vThMant"] < 2 ** 17:
        raise r.fail(w, f"vThMant={values['vThMant']} is outside the 17-bit range")
    bias = r.integers(group, "bias", where, required=False)
    if bias is not None:
        bias = np.broadcast_to(bias.reshape(-1) if bias.size > 1 else bias.reshape(()), (size,)).copy()
    return Cuba(values["iDecay"], values["vDecay"], values["vThMant"], bias)


def _conv_out(r: _Reader, where: str, in_shape, weight, stride, padding, dilation, groups) -> tuple[int, ...]:
    if len(in_shape) != 3:
        raise r.fail(where, f"a conv layer needs a (C, H, W) input, the previous layer gives {in_shape}")
    if in_shape[0] != weight.shape[1] * groups:
        raise r.fail(where, f"weight {weight.shape} with groups={groups} expects {weight.shape[1] * groups} "
                            f"input channels, the previous layer gives {in_shape[0]}")
    size = [(in_shape[1 + i] + 2 * padding[i] - dilation[i] * (weight.shape[2 + i] - 1) - 1) // stride[i] + 1
            for i in range(2)]
    return (weight.shape[0], *size)


def read_netx(path: str | os.PathLike) -> LoihiProgram:
    """Read a netx HDF5 file (ours or lava-dl slayer's) into a ``LoihiProgram``."""
    h5py = _h5py()
    path = os.fspath(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        r = _Reader(f, path)
        if "layer" not in f:
            raise r.fail("/", "missing group 'layer' (not a netx network file)")
        names = list(f["layer"].keys())
        if sorted(names, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(len(names))]:
            raise r.fail("layer", f"layers must be numbered 0..{len(names) - 1}, found {sorted(names)}")
        layers: list[Layer] = []
        flatten = False
        for i in range(len(names)):
            group, where = f["layer"][str(i)], f"layer/{i}"
            kind = r.text(group, "type", where)
            if kind in UNSUPPORTED_TYPES:
                raise r.fail(where, f"layer type {kind!r} is not implemented by netx (lava-dl 0.6); not supported")
            if kind not in KNOWN_TYPES:
                raise r.fail(where, f"unknown layer type {kind!r}; expected one of {KNOWN_TYPES}")
            if (kind == "input") != (i == 0):
                raise r.fail(where, "the first layer, and only the first, must be of type 'input'")
            if kind == "flatten":
                flatten = True
                continue
            shape = tuple(int(s) for s in r.integers(group, "shape", where).reshape(-1))
            if not shape or min(shape) < 1:
                raise r.fail(where, f"shape {shape} must be positive")
            size = int(np.prod(shape))
            neuron = _read_neuron(r, group, where, size)
            if kind == "input":
                extra = {k: int(r.integers(group, k, where).reshape(-1)[0]) for k in ("weight", "bias") if k in group}
                layers.append(Layer("input", shape, neuron, name=f"layer{i}", extra=extra))
                continue
            prev = layers[-1].shape
            weight = r.integers(group, "weight", where)
            if kind in ("dense", "dense_rec"):
                if weight.ndim == 1:
                    weight = weight.reshape(size, -1)
                in_size = int(np.prod(prev))
                if weight.shape != (size, in_size):
                    raise r.fail(where, f"'weight' has shape {weight.shape}, expected ({size}, {in_size}) from the "
                                        f"layer shape {shape} and the previous layer's {prev}")
                if len(prev) != 1 and not flatten:
                    raise r.fail(where, f"a dense layer after a {prev} layer needs a 'flatten' layer before it")
                rec = None
                if kind == "dense_rec":
                    rec = r.integers(group, "weight_rec", where, shape=(size, size))
                try:
                    both, exp = split_exponent(np.concatenate([weight.reshape(-1), (rec if rec is not None
                                                                                   else weight[:0]).reshape(-1)]),
                                               f"{path}: {where}")
                except LoihiMappingError as e:
                    raise FormatError(str(e)) from None
                mant = both[:weight.size].reshape(weight.shape)
                rec_mant = None if rec is None else both[weight.size:].reshape(rec.shape)
                layers.append(Layer("dense", shape, neuron, mant, exp, rec_mant, flatten=len(prev) != 1,
                                    name=f"layer{i}"))
            else:
                if weight.ndim == 5 and weight.shape[4] == 1:  # slayer's (out, in, kH, kW, 1)
                    weight = weight[..., 0]
                if weight.ndim != 4:
                    raise r.fail(where, f"conv 'weight' must be (out, in, kH, kW), got shape {weight.shape}")
                pairs = {k: tuple(int(x) for x in np.broadcast_to(r.integers(group, k, where).reshape(-1), (2,)))
                         for k in ("stride", "padding", "dilation")}
                groups = int(r.integers(group, "groups", where).reshape(-1)[0])
                expected = _conv_out(r, where, prev, weight, pairs["stride"], pairs["padding"], pairs["dilation"],
                                     groups)
                if shape != expected:
                    raise r.fail(where, f"shape {shape} does not match the convolution's output {expected}")
                try:
                    mant, exp = split_exponent(weight, f"{path}: {where}")
                except LoihiMappingError as e:
                    raise FormatError(str(e)) from None
                layers.append(Layer("conv", shape, neuron, mant, exp, stride=pairs["stride"],
                                    padding=pairs["padding"], dilation=pairs["dilation"], groups=groups,
                                    name=f"layer{i}"))
            flatten = False
        if not layers:
            raise r.fail("layer", "the network has no layers")
        return LoihiProgram(layers)


def describe(program: LoihiProgram) -> list[dict[str, Any]]:
    """One row per layer (kind, shape, decays, threshold, weight exponent): a readable summary."""
    return [{"layer": layer.name, "kind": layer.kind, "shape": layer.shape, "iDecay": layer.neuron.i_decay,
             "vDecay": layer.neuron.v_decay, "vThMant": layer.neuron.vth_mant, "weight_exp": layer.weight_exp}
            for layer in program.layers]

"""Read and write lava-dl netx HDF5 files (the layout ``lava.lib.dl.netx.hdf5.Network`` loads).

Layout (``../shared/reference/loihi-netx.md``; lava-dl slayer's ``export_hdf5`` writes the same):

    layer/<i>/type      string (a 1-element S10 dataset): input | dense | dense_rec | conv | flatten
    layer/<i>/shape     int array: (N,) or (C, H, W); a dense layer may write (N, 1, 1)
    layer/<i>/weight    float32 holding integers: (out, in) or (out, in/groups, kH, kW[, 1])
    layer/<i>/weight_rec  dense_rec only: (out, out)
    layer/<i>/bias      optional bias mantissa (netx uses bias_exp = 6): (N,) dense, (C,) conv
    layer/<i>/stride, padding, dilation (2,) in (H, W) order or one value; groups     conv only
    layer/<i>/neuron/   type = CUBA, iDecay, vDecay (x 4096), vThMant (x 64), refDelay, gradedSpike

What netx does, and so what this reader does:

- layer 0 of type ``input`` with only ``type`` and ``shape`` passes the input spikes to the first
  synapse (snnir writes this). With a ``neuron`` group it is a layer of input neurons fed the current
  ``trunc(weight * x + bias)`` (``weight``/``bias`` of the layer, defaults 64 and 0; they are *only*
  the input transform, not a neuron bias). A file may also have no input layer: the input shape is
  then the first dense layer's weight width, or ``input_shape`` (a conv's is not in the file).
- a dense layer without a ``neuron`` group gets netx's default neuron: iDecay 0, vDecay 4096,
  vThMant 1 << 17 (it integrates and never fires). A conv layer must have one (netx needs it).
- ``delay`` (synaptic delays), complex weights (``weight/real``), graded spikes (``messageBits``)
  and other neuron types (SDNN, RF) are refused, never ignored.

Reading goes through ``snnir.hdf5_tree``: every dataset's declared size is checked against
``snnir.limits`` (and the file's size, or ``max_inflation`` times its compressed size) before it is
read, links and external data are refused, and with ``safe=True`` (the CLI's default) the HDF5 bytes
are parsed in a child process with memory and time limits, so even a crash of the HDF5 library
becomes a ``FormatError``. The arrays are then validated here (dtype, shape, integer values, Loihi's
ranges, at most ``MAX_ELEMENTS`` per array). Every error is a ``FormatError`` naming the file and
``layer/<i>/<field>``. No code is executed on load.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from snnir.backends.lava.program import (
    NETX_BIAS_EXP,
    Cuba,
    Layer,
    LoihiProgram,
    netx_dense_synapse,
)
from snnir.errors import FormatError, LoihiMappingError

KNOWN_TYPES = ("input", "dense", "dense_rec", "conv", "flatten")
UNSUPPORTED_TYPES = ("pool", "average", "concat", "convT", "unpool", "dense_comp")  # netx 0.6 raises or we refuse
MAX_ELEMENTS = 1 << 25     # largest array (or layer of neurons) a file may declare; raise it for bigger networks
MAX_LAYERS = 4096
MAX_GEOMETRY = 1 << 16     # stride, padding, dilation, groups, kernel and spatial sizes
NETX_DEFAULT_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 17}  # a dense layer without 'neuron'
BIAS_RANGE = (-(1 << 12), (1 << 12) - 1)  # 13-bit signed bias mantissa
VTH_RANGE = (0, 1 << 17)                  # 17 bits; netx's own default is 1 << 17 (never fires)


def _h5py():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the lava extra
        raise ImportError("the lava backend reads and writes netx HDF5 with h5py: pip install 'snnir[loihi]'") from e
    return h5py


# --- writing -------------------------------------------------------------------------------------
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
    b = c.bias.astype(np.int64) << (c.bias_exp - NETX_BIAS_EXP)
    if layer.kind == "conv":  # netx broadcasts a conv bias per channel; Lava refuses one per neuron
        per_channel = b.reshape(layer.shape[0], -1)
        if np.any(per_channel != per_channel[:, :1]):
            raise LoihiMappingError(f"layer {layer.name!r}: its bias differs within a channel; netx stores a conv "
                                    "bias per channel")
        b = per_channel[:, 0]
    if b.min() < BIAS_RANGE[0] or b.max() > BIAS_RANGE[1]:
        raise LoihiMappingError(f"layer {layer.name!r}: bias mantissas {b.min()}..{b.max()} exceed the 13-bit range")
    return b


def _file_weights(layer: Layer) -> tuple[np.ndarray, np.ndarray | None]:
    """The integer weights to store, checked to pass through netx and Lava unchanged."""
    w = layer.effective_weight()
    rec = None if layer.rec_weight is None else layer.effective_weight(layer.rec_weight)
    what = f"layer {layer.name!r}"
    if layer.kind == "conv":
        if w.min() < -256 or w.max() > 254:
            raise LoihiMappingError(f"{what}: conv weights {w.min()}..{w.max()} exceed netx's 8-bit range "
                                    "[-256, 254] (weight mantissa x 2)")
        return w, rec
    kept, kept_rec, exp = netx_dense_synapse(w, rec, what)
    tmp = Layer("dense", layer.shape, layer.neuron, kept, exp, kept_rec)
    same = np.array_equal(tmp.float_weight(), w) and (rec is None or np.array_equal(tmp.float_weight(kept_rec), rec))
    if not same:
        raise LoihiMappingError(f"{what}: Lava's Dense synapse would clip these weights ({w.min()}..{w.max()}): "
                                "file weights must lie in [-256, 254], and a matrix without positive weights must "
                                "not contain -256 (Lava makes it -255); snnir.passes.to_loihi never produces them")
    return w, rec


def write_netx(program: LoihiProgram, path: str | os.PathLike) -> None:
    """Write ``program`` as a netx HDF5 file at ``path``.

    The input layer is ``type`` + ``shape`` only when it has no neurons (``net.inp`` then feeds the
    first synapse, as for slayer's ``Input(None)``), else its neuron group and transform. Weights
    must be integers that Lava uses unchanged (``LoihiMappingError`` otherwise).
    """
    h5py = _h5py()
    first = program.layers[0]
    if first.kind != "input":
        raise LoihiMappingError(f"the first layer must be the input layer, got {first.kind!r}")
    staged = [(layer, *(_file_weights(layer) if layer.kind != "input" else (None, None)))
              for layer in program.layers]  # check every layer before writing anything
    with h5py.File(path, "w") as f:
        root = f.create_group("layer")
        index = 0
        for k, (layer, w, rec) in enumerate(staged):
            if layer.flatten:
                g = root.create_group(str(index))
                _write_type(g, "flatten")
                g.create_dataset("shape", data=np.array([int(np.prod(program.layers[k - 1].shape))], np.int64))
                index += 1
            g = root.create_group(str(index))
            _write_type(g, "dense_rec" if rec is not None else layer.kind)
            g.create_dataset("shape", data=np.array(layer.shape, np.int64))
            if layer.kind == "input":
                if layer.neuron is not None:
                    for key in ("weight", "bias"):  # 0-d scalars: netx calls int() on them
                        if key in layer.extra:
                            g.create_dataset(key, data=np.float32(layer.extra[key]))
                    _write_neuron(g, layer.neuron)
                index += 1
                continue
            g.create_dataset("weight", data=w.astype(np.float32))
            if rec is not None:
                g.create_dataset("weight_rec", data=rec.astype(np.float32))
            if layer.kind == "dense":
                g.create_dataset("inFeatures", data=np.int64(w.shape[1]))
                g.create_dataset("outFeatures", data=np.int64(w.shape[0]))
            else:
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.array(getattr(layer, key), np.int64))
                g.create_dataset("groups", data=np.int64(layer.groups))
            if layer.neuron.bias is not None:
                g.create_dataset("bias", data=_bias_mantissa(layer).astype(np.float32))
            _write_neuron(g, layer.neuron)
            index += 1


# --- reading -------------------------------------------------------------------------------------
# The file is read into a tree of arrays first (``snnir.hdf5_tree``: declared sizes checked against
# ``snnir.limits`` and the file size, no links or external data, in a child process in safe mode);
# everything below validates that tree, so h5py never sees a question about the file's content.
class _Reader:
    """Validating access to one netx file's tree; every error names the file and the dataset path."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, why: str) -> FormatError:
        return FormatError(f"{self.path}: {where}: {why}")

    def read(self, group: dict, key: str, where: str, required: bool = True, max_size: int = MAX_ELEMENTS):
        """The dataset ``group[key]`` as an array (strings: bytes), or ``None`` if absent and not required."""
        item = group.get(key)
        if item is None:
            if required:
                raise self.fail(f"{where}/{key}", "missing")
            return None
        if isinstance(item, dict):
            raise self.fail(f"{where}/{key}", "must be a dataset, found a group")
        # an array of variable-length strings comes as (nested) lists of bytes
        value = np.array(item, dtype=object) if isinstance(item, list) else np.asarray(item)
        if value.size > max_size:
            raise self.fail(f"{where}/{key}", f"declares {value.size} elements, more than the {max_size} allowed here")
        return value

    def text(self, group: dict, key: str, where: str) -> str:
        value = self.read(group, key, where, max_size=1).reshape(-1)
        if value.size != 1 or not isinstance(value[0], bytes):
            raise self.fail(f"{where}/{key}", f"must be one string, got dtype {value.dtype} shape {value.shape}")
        try:
            return value[0].decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(f"{where}/{key}", "is not ASCII") from None

    def integers(self, group: dict, key: str, where: str, required: bool = True,
                 low: int | None = None, high: int | None = None, max_size: int = MAX_ELEMENTS) -> np.ndarray | None:
        value = self.read(group, key, where, required, max_size)
        if value is None:
            return None
        if value.dtype.kind not in "biuf":
            raise self.fail(f"{where}/{key}", f"must be numeric, got dtype {value.dtype}")
        if value.dtype.kind == "f":
            wide = value.astype(np.float64)  # float16's range would overflow the comparisons below
            if not np.all(np.isfinite(wide)) or np.any(wide != np.round(wide)):
                raise self.fail(f"{where}/{key}", "must hold integers (netx reads it with astype(int))")
            if wide.size and np.max(np.abs(wide)) > 2.0 ** 62:
                raise self.fail(f"{where}/{key}", "holds values beyond 64-bit integers")
        elif value.dtype.kind == "u" and value.size and np.max(value) > 2 ** 62:
            raise self.fail(f"{where}/{key}", "holds values beyond 64-bit integers")
        value = value.astype(np.int64)
        if value.size and low is not None and value.min() < low:
            raise self.fail(f"{where}/{key}", f"value {value.min()} is below {low}")
        if value.size and high is not None and value.max() > high:
            raise self.fail(f"{where}/{key}", f"value {value.max()} is above {high}")
        return value

    def scalar(self, group: dict, key: str, where: str, low: int, high: int, default: int | None = None) -> int:
        value = self.integers(group, key, where, required=default is None, low=low, high=high, max_size=1)
        if value is None:
            return int(default)  # type: ignore[arg-type]
        if value.size != 1:
            raise self.fail(f"{where}/{key}", f"must be one value, got shape {value.shape}")
        return int(value.reshape(-1)[0])

    def pair(self, group: dict, key: str, where: str, low: int) -> tuple[int, int]:
        value = self.integers(group, key, where, low=low, high=MAX_GEOMETRY, max_size=2).reshape(-1)
        if value.size not in (1, 2):
            raise self.fail(f"{where}/{key}", f"must be one value or (H, W), got {value.size} values")
        return (int(value[0]),) * 2 if value.size == 1 else (int(value[0]), int(value[1]))

    def group(self, parent: dict, key: str, where: str) -> dict | None:
        item = parent.get(key)
        if item is not None and not isinstance(item, dict):
            raise self.fail(where, "must be a group, found a dataset")
        return item


def _read_neuron(r: _Reader, group: dict, where: str, kind: str) -> Cuba:
    w = f"{where}/neuron"
    n = r.group(group, "neuron", w)
    if n is None:
        if kind == "conv":
            raise r.fail(w, "missing (netx needs a neuron group in a conv layer)")
        return Cuba(**{"i_decay": NETX_DEFAULT_NEURON["iDecay"], "v_decay": NETX_DEFAULT_NEURON["vDecay"],
                       "vth_mant": NETX_DEFAULT_NEURON["vThMant"]})
    neuron_type = r.text(n, "type", w)
    if neuron_type not in ("CUBA", "LOIHI"):
        raise r.fail(f"{w}/type", f"neuron type {neuron_type!r} is not supported (snnir runs Loihi's CUBA neurons; "
                                  "not SDNN or resonate-and-fire)")
    if "messageBits" in n and r.scalar(n, "messageBits", w, 0, 32) != 0:
        raise r.fail(f"{w}/messageBits", "graded spikes are not supported (messageBits must be 0)")
    values = {"i_decay": r.scalar(n, "iDecay", w, 0, 4096), "v_decay": r.scalar(n, "vDecay", w, 0, 4096),
              "vth_mant": r.scalar(n, "vThMant", w, *VTH_RANGE)}
    return Cuba(**values)


def _read_bias(r: _Reader, group: dict, where: str, kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    bias = r.integers(group, "bias", where, required=False, low=BIAS_RANGE[0], high=BIAS_RANGE[1],
                      max_size=int(np.prod(shape)))
    if bias is None:
        return None
    size = int(np.prod(shape))
    if kind == "conv":
        if bias.size != shape[0]:
            raise r.fail(f"{where}/bias", f"a conv bias has one value per channel ({shape[0]}), got shape {bias.shape}")
        return np.repeat(bias.reshape(-1), size // shape[0])
    if bias.size not in (1, size):
        raise r.fail(f"{where}/bias", f"a dense bias has one value per neuron ({size}) or one in all, got "
                                      f"shape {bias.shape}")
    return np.broadcast_to(bias.reshape(-1), (size,)).copy()


def _shape(r: _Reader, group: dict, where: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in r.integers(group, "shape", where, low=1, high=MAX_ELEMENTS, max_size=4).reshape(-1))
    if not shape:
        raise r.fail(f"{where}/shape", "is empty")
    if int(np.prod(shape, dtype=object)) > MAX_ELEMENTS:
        raise r.fail(f"{where}/shape", f"{shape} declares more than {MAX_ELEMENTS} neurons")
    return shape


def _conv_out(r: _Reader, where: str, in_shape, weight_shape, stride, padding, dilation, groups) -> tuple[int, ...]:
    if len(in_shape) != 3:
        raise r.fail(f"{where}/weight", f"a conv layer needs a (C, H, W) input, the previous layer gives {in_shape}")
    if groups < 1 or weight_shape[0] % groups or in_shape[0] != weight_shape[1] * groups:
        raise r.fail(f"{where}/weight", f"weight {weight_shape} with groups={groups} expects "
                                        f"{weight_shape[1] * groups} input channels, the previous layer gives "
                                        f"{in_shape[0]}")
    size = [(in_shape[1 + i] + 2 * padding[i] - dilation[i] * (weight_shape[2 + i] - 1) - 1) // stride[i] + 1
            for i in range(2)]
    return (weight_shape[0], *size)


def _conv_input_shape(r: _Reader, where: str, shape, weight_shape, stride, padding, dilation, groups,
                      input_shape) -> tuple[int, ...]:
    """The input of a first conv layer in a file without an input layer."""
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if stride != (1, 1):
        raise r.fail(f"{where}/weight", "the file has no input layer and its first conv layer is strided, so the input "
                                        "size is ambiguous; pass input_shape=(C, H, W)")
    return (weight_shape[1] * groups, *[shape[1 + i] - 1 - 2 * padding[i] + dilation[i] * (weight_shape[2 + i] - 1) + 1
                                        for i in range(2)])


def _kind_of(r: _Reader, root: dict, where: str, i: int) -> tuple[dict, str]:
    group = r.group(root, str(i), where)
    kind = r.text(group, "type", where)
    if kind in UNSUPPORTED_TYPES:
        raise r.fail(f"{where}/type", f"layer type {kind!r} is not implemented by netx (lava-dl 0.6); not supported")
    if kind not in KNOWN_TYPES:
        raise r.fail(f"{where}/type", f"unknown layer type {kind!r}; expected one of {KNOWN_TYPES}")
    return group, kind


def _read_dense(r: _Reader, group: dict, where: str, kind: str, shape, prev_shape, flatten: bool, name: str) -> Layer:
    size = int(np.prod(shape))  # netx uses the product: slayer writes (N, 1, 1) too
    if isinstance(group.get("weight"), dict):
        raise r.fail(f"{where}/weight", "complex weights (weight/real, weight/imag) are not supported")
    if "delay" in group:
        raise r.fail(f"{where}/delay", "synaptic delays (netx's DelayDense) are not supported; refusing the file "
                                       "rather than ignoring them")
    weight = r.integers(group, "weight", where)
    if weight.ndim == 1 and size and weight.size % size == 0:
        weight = weight.reshape(size, -1)  # netx accepts a flat weight
    in_size = int(np.prod(prev_shape)) if prev_shape is not None else (weight.shape[1] if weight.ndim == 2 else -1)
    if weight.shape != (size, in_size) or in_size < 1:
        raise r.fail(f"{where}/weight", f"has shape {weight.shape}, expected ({size}, {in_size}) from the layer shape "
                                        f"{shape} and the previous layer's {prev_shape}")
    if prev_shape is not None and len(prev_shape) != 1 and not flatten:
        raise r.fail(f"{where}/type", f"a dense layer after a {prev_shape} layer needs a 'flatten' layer before it")
    rec = None
    if kind == "dense_rec":
        rec = r.integers(group, "weight_rec", where)
        if rec.ndim == 1 and rec.size == size * size:
            rec = rec.reshape(size, size)
        if rec.shape != (size, size):
            raise r.fail(f"{where}/weight_rec", f"has shape {rec.shape}, expected ({size}, {size})")
    try:
        mant, rec_mant, exp = netx_dense_synapse(weight, rec, f"{r.path}: {where}/weight")
    except LoihiMappingError as e:
        raise FormatError(str(e)) from None
    neuron = _read_neuron(r, group, where, kind)
    neuron.bias = _read_bias(r, group, where, "dense", (size,))
    return Layer("dense", (size,), neuron, mant, exp, rec_mant,
                 flatten=prev_shape is not None and len(prev_shape) != 1, name=name)


def _read_conv(r: _Reader, group: dict, where: str, shape, prev_shape, input_shape, name: str) -> tuple[Layer, tuple]:
    if "delay" in group:
        raise r.fail(f"{where}/delay", "synaptic delays are not supported; refusing the file rather than ignoring them")
    if len(shape) != 3:
        raise r.fail(f"{where}/shape", f"a conv layer's shape is (C, H, W), got {shape}")
    weight = r.integers(group, "weight", where)
    if weight.ndim == 5 and weight.shape[4] == 1:  # slayer's (out, in, kH, kW, 1)
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise r.fail(f"{where}/weight", f"conv weights must be (out, in, kH, kW), got shape {weight.shape}")
    weight_shape = tuple(weight.shape)
    if min(weight_shape) < 1 or max(weight_shape[2:]) > MAX_GEOMETRY:
        raise r.fail(f"{where}/weight", f"has shape {weight_shape}")
    stride = r.pair(group, "stride", where, 1)
    padding = r.pair(group, "padding", where, 0)
    dilation = r.pair(group, "dilation", where, 1)
    groups = r.scalar(group, "groups", where, 1, MAX_GEOMETRY)
    if prev_shape is None:
        prev_shape = _conv_input_shape(r, where, shape, weight_shape, stride, padding, dilation, groups, input_shape)
    expected = _conv_out(r, where, prev_shape, weight_shape, stride, padding, dilation, groups)
    if shape != expected:
        raise r.fail(f"{where}/shape", f"{shape} does not match the convolution's output {expected} (input "
                                       f"{prev_shape}, weight {weight_shape}, stride {stride}, padding {padding}, "
                                       f"dilation {dilation})")
    neuron = _read_neuron(r, group, where, "conv")
    neuron.bias = _read_bias(r, group, where, "conv", shape)
    layer = Layer("conv", shape, neuron, np.ascontiguousarray(weight), 0, stride=stride, padding=padding,
                  dilation=dilation, groups=groups, name=name)  # Lava's Conv uses the file's weights as they are
    return layer, prev_shape


def _read_layer(r: _Reader, root: dict, i: int, layers: list[Layer], flatten: bool, input_shape) -> bool:
    """Read layer ``i`` onto ``layers``; returns whether a flatten layer is pending."""
    where = f"layer/{i}"
    group, kind = _kind_of(r, root, where, i)
    if kind == "input":
        if i != 0:
            raise r.fail(f"{where}/type", "only the first layer may be of type 'input'")
        shape = _shape(r, group, where)
        if "neuron" in group:
            neuron = _read_neuron(r, group, where, kind)  # no bias: netx passes none
            extra = {k: r.scalar(group, k, where, -(1 << 15), (1 << 15) - 1, default=d)
                     for k, d in (("weight", 64), ("bias", 0))}
            layers.append(Layer("input", shape, neuron, name=f"layer{i}", extra=extra))
        else:
            layers.append(Layer("input", shape, None, name=f"layer{i}"))
        return False
    if kind == "flatten":
        if not layers:
            raise r.fail(f"{where}/type", "a flatten layer needs a layer before it")
        return True
    shape = _shape(r, group, where)
    prev = layers[-1].shape if layers else None
    if kind in ("dense", "dense_rec"):
        layer = _read_dense(r, group, where, kind, shape, prev, flatten, f"layer{i}")
        if not layers:
            layers.append(Layer("input", (layer.weight.shape[1],), None, name="input"))
    else:
        if flatten:
            raise r.fail(f"{where}/type", "a conv layer cannot follow a flatten layer")
        layer, in_shape = _read_conv(r, group, where, shape, prev, input_shape, f"layer{i}")
        if not layers:
            layers.append(Layer("input", in_shape, None, name="input"))
    layers.append(layer)
    return False


def read_netx(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None,
              safe: bool | None = None) -> LoihiProgram:
    """Read a netx HDF5 file (ours or lava-dl slayer's) into a ``LoihiProgram``.

    ``input_shape`` is needed only for a file without an input layer whose first layer is a strided
    convolution (netx asks for it too). Layers are named ``layer<i>`` after their index in the file.
    ``safe=True`` parses the HDF5 bytes in a child process with memory and time limits (a crash of
    the HDF5 library on a corrupted file becomes a ``FormatError``); ``None`` follows
    ``snnir.limits.current().safe`` (on in the ``snnir`` command line unless ``--trusted``).

    Example:
        >>> import numpy as np, os, tempfile, snnir
        >>> from snnir.backends.lava import program_from_graph, read_netx, write_netx
        >>> g = snnir.Graph(); x = g.add_input((3,))
        >>> lin = g.add_node("linear", [x], params={"weight": np.eye(3, dtype=np.float32)})
        >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "IF"}))
        >>> path = os.path.join(tempfile.mkdtemp(), "net.h5")
        >>> snnir.export(g, path, format="lava")
        >>> [layer.kind for layer in read_netx(path, safe=True).layers]
        ['input', 'dense']
    """
    _h5py()
    from snnir.hdf5_tree import load_tree

    path = os.fspath(path)
    tree = load_tree(path, safe=safe, roots=("layer",))
    r = _Reader(path)
    root = tree.get("layer")
    if not isinstance(root, dict):
        raise r.fail("layer", "missing group (not a netx network file)")
    names = list(root)
    if len(names) > MAX_LAYERS:
        raise r.fail("layer", f"{len(names)} layers, more than {MAX_LAYERS}")
    if sorted(names, key=lambda k: int(k) if k.isdigit() else -1) != [str(i) for i in range(len(names))]:
        raise r.fail("layer", f"layers must be numbered 0..{len(names) - 1}, found {sorted(names)[:8]}")
    if not names:
        raise r.fail("layer", "the network has no layers")
    layers: list[Layer] = []
    flatten = False
    for i in range(len(names)):
        try:
            flatten = _read_layer(r, root, i, layers, flatten, input_shape)
        except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError) as e:
            # numpy on odd dtypes or sizes the checks above did not foresee: still a FormatError naming the layer
            raise r.fail(f"layer/{i}", f"cannot be read ({type(e).__name__}: {e})") from None
    if len(layers) < 2:
        raise r.fail("layer", "the network has no dense or conv layer")
    return LoihiProgram(layers)


def describe(program: LoihiProgram) -> list[dict[str, Any]]:
    """One row per layer (kind, shape, decays, threshold, weight exponent): a readable summary."""
    return [{"layer": layer.name, "kind": layer.kind, "shape": layer.shape,
             "iDecay": None if layer.neuron is None else layer.neuron.i_decay,
             "vDecay": None if layer.neuron is None else layer.neuron.v_decay,
             "vThMant": None if layer.neuron is None else layer.neuron.vth_mant, "weight_exp": layer.weight_exp}
            for layer in program.layers]

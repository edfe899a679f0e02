"""The integer Loihi network: what the netx file holds and what the simulator runs.

A ``LoihiProgram`` is a chain of ``Layer``s: an ``input`` layer, then ``dense`` and ``conv``
layers, each a synapse into CUBA neurons (``Cuba``). The input layer either passes the input
spikes on (no neurons: netx's ``net.inp`` is then the first synapse's port) or is a layer of input
neurons (lava-dl's ``Input`` block) whose current receives ``trunc(weight * x + bias)``. All numbers
are Loihi integers: the weights as Lava's synapse holds them (``a = (W s) << weight_exp``, an
arithmetic right shift for a negative exponent; ``netx_dense_synapse`` turns a file's weights into
that), 12-bit decays, the threshold mantissa (compared as ``v > vth << 6``) and the bias mantissa
(added as ``bias << bias_exp``).

``program_from_graph`` reads a graph that ``snnir.passes.to_loihi`` mapped (every value is then
exactly on the grid); ``program_to_graph`` gives the float graph back, in lava-dl slayer's units
(weight, bias, threshold = integer / 64, decays = integer / 4096).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from snnir.errors import LoihiMappingError
from snnir.graph import Graph
from snnir.neurons.canonical import NotCanonicalError, canonical
from snnir.passes.to_loihi import (
    DECAY_UNITY,
    WEIGHT_UNITS,
    input_transform,
    loihi_layers,
    neuron_attrs,
    threshold_mantissa,
)

NETX_BIAS_EXP = 6  # netx loads every bias with bias_exp = 6


@dataclass
class Cuba:
    """Integer parameters of a layer of Loihi CUBA neurons."""

    i_decay: int
    v_decay: int
    vth_mant: int
    bias: np.ndarray | None = None  # per neuron (flattened), int64
    bias_exp: int = NETX_BIAS_EXP


@dataclass
class Layer:
    """One Loihi layer: ``kind`` is ``input``, ``dense`` or ``conv``; ``shape`` its output shape.

    ``neuron`` is ``None`` only for an input layer that passes spikes on; an input layer with
    neurons keeps its transform in ``extra`` (``weight``, ``bias``; netx's defaults 64 and 0).
    """

    kind: str
    shape: tuple[int, ...]
    neuron: Cuba | None
    weight: np.ndarray | None = None      # int64 mantissas: (out, in) or (out, in / groups, kH, kW)
    weight_exp: int = 0
    rec_weight: np.ndarray | None = None  # dense_rec: (out, out), same exponent
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flatten: bool = False                 # a dense layer reading a flattened (C, H, W) input
    name: str = ""
    extra: dict = field(default_factory=dict)  # input-layer fields kept for round trips

    def effective_weight(self, w: np.ndarray | None = None) -> np.ndarray:
        """Integer weights as netx stores them (``mantissa * 2^exponent``; exact or an error)."""
        w = (self.weight if w is None else w).astype(np.int64)
        if self.weight_exp >= 0:
            return w << self.weight_exp
        if np.any(w % (1 << -self.weight_exp)):
            raise LoihiMappingError(f"layer {self.name!r}: weights {w.min()}..{w.max()} with exponent "
                                    f"{self.weight_exp} are not integers in netx's units")
        return w >> -self.weight_exp

    def float_weight(self, w: np.ndarray | None = None) -> np.ndarray:
        """``mantissa * 2^exponent`` in float64 (exact; not always an integer)."""
        return (self.weight if w is None else w).astype(np.float64) * 2.0 ** self.weight_exp


@dataclass
class LoihiProgram:
    layers: list[Layer]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].shape


def split_exponent(weight: np.ndarray, what: str) -> tuple[np.ndarray, int]:
    """Integer weights as an 8-bit signed mantissa and the smallest exponent that fits."""
    w = np.asarray(weight)
    if not np.all(np.isfinite(w)) or np.any(w != np.round(w)):
        raise LoihiMappingError(f"{what}: weights must be integers (Loihi units), got non-integer values")
    w = w.astype(np.int64)
    for exp in range(0, 8):
        m = w >> exp
        if np.array_equal(m << exp, w) and m.min(initial=0) >= -128 and m.max(initial=0) <= 127:
            return m, exp
    raise LoihiMappingError(f"{what}: weights in [{w.min()}, {w.max()}] do not fit an 8-bit mantissa with an exponent")


def _sign_mode(w: np.ndarray) -> str:
    return "excitatory" if w.min(initial=0) >= 0 else "inhibitory" if w.max(initial=0) <= 0 else "mixed"


def netx_dense_synapse(weight: np.ndarray, rec: np.ndarray | None = None,
                       what: str = "dense layer") -> tuple[np.ndarray, np.ndarray | None, int]:
    """The weights Lava's Dense synapse holds for a netx file's integer ``weight`` (and a dense_rec
    layer's ``rec``): ``(W, W_rec, exponent)``, with ``a = (W s) << exponent``.

    netx (lava-dl 0.6) picks one exponent for the layer from the largest weight (weights are shifted
    left by ``-exponent`` bits so they use the 8-bit range; a mixed-sign matrix beyond [-256, 254] is
    clipped to it); then each synapse clips to its own 8-bit sign range (mixed [-256, 255],
    excitatory [0, 255], inhibitory [-255, 0]) and drops the low bits below the precision netx
    found. Inside those ranges this is exact: ``W << exponent`` equals the file's weights.
    ``LoihiMappingError`` for weights netx cannot load (it would shift by a negative count).
    """
    weight = np.asarray(weight, np.int64)
    parts = [weight] if rec is None else [weight, np.asarray(rec, np.int64)]
    both = np.concatenate([p.reshape(-1) for p in parts])
    if not both.size or not np.any(both):
        raise LoihiMappingError(f"{what}: every weight is 0; netx (lava-dl 0.6) cannot load such a layer")
    hi, lo = int(both.max()), int(both.min())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        parts = [np.clip(p, -256, 254) for p in parts]
        both = np.clip(both, -256, 254)
        hi, lo = int(both.max()), int(both.min())
    mode = "inhibitory" if hi < 0 else "excitatory" if lo >= 0 else "mixed"  # netx's own rule (hi < 0)
    signed = int(mode == "mixed")
    scale = {"inhibitory": lambda: -256 / lo, "excitatory": lambda: 255 / hi,
             "mixed": lambda: min(127 / hi if hi else math.inf, -128 / lo)}[mode]()
    shift_bits = math.floor(math.log2(scale)) + signed
    if shift_bits < 0:
        raise LoihiMappingError(f"{what}: weights in [{lo}, {hi}] are beyond what netx loads ([-256, 255] with "
                                "one sign, [-256, 254] mixed)")
    n = 8
    while n > 0 and np.any(both % (1 << n)):
        n -= 1
    weight_bits = 8 - shift_bits - (n - signed)
    out = []
    for p in parts:
        w = p << shift_bits
        own = _sign_mode(w)  # each synapse clips and truncates with its own sign mode
        w = np.clip(w, *{"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}[own])
        drop = 8 - weight_bits + int(own == "mixed")
        if drop > 0:
            w = -((-w >> drop) << drop) if own == "inhibitory" else (w >> drop) << drop
        out.append(w)
    return out[0], (out[1] if rec is not None else None), -shift_bits


def _on_grid(values: np.ndarray, unit: float, what: str) -> np.ndarray:
    scaled = np.asarray(values, np.float64) * unit
    if np.any(scaled != np.round(scaled)):
        raise LoihiMappingError(f"{what} is not on Loihi's integer grid (x{unit:g}); run snnir.passes.to_loihi first")
    return np.round(scaled).astype(np.int64)


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, str):
        raise LoihiMappingError(f"{what}={value!r}: netx needs explicit integer padding")
    v = (value, value) if isinstance(value, int) else tuple(value)
    return int(v[0]), int(v[1])


def _cuba(g: Graph, neuron_id: str, bias: np.ndarray | None, shape: tuple[int, ...]) -> Cuba:
    """The integer CUBA parameters of a mapped neuron, read from its equations (exact or an error)."""
    n = g.node(neuron_id)
    try:
        c = canonical(n)
        i_decay, v_decay, gain, leak = (c.scalar(f) for f in ("current_decay", "voltage_decay", "input_gain", "leak"))
        threshold = c.scalar("threshold")
    except NotCanonicalError as e:
        raise LoihiMappingError(f"node {neuron_id!r}: {e}; run snnir.passes.to_loihi") from None
    if c.reset != "hard" or c.scalar("reset_value") != 0.0 or leak != 0.0:
        raise LoihiMappingError(f"node {neuron_id!r}: Loihi neurons reset to 0 and leak towards 0; "
                                "run snnir.passes.to_loihi")
    if gain != 1.0:
        raise LoihiMappingError(f"node {neuron_id!r}: input gain {gain:g} is not folded into the weights; "
                                "run snnir.passes.to_loihi")
    decays = [round(d * DECAY_UNITY) for d in (i_decay, v_decay)]
    if any(not math.isclose(d * DECAY_UNITY, r, abs_tol=1e-6) or not 0 <= r <= DECAY_UNITY
           for d, r in zip((i_decay, v_decay), decays)):
        raise LoihiMappingError(f"node {neuron_id!r}: decays {i_decay:g}, {v_decay:g} are not multiples of 1/4096 "
                                "in [0, 1]; run snnir.passes.to_loihi")
    vth = int(_on_grid(np.array(threshold_mantissa(threshold)), 1, f"node {neuron_id!r} threshold"))
    b = None
    if bias is not None:  # a synapse's bias is per output channel, Loihi's per neuron
        per_neuron = np.broadcast_to(bias.reshape(-1, *[1] * (len(shape) - 1)), shape).reshape(-1)
        b = _on_grid(per_neuron, WEIGHT_UNITS, f"node {neuron_id!r} bias")
    return Cuba(decays[0], decays[1], vth, b)


def ensure_mapped(g: Graph) -> Graph:
    """``g`` itself if ``to_loihi`` already mapped it (or it was read from a netx file), else
    ``to_loihi(g)``; ``program_from_graph`` still checks that every value is on the grid."""
    from snnir.passes.to_loihi import to_loihi

    return g if g.meta.get("loihi") else to_loihi(g)


def program_from_graph(g: Graph) -> LoihiProgram:
    """The integer program of a graph mapped by ``to_loihi`` (exact; raises if a value is off-grid)."""
    g.validate()
    inp = g.node(g.inputs[0])
    specs = loihi_layers(g)
    if specs and specs[0].is_input:  # an input layer of neurons, fed trunc(weight x + bias)
        spec = specs.pop(0)
        weight, bias = input_transform(g, spec)
        w_int, b_int = (_on_grid(np.array(v), WEIGHT_UNITS, f"node {spec.synapse!r} input transform")
                        for v in (weight, bias))
        layers = [Layer("input", tuple(inp.shape), _cuba(g, spec.neuron, None, tuple(inp.shape)), name=spec.neuron,
                        extra={"weight": int(w_int), "bias": int(b_int)})]
    else:
        layers = [Layer("input", tuple(inp.shape), None, name=inp.id)]
    for spec in specs:
        syn, neuron = g.node(spec.synapse), g.node(spec.neuron)
        w_int = _on_grid(syn.params["weight"], WEIGHT_UNITS, f"node {syn.id!r} weights")
        cuba = _cuba(g, neuron.id, syn.params.get("bias"), tuple(neuron.shape))
        if syn.op == "linear":
            r_int = None
            if spec.recurrent:
                r_int = _on_grid(g.node(spec.recurrent).params["weight"], WEIGHT_UNITS,
                                 f"node {spec.recurrent!r} weights")
            mant, rec, exp = netx_dense_synapse(w_int, r_int, f"node {syn.id!r}")
            flatten = g.node(g.predecessors(syn.id)[0]).op == "flatten"
            layers.append(Layer("dense", tuple(neuron.shape), cuba, mant, exp, rec, flatten=flatten, name=neuron.id))
        else:
            a = syn.attrs  # Lava's Conv uses the file's weights as they are
            layers.append(Layer("conv", tuple(neuron.shape), cuba, w_int, 0,
                                stride=_pair(a["stride"] or 1, f"node {syn.id!r} stride"),
                                padding=_pair(a["padding"], f"node {syn.id!r} padding"),
                                dilation=_pair(a["dilation"], f"node {syn.id!r} dilation"),
                                groups=int(a["groups"]), name=neuron.id))
    return LoihiProgram(layers)


def program_to_graph(program: LoihiProgram, name: str = "loihi") -> Graph:
    """The float snnir graph of an integer program (slayer's units: integer / 64, decay / 4096).

    An input layer of neurons becomes ``input -> [affine: (weight x + bias) / 64] -> neuron``.
    """
    g = Graph(name)
    inp = program.layers[0]
    prev = g.add_input(inp.shape, id="input" if inp.neuron is not None else (inp.name or "input"))
    mapping: list[list[str | None]] = []
    if inp.neuron is not None:
        c = inp.neuron
        weight, bias = inp.extra.get("weight", WEIGHT_UNITS), inp.extra.get("bias", 0)
        transform = None
        if (weight, bias) != (WEIGHT_UNITS, 0):
            transform = g.add_node("affine", [prev], id=f"{inp.name or 'layer0'}_transform",
                                   params={"weight": np.float32(weight / WEIGHT_UNITS),
                                           "bias": np.float32(bias / WEIGHT_UNITS)})
        prev = g.add_node("neuron", [transform or prev], attrs=neuron_attrs(c.i_decay, c.v_decay, c.vth_mant),
                          id=inp.name or "layer0")
        mapping.append([transform, None, prev])
    for i, layer in enumerate(program.layers[1:], start=1):
        base = layer.name or f"layer{i}"
        if layer.kind == "dense" and len(program.layers[i - 1].shape) != 1:
            prev = g.add_node("flatten", [prev], id=f"{base}_flatten")
        weight = (layer.float_weight() / WEIGHT_UNITS).astype(np.float32)
        params = {"weight": weight}
        c = layer.neuron
        if c.bias is not None:
            bias = (c.bias.astype(np.float64) * 2.0 ** (c.bias_exp - NETX_BIAS_EXP) / WEIGHT_UNITS)
            per_channel = bias.reshape(layer.shape[0], -1)
            if np.any(per_channel != per_channel[:, :1]):
                raise LoihiMappingError(f"layer {base!r}: its bias differs within a channel; an snnir synapse "
                                        "has one bias per output channel")
            params["bias"] = per_channel[:, 0].astype(np.float32)
        if layer.kind == "dense":
            syn = g.add_node("linear", [prev], params=params, id=f"{base}_synapse")
        else:
            syn = g.add_node("conv2d", [prev], params=params, id=f"{base}_synapse",
                             attrs={"stride": list(layer.stride), "padding": list(layer.padding),
                                    "dilation": list(layer.dilation), "groups": layer.groups})
        rec = None
        if layer.rec_weight is not None:
            add = g.add_node("add", [syn], id=f"{base}_sum")
            neuron = g.add_node("neuron", [add], attrs=neuron_attrs(c.i_decay, c.v_decay, c.vth_mant), id=base)
            rec_weight = (layer.float_weight(layer.rec_weight) / WEIGHT_UNITS).astype(np.float32)
            rec = g.add_node("linear", [neuron], id=f"{base}_recurrent", params={"weight": rec_weight})
            g.add_edge(rec, add, port=1, offset=1)
        else:
            neuron = g.add_node("neuron", [syn], attrs=neuron_attrs(c.i_decay, c.v_decay, c.vth_mant), id=base)
        mapping.append([syn, rec, neuron])
        prev = neuron
    g.add_output(prev)
    g.meta["loihi"] = {"layers": mapping}
    return g.validate()

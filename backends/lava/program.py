"""The integer Loihi network: what the netx file holds and what the simulator runs.

A ``LoihiProgram`` is a chain of ``Layer``s: an ``input`` layer (netx feeds the input through the
input neurons' bias: ``bias = 2 * 64 * x - 64``, so a 0/1 spike passes unchanged), then ``dense``
and ``conv`` layers, each a synapse into CUBA neurons (``Cuba``). All numbers are Loihi integers:
weight mantissas with an exponent (``a = (W s) << weight_exp``), 12-bit decays, the threshold
mantissa (compared as ``v > vth << 6``) and the bias mantissa (added as ``bias << bias_exp``).

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
from snnir.passes.to_loihi import DECAY_UNITY, WEIGHT_UNITS, loihi_layers, neuron_attrs, threshold_mantissa

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
    """One Loihi layer: ``kind`` is ``input``, ``dense`` or ``conv``; ``shape`` its output shape."""

    kind: str
    shape: tuple[int, ...]
    neuron: Cuba
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
        """Integer weights as netx stores them (mantissa << exponent)."""
        w = self.weight if w is None else w
        if self.weight_exp < 0:
            raise LoihiMappingError(f"layer {self.name!r}: weight exponent {self.weight_exp} < 0 has no "
                                    "integer netx weight")
        return w.astype(np.int64) << self.weight_exp


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
    n = g.node(neuron_id)
    a = n.attrs
    model = a["model"]
    if model == "IF":
        i_decay, v_decay = DECAY_UNITY, 0
    elif model == "LIF" and not a["decay_input"]:
        i_decay, v_decay = DECAY_UNITY, DECAY_UNITY / a["tau"]
    elif model == "CubaLIF":
        i_decay, v_decay = DECAY_UNITY / a["tau_syn"], DECAY_UNITY / a["tau_mem"]
    else:
        raise LoihiMappingError(f"node {neuron_id!r}: {model} is not a mapped Loihi neuron; run snnir.passes.to_loihi")
    decays = [round(d) for d in (i_decay, v_decay)]
    if any(not math.isclose(d, r, abs_tol=1e-6) for d, r in zip((i_decay, v_decay), decays)):
        raise LoihiMappingError(f"node {neuron_id!r}: decays {i_decay / DECAY_UNITY:g}, "
                                f"{v_decay / DECAY_UNITY:g} are not multiples of 1/4096; run snnir.passes.to_loihi")
    if a["v_reset"] != 0.0:
        raise LoihiMappingError(f"node {neuron_id!r}: v_reset={a['v_reset']}; Loihi resets to 0")
    vth = int(_on_grid(np.array(threshold_mantissa(a["v_threshold"])), 1, f"node {neuron_id!r} threshold"))
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
    meta = g.meta.get("loihi", {})
    inp = g.node(g.inputs[0])
    extra = dict(meta.get("input", {}))
    layers = [Layer("input", tuple(inp.shape), Cuba(DECAY_UNITY, DECAY_UNITY, 0), name=inp.id, extra=extra)]
    for spec in loihi_layers(g):
        syn, neuron = g.node(spec.synapse), g.node(spec.neuron)
        w_int = _on_grid(syn.params["weight"], WEIGHT_UNITS, f"node {syn.id!r} weights")
        mant, exp = split_exponent(w_int, f"node {syn.id!r}")
        rec = None
        if spec.recurrent:
            r_int = _on_grid(g.node(spec.recurrent).params["weight"], WEIGHT_UNITS, f"node {spec.recurrent!r} weights")
            both, exp = split_exponent(np.concatenate([w_int.reshape(-1), r_int.reshape(-1)]), f"node {syn.id!r}")
            mant, rec = both[:w_int.size].reshape(w_int.shape), both[w_int.size:].reshape(r_int.shape)
        cuba = _cuba(g, neuron.id, syn.params.get("bias"), tuple(neuron.shape))
        if syn.op == "linear":
            flatten = g.node(g.predecessors(syn.id)[0]).op == "flatten"
            layers.append(Layer("dense", tuple(neuron.shape), cuba, mant, exp, rec, flatten=flatten, name=neuron.id))
        else:
            a = syn.attrs
            layers.append(Layer("conv", tuple(neuron.shape), cuba, mant, exp,
                                stride=_pair(a["stride"] or 1, f"node {syn.id!r} stride"),
                                padding=_pair(a["padding"], f"node {syn.id!r} padding"),
                                dilation=_pair(a["dilation"], f"node {syn.id!r} dilation"),
                                groups=int(a["groups"]), name=neuron.id))
    return LoihiProgram(layers)


def program_to_graph(program: LoihiProgram, name: str = "loihi") -> Graph:
    """The float snnir graph of an integer program (slayer's units: integer / 64, decay / 4096)."""
    g = Graph(name)
    inp = program.layers[0]
    prev = g.add_input(inp.shape, id=inp.name or "input")
    mapping = []
    for i, layer in enumerate(program.layers[1:], start=1):
        base = layer.name or f"layer{i}"
        if layer.kind == "dense" and len(program.layers[i - 1].shape) != 1:
            prev = g.add_node("flatten", [prev], id=f"{base}_flatten")
        weight = (layer.effective_weight() / WEIGHT_UNITS).astype(np.float32)
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
            rec_weight = (layer.effective_weight(layer.rec_weight) / WEIGHT_UNITS).astype(np.float32)
            rec = g.add_node("linear", [neuron], id=f"{base}_recurrent", params={"weight": rec_weight})
            g.add_edge(rec, add, port=1, offset=1)
        else:
            neuron = g.add_node("neuron", [syn], attrs=neuron_attrs(c.i_decay, c.v_decay, c.vth_mant), id=base)
        mapping.append([syn, rec, neuron])
        prev = neuron
    g.add_output(prev)
    g.meta["loihi"] = {"layers": mapping, "input": dict(inp.extra)}
    return g.validate()

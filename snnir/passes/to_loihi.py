"""``to_loihi``: put a graph on Loihi's fixed-point grid, or say which node cannot go there.

A Loihi layer (a lava-dl netx ``dense``/``conv`` layer) is a synapse with 8-bit weights feeding a
layer of CUBA neurons, which Loihi runs in integers (``../shared/reference/loihi-netx.md``):

    u[t] = rtz(u * (4096 - i_decay), 12) + 64 * (W s)
    v[t] = rtz(v * (4096 - v_decay), 12) + u[t] + 64 * bias
    spike = v > 64 * vth, then v = 0                (u is not reset)

The pass rewrites every (synapse, neuron) pair so that the float graph *is* that integer network
read in lava-dl slayer's units (weight, bias, threshold = integer / 64; state = integer / 4096):

- weights become ``m / 32`` with an 8-bit mantissa ``m`` (netx stores the even integer ``2 m``),
  after scaling the layer by a power of two ``k`` that uses the 8-bit range (the ``quantize``
  pass's power-of-two scale). A layer's state can be scaled freely because it only emits 0/1
  spikes, so ``k`` multiplies the weights, bias and threshold of that layer alike;
- decays become ``n / 4096``: LIF's ``tau`` becomes ``4096 / round(4096 / tau)``;
- neurons are recognised by their equations, not their names: ``snnir.neurons.canonical`` reads
  the current decay, voltage decay, input gain, leak target and reset from the model's sympy
  equations. Any linear (CUBA-)LIF or IF maps, a user's own model included. The input gain (``1/tau``
  for ``LIF(decay_input=True)``, ``v + (x - v) / tau``) is folded into the incoming weights and bias,
  which is exact; ParametricLIF maps with its current ``tau`` (fixed from then on);
- an input layer of neurons (``input -> [scale | affine] -> neuron`` at the start, lava-dl's
  ``Input`` block) keeps its neurons; the scalar transform becomes netx's input ``weight``/``bias``.

What Loihi cannot express raises ``LoihiMappingError`` naming the node: soft reset, a reset
potential other than 0, a leak towards a non-zero potential, neurons whose equations are not a
linear (CUBA-)LIF (QIF, adaptation, ...), one decay per neuron, pooling (netx 0.6 cannot load pool
layers: use a strided conv), non-sequential graphs (add, cat), activations (relu), 1-d
convolutions, and values outside Loihi's ranges (12-bit decays, 17-bit threshold mantissa, 13-bit
bias mantissa). Weights stay inside what Lava's Dense synapse keeps unchanged: file weights in
[-256, 254], and no -256 in a matrix without positive weights (Lava clips that to -255).

Threshold: snnir fires at ``v >= threshold``, Loihi at ``v > 64 * vth`` in integers, i.e. at
``v >= (64 * vth + 1) / 4096`` in float. The mapped graph's threshold is exactly that, so the float
graph fires when the chip does (on ties too); against the original graph it is one more
quantization step of 1/4096 (in the layer's scaled units).
Time: Loihi delivers a synapse's output one step later, so layer ``l`` of the chip fires ``l``
steps after the float layer; the simulator realigns (see ``LoihiSimulator``).

Example:
    >>> import numpy as np, snnir
    >>> from snnir.passes.to_loihi import to_loihi
    >>> g = snnir.Graph(); x = g.add_input((3,))
    >>> w = np.array([[0.30, -0.12, 0.05], [0.5, 0.25, -0.5]], np.float32)
    >>> lin = g.add_node("linear", [x], params={"weight": w})
    >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "LIF", "tau": 3.0, "decay_input": False}))
    >>> m = to_loihi(g)
    >>> m.node("linear").params["weight"] * 32          # 8-bit mantissas (layer scaled by k = 4)
    array([[ 38., -15.,   6.],
           [ 64.,  32., -64.]], dtype=float32)
    >>> m.node("neuron").attrs["v_threshold"] * 4096, round(4096 / m.node("neuron").attrs["tau"])
    (16385.0, 1365)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from snnir.errors import LoihiMappingError
from snnir.graph import Graph, Node
from snnir.neurons.canonical import NotCanonicalError, canonical
from snnir.passes.cleanup import eliminate_dead
from snnir.passes.fold_batchnorm import fold_batchnorm
from snnir.passes.quantize import quantize
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import bypass

DECAY_UNITY = 4096      # 12-bit decays: 4096 = full decay per step
WEIGHT_UNITS = 64       # integer weight / bias / threshold = float x 64 (slayer's convention)
MANTISSA = (-128, 127)  # 8-bit signed weight mantissa; netx stores 2 * mantissa
VTH_MAX = 2 ** 17 - 1
BIAS_MAX = 2 ** 12 - 1  # 13-bit signed bias mantissa
INPUT_MAX = 2 ** 12 - 1  # input-layer transform weight/bias (kept within the bias range)
SYNAPSES = ("linear", "conv2d")
TRANSFORMS = ("scale", "affine")  # an input layer's x -> w x + b before its neurons


@dataclass
class LoihiLayer:
    """One Loihi layer of a graph: a synapse (with an optional recurrent synapse) into a neuron.

    The input layer of neurons (``is_input``) has no synapse: ``synapse`` is then the optional
    ``scale``/``affine`` transform between the graph input and the neurons (or ``None``).
    """

    synapse: str | None
    neuron: str
    recurrent: str | None = None  # a linear from the neuron back to its own input (netx dense_rec)
    add: str | None = None        # the add node that merges the two synapses
    is_input: bool = False


def _refuse(node: Node | str, why: str) -> LoihiMappingError:
    name = node.id if isinstance(node, Node) else node
    op = f" ({node.op})" if isinstance(node, Node) else ""
    return LoihiMappingError(f"node {name!r}{op} cannot be mapped to Loihi: {why}")


_OP_REASONS = {
    "maxpool2d": "netx (lava-dl 0.6) cannot load pooling layers; use a strided conv instead",
    "avgpool2d": "netx (lava-dl 0.6) cannot load pooling layers; use a strided conv instead",
    "spiking_maxpool2d": "netx (lava-dl 0.6) cannot load pooling layers; use a strided conv instead",
    "relu": "Loihi layers end in spiking neurons; a ReLU activation has no Loihi equivalent",
    "clip": "Loihi layers end in spiking neurons; clipping has no Loihi equivalent",
    "add": "netx networks are sequential chains; only a dense layer's own recurrence may add synapses",
    "cat": "netx networks are sequential chains (netx 0.6 cannot load concat layers)",
    "conv1d": "netx convolutions are 2-d; reshape the input to (C, 1, L) and use conv2d",
    "time_reduce": "a reduction over time steps (x.mean(0) / x.sum(0)) has no netx layer; export the network up to "
                   "the reduction and reduce its output spikes on the host",
}


def loihi_layers(g: Graph) -> list[LoihiLayer]:
    """The (synapse, neuron) layers of a sequential graph in order, or ``LoihiMappingError``.

    Allowed: ``input -> [flatten] -> synapse -> neuron -> [flatten] -> synapse -> neuron ... ->
    output``, where a synapse is ``linear`` or ``conv2d``, and a ``linear`` from a neuron back into
    its own input (through an ``add``), read one step late, is that layer's recurrent synapse.
    No other edge may read the previous step.
    """
    g.validate()
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise LoihiMappingError(f"a Loihi network has one input and one output; graph {g.name!r} has "
                                f"inputs {g.inputs} and outputs {g.outputs}")
    layers: list[LoihiLayer] = []
    node = g.node(g.inputs[0])
    first = _input_layer(g, node)
    if first is not None:
        layers.append(first)
        node = g.node(first.neuron)
    while True:
        consumers = g.successors(node.id)
        if node.op == "neuron" and layers and layers[-1].recurrent:
            consumers = [c for c in consumers if c != layers[-1].recurrent]
        if len(consumers) != 1:
            raise _refuse(node, f"its output goes to {consumers}; a Loihi network is one chain")
        nxt = g.node(consumers[0])
        if nxt.op == "output":
            if node.op != "neuron":
                raise _refuse(node, "a Loihi network ends in a layer of neurons")
            _check_delays(g, layers)
            return layers
        if nxt.op == "flatten":
            node = nxt
            continue
        if nxt.op not in SYNAPSES:
            raise _refuse(nxt, _OP_REASONS.get(nxt.op, f"expected a linear or conv2d synapse after {node.id!r}"))
        if len(g.node(g.inputs[0]).shape) not in (1, 3):
            raise _refuse(g.inputs[0], f"the input must be (N,) or (C, H, W), got shape {g.node(g.inputs[0]).shape}")
        if nxt.op == "linear" and len(nxt.in_shape) != 1:
            raise _refuse(nxt, f"a dense layer reads a vector; flatten its input of shape {nxt.in_shape} first")
        layers.append(_layer_after(g, nxt))
        node = g.node(layers[-1].neuron)


def _input_layer(g: Graph, inp: Node) -> LoihiLayer | None:
    """The input layer of neurons, ``input -> [scale | affine] -> neuron``, if the graph starts so."""
    consumers = g.successors(inp.id)
    if len(consumers) != 1:
        return None
    node = g.node(consumers[0])
    transform = None
    if node.op in TRANSFORMS:
        if node.op == "affine" and any(np.asarray(p).size != 1 for p in node.params.values()):
            raise _refuse(node, "an input layer's transform is one weight and one bias for all inputs (netx's "
                                "input weight/bias); this one is per channel")
        after = g.successors(node.id)
        if len(after) != 1 or g.node(after[0]).op != "neuron":
            return None
        transform, node = node.id, g.node(after[0])
    if node.op != "neuron":
        return None
    return LoihiLayer(transform, node.id, is_input=True)


def input_transform(g: Graph, layer: LoihiLayer) -> tuple[float, float]:
    """The scalar ``(weight, bias)`` of an input layer's transform (``(1, 0)`` without one)."""
    if layer.synapse is None:
        return 1.0, 0.0
    node = g.node(layer.synapse)
    if node.op == "scale":
        return float(node.attrs["factor"]), 0.0
    weight, bias = (float(np.asarray(node.params[k]).reshape(-1)[0]) for k in ("weight", "bias"))
    return weight, bias


def _layer_after(g: Graph, syn: Node) -> LoihiLayer:
    consumers = g.successors(syn.id)
    if len(consumers) != 1:
        raise _refuse(syn, f"its output goes to {consumers}; a synapse feeds exactly one neuron layer")
    nxt = g.node(consumers[0])
    if nxt.op == "neuron":
        return LoihiLayer(syn.id, nxt.id)
    others = [p for p in g.predecessors(nxt.id) if p != syn.id]
    if nxt.op == "add" and len(others) == 1 and len(g.predecessors(nxt.id)) == 2:
        (neuron_id,) = g.successors(nxt.id) or [None]
        rec = g.node(others[0])
        if (neuron_id and g.node(neuron_id).op == "neuron" and rec.op == "linear"
                and g.predecessors(rec.id) == [neuron_id] and "bias" not in rec.params):
            return LoihiLayer(syn.id, neuron_id, recurrent=rec.id, add=nxt.id)
    raise _refuse(nxt, _OP_REASONS.get(nxt.op, f"expected a neuron layer after synapse {syn.id!r}"))


def _check_delays(g: Graph, layers: list[LoihiLayer]) -> None:
    """Only a recurrent synapse reads the previous step (netx ``dense_rec``): one offset-1 edge on
    its path neuron -> recurrent linear -> add, every other edge of the network offset 0."""
    allowed = {(e.src, e.dst, e.port) for layer in layers if layer.recurrent
               for e in g.in_edges(layer.recurrent) + g.in_edges(layer.add) if e.src != layer.synapse}
    for e in g.delayed_edges():
        if (e.src, e.dst, e.port) not in allowed:
            raise _refuse(g.node(e.dst), f"it reads {e.src!r} one step late (time offset 1); on Loihi only a "
                                         "layer's recurrent synapse reads the previous step")
    for layer in [layer for layer in layers if layer.recurrent]:
        loop = [e for e in g.in_edges(layer.recurrent) + g.in_edges(layer.add) if e.src != layer.synapse]
        if sum(e.offset for e in loop) != 1:
            raise _refuse(g.node(layer.recurrent), f"a recurrent synapse reads the previous step of "
                                                   f"{layer.neuron!r} (one edge of its loop with time offset 1)")


@dataclass
class _Dynamics:
    i_decay: float  # per-step decay fractions in float
    v_decay: float
    fold: float     # factor folded into the incoming weights and bias


def _dynamics(neuron: Node) -> _Dynamics:
    """Loihi's decays and the input gain to fold, read from the neuron's equations."""
    try:
        c = canonical(neuron)
        i_decay, v_decay, gain = (c.scalar(f) for f in ("current_decay", "voltage_decay", "input_gain"))
        threshold, leak = c.scalar("threshold"), c.scalar("leak")
        reset_value = None if c.reset_value is None else c.scalar("reset_value")
    except NotCanonicalError as e:
        why = str(e)
        if "differs across neurons" in why:
            why += "; Loihi has one decay and one threshold per layer"
        raise _refuse(neuron, f"{why}. Loihi runs CUBA-LIF neurons: linear (CUBA-)LIF or IF equations") from None
    if c.reset == "soft":
        raise _refuse(neuron, "soft reset (v_reset=None) subtracts the threshold; Loihi resets v to 0")
    if c.reset == "none":
        raise _refuse(neuron, "a neuron that never resets; Loihi resets v to 0 after a spike")
    if reset_value != 0.0:
        raise _refuse(neuron, f"v_reset={reset_value}; Loihi resets v to 0")
    if leak != 0.0 and v_decay != 0.0:
        raise _refuse(neuron, f"its voltage leaks towards {leak}; Loihi's leaks towards 0")
    if threshold <= 0:
        raise _refuse(neuron, f"v_threshold={threshold} must be positive on Loihi")
    if gain <= 0:
        raise _refuse(neuron, f"input gain {gain} must be positive to fold into the weights")
    return _Dynamics(i_decay, v_decay, gain)


def _decay(neuron: Node, what: str, fraction: float) -> int:
    value = round(fraction * DECAY_UNITY)
    if not 0 <= value <= DECAY_UNITY:
        raise _refuse(neuron, f"{what} decay {fraction:g} per step is outside Loihi's 12-bit range [0, 1] "
                              "(a time constant below 1 step)")
    return value


def _power_of_two_floor(x: float) -> float:
    return 2.0 ** math.floor(math.log2(x))


@register_pass("to_loihi")
def to_loihi(g: Graph) -> Graph:
    """Map ``g`` onto Loihi's fixed-point grid (see the module doc); the input is not modified."""
    g = fold_batchnorm(g.copy().validate())
    for node in [n for n in g if n.op == "dropout"]:  # identity at inference
        bypass(g, node.id)
    g = eliminate_dead(g.validate())
    layers = loihi_layers(g)
    # the quantize pass's power-of-two, per-tensor 8-bit scale s gives the layer scale k = 1 / (32 s)
    folded = g.copy()
    for layer in layers:
        fold = _dynamics(g.node(layer.neuron)).fold
        for sid in (layer.synapse, layer.recurrent):
            if sid and not layer.is_input:
                folded.node(sid).params = {k: v * fold for k, v in g.node(sid).params.items()}
    scales = {}
    if any(not layer.is_input for layer in layers):
        scales = {n.id: float(np.ravel(n.attrs["quant"]["scale"])[0])
                  for n in quantize(folded, bits=8, per_channel=False, power_of_two=True) if n.op in SYNAPSES}
    for layer in layers:
        if layer.is_input:
            _map_input_layer(g, layer)
        else:
            _map_layer(g, folded, layer, scales)
    g.meta["loihi"] = {"layers": [[layer.synapse, layer.recurrent, layer.neuron] for layer in layers]}
    return g.validate()


def _threshold_mantissa(neuron: Node, theta: float, k: float) -> int:
    vth = round(WEIGHT_UNITS * k * theta)
    if vth < 1:
        raise _refuse(neuron, f"threshold {theta:g} rounds to 0 at the weight scale the 8-bit weights need; "
                              "the weights are too large relative to the threshold")
    return vth


def _mapped_neuron(neuron: Node, dyn: _Dynamics, vth: int) -> None:
    i_decay, v_decay = _decay(neuron, "current", dyn.i_decay), _decay(neuron, "voltage", dyn.v_decay)
    attrs = {**neuron_attrs(i_decay, v_decay, vth), "detach_reset": neuron.attrs["detach_reset"],
             "surrogate": neuron.attrs["surrogate"]}
    neuron.attrs, neuron.params = attrs, {}


def _map_layer(g: Graph, folded: Graph, layer: LoihiLayer, scales: dict[str, float]) -> None:
    neuron = g.node(layer.neuron)
    dyn = _dynamics(neuron)
    synapses = [folded.node(s) for s in (layer.synapse, layer.recurrent) if s]
    bias = folded.node(layer.synapse).params.get("bias")
    if bias is not None and np.any(bias != 0) and _decay(neuron, "current", dyn.i_decay) != DECAY_UNITY:
        raise _refuse(neuron, "its synapse has a bias but the current decays slowly (tau_syn > 1): Loihi adds "
                              "the bias to the voltage, not the current; train without bias or with tau_syn=1")
    theta = canonical(neuron).scalar("threshold")
    k = min(1.0 / (32.0 * scales[s.id]) for s in synapses)
    k = min(k, _power_of_two_floor(VTH_MAX / (WEIGHT_UNITS * theta)))
    if bias is not None and np.any(bias != 0):
        k = min(k, _power_of_two_floor(BIAS_MAX / (WEIGHT_UNITS * float(np.abs(bias).max()))))
    vth = _threshold_mantissa(neuron, theta, k)
    for syn in synapses:
        target = g.node(syn.id)
        w = syn.params["weight"].astype(np.float64) * 32.0 * k
        # Lava's Dense clips -256 (mantissa -128) to -255 in a matrix without positive weights
        low = MANTISSA[0] + (1 if np.all(np.round(w) <= 0) else 0)
        mant = np.clip(np.round(w), low, MANTISSA[1])
        params = {"weight": (mant / 32.0).astype(np.float32)}
        if "bias" in syn.params:
            params["bias"] = (np.round(syn.params["bias"].astype(np.float64) * WEIGHT_UNITS * k)
                              / WEIGHT_UNITS).astype(np.float32)
        target.params = params
        target.attrs = {**target.attrs, "quant": None}
    _mapped_neuron(neuron, dyn, vth)


def _map_input_layer(g: Graph, layer: LoihiLayer) -> None:
    """An input layer of neurons: netx feeds them the current ``trunc(weight x + bias)`` (integers,
    in units of 1/64), so the transform and the threshold are scaled alike by a power of two."""
    neuron = g.node(layer.neuron)
    dyn = _dynamics(neuron)
    weight, bias = (v * dyn.fold for v in input_transform(g, layer))
    theta = canonical(neuron).scalar("threshold")
    k = _power_of_two_floor(VTH_MAX / (WEIGHT_UNITS * theta))
    largest = max(abs(weight), abs(bias))
    if largest > 0:
        k = min(k, _power_of_two_floor(INPUT_MAX / (WEIGHT_UNITS * largest)))
    vth = _threshold_mantissa(neuron, theta, k)
    w_int, b_int = round(WEIGHT_UNITS * k * weight), round(WEIGHT_UNITS * k * bias)
    if w_int == 0:
        raise _refuse(neuron, f"its input weight {weight:g} rounds to 0 next to its threshold {theta:g}")
    transform = layer.synapse
    if transform is None and (w_int, b_int) != (WEIGHT_UNITS, 0):
        transform = g.add_node("affine", [g.inputs[0]], id=g._new_id(f"{neuron.id}_input"),
                               params={"weight": np.float32(1.0), "bias": np.float32(0.0)})
        g.nx.remove_edge(g.inputs[0], neuron.id)
        g.add_edge(transform, neuron.id, port=0)
        layer.synapse = transform
    if transform is not None:
        node = g.node(transform)
        if node.op == "scale":  # a scale has no bias, so b_int is 0
            node.attrs = {**node.attrs, "factor": w_int / WEIGHT_UNITS}
        else:
            node.params = {"weight": np.float32(w_int / WEIGHT_UNITS), "bias": np.float32(b_int / WEIGHT_UNITS)}
    _mapped_neuron(neuron, dyn, vth)


def float_threshold(vth_mant: int) -> float:
    """The float threshold (``>=``) that fires exactly when Loihi's ``v > vth_mant << 6`` does."""
    return (WEIGHT_UNITS * vth_mant + 1) / (WEIGHT_UNITS * WEIGHT_UNITS)


def threshold_mantissa(v_threshold: float) -> float:
    """Inverse of ``float_threshold`` (an integer when the threshold is on Loihi's grid)."""
    return (v_threshold * WEIGHT_UNITS * WEIGHT_UNITS - 1) / WEIGHT_UNITS


def neuron_attrs(i_decay: int, v_decay: int, vth_mant: int) -> dict:
    """The float neuron whose dynamics are Loihi's CUBA neuron with these integer decays and
    threshold mantissa: a current that does not persist (``i_decay = 4096``) makes it a LIF, and no
    voltage decay on top an IF; both decays non-zero a CubaLIF. A decay of 0 (an infinite time
    constant, which netx allows) is ``CubaLIFDecay``, written with its decay factors."""
    base = {"v_threshold": float_threshold(vth_mant), "v_reset": 0.0}
    if i_decay == DECAY_UNITY and v_decay == 0:
        return {"model": "IF", **base}
    if i_decay == DECAY_UNITY:
        return {"model": "LIF", "tau": DECAY_UNITY / v_decay, "decay_input": False, **base}
    if i_decay and v_decay:
        return {"model": "CubaLIF", "tau_syn": DECAY_UNITY / i_decay, "tau_mem": DECAY_UNITY / v_decay, **base}
    return {"model": "CubaLIFDecay", "c_decay": 1.0 - i_decay / DECAY_UNITY, "v_decay": 1.0 - v_decay / DECAY_UNITY,
            **base}

"""``LoihiSimulator``: Loihi's fixed-point CUBA neurons and dense/conv synapses, bit for bit.

Integer numpy (int64) arithmetic as Lava's bit-accurate models ``PyLifModelBitAcc`` and
``PyDenseModelBitAcc`` define it (``../shared/reference/loihi-netx.md``). Per step and layer:

1. synapse: ``a = (W s_prev) << weight_exp`` (arithmetic ``>>`` for a negative exponent), where
   ``s_prev`` are the previous layer's spikes *of the previous step* (Loihi's one-step delay);
2. ``u = wrap24(rtz(u * (4096 - i_decay), 12) + (a << 6))``;
3. ``v = clip23(rtz(v * (4096 - v_decay), 12) + u + (bias << bias_exp))``;
4. ``spike = v > (vth << 6)``; spiking neurons get ``v = 0`` (``u`` is not reset).

``rtz(x, n)`` rounds ``x / 2^n`` toward zero. The input layer receives the input through its
neurons' bias, as netx does: ``bias = 2 * 64 * x - 64`` (a 0/1 spike passes through unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from snnir.backends.lava.program import Cuba, Layer, LoihiProgram, ensure_mapped, program_from_graph

DECAY_SHIFT = 12
ACTIVATION_SHIFT = 6
THRESHOLD_SHIFT = 6
STATE_BITS = 24
V_MAX = 2 ** (STATE_BITS - 1) - 1
INPUT_WEIGHT = 64  # netx's default input weight: an input neuron's current is 64 x


def rtz(x: np.ndarray, n: int) -> np.ndarray:
    """``x / 2^n`` rounded toward zero (Loihi's decay rounding), in integers."""
    return np.sign(x) * (np.abs(x) >> n)


def wrap(x: np.ndarray, bits: int = STATE_BITS) -> np.ndarray:
    """Two's-complement wrap into a signed ``bits``-bit range (Lava's ``signed_clamp`` of a conv's output)."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def wrap_current(x: np.ndarray) -> np.ndarray:
    """Lava's 24-bit current wrap: one step of ``2^24`` down above ``2^23`` and up at or below ``-2^23``."""
    half = 1 << (STATE_BITS - 1)
    out = np.where(x > half, x - 2 * half, x)
    return np.where(out <= -half, x + 2 * half, out)


def int32(x: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int32 (Lava holds ``u`` and the activation in int32)."""
    return wrap(np.asarray(x, np.int64), 32)


def shift(a: np.ndarray, exponent: int) -> np.ndarray:
    """``a << exponent``, or an arithmetic right shift for a negative exponent."""
    return a << exponent if exponent >= 0 else a >> -exponent


def cuba_step(u: np.ndarray, v: np.ndarray, a: np.ndarray, c: Cuba,
              bias: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of Loihi CUBA neurons: synaptic input ``a`` -> new ``(u, v, spikes)``.

    ``bias`` is the bias mantissa (per neuron or scalar), added as ``bias << c.bias_exp``.

    Example:
        >>> import numpy as np
        >>> from snnir.backends.lava.simulator import cuba_step
        >>> from snnir.backends.lava.program import Cuba
        >>> c = Cuba(i_decay=4096, v_decay=2048, vth_mant=100)   # LIF, tau = 2, threshold 100 * 64
        >>> u, v, s = cuba_step(np.zeros(2, np.int64), np.array([0, 6000]), np.array([80, 101]), c)
        >>> u.tolist(), v.tolist(), s.tolist()                  # v = 6000 / 2 + 101 * 64 = 9464 > 6400
        ([5120, 6464], [5120, 0], [False, True])
    """
    u = wrap_current(int32(int32(rtz(u * (4096 - c.i_decay), DECAY_SHIFT)) + int32(a << ACTIVATION_SHIFT)))
    v = rtz(v * (4096 - c.v_decay), DECAY_SHIFT) + u + (np.asarray(bias, np.int64) << c.bias_exp)
    v = np.clip(v, -V_MAX, V_MAX)
    s = v > (c.vth_mant << THRESHOLD_SHIFT)
    return u, np.where(s, 0, v), s


def dense(s: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``s @ W.T`` in exact integers (float64 BLAS is exact below 2^53; sums here are far below)."""
    out = s.reshape(s.shape[0], -1).astype(np.float64) @ weight.astype(np.float64).T
    return np.rint(out).astype(np.int64)


def conv2d(s: np.ndarray, weight: np.ndarray, stride: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int], groups: int) -> np.ndarray:
    """Integer 2-d cross-correlation ``[N, C, H, W] -> [N, O, H', W']`` (torch.nn.Conv2d's rule)."""
    n, c = s.shape[:2]
    o, cg, kh, kw = weight.shape
    x = np.pad(s.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    span = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    win = np.lib.stride_tricks.sliding_window_view(x, span, axis=(2, 3))
    win = win[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]  # [N, C, H', W', kh, kw]
    og = o // groups
    outs = [np.einsum("nchwij,ocij->nohw", win[:, g * cg:(g + 1) * cg], weight[g * og:(g + 1) * og].astype(np.float64),
                      optimize=True) for g in range(groups)]
    return np.rint(np.concatenate(outs, axis=1)).astype(np.int64)


def _synaptic_input(layer: Layer, s_in: np.ndarray, s_self: np.ndarray) -> np.ndarray:
    if layer.kind == "dense":
        a = shift(dense(s_in, layer.weight), layer.weight_exp).reshape(s_in.shape[0], *layer.shape)
        if layer.rec_weight is not None:
            a = a + shift(dense(s_self, layer.rec_weight), layer.weight_exp).reshape(a.shape)
        return a
    return wrap(shift(conv2d(s_in, layer.weight, layer.stride, layer.padding, layer.dilation, layer.groups),
                      layer.weight_exp))


class LoihiSimulator:
    """Runs a ``LoihiProgram`` (or a graph, mapped with ``to_loihi`` on the way) bit-accurately.

    ``run(x)`` takes ``x`` of shape ``[T, N, *input_shape]`` (0/1 spikes) and returns the output
    layer's spikes ``[T, N, *output_shape]`` as int8. Loihi delays each synapse by one step, so
    layer ``l`` fires ``l`` steps after the float network; with ``aligned=True`` (default) the
    simulator runs ``L`` extra steps with zero input and shifts every layer back, so its spikes
    line up with the float graph's step for step. ``spikes`` then holds every layer's spikes by
    name (the neuron node ids of the graph).

    Example:
        >>> import numpy as np, snnir
        >>> g = snnir.Graph(); x = g.add_input((2,))
        >>> lin = g.add_node("linear", [x], params={"weight": np.array([[0.75, 0.5]], np.float32)})
        >>> _ = g.add_output(g.add_node("neuron", [lin], attrs={"model": "IF"}))
        >>> sim = snnir.compile(g, backend="lava")
        >>> sim.run(np.array([[[1, 0]], [[0, 1]], [[0, 1]], [[1, 1]]])).ravel().tolist()
        [0, 1, 0, 1]
    """

    def __init__(self, program: LoihiProgram) -> None:
        self.program = program
        self.spikes: dict[str, np.ndarray] = {}
        self.voltages: dict[str, np.ndarray] = {}  # filled by run(..., record_voltage=True)

    @classmethod
    def from_graph(cls, graph: Any) -> LoihiSimulator:
        """The simulator of ``graph``, mapped with ``to_loihi`` unless it already is."""
        return cls(program_from_graph(ensure_mapped(graph)))

    @property
    def delay(self) -> int:
        """Steps between an input spike and the output layer's response on the chip."""
        return len(self.program.layers) - 1

    def run(self, x: Any, aligned: bool = True, progress: bool = False, record_voltage: bool = False) -> np.ndarray:
        """Simulate ``x`` ([T, N, *input_shape]); see the class doc. ``record_voltage`` keeps every
        layer's integer ``v`` after each step (after the reset) in ``voltages``."""
        x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
        layers = self.program.layers
        shape = layers[0].shape
        if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != tuple(shape):
            raise ValueError(f"LoihiSimulator expects input [T, N, *{tuple(shape)}], got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("LoihiSimulator input holds NaN or Inf")
        T, N = x.shape[:2]
        steps = T + self.delay if aligned else T
        first = layers[0]
        if first.neuron is None and not np.all((x == 0) | (x == 1)):
            raise ValueError("LoihiSimulator: this network's input layer passes spikes on, so the input must be 0/1 "
                             "spikes (a layer of input neurons takes graded input)")
        u = [np.zeros((N, *layer.shape), np.int64) for layer in layers]
        v = [np.zeros((N, *layer.shape), np.int64) for layer in layers]
        s = [np.zeros((N, *layer.shape), bool) for layer in layers]
        biases = [0 if layer.neuron is None or layer.neuron.bias is None else layer.neuron.bias.reshape(layer.shape)
                  for layer in layers]
        in_weight = float(first.extra.get("weight", INPUT_WEIGHT))
        in_bias = float(first.extra.get("bias", 0))
        record = [np.zeros((steps, N, *layer.shape), np.int8) for layer in layers]
        volts = [np.zeros((steps if record_voltage else 0, N, *layer.shape), np.int64) for layer in layers]
        for t in tqdm(range(steps), desc="Loihi simulation", disable=not progress):
            xt = x[t] if t < T else np.zeros_like(x[0])
            prev = s
            s = []
            for i, layer in enumerate(layers):
                if i == 0 and layer.neuron is None:  # spikes go straight to the first synapse
                    spikes = xt.astype(bool)
                    v[0] = xt.astype(np.int64)
                else:
                    if i == 0:  # netx's input transform, truncated toward zero as astype(int) does
                        a = np.trunc(in_weight * xt.astype(np.float64) + in_bias).astype(np.int64)
                    else:
                        a = _synaptic_input(layer, prev[i - 1], prev[i])
                    u[i], v[i], spikes = cuba_step(u[i], v[i], a, layer.neuron, biases[i])
                s.append(spikes)
                record[i][t] = spikes
                if record_voltage:
                    volts[i][t] = v[i]
        if aligned:
            record = [r[i:i + T] for i, r in enumerate(record)]
            volts = [r[i:i + T] for i, r in enumerate(volts)]
        names = [layer.name or f"layer{i}" for i, layer in enumerate(layers)]
        self.spikes = dict(zip(names, record))
        self.voltages = dict(zip(names, volts)) if record_voltage else {}
        return record[-1]

    __call__ = run

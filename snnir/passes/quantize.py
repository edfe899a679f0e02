"""``quantize``: post-training symmetric weight quantization of conv/linear layers.

For ``bits`` b the integer range is ``[-q, q]`` with ``q = 2^(b-1) - 1``. The scale is
``max|w| / q`` per tensor or per output channel; ``power_of_two=True`` rounds each scale up to a
power of two (what Loihi's weight exponent can express). The node keeps its float weights and gets
``attrs["quant"] = {"bits", "scale", "per_channel", "power_of_two"}``; the torch backend runs
``clamp(round(w / s), -q, q) * s`` with a straight-through estimator (fake quantization), so the
same graph serves evaluation and quantization-aware fine-tuning.
"""

from __future__ import annotations

import numpy as np

from snnir.graph import Graph
from snnir.passes.registry import register_pass

SYNAPSES = ("linear", "conv1d", "conv2d")


def quantize(g: Graph, bits: int = 8, per_channel: bool = True, power_of_two: bool = False) -> Graph:
    """Mark every conv/linear for ``bits``-bit symmetric weight quantization (see module doc).

    Example:
        >>> import numpy as np, snnir
        >>> g = snnir.Graph(); x = g.add_input((2,))
        >>> w = np.array([[0.5, -1.0], [0.1, 0.2]], np.float32)
        >>> _ = g.add_output(g.add_node("linear", [x], params={"weight": w}))
        >>> q = quantize(g, bits=4).node("linear").attrs["quant"]
        >>> [round(s, 4) for s in q["scale"]]       # max|w| / 7 per output channel
        [0.1429, 0.0286]
    """
    if bits not in (2, 3, 4, 5, 6, 7, 8, 16):
        raise ValueError(f"quantize supports 2..8 or 16 bits, got {bits}")
    g = g.copy().validate()
    q = 2 ** (bits - 1) - 1
    for node in g:
        if node.op not in SYNAPSES:
            continue
        w = node.params["weight"].astype(np.float64)
        amax = np.abs(w).reshape(w.shape[0], -1).max(1) if per_channel else np.abs(w).max()
        scale = np.maximum(amax, 1e-12) / q
        if power_of_two:
            scale = 2.0 ** np.ceil(np.log2(scale))
        node.attrs = {**node.attrs, "quant": {"bits": bits, "scale": np.asarray(scale).tolist(),
                                              "per_channel": per_channel, "power_of_two": power_of_two}}
    return g.validate()


register_pass("quantize")(quantize)

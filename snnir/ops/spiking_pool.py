"""``spiking_maxpool``: max pooling for rate-coded spike trains (Rueckauer et al. 2017).

Max pooling the spikes themselves computes their OR, which over-counts. This op keeps each
input's spike count and, in every window, passes on the spike of the input that has spiked most
so far (ties: the first in the window), so the output rate follows the rate of the most active
input: the spiking counterpart of ``maxpool(relu(x))``.
"""

from __future__ import annotations

from snnir.ops.layers import _make_pool
from snnir.ops.registry import OpSpec, register_op

_pool = _make_pool("max", 2)
register_op(OpSpec("spiking_maxpool2d", _pool.infer_shape, attrs=dict(_pool.attrs),
                   state=lambda attrs, shape, in_shape: {"count": in_shape},
                   doc="Per window, forwards the spike of the input with the highest spike count so far."))

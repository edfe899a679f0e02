"""``group_synapse_neuron``: mark (linear | conv) -> neuron pairs a backend can run as one unit.

A pair is grouped when the synapse's only reader is the neuron and neither edge is recurrent.
Groups are stored in ``graph.meta["groups"]`` as ``[synapse_id, neuron_id]`` pairs. The torch
backend runs a group as one module call: one matmul/conv over all T steps, then the neuron's
fused time loop, without keeping the synaptic current in its environment.
"""

from __future__ import annotations

from snnir.graph import Graph
from snnir.passes.registry import register_pass
from snnir.passes.rewrite import single_consumer, touches_recurrence

SYNAPSES = ("linear", "conv1d", "conv2d")


@register_pass("group_synapse_neuron")
def group_synapse_neuron(g: Graph) -> Graph:
    g = g.copy().validate()
    recurrent = g.recurrent_edges()
    groups = []
    for node in g:
        if node.op not in SYNAPSES or touches_recurrence(g, node.id, recurrent):
            continue
        reader = single_consumer(g, node.id)
        if reader is not None and g.node(reader).op == "neuron" and not touches_recurrence(g, reader, recurrent):
            groups.append([node.id, reader])
    g.meta["groups"] = groups
    return g

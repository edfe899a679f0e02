"""``group_synapse_neuron``: mark the chains a backend can run as one unit.

A chain is ``synapse -> neuron``, ``synapse -> batchnorm -> neuron`` or ``batchnorm -> neuron``
(synapse: linear or conv), where every node but the last is read by the next one only and no edge
of the chain is recurrent. Chains are stored in ``graph.meta["groups"]`` as lists of node ids, in
order. The torch backend runs a chain without keeping its intermediate values: one matmul/conv
over all T steps, then the neuron's fused time loop (with a batchnorm applied inside it).
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

    def next_in_chain(node_id: str) -> str | None:
        reader = single_consumer(g, node_id)
        if reader is None or touches_recurrence(g, node_id, recurrent) or touches_recurrence(g, reader, recurrent):
            return None
        return reader

    groups = []
    for node in g:
        if node.op not in SYNAPSES and node.op != "batchnorm":
            continue
        chain = [node.id]
        reader = next_in_chain(node.id)
        if reader is not None and node.op in SYNAPSES and g.node(reader).op == "batchnorm":
            chain.append(reader)
            reader = next_in_chain(reader)
        if reader is not None and g.node(reader).op == "neuron":
            if node.op == "batchnorm" and any(node.id in c for c in groups):
                continue  # already inside a synapse's chain
            groups.append([*chain, reader])
    g.meta["groups"] = groups
    return g

"""``schedule``: the traversal-order plan, from strongly connected components.

Acyclic parts of the graph run *layer by layer over the sequence* (``"sequence"`` regions: each
node processes many time steps in one call, stateless ops with time folded into batch, neurons
with their fused time loop). Strongly connected components (recurrent loops) run *step by step*
(``"step"`` regions: for each t, every node of the loop in order, offset-1 edges reading t-1).
An offset-1 edge outside a loop starts a new sequence region at its consumer, so its source's
whole sequence exists before it is read one step late. The nodes after a reduction over time
(``time_reduce``; ``Graph.final_step_nodes``) form the last region, ``"final"``: a whole-sequence
run evaluates them once, on the reductions' values at the final step (a single-step run, every step).

A sequence region records ``sample_elems``, its largest per-sample activation: a backend runs the
region in blocks of time steps whose activations fit its memory budget (folding all of T at once
makes tensors that miss the caches and fault in fresh pages on every call; one step at a time pays
per-call overhead). Results are the same either way, because every stateful node carries its state
from one block to the next.

The plan is stored in ``graph.meta["schedule"]`` (serialized with the graph); backends execute it.
"""

from __future__ import annotations

import math

import networkx as nx

from snnir.graph import Graph
from snnir.passes.registry import register_pass


def plan_regions(g: Graph) -> list[dict]:
    """``[{"mode": "sequence" | "step" | "final", "nodes": [...]}, ...]`` in execution order."""
    order = {n: i for i, n in enumerate(g.topological_order())}
    final = g.final_step_nodes()
    cond = nx.condensation(g.nx)
    members = nx.get_node_attributes(cond, "members")
    comp_order = nx.lexicographical_topological_sort(cond, key=lambda c: min(order[n] for n in members[c]))
    regions: list[dict] = []
    delayed_from = {}  # node -> the sources it reads with offset 1
    for e in g.delayed_edges():
        delayed_from.setdefault(e.dst, set()).add(e.src)
    for comp in comp_order:
        nodes = sorted(members[comp], key=order.__getitem__)
        if final.issuperset(nodes):
            continue
        cyclic = len(nodes) > 1 or g.nx.has_edge(nodes[0], nodes[0])
        mode = "step" if cyclic else "sequence"
        if (mode == "sequence" and regions and regions[-1]["mode"] == "sequence"
                and not any(delayed_from.get(n, set()) & set(regions[-1]["nodes"]) for n in nodes)):
            regions[-1]["nodes"].extend(nodes)
        else:
            regions.append({"mode": mode, "nodes": nodes})
    for r in regions:
        if r["mode"] == "sequence":
            r["sample_elems"] = max(math.prod(g.node(n).shape) for n in r["nodes"])
    if final:
        regions.append({"mode": "final", "nodes": sorted(final, key=order.__getitem__)})
    return regions


@register_pass("schedule")
def schedule(g: Graph) -> Graph:
    g = g.copy().validate()
    g.meta["schedule"] = {"regions": plan_regions(g)}
    return g


def region_of(g: Graph) -> dict[str, int]:
    """Node id -> index of its region in the stored plan (empty if the graph has none)."""
    plan = g.meta.get("schedule", {}).get("regions", [])
    return {n: i for i, r in enumerate(plan) for n in r["nodes"]}

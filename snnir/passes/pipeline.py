"""``optimize``: run passes in order, validating after each, optionally proving equivalence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from snnir.errors import SnnirError
from snnir.graph import Graph
from snnir.passes.registry import get_pass

# eliminate_dead runs again after fusion: a fused chain can cancel out (x * 2 * 0.5)
DEFAULT_PIPELINE = ("eliminate_dead", "fold_constants", "fold_batchnorm", "fuse_elementwise", "eliminate_dead",
                    "group_synapse_neuron", "schedule")


class PassCheckError(SnnirError):
    """A pass changed what the graph computes (found by ``optimize(..., check=True)``)."""


def _random_inputs(g: Graph, T: int, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1.5, (T, batch, *g.node(i).shape)).astype(np.float32) for i in g.inputs]


def run_torch(g: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``g`` on ``inputs`` ([T, N, ...] each) through the torch backend, in eval mode."""
    import torch

    from snnir.faces import compile

    module = compile(g, backend="torch").eval()
    with torch.no_grad():
        out = module(*[torch.from_numpy(x) for x in inputs])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def optimize(g: Graph, passes: Sequence[str] | None = None, *, check: bool = False, T: int = 6,
             batch: int = 3, seed: int = 0, rtol: float = 1e-4, atol: float = 1e-5) -> Graph:
    """Run ``passes`` (default: the standard pipeline) and return the optimized graph.

    The input graph is never modified. With ``check=True`` the torch backend runs the graph
    before and after every pass on the same random inputs (eval mode) and a pass that changes the
    outputs raises ``PassCheckError`` naming it. Analog outputs must agree to ``rtol``/``atol``;
    spike outputs exactly, except that a rewrite which only changes float rounding (folded
    weights) may flip a spike whose membrane sat on the threshold: at most 0.1% of them.

    Example:
        >>> import numpy as np, snnir
        >>> g = snnir.Graph(); x = g.add_input((4,))
        >>> s = g.add_node("scale", [x], attrs={"factor": 2.0})
        >>> s2 = g.add_node("scale", [s], attrs={"factor": 0.5})
        >>> _ = g.add_output(g.add_node("neuron", [s2], attrs={"model": "IF"}))
        >>> [n.op for n in snnir.optimize(g, check=True)]
        ['input', 'neuron', 'output']
    """
    names = list(DEFAULT_PIPELINE if passes is None else passes)
    fns = [get_pass(n) for n in names]  # unknown names fail before any work
    current = g.copy().validate()
    inputs = _random_inputs(current, T, batch, seed) if check else []
    reference = run_torch(current, inputs) if check else []
    for name, fn in zip(names, fns):
        current = fn(current).validate()
        if check:
            got = run_torch(current, inputs)
            for i, (a, b) in enumerate(zip(reference, got)):
                spikes = a.shape == b.shape and np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()
                if spikes and (a != b).mean() <= 1e-3:
                    continue
                if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
                    diff = float(np.abs(a - b).max()) if a.shape == b.shape else float("nan")
                    raise PassCheckError(f"pass {name!r} changed output {i} of graph {g.name!r} "
                                         f"(max abs difference {diff:.3g} on random inputs)")
    return current

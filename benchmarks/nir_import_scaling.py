"""NIR import time against graph size: a chain of Affine -> LIF pairs (``python benchmarks/nir_import_scaling.py``).

Measured on the 2-core dev machine (busy with other jobs), 2,000 NIR nodes: 639 s before (each node
copied the partial graph to infer one shape: quadratic), 1.35 s after (shapes inferred once per node).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def chain(n_nodes: int, width: int = 4):
    import nir

    nodes = {"input": nir.Input(input_type=np.array([width]))}
    edges, prev = [], "input"
    for k in range(n_nodes // 2):
        nodes[f"fc{k}"] = nir.Affine(weight=np.eye(width, dtype=np.float32), bias=np.zeros(width, np.float32))
        nodes[f"lif{k}"] = nir.LIF(tau=np.full(width, 2e-3), r=np.full(width, 20.0), v_leak=np.zeros(width),
                                   v_threshold=np.ones(width), v_reset=np.zeros(width))
        edges += [(prev, f"fc{k}"), (f"fc{k}", f"lif{k}")]
        prev = f"lif{k}"
    nodes["output"] = nir.Output(output_type=np.array([width]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def main(sizes: list[int]) -> None:
    from snnir.frontends import from_nir

    for n in sizes:
        graph = chain(n)
        start = time.perf_counter()
        g = from_nir(graph)
        print(f"{n:>6} NIR nodes -> {len(g):>6} snnir nodes: {time.perf_counter() - start:7.2f} s", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [500, 1000, 2000, 4000])

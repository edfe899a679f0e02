"""One rank of the data-parallel tests (tests/test_distributed.py): run by torch.multiprocessing.

Each rank joins a gloo process group and then (1) trains a small SNN for a few SGD steps on its
share of every global batch with ``snn.DistributedDataParallel``, (2) runs a BatchNorm + LIF
model one time step per call (the case where torch's DDP broadcasts buffers before every call)
and records whether its neuron state is its own, and (3) prepares a dataset's frame cache at the
same moment as the other rank. Results go to files in ``out``; the test process compares them with
a single-process run.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from snnir import nn as snn

T, GLOBAL_BATCH, STEPS = 6, 8, 5


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return snn.set_step_mode(torch.nn.Sequential(
        snn.Conv2d(1, 4, 3, padding=1), snn.LIF(tau=2.0), snn.Flatten(),
        snn.Linear(4 * 8 * 8, 10), snn.LIF(tau=2.0)), "m")


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The global batches, the same in every process."""
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(T, GLOBAL_BATCH, 1, 8, 8, generator=g) * 1.5,
             torch.randint(0, 10, (GLOBAL_BATCH,), generator=g)) for _ in range(STEPS)]


def train(rank: int, world: int) -> dict[str, np.ndarray]:
    """SGD on this rank's share of each global batch; ``world == 1`` is the single-process reference."""
    net = make_model()
    model = snn.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    share = GLOBAL_BATCH // world
    for x, y in batches():
        part = slice(rank * share, (rank + 1) * share)
        snn.reset(model)
        # each rank's loss is the mean over its share; DDP averages the gradients over ranks, so
        # the update is the one of the mean over the global batch
        loss = F.cross_entropy(model(x[:, part]).mean(0) * 4, y[part])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def state_per_process(rank: int) -> dict[str, object]:
    """Per-step calls through DDP with a BatchNorm (a buffer DDP broadcasts) before a LIF."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(snn.Linear(4, 3), snn.BatchNorm1d(3), snn.LIF(tau=50.0))
    alone = copy.deepcopy(net)  # the same model run without DDP on this rank's data
    model = snn.DistributedDataParallel(net)
    x = torch.randn(4, 2, 4, generator=torch.Generator().manual_seed(10 + rank))  # differs per rank
    for t in range(4):  # step_mode 's': one forward call per time step
        model(x[t])
        alone(x[t])
    own = torch.equal(net[2].v, alone[2].v)
    states = [torch.zeros_like(net[2].v) for _ in range(dist.get_world_size())]
    dist.all_gather(states, net[2].v)
    snn.reset(model)
    after_reset = net[2].v is None
    out = model(torch.randn(5, 4))  # another batch size: no stale state survives the reset
    out.sum().backward()  # gradients are still averaged: every rank holds the same gradient
    grads = [torch.zeros_like(net[0].weight.grad) for _ in range(dist.get_world_size())]
    dist.all_gather(grads, net[0].weight.grad)
    return {"state_is_own": own, "states_differ_across_ranks": not torch.equal(states[0], states[1]),
            "reset_clears_state": after_reset,
            "grads_equal_across_ranks": all(torch.equal(grads[0], g) for g in grads)}


def prepare_frames(data_root: Path) -> dict[str, object]:
    """Build the dataset and fill its frame cache while the other rank does the same."""
    from snnir.data.datasets import DVS128Gesture

    dist.barrier()  # start together
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = DVS128Gesture(data_root, train=True, data_type="frame", frames_number=4, progress=False)
        computed = ds.prepare_frames()
        frames = [ds[i][0] for i in range(len(ds))]
    dist.barrier()
    return {"computed": computed, "n": len(ds), "warnings": [str(w.message) for w in caught],
            "checksums": [float(f.astype(np.float64).sum()) for f in frames],
            "shapes": [list(f.shape) for f in frames]}


def worker(rank: int, world: int, init_file: str, out: str, data_root: str) -> None:
    torch.set_num_threads(1)
    os.environ["SNNIR_CACHE_DIR"] = str(Path(out) / "kernels")  # both ranks build the kernels at once
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        np.savez(Path(out) / f"weights{rank}.npz", **train(rank, world))
        result = {"state": state_per_process(rank), "frames": prepare_frames(Path(data_root))}
        (Path(out) / f"result{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()

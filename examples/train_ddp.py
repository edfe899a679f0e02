"""Data-parallel SNN training with torch.distributed: the digits SNN of train_digits.py on N processes.

Launch one process per CPU socket share or GPU with torchrun; without torchrun it runs as one
process (the same global batch, so the results are comparable):

    torchrun --nproc_per_node 2 examples/train_ddp.py              # 2 CPU processes (gloo)
    torchrun --nproc_per_node 4 examples/train_ddp.py              # 4 GPUs: NCCL, one GPU per process
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 examples/train_ddp.py
    python examples/train_ddp.py                                   # one process

What matters for an SNN under DistributedDataParallel:
- ``snn.DistributedDataParallel`` is torch's DDP that leaves the neuron state buffers alone: each
  process keeps its own membrane potentials (torch's DDP would broadcast rank 0's before every
  call when the model has BatchNorm statistics, which breaks models called once per time step).
- ``snn.reset(model)`` between sequences works through the wrapper.
- Each process reads its share of every epoch (``DistributedSampler``, ``set_epoch`` each epoch);
  ``--batch`` is the global batch, split across the processes, so the gradient DDP averages is the
  one of the whole batch. BatchNorm uses per-process batch statistics (use
  ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` on GPUs to share them).
- Rank 0 evaluates and saves; all ranks hold the same weights after every step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_digits import accuracy, build_net, digits_tensors, predict_logits  # noqa: E402

from snnir import nn as snn  # noqa: E402


def setup() -> tuple[int, int, int, torch.device, str]:
    """(rank, world size, local rank, device, backend): a process group when torchrun started us."""
    if "RANK" not in os.environ:
        return 0, 1, 0, torch.device("cpu"), "none"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        backend, device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        backend, device = "gloo", torch.device("cpu")
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), local_rank, device, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64, help="global batch size, split across processes")
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="rank 0 writes the trained state_dict here")
    args = parser.parse_args()

    rank, world, local_rank, device, backend = setup()
    if device.type == "cpu":  # share the cores between the processes of this machine
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if args.batch % world:
        raise SystemExit(f"--batch {args.batch} must be a multiple of the {world} processes")
    torch.manual_seed(args.seed)  # same initial weights everywhere (DDP also broadcasts rank 0's)
    x_tr, y_tr, x_te, y_te = digits_tensors(args.seed)
    net = snn.set_step_mode(build_net(), "m").to(device)
    model = snn.DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else net
    train_set = TensorDataset(x_tr, y_tr)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed) \
        if world > 1 else None
    loader = DataLoader(train_set, batch_size=args.batch // world, sampler=sampler, shuffle=sampler is None)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    if rank == 0:
        print(f"{world} process{'es' if world > 1 else ''} ({backend}, {device.type}), global batch {args.batch}, "
              f"{len(loader)} steps per epoch", flush=True)
    start = time.perf_counter()
    bar = tqdm(range(args.epochs), desc="training", unit="epoch", disable=rank != 0)
    for epoch in bar:
        if sampler is not None:
            sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(predict_logits(model, x.to(device), args.T), y.to(device))
            opt.zero_grad()
            loss.backward()  # DDP averages the gradients over the processes here
            opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    if rank == 0:
        acc = accuracy(net.cpu(), x_te, y_te, args.T)
        print(f"test accuracy {acc * 100:.2f}% ({len(x_te)} images, T={args.T}, {args.epochs} epochs, "
              f"{seconds:.1f} s training on {world} process{'es' if world > 1 else ''})")
        if args.save:
            torch.save(net.state_dict(), args.save)
            print(f"weights written to {args.save}")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Data-parallel training (``torch.distributed``) with neuron state kept per process.

Neuron states (``v``, ``i``, ...), dropout masks and other per-sequence state live in
non-persistent buffers of the ``snnir.nn`` modules, so ``.to(device)`` moves them. torch's
``DistributedDataParallel`` broadcasts every buffer from rank 0 before each forward call in
training mode (``broadcast_buffers=True``, the default) whenever the model has any buffer at all
(BatchNorm statistics suffice): a model called once per time step would then run every rank on rank
0's membrane potentials. ``DistributedDataParallel`` here is torch's, told to leave those state
buffers alone; BatchNorm statistics are still broadcast as usual, gradients are averaged as usual.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from snnir.backends.torch.base import StepModule


def state_buffer_names(module: nn.Module) -> list[str]:
    """Fully qualified names of the per-sequence state buffers in ``module``: the non-persistent
    buffers of every ``snnir.nn`` module (neuron states, dropout masks, filter traces, delay lines).

    Example:
        >>> import torch
        >>> from snnir import nn as snn
        >>> state_buffer_names(torch.nn.Sequential(snn.Linear(2, 2), snn.CubaLIF(), snn.Dropout(0.1)))
        ['1.i', '1.v', '2.mask']
    """
    names = []
    for prefix, m in module.named_modules():
        if isinstance(m, StepModule):
            names += [f"{prefix}.{b}" if prefix else b for b in sorted(m._non_persistent_buffers_set)]
    return names


class DistributedDataParallel(nn.parallel.DistributedDataParallel):
    """``torch.nn.parallel.DistributedDataParallel`` that keeps each process's neuron state its own.

    A drop-in replacement (same arguments, same ``.module``, ``no_sync()``, gradient averaging):
    the state buffers listed by ``state_buffer_names`` are added to the buffers DDP ignores, so
    ``broadcast_buffers=True`` syncs only true model buffers (BatchNorm statistics). Wrap a model
    whose state is reset (``snn.reset``), and reset it through the wrapper between sequences.

    Example (inside a process group; see ``examples/train_ddp.py``)::

        model = snn.DistributedDataParallel(net)      # CPU: gloo; GPU: device_ids=[local_rank]
        for x, y in loader:                          # x: [T, N, ...], a DistributedSampler's share
            snn.reset(model)
            loss = F.cross_entropy(model(x).mean(0), y)
            opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, module: nn.Module, *args: Any, **kwargs: Any) -> None:
        ignore = set(getattr(module, "_ddp_params_and_buffers_to_ignore", ())) | set(state_buffer_names(module))
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, sorted(ignore))
        super().__init__(module, *args, **kwargs)


__all__ = ["DistributedDataParallel", "state_buffer_names"]

"""Batch variable-length sequences: zero padding, lengths, and the ``[T, B]`` validity mask.

Use ``pad_sequence_collate`` as a ``DataLoader``'s ``collate_fn`` for frames integrated with a
fixed ``duration`` (one sample's ``T`` differs from another's). It follows SpikingJelly's
``pad_sequence_collate``/``padded_sequence_mask``, except that ``x`` is always float32 (frames are
event counts; a float tensor is what a network takes) and the batch axis comes first, as there.

Example:
    >>> import numpy as np
    >>> from snnir.data import pad_sequence_collate, padded_sequence_mask
    >>> batch = [(np.ones((2, 3)), 0), (np.ones((4, 3)), 1)]
    >>> x, y, lengths = pad_sequence_collate(batch)
    >>> tuple(x.shape), y.tolist(), lengths.tolist()
    ((2, 4, 3), [0, 1], [2, 4])
    >>> padded_sequence_mask(lengths).T.int().tolist()             # [T, B], transposed here
    [[1, 1, 0, 0], [1, 1, 1, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported on first use: snnir's core does not import it at import time
    import torch


def pad_sequence_collate(batch: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[(x_i [T_i, ...], y_i), ...]`` -> ``(x [B, T_max, ...] float32 zero-padded, y [B], lengths [B] int64)``.

    ``x_i`` may be numpy arrays or tensors; all must share the trailing shape. Labels are stacked
    with ``torch.as_tensor`` (ints, floats, or equally shaped arrays/tensors).
    """
    import torch

    if len(batch) == 0:
        raise ValueError("pad_sequence_collate: the batch is empty")
    try:
        xs, ys = zip(*batch)
    except (TypeError, ValueError):
        raise ValueError("pad_sequence_collate: every sample must be a pair (x, label), got "
                         f"{type(batch[0]).__name__} of length {len(batch[0]) if hasattr(batch[0], '__len__') else '?'}"
                         ) from None
    xs = [torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x) for x in xs]
    for i, x in enumerate(xs):
        if x.dim() == 0:
            raise ValueError(f"pad_sequence_collate: sample {i} is a scalar; x must be a sequence [T, ...]")
        if x.shape[1:] != xs[0].shape[1:]:
            raise ValueError(f"pad_sequence_collate: sample {i} has shape {tuple(x.shape)} but sample 0 has "
                             f"{tuple(xs[0].shape)}; only the first (time) axis may differ")
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.int64)
    padded = torch.zeros((len(xs), int(lengths.max()), *xs[0].shape[1:]), dtype=torch.float32)
    for i, x in enumerate(xs):
        padded[i, : x.shape[0]] = x
    if all(isinstance(y, torch.Tensor) for y in ys):
        labels = torch.stack(list(ys))
    else:
        labels = torch.as_tensor(np.asarray([y.numpy() if isinstance(y, torch.Tensor) else y for y in ys]))
    return padded, labels, lengths


def padded_sequence_mask(lengths: Any, T: int | None = None) -> torch.Tensor:
    """Bool mask ``[T, B]``: ``mask[t, b]`` is True while ``t < lengths[b]`` (False on padding).

    ``T`` defaults to ``max(lengths)``; a smaller ``T`` truncates, a larger one pads with False.
    """
    import torch

    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"padded_sequence_mask: lengths must be a 1-D integer tensor [B], got "
                         f"{lengths.dtype} of shape {tuple(lengths.shape)}")
    if T is None:
        T = int(lengths.max()) if lengths.numel() else 0
    if T < 0:
        raise ValueError(f"padded_sequence_mask: T must be >= 0, got {T}")
    return torch.arange(T, device=lengths.device)[:, None] < lengths[None, :]

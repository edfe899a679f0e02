"""pad_sequence_collate / padded_sequence_mask against a hand-written loop and SpikingJelly."""

import numpy as np
import pytest
import torch
from sj_datasets import spikingjelly_datasets

from snnir.data import pad_sequence_collate, padded_sequence_mask


def test_collate_matches_loop_and_spikingjelly(rng):
    lengths = [3, 7, 1, 5]
    batch = [(rng.random((n, 2, 3, 4)).astype(np.float32), label) for n, label in zip(lengths, [1, 0, 1, 1])]
    x, y, got_lengths = pad_sequence_collate(batch)
    assert x.shape == (4, 7, 2, 3, 4) and x.dtype == torch.float32
    for b, (xb, _) in enumerate(batch):  # the loop: data first, zeros after
        np.testing.assert_array_equal(x[b, : len(xb)].numpy(), xb)
        assert not x[b, len(xb):].any()
    assert y.tolist() == [1, 0, 1, 1] and got_lengths.tolist() == lengths and got_lengths.dtype == torch.int64
    sj_x, sj_y, sj_len = spikingjelly_datasets().pad_sequence_collate(batch)
    assert torch.equal(x, sj_x) and torch.equal(y, sj_y) and torch.equal(got_lengths, sj_len)


def test_collate_mixed_inputs_are_float(rng):
    batch = [(torch.ones(2, 3, dtype=torch.int64), torch.tensor(2)), (np.ones((1, 3), dtype=np.int16), torch.tensor(0))]
    x, y, lengths = pad_sequence_collate(batch)
    assert x.dtype == torch.float32 and x.sum() == 9 and y.tolist() == [2, 0] and lengths.tolist() == [2, 1]
    x, y, _ = pad_sequence_collate([(np.zeros((0, 3)), 1.5), (np.ones((2, 3)), 2.5)])  # an empty sequence
    assert x.shape == (2, 2, 3) and x[0].sum() == 0 and y.dtype == torch.float64


def test_collate_in_a_dataloader(rng):
    data = [(rng.random((n, 5)), n % 2) for n in (4, 2, 6, 3)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=pad_sequence_collate)
    shapes = [tuple(x.shape) for x, _, _ in loader]
    assert shapes == [(2, 4, 5), (2, 6, 5)]


def test_collate_errors():
    with pytest.raises(ValueError, match="only the first"):
        pad_sequence_collate([(np.ones((2, 3)), 0), (np.ones((2, 4)), 1)])
    with pytest.raises(ValueError, match="empty"):
        pad_sequence_collate([])
    with pytest.raises(ValueError, match="pair"):
        pad_sequence_collate([(np.ones(2),)])
    with pytest.raises(ValueError, match="scalar"):
        pad_sequence_collate([(np.float32(1), 0)])


@pytest.mark.parametrize("T", [None, 3, 9])
def test_mask_matches_loop_and_spikingjelly(T):
    lengths = torch.tensor([5, 0, 2, 7])
    mask = padded_sequence_mask(lengths, T)
    rows = T if T is not None else 7
    expected = [[t < n for n in lengths.tolist()] for t in range(rows)]
    assert mask.dtype == torch.bool and mask.tolist() == expected
    assert torch.equal(mask, spikingjelly_datasets().padded_sequence_mask(lengths, T))


def test_mask_masks_a_padded_batch(rng):
    batch = [(rng.random((n, 2)), 0) for n in (3, 5)]
    x, _, lengths = pad_sequence_collate(batch)
    mask = padded_sequence_mask(lengths)  # [T, B] against x [B, T, ...]
    assert torch.equal(mask.T, x.abs().sum(-1) > 0)
    assert padded_sequence_mask([2, 1]).tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="1-D integer"):
        padded_sequence_mask(torch.tensor([1.5]))

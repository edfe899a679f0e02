"""The kernel-output buffer pool: a buffer is reused only once no tensor can see it."""

import torch

from snnir import nn as snn
from snnir.backends.torch.buffers import MIN_BYTES, BufferPool

N = MIN_BYTES // 4  # float32 elements in the smallest pooled buffer


def test_reuses_a_buffer_only_when_nothing_refers_to_it():
    pool = BufferPool(max_bytes=64 * MIN_BYTES)
    a = pool.empty((N,), torch.float32)
    ptr = a.data_ptr()
    view = a[5:9]  # a view keeps the buffer in use
    del a
    b = pool.empty((N,), torch.float32)
    assert b.data_ptr() != ptr
    del b, view
    c = pool.empty((N,), torch.float32)
    assert c.data_ptr() == ptr  # nothing sees it any more: reused, already mapped
    array = c.numpy()  # so does a numpy array sharing it
    del c
    d = pool.empty((N,), torch.float32)
    assert d.data_ptr() != ptr
    del array, d
    e = pool.empty((2, N // 2), torch.float32)  # same byte size, other shape: the same buffer
    assert e.data_ptr() == ptr and e.shape == (2, N // 2) and e.is_contiguous()
    assert pool.held_bytes == 2 * MIN_BYTES


def test_limits_small_blocks_and_release():
    pool = BufferPool(max_bytes=3 * MIN_BYTES)
    small = pool.empty((16,), torch.float64)
    assert pool.held_bytes == 0 and small.shape == (16,)  # below MIN_BYTES: plain torch.empty
    live = [pool.empty((N,), torch.float32) for _ in range(3)]
    assert pool.held_bytes == 3 * MIN_BYTES
    extra = pool.empty((N,), torch.float32)  # the pool is full of live buffers: an ordinary tensor
    assert pool.held_bytes == 3 * MIN_BYTES and extra.numel() == N
    del live[0]
    pool.release()
    assert pool.held_bytes == 2 * MIN_BYTES
    disabled = BufferPool(max_bytes=0)
    disabled.empty((N,), torch.float32)
    assert disabled.held_bytes == 0


def test_outputs_kept_across_training_steps_are_not_overwritten():
    """Spikes and gradients a user keeps stay intact while later steps reuse the pool."""
    torch.manual_seed(0)
    lif = snn.LIF(tau=2.0, step_mode="m")
    kept = []
    for _ in range(4):
        x = (torch.rand(64, 32, 256) * 2).requires_grad_()  # 2 MiB outputs: pooled
        lif.reset()
        out = lif(x)
        out.sum().backward()
        kept.append((out, out.clone(), x.grad, x.grad.clone()))
    for out, out_copy, grad, grad_copy in kept:
        assert torch.equal(out, out_copy) and torch.equal(grad, grad_copy)
    ref = snn.LIF(tau=2.0, step_mode="m", fused=False)
    x = torch.rand(64, 32, 256) * 2
    lif.reset()
    assert torch.equal(lif(x), ref(x))

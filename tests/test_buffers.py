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


def test_pooled_residual_sum_equals_plus_and_passes_gradients():
    """``Add`` (residual connections) writes large sums into the pool: values and gradients are
    those of ``a + b``, a kept sum is never overwritten, small or mixed inputs take ``a + b``."""
    from snnir.backends.torch import buffers
    from snnir.backends.torch.layers import Add

    torch.manual_seed(1)
    add = Add(step_mode="m")
    kept = []
    for _ in range(3):
        a = torch.randn(4, 8, 64, 32, 32, requires_grad=True)  # 8 MiB: pooled
        b = torch.randn(4, 8, 64, 32, 32, requires_grad=True)
        s = add(a, b)
        assert torch.equal(s, a.detach() + b.detach()) and s.grad_fn is not None
        g = torch.randn_like(s)
        (s * g).sum().backward()
        assert torch.equal(a.grad, g) and torch.equal(b.grad, g)
        kept.append((s, s.detach().clone()))
    for s, copy in kept:
        assert torch.equal(s, copy)
    with torch.no_grad():
        a = torch.randn(2, 512, 1024)
        assert buffers.add(a, a).grad_fn is None and torch.equal(buffers.add(a, a), a + a)
    small, half = torch.randn(3, 4), torch.randn(2, 512, 1024, dtype=torch.float64)
    assert torch.equal(buffers.add(small, small), small + small)
    assert torch.equal(buffers.add(half.mT, half.mT), half.mT + half.mT)  # not contiguous: a + b
    three = Add()(small, small, small)
    assert torch.equal(three, small + small + small)

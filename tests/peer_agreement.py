"""Shared checks for the peer-framework tests: trace a peer model, compile it, run both on one input.

Spikes (or outputs) must be identical; input gradients agree to float32 rounding (the peers group
some surrogate constants differently). Kept out of ``test_*`` names so pytest does not collect it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import snnir


def run_both(net: torch.nn.Module, x: torch.Tensor, run_peer: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
             *, fused: bool = True, train: bool = False, step_mode: str = "m"):
    """``(peer output, snnir output, peer input grad, snnir input grad, compiled module)`` on ``x``.

    The loss weights each output element differently, so gradients of every step and unit count.
    ``fused=False`` runs snnir's per-step reference path (one fused kernel build per neuron
    configuration costs about a second; broad parameter sweeps use the reference path).
    ``step_mode="s"`` runs the compiled module one step per call, as single-step peers run: their
    layers then multiply the same ``[N, ...]`` blocks (a ``[T*N, ...]`` GEMM may round differently).
    """
    net.train(train)
    # NCHW convolutions, as the peer runs them (the automatic channels-last layout rounds differently)
    compiled = snnir.compile(snnir.trace(net, x), step_mode=step_mode,
                             memory_format=torch.contiguous_format).train(train)
    for neuron in compiled.neurons().values():
        neuron.fused = fused
    outs = []
    for model in (net, compiled):
        xi = x.clone().requires_grad_()
        torch.manual_seed(1)
        if model is net:
            y = run_peer(model, xi)
        else:
            y = model(xi) if step_mode == "m" else torch.stack([model(xt) for xt in xi.unbind(0)])
        (y * torch.linspace(0.5, 1.5, y.numel()).view_as(y)).sum().backward()
        outs.append((y.detach(), xi.grad))
    (y_peer, g_peer), (y, g) = outs
    return y_peer, y, g_peer, g, compiled


def outputs_and_input_grads(models, x: torch.Tensor, before_each: Callable[[], None] = lambda: None):
    """``(outputs, input grads)`` of each model on ``x`` (``before_each`` runs first, e.g. a peer's state
    reset); the loss weights the output elements by ``linspace(-1, 1)`` so every element counts."""
    outs, grads = [], []
    for model in models:
        before_each()
        xi = x.clone().requires_grad_()
        y = model(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append(xi.grad)
    return outs, grads


def assert_same_spikes(y_peer: torch.Tensor, y: torch.Tensor, lo: float = 0.02, hi: float = 0.98) -> None:
    assert y.shape == y_peer.shape
    assert torch.equal(y, y_peer), f"{int((y != y_peer).sum())} of {y.numel()} outputs differ"
    rate = float(y.float().mean())
    assert lo < rate < hi, f"spike rate {rate:.3f}: the input should exercise spiking and silent steps"


def assert_close_grads(g: torch.Tensor, g_peer: torch.Tensor, rtol: float = 1e-5) -> None:
    assert g_peer is not None and g is not None
    scale = float(g_peer.abs().max())
    assert scale > 0, "the loss should reach the input"
    torch.testing.assert_close(g, g_peer, rtol=rtol, atol=rtol * scale)

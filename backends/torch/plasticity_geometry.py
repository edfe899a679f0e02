"""Where a synapse's weight is used: the canonical layout every plasticity path works in.

A linear or convolutional synapse is seen as a 2-d convolution (a linear layer is the 1x1 case,
its extra per-sample axes being positions): pre values ``[B, C, H, W]`` (padded as the synapse
pads), post values ``[B, J, Ho, Wo]``, the weight as ``[J, I]`` with ``I = C/G * KH * KW`` (the
order of ``weight.view(J, -1)``). A pairing ``sum over positions of a * b`` is then a matrix
product of unfolded pre patches with post values, per group: the correlation SpikingJelly's conv
STDP computes with one loop per kernel offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from snnir.errors import ShapeError


@dataclass(frozen=True)
class Geometry:
    """The canonical view of one synapse (see the module docstring)."""

    kind: str  # "linear", "conv1d", "conv2d"
    name: str  # how errors name the synapse
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    padding: tuple[int, ...]  # F.pad order (last axis first), () when none
    padding_mode: str

    @classmethod
    def of(cls, synapse: nn.Module, name: str) -> Geometry:
        """The geometry of a ``torch.nn.Linear``/``Conv1d``/``Conv2d`` (or an ``snnir.nn`` one)."""
        if isinstance(synapse, nn.Linear):
            one = (1, 1)
            return cls("linear", name, synapse.in_features, synapse.out_features, one, one, one, 1, (), "zeros")
        if isinstance(synapse, (nn.Conv1d, nn.Conv2d)):
            two = isinstance(synapse, nn.Conv2d)

            def pair(v: tuple[int, ...]) -> tuple[int, int]:
                return (int(v[0]), int(v[1])) if two else (1, int(v[0]))

            pad = tuple(int(p) for p in synapse._reversed_padding_repeated_twice)
            return cls("conv2d" if two else "conv1d", name, synapse.in_channels, synapse.out_channels,
                       pair(synapse.kernel_size), pair(synapse.stride), pair(synapse.dilation), synapse.groups,
                       pad if any(pad) else (), synapse.padding_mode)
        raise TypeError(f"plasticity needs a linear or convolutional synapse (torch.nn.Linear, Conv1d, Conv2d or their "
                        f"snnir.nn versions); {name} is a {type(synapse).__name__}")

    @property
    def fan_in(self) -> int:
        """``I``: the weight's row length."""
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]

    # --- layouts -----------------------------------------------------------------------------------
    def canonical_pre(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, ...]`` synapse inputs -> ``[T, B, C, H, W]`` (padded for a conv)."""
        T, B = x.shape[:2]
        if self.kind == "linear":
            if x.shape[-1] != self.in_channels:
                raise ShapeError(f"{self.name}: input has {x.shape[-1]} features, the weight {self.in_channels}")
            return x.reshape(T, B, -1, self.in_channels).transpose(2, 3).unsqueeze(3)
        rank = 3 if self.kind == "conv1d" else 4
        if x.dim() != rank + 1 or x.shape[2] != self.in_channels:
            raise ShapeError(f"{self.name}: input of shape {list(x.shape[2:])} per sample does not fit a {self.kind} "
                             f"with {self.in_channels} input channels")
        flat = x.flatten(0, 1)
        if self.padding:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            flat = F.pad(flat, self.padding, mode=mode)
        if self.kind == "conv1d":
            flat = flat.unsqueeze(2)
        return flat.unflatten(0, (T, B))

    def canonical_post(self, y: torch.Tensor) -> torch.Tensor:
        """``[T, B, ...]`` post spikes -> ``[T, B, J, Ho, Wo]``."""
        T, B = y.shape[:2]
        if self.kind == "linear":
            if y.shape[-1] != self.out_channels:
                raise ShapeError(f"{self.name}: post-synaptic spikes have {y.shape[-1]} features, the weight "
                                 f"{self.out_channels} outputs")
            return y.reshape(T, B, -1, self.out_channels).transpose(2, 3).unsqueeze(3)
        rank = 3 if self.kind == "conv1d" else 4
        if y.dim() != rank + 1 or y.shape[2] != self.out_channels:
            raise ShapeError(f"{self.name}: post-synaptic spikes of shape {list(y.shape[2:])} per sample do not fit a "
                             f"{self.kind} with {self.out_channels} output channels")
        return y.unsqueeze(3) if self.kind == "conv1d" else y

    def output_size(self, pre: torch.Tensor) -> tuple[int, int]:
        """``(Ho, Wo)`` of the synapse on canonical pre values ``[..., H, W]``."""
        H, W = pre.shape[-2:]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, self.stride, self.dilation
        return (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1

    def check_pair(self, pre: torch.Tensor, post: torch.Tensor) -> None:
        """Refuse post spikes that cannot be this synapse's output for these pre spikes."""
        if pre.shape[:2] != post.shape[:2]:
            what = "time steps" if pre.shape[0] != post.shape[0] else "samples"
            raise ShapeError(f"{self.name}: recorded {pre.shape[0]} x {pre.shape[1]} pre-synaptic and {post.shape[0]} "
                             f"x {post.shape[1]} post-synaptic (steps x batch): the {what} differ. Is the post module "
                             "the neuron this synapse drives?")
        if tuple(post.shape[-2:]) != self.output_size(pre):
            raise ShapeError(f"{self.name}: post-synaptic spikes have {tuple(post.shape[-2:])} positions, the synapse "
                             f"computes {self.output_size(pre)} on its input; is the post module the neuron this "
                             "synapse drives?")

    # --- pairings (the reference path) --------------------------------------------------------------
    def _unfold(self, a: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, G, C/G * KH * KW, L]`` (patches of every output position)."""
        B, G = a.shape[0], self.groups
        if self.kernel == (1, 1) and self.stride == (1, 1):
            return a.reshape(B, G, self.in_channels // G, -1)
        cols = F.unfold(a, self.kernel, dilation=self.dilation, stride=self.stride)
        return cols.view(B, G, self.fan_in, cols.shape[-1])

    def pair(self, a: torch.Tensor | float, b: torch.Tensor | float, batched: bool) -> torch.Tensor:
        """``sum over positions of a * b`` per synapse: ``[B, J, I]`` (batched) or summed over the
        batch to ``[J, I]``, possibly with broadcast (size 1) axes where a factor is a number."""
        G, J = self.groups, self.out_channels
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            cols, outs = self._unfold(a), b.reshape(b.shape[0], G, J // G, -1)
            if batched:
                return torch.einsum("bgjl,bgil->bgji", outs, cols).reshape(b.shape[0], J, self.fan_in)
            return torch.einsum("bgjl,bgil->gji", outs, cols).reshape(J, self.fan_in)
        if isinstance(b, torch.Tensor):  # a is a number: the same for every input of row j
            out = (float(a) * b.reshape(b.shape[0], J, -1).sum(-1)).unsqueeze(-1)
        else:
            assert isinstance(a, torch.Tensor), "a pairing has at least one non-literal factor"
            cols = self._unfold(a).sum(-1)  # [B, G, I]
            out = float(b) * cols.unsqueeze(2).expand(-1, G, J // G, -1).reshape(a.shape[0], J, self.fan_in)
        return out if batched else out.sum(0)


__all__ = ["Geometry"]

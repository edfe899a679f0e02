"""Whole networks for ``bench_training.py``, built in each framework from one set of weights.

Two CIFAR-sized spiking networks (input ``[T, B, 3, 32, 32]``), each written once over a small
"kit" of layer factories, so the module tree -- and the state-dict names -- are the same in every
framework:

- ``vgg``: conv3x3-BN-LIF x6 (64, 64, pool, 128, 128, pool, 256, 256, pool), Linear(4096, 10);
- ``sew_resnet18``: SEW-ResNet-18 (Fang et al. 2021, ADD connections) with the CIFAR stem
  (conv3x3 64, no max pool), stages of two basic blocks (64, 128/2, 256/2, 512/2; a downsampling
  shortcut is conv1x1-BN-LIF), global average pool, Linear(512, 10).

Every LIF is tau = 2, hard reset to 0, threshold 1, ATan surrogate (alpha 2); convolutions have no
bias (BatchNorm follows). Kits: ``snnir`` (``snnir.nn`` modules in multi-step mode; the benchmark
traces and compiles them), ``spikingjelly`` (its multi-step ``layer`` modules and ``LIFNode``),
``snntorch`` (torch layers folded over time, ``Leaky(beta=0.5)`` stepped in a Python loop with
the input halved: the same update).
"""

from __future__ import annotations

import math

import torch
from torch import nn

NETS = ("vgg", "sew_resnet18")
T, BATCH, SHAPE = 4, 32, (3, 32, 32)


class _Fold(nn.Module):
    """A torch layer over ``[T, B, ...]``: time folded into the batch (snnTorch's kit)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(0, 1)).unflatten(0, x.shape[:2])


class _LeakyLoop(nn.Module):
    """snnTorch's Leaky over ``[T, B, ...]``: one call per step, membrane kept across steps."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch as snt

        self.lif = snt.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem = self.lif.init_leaky()
        out = []
        for xt in (x * 0.5).unbind(0):
            spk, mem = self.lif(xt, mem)
            out.append(spk)
        return torch.stack(out)


class Kit:
    """Layer factories of one framework (each returns a module taking ``[T, B, ...]``)."""

    def __init__(self, framework: str) -> None:
        self.framework = framework
        if framework == "snnir":
            from snnir import nn as snn

            sg = snn.surrogate.ATan(alpha=2.0)
            self.conv = lambda i, o, k, s=1, p=0: snn.Conv2d(i, o, k, stride=s, padding=p, bias=False, step_mode="m")
            self.bn = lambda c: snn.BatchNorm2d(c, step_mode="m")
            self.lif = lambda: snn.LIF(tau=2.0, surrogate=sg, step_mode="m")
            self.pool = lambda k: snn.MaxPool2d(k, step_mode="m")
            self.gap = lambda: snn.AdaptiveAvgPool2d(1, step_mode="m")
            self.flatten = lambda: snn.Flatten(step_mode="m")
            self.linear = lambda i, o: snn.Linear(i, o, step_mode="m")
        elif framework == "spikingjelly":
            from spikingjelly.activation_based import layer, neuron, surrogate

            self.conv = lambda i, o, k, s=1, p=0: layer.Conv2d(i, o, k, stride=s, padding=p, bias=False,
                                                                step_mode="m")
            self.bn = lambda c: layer.BatchNorm2d(c, step_mode="m")
            self.lif = lambda: neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m")
            self.pool = lambda k: layer.MaxPool2d(k, step_mode="m")
            self.gap = lambda: layer.AdaptiveAvgPool2d(1, step_mode="m")
            self.flatten = lambda: layer.Flatten(step_mode="m")
            self.linear = lambda i, o: layer.Linear(i, o, step_mode="m")
        elif framework == "snntorch":
            self.conv = lambda i, o, k, s=1, p=0: _Fold(nn.Conv2d(i, o, k, stride=s, padding=p, bias=False))
            self.bn = lambda c: _Fold(nn.BatchNorm2d(c))
            self.lif = _LeakyLoop
            self.pool = lambda k: _Fold(nn.MaxPool2d(k))
            self.gap = lambda: _Fold(nn.AdaptiveAvgPool2d(1))
            self.flatten = lambda: _Fold(nn.Flatten())
            self.linear = lambda i, o: _Fold(nn.Linear(i, o))
        else:
            raise ValueError(f"unknown framework {framework!r}")


def vgg(kit: Kit) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = SHAPE[0]
    for c in (64, 64, "M", 128, 128, "M", 256, 256, "M"):
        if c == "M":
            layers.append(kit.pool(2))
            continue
        layers += [kit.conv(c_in, c, 3, 1, 1), kit.bn(c), kit.lif()]
        c_in = c
    layers += [kit.flatten(), kit.linear(256 * 4 * 4, 10)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """SEW basic block: ``sn2(bn2(conv2(sn1(bn1(conv1(x)))))) + shortcut(x)`` (ADD)."""

    def __init__(self, kit: Kit, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.sn1 = kit.conv(c_in, c_out, 3, stride, 1), kit.bn(c_out), kit.lif()
        self.conv2, self.bn2, self.sn2 = kit.conv(c_out, c_out, 3, 1, 1), kit.bn(c_out), kit.lif()
        self.down = (nn.Sequential(kit.conv(c_in, c_out, 1, stride, 0), kit.bn(c_out), kit.lif())
                     if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))))
        return out + (self.down(x) if self.down is not None else x)


class SEWResNet18(nn.Module):
    def __init__(self, kit: Kit, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(kit.conv(SHAPE[0], 64, 3, 1, 1), kit.bn(64), kit.lif())
        blocks, c_in = [], 64
        for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(kit, c_in, c, stride), BasicBlock(kit, c, c, 1)]
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(kit.gap(), kit.flatten(), kit.linear(512, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(net: str, framework: str) -> nn.Module:
    """``net`` in ``framework``'s layers (random weights; load ``reference_weights``)."""
    kit = Kit(framework)
    return vgg(kit) if net == "vgg" else SEWResNet18(kit)


def reference_weights(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """One state dict for every framework: Kaiming-uniform convolutions scaled so that the LIFs
    fire at a working rate (~10-25%), fresh BatchNorm (weight 1, bias 0)."""
    g = torch.Generator().manual_seed(seed)
    model = build(net, "snntorch")  # plain torch layers: parameter names are framework-free after mapping
    out = {}
    for name, t in _canonical(model.state_dict()).items():
        if t.dim() > 1:  # conv / linear weights
            fan_in = math.prod(t.shape[1:])
            out[name] = (torch.rand(t.shape, generator=g) * 2 - 1) * math.sqrt(3.0 / fan_in) * 1.5
        else:
            out[name] = t.clone()
    return out


def _canonical(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # snnTorch's kit wraps layers in _Fold (".layer.") and LIFs hold no weights; drop both
    return {k.replace(".layer.", "."): v for k, v in state.items() if ".lif." not in k and "num_batches" not in k}


def load(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """Load ``weights`` (canonical names) into ``model`` of any kit."""
    own = model.state_dict()
    names = {k.replace(".layer.", "."): k for k in own}
    with torch.no_grad():
        for k, v in weights.items():
            own[names[k]].copy_(v)
    return model


def make_input(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Direct-encoded images (the same frame at every step) and labels."""
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(BATCH, *SHAPE, generator=g)
    return img.unsqueeze(0).repeat(T, 1, 1, 1, 1), torch.randint(0, 10, (BATCH,), generator=g)

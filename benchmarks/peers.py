"""The benchmark networks, built in each framework from the same weights.

Every framework runs the same LIF: tau = 2 (v <- v + (x - v) / 2, i.e. v <- v/2 + x/2), hard
reset to 0, threshold 1, each in its own idiom:
  snnir        snn.LIF(tau=2), multi-step (the fused kernel); the conv net traced and compiled
  spikingjelly neuron.LIFNode(tau=2), step_mode='m' (torch backend; CuPy needs a GPU)
  snntorch     Leaky(beta=0.5, reset_mechanism='zero') in a Python time loop, input scaled by 1/2
  norse        LIFBoxCell with dt * tau_mem_inv = 0.5 in a Python time loop
  sinabs       layers.LIF(tau_mem=1/ln 2, SingleSpike, MembraneReset), [B, T, ...] layout
Their thresholds differ in '>=' versus '>' and their arithmetic in rounding, so spike trains agree
up to float ties; the benchmark reports the agreement before timing anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

FRAMEWORKS = ("snnir", "spikingjelly", "snntorch", "norse", "sinabs")


def workload_spec(name: str) -> dict:
    if name == "lif_fc":
        return {"T": 100, "B": 64, "in_shape": (1, 28, 28), "kind": "fc", "sizes": (784, 10)}
    if name.startswith("on_"):
        n = int(name.split("_")[1])
        return {"T": 500, "B": 16, "in_shape": (n,), "kind": "fc", "sizes": (n, n), "gaussian": True}
    if name == "conv":
        return {"T": 16, "B": 16, "in_shape": (2, 34, 34), "kind": "conv"}
    raise ValueError(name)


def make_weights(spec: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if spec["kind"] == "fc":
        n_in, n_out = spec["sizes"]
        gain = 3.0 if spec.get("gaussian") else 6.0
        return {"fc.w": torch.randn(n_out, n_in, generator=g) * gain / math.sqrt(n_in),
                "fc.b": torch.zeros(n_out)}
    w = {"c1.w": torch.randn(32, 2, 3, 3, generator=g) / math.sqrt(18) * 3,
         "c2.w": torch.randn(64, 32, 3, 3, generator=g) / math.sqrt(288) * 3,
         "fc.w": torch.randn(10, 64 * 7 * 7, generator=g) / math.sqrt(3136) * 6,
         "c1.b": torch.zeros(32), "c2.b": torch.zeros(64), "fc.b": torch.zeros(10)}
    return w


def make_input(spec: dict, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (spec["T"], spec["B"], *spec["in_shape"])
    if spec.get("gaussian"):
        return torch.randn(shape, generator=g)
    if spec["kind"] == "conv":
        return (torch.rand(shape, generator=g) < 0.2).float()  # event frames
    return torch.rand(shape, generator=g)


def _load(module: nn.Module, w: torch.Tensor, b: torch.Tensor) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(w)
        module.bias.copy_(b)
    return module


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c)  # fresh BN (weight 1, bias 0) in training mode for every framework


def _synapses(spec: dict, w: dict, cls_linear=nn.Linear, cls_conv=nn.Conv2d, cls_bn=None) -> list[nn.Module]:
    """Stateless layers of the network (framework-specific classes may wrap torch's)."""
    if spec["kind"] == "fc":
        n_in, n_out = spec["sizes"]
        return [_load(cls_linear(n_in, n_out), w["fc.w"], w["fc.b"])]
    bn = cls_bn or _bn
    return [_load(cls_conv(2, 32, 3), w["c1.w"], w["c1.b"]), bn(32),
            _load(cls_conv(32, 64, 3), w["c2.w"], w["c2.b"]), bn(64),
            _load(cls_linear(3136, 10), w["fc.w"], w["fc.b"])]


def build(framework: str, spec: dict, w: dict) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor], Callable]:
    """(module, run(x [T, B, ...]) -> output spikes [T, B, ...], reset())."""
    return _BUILDERS[framework](spec, w)


def _snnir(spec, w):
    from snnir import nn as snn

    syn = _synapses(spec, w, snn.Linear, snn.Conv2d, snn.BatchNorm2d)
    lif = lambda: snn.LIF(tau=2.0)  # noqa: E731
    if spec["kind"] == "fc":
        layers = ([snn.Flatten()] if len(spec["in_shape"]) > 1 else []) + [syn[0], lif()]
    else:
        c1, b1, c2, b2, fc = syn
        layers = [c1, b1, lif(), snn.MaxPool2d(2), c2, b2, lif(), snn.MaxPool2d(2), snn.Flatten(), fc, lif()]
    net = snn.set_step_mode(nn.Sequential(*layers), "m")
    if spec["kind"] == "conv":  # what a user runs for speed: the compiled graph (conv -> BN -> LIF chains)
        import snnir

        net = snnir.compile(snnir.trace(net, make_input(spec))).train()
    return net, net, lambda: snn.reset(net)


def _spikingjelly(spec, w):
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif():
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")

    syn = _synapses(spec, w, layer.Linear, layer.Conv2d, lambda c: layer.BatchNorm2d(c))
    if spec["kind"] == "fc":
        layers = ([layer.Flatten()] if len(spec["in_shape"]) > 1 else []) + [syn[0], lif()]
    else:
        c1, b1, c2, b2, fc = syn
        layers = [c1, b1, lif(), layer.MaxPool2d(2), c2, b2, lif(), layer.MaxPool2d(2), layer.Flatten(), fc, lif()]
    net = nn.Sequential(*layers)
    functional.set_step_mode(net, "m")
    return net, net, lambda: functional.reset_net(net)


class _PerStep(nn.Module):
    """Stateless layers folded over time, neurons stepped in a Python loop (snnTorch, Norse)."""

    def __init__(self, spec, w, make_neuron, step, scale_input: float = 1.0):
        super().__init__()
        self.kind = spec["kind"]
        self.flat = len(spec["in_shape"]) > 1
        self.syn = nn.ModuleList(_synapses(spec, w))
        n = 1 if self.kind == "fc" else 3
        self.neurons = nn.ModuleList(make_neuron() for _ in range(n))
        self.step = step
        self.scale = scale_input

    def _neuron(self, i, x):
        return self.step(self.neurons[i], x * self.scale if self.scale != 1.0 else x)

    def forward(self, x):
        T, B = x.shape[:2]
        fold = lambda f, h: f(h.flatten(0, 1)).unflatten(0, (T, B))  # noqa: E731
        if self.kind == "fc":
            h = x.flatten(2) if self.flat else x
            return self._neuron(0, fold(self.syn[0], h))
        c1, b1, c2, b2, fc = self.syn
        h = self._neuron(0, fold(lambda z: b1(c1(z)), x))
        h = fold(lambda z: nn.functional.max_pool2d(z, 2), h)
        h = self._neuron(1, fold(lambda z: b2(c2(z)), h))
        h = fold(lambda z: nn.functional.max_pool2d(z, 2).flatten(1), h)
        return self._neuron(2, fold(fc, h))


def _snntorch(spec, w):
    import snntorch as snt

    def step(lif, x):
        mem = lif.init_leaky()
        out = []
        for xt in x.unbind(0):
            spk, mem = lif(xt, mem)
            out.append(spk)
        return torch.stack(out)

    net = _PerStep(spec, w, lambda: snt.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero"), step, 0.5)
    return net, net, lambda: None


def _norse(spec, w):
    import norse.torch as nt

    p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(0.5), v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0),
                            v_leak=torch.tensor(0.0), method="super", alpha=torch.tensor(100.0))

    def step(cell, x):
        state, out = None, []
        for xt in x.unbind(0):
            z, state = cell(xt, state)
            out.append(z)
        return torch.stack(out)

    net = _PerStep(spec, w, lambda: nt.LIFBoxCell(p, dt=1.0), step)
    return net, net, lambda: None


def _sinabs(spec, w):
    import sinabs.activation as sa
    import sinabs.layers as sl

    class SinabsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.pt = _PerStep(spec, w, lambda: sl.LIF(tau_mem=1 / math.log(2), spike_fn=sa.SingleSpike,
                                                       reset_fn=sa.MembraneReset(), norm_input=True),
                               lambda lif, x: lif(x.transpose(0, 1)).transpose(0, 1))

        def forward(self, x):
            return self.pt(x)

    net = SinabsNet()

    def reset():
        for m in net.modules():
            if isinstance(m, sl.LIF):
                m.reset_states()

    return net, net, reset


_BUILDERS = {"snnir": _snnir, "spikingjelly": _spikingjelly, "snntorch": _snntorch, "norse": _norse,
             "sinabs": _sinabs}


def available(framework: str) -> str | None:
    """None if the framework imports, else the reason it is skipped."""
    mods = {"snnir": "snnir.nn", "spikingjelly": "spikingjelly.activation_based.neuron", "snntorch": "snntorch",
            "norse": "norse.torch", "sinabs": "sinabs.layers"}
    try:
        __import__(mods[framework])
        return None
    except Exception as e:  # noqa: BLE001 - any import failure means "not installed here"
        return f"{type(e).__name__}: {e}"


def spikes_to_numpy(y: torch.Tensor) -> np.ndarray:
    return y.detach().to(torch.uint8).numpy()

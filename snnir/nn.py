"""The PyTorch authoring API: neurons, step-aware layers, encoders and helpers.

It is the torch backend's module library, so a traced model compiles back to the same modules.

Example:
    >>> import torch
    >>> from snnir import nn as snn
    >>> net = torch.nn.Sequential(snn.Flatten(), snn.Linear(64, 10, bias=False),
    ...                           snn.LIF(tau=2.0, surrogate=snn.surrogate.ATan(alpha=2.0)))
    >>> y = snn.multi_step(net, torch.rand(8, 32, 1, 8, 8)); snn.reset(net)
    >>> y.shape
    torch.Size([8, 32, 10])
"""

from snnir import surrogate
from snnir.backends.torch.base import StepModule
from snnir.backends.torch.distributed import DistributedDataParallel, state_buffer_names
from snnir.backends.torch.encoding import (
    DirectEncoder,
    LatencyEncoder,
    PeriodicEncoder,
    PoissonEncoder,
    direct,
    latency,
    periodic,
    poisson,
)
from snnir.backends.torch.functional import multi_step, reset, set_step_mode, step_mode
from snnir.backends.torch.layers import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    Add,
    Affine,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Cat,
    Conv1d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    Linear,
    MaxPool1d,
    MaxPool2d,
    ReLU,
    Scale,
)
from snnir.backends.torch.neuron import (
    EIF,
    IF,
    LIF,
    QIF,
    AdaptiveLIF,
    CubaLIF,
    Izhikevich,
    Neuron,
    ParametricLIF,
    neuron_class,
)
from snnir.backends.torch.stateful import Delay, Recurrent, SynapseFilter
from snnir.backends.torch.surrogate import spike

__all__ = [
    "EIF", "IF", "LIF", "QIF", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveLIF", "Add", "Affine",
    "Delay", "DistributedDataParallel", "Recurrent", "SynapseFilter",
    "AvgPool1d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Cat", "Conv1d", "Conv2d", "CubaLIF",
    "DirectEncoder", "Dropout", "Dropout2d", "Flatten", "Izhikevich", "LatencyEncoder", "Linear",
    "MaxPool1d", "MaxPool2d", "Neuron", "ParametricLIF", "PeriodicEncoder", "PoissonEncoder", "ReLU",
    "Scale", "StepModule", "direct", "latency", "multi_step", "neuron_class", "periodic", "poisson",
    "reset", "set_step_mode", "spike", "state_buffer_names", "step_mode", "surrogate",
]

"""Neuron models declared as equations (see ``model.py``), one short file per family."""

from snnir.neurons.adaptive import AdaptiveLIF, AdaptiveQIF
from snnir.neurons.cuba import CubaLIF, CubaLIFDecay
from snnir.neurons.integrate_fire import IF, LIF, ParametricLIF
from snnir.neurons.model import (
    COMMON_PARAMS,
    Equations,
    NeuronModel,
    Range,
    above,
    get_model,
    registered_models,
    sigmoid,
)
from snnir.neurons.nonlinear import EIF, QIF, Izhikevich
from snnir.neurons.norse import NorseIAF, NorseLIBox, NorseLIF, NorseLIFBox
from snnir.neurons.snntorch import SnnTorchLeaky, SnnTorchSynaptic
from snnir.neurons.threshold import Threshold

__all__ = ["COMMON_PARAMS", "EIF", "IF", "LIF", "QIF", "AdaptiveLIF", "AdaptiveQIF", "CubaLIF", "CubaLIFDecay",
           "Equations", "Izhikevich", "NeuronModel", "NorseIAF", "NorseLIBox", "NorseLIF", "NorseLIFBox",
           "ParametricLIF", "Range", "SnnTorchLeaky", "SnnTorchSynaptic", "Threshold", "above", "get_model",
           "registered_models", "sigmoid"]

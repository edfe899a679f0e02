"""Neuron models declared as equations (see ``model.py``), one short file per family."""

from snnir.neurons.adaptive import AdaptiveLIF
from snnir.neurons.cuba import CubaLIF
from snnir.neurons.integrate_fire import IF, LIF, ParametricLIF
from snnir.neurons.model import (
    COMMON_PARAMS,
    Equations,
    NeuronModel,
    Range,
    get_model,
    registered_models,
    sigmoid,
)
from snnir.neurons.nonlinear import EIF, QIF, Izhikevich
from snnir.neurons.threshold import Threshold

__all__ = ["COMMON_PARAMS", "EIF", "IF", "LIF", "QIF", "AdaptiveLIF", "CubaLIF", "Equations",
           "Izhikevich", "NeuronModel", "ParametricLIF", "Range", "Threshold", "get_model", "registered_models",
           "sigmoid"]

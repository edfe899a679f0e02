"""Signatures of the neuron module classes that show each model's real defaults.

``Neuron.__init__`` takes the model's parameters as ``**kwargs`` and uses a sentinel for
``v_threshold``/``v_reset`` (their defaults depend on the model), so ``help(snn.LIF)`` would show
neither. ``neuron_signature`` builds the signature a user reads instead: the common arguments with
the model's values, then the model's own parameters and options with their defaults.
"""

from __future__ import annotations

import inspect
from typing import Any

from snnir.neurons import NeuronModel


class ModelDefault:
    """The ``v_threshold``/``v_reset`` default of ``Neuron``: "whatever the model declares"."""

    def __repr__(self) -> str:
        return "<model default>"


MODEL_DEFAULT: Any = ModelDefault()

_KW = inspect.Parameter.KEYWORD_ONLY


def _model_params(model: NeuronModel) -> dict[str, Any]:
    """The keyword arguments a user passes for the model's parameters, with their defaults:
    ``user_params``' own named arguments when a model overrides it (``ParametricLIF(init_tau)``),
    else the declared ``params``."""
    if type(model).user_params is not NeuronModel.user_params:
        named = inspect.signature(model.user_params).parameters.values()
        explicit = {p.name: p.default for p in named if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if explicit:
            return explicit
    return dict(model.params)


def neuron_signature(cls: type) -> inspect.Signature:
    """The signature of neuron class ``cls`` (bound to ``cls.model``) with the model's defaults.

    Example:
        >>> from snnir import nn as snn
        >>> sig = neuron_signature(snn.LIF)
        >>> {k: p.default for k, p in sig.parameters.items() if k in ("v_threshold", "v_reset", "tau")}
        {'v_threshold': 1.0, 'v_reset': 0.0, 'tau': 2.0}
    """
    model: NeuronModel = cls.model
    init = next(k.__init__ for k in cls.__mro__ if k.__name__ == "Neuron" and "__init__" in vars(k))
    defaults = model.all_params()
    params = []
    for p in list(inspect.signature(init, eval_str=True).parameters.values())[1:]:  # drop self
        if p.name == "model" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in ("v_threshold", "v_reset"):
            p = p.replace(default=defaults[p.name])
        params.append(p.replace(kind=_KW))
    for name, default in {**_model_params(model), **model.options}.items():
        params.append(inspect.Parameter(name, _KW, default=default, annotation=type(default)))
    return inspect.Signature(params)

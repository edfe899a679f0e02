"""Neurons recognised by their equations (snnir.neurons.canonical), not their class names.

A user-defined model whose sympy equations are LIF's, CubaLIF's or IF's - written differently from the
built-ins, under another name - has the built-in's canonical coefficients, exports to NIR as the
built-in does, and maps to Loihi to the same integers; a model that is not linear is refused with
the reason read from its equations.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

import snnir
from snnir.neurons import NeuronModel
from snnir.neurons.canonical import NotCanonicalError, canonical, canonical_form, linear_update


class BetaLeaky(NeuronModel):
    """LIF written snnTorch's way: v <- beta v + (1 - beta) v_reset + x (decay_input=False, beta = 1 - 1/tau)."""

    params = {"beta": 0.75}

    def charge(self, s, **options):
        return {"v": s.beta * s.v + (1 - s.beta) * s.v_reset + s.x}


class TwoDecays(NeuronModel):
    """CubaLIF with decay factors and its current named syn: syn <- a syn + x; v <- b v + syn."""

    state = {"syn": 0.0, "v": "v_reset"}
    params = {"a": 0.5, "b": 0.875}

    def charge(self, s, **options):
        return {"syn": s.a * s.syn + s.x, "v": s.b * (s.v - s.v_reset) + s.v_reset + s.syn}


class Accumulate(NeuronModel):
    """IF with an input gain: v <- v + 2 x."""

    def charge(self, s, **options):
        return {"v": s.v + 2 * s.x}


class LateCurrent(NeuronModel):
    """Reads last step's current: v is updated before the current."""

    state = {"v": "v_reset", "i": 0.0}

    def charge(self, s, **options):
        return {"v": s.v - s.v / 2 + s.i, "i": s.i / 2 + s.x}


class Drifting(NeuronModel):
    def charge(self, s, **options):
        return {"v": s.v + s.x + 0.1}


def _layer(attrs, shape=(4,)):
    g = snnir.Graph()
    x = g.add_input(shape)
    lin = g.add_node("linear", [x], params={"weight": np.random.default_rng(0).normal(0.3, 0.5, (4, shape[0]))
                                            .astype(np.float32)}, id="fc")
    g.add_output(g.add_node("neuron", [lin], attrs=attrs, id="n"))
    return g


@pytest.mark.parametrize("model, builtin", [
    ({"model": "BetaLeaky", "beta": 0.75}, {"model": "LIF", "tau": 4.0, "decay_input": False}),
    ({"model": "TwoDecays", "a": 0.5, "b": 0.875}, {"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 8.0}),
])
def test_user_model_has_the_builtins_coefficients(model, builtin):
    ours, theirs = canonical(_layer(model).node("n")), canonical(_layer(builtin).node("n"))
    for field in ("current_decay", "voltage_decay", "input_gain", "leak", "reset_value", "threshold"):
        assert getattr(ours, field) == pytest.approx(getattr(theirs, field)), field
    assert (ours.current is None) == (theirs.current is None) and ours.reset == theirs.reset


@pytest.mark.parametrize("model, builtin", [
    ({"model": "BetaLeaky", "beta": 0.75}, {"model": "LIF", "tau": 4.0, "decay_input": False}),
    ({"model": "TwoDecays", "a": 0.5, "b": 0.875}, {"model": "CubaLIF", "tau_syn": 2.0, "tau_mem": 8.0}),
    ({"model": "Accumulate"}, {"model": "IF"}),
])
def test_user_model_exports_to_nir_and_maps_to_loihi_like_the_builtin(tmp_path, model, builtin):
    import nir

    from snnir.passes.to_loihi import to_loihi

    ours, theirs = _layer(model), _layer(builtin)
    if model["model"] == "Accumulate":  # IF with gain 2 is IF fed 2 x
        theirs.node("fc").params["weight"] = ours.node("fc").params["weight"] * 2
    snnir.export(ours, tmp_path / "ours.nir", format="nir")
    snnir.export(theirs, tmp_path / "theirs.nir", format="nir")
    a, b = nir.read(str(tmp_path / "ours.nir")).nodes["n"], nir.read(str(tmp_path / "theirs.nir")).nodes["n"]
    assert type(a) is type(b) and type(a).__name__ in ("LIF", "CubaLIF", "IF")
    if model["model"] != "Accumulate":
        for field in ("tau", "tau_syn", "tau_mem", "r", "w_in", "v_leak", "v_threshold", "v_reset"):
            if hasattr(b, field):
                np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-12, err_msg=field)
    # the same spikes after import, through NIR
    x = torch.rand(25, 3, 4) * 2
    with torch.no_grad():
        ref = snnir.compile(ours)(x)
        back = snnir.compile(snnir.frontends.from_nir(tmp_path / "ours.nir"))(x)
    assert ref.sum() > 5 and torch.equal(ref, back)
    # Loihi: the same integers
    m1, m2 = to_loihi(ours), to_loihi(theirs)
    np.testing.assert_array_equal(m1.node("fc").params["weight"], m2.node("fc").params["weight"])
    assert m1.node("n").attrs == m2.node("n").attrs
    snnir.export(ours, tmp_path / "ours.h5", format="lava")


@pytest.mark.parametrize("model, reason", [
    ("LateCurrent", "v is updated before 'i'"),
    ("Drifting", "drifts by 1/10 per step"),
    ("QIF", r"non-linear \(term v\*\*2\)"),
    ("EIF", "not a polynomial"),
    ("AdaptiveLIF", "the update of 'w' must depend on itself and the input"),
])
def test_not_canonical_models_are_refused_with_the_reason(model, reason):
    with pytest.raises(NotCanonicalError, match=reason):
        canonical_form(model)


def test_resets_and_thresholds_read_from_the_equations():
    assert canonical_form("LIF", "soft").reset == "soft" and canonical_form("LIF", "soft").leak == 0
    assert canonical_form("LIF", "none").reset == "none"
    hard = canonical_form("CubaLIF")
    assert hard.reset == "hard" and str(hard.reset_value) == "v_reset" and str(hard.threshold) == "v_threshold"
    plif = canonical_form("ParametricLIF").evaluate({"w": np.array([0.0, 1.0]), "v_reset": 0.0, "v_threshold": 1.0})
    np.testing.assert_allclose(plif.voltage_decay, 1 / (1 + np.exp(-np.array([0.0, 1.0]))))
    with pytest.raises(NotCanonicalError, match="differs across neurons"):
        plif.scalar("voltage_decay")


def test_synapse_filter_exports_from_its_equation(tmp_path):
    import nir

    from snnir.ops.stateful import synapse_filter_update

    i, x, tau = sp.symbols("i x tau", real=True)
    assert linear_update(synapse_filter_update(i, x, tau), "i") == (1 / tau, 1, 0)
    g = snnir.Graph()
    inp = g.add_input((3,))
    g.add_output(g.add_node("synapse_filter", [inp], attrs={"tau": 4.0}, id="f"))
    snnir.export(g, tmp_path / "f.nir", format="nir")
    li = nir.read(str(tmp_path / "f.nir")).nodes["f"]
    np.testing.assert_allclose(li.tau, 4e-4)
    np.testing.assert_allclose(li.r, 4.0)

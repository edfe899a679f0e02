"""Short runs of the learning examples (the full runs and their figures are in the examples)."""

import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name: str):
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_stdp_digits_short_run():
    """One epoch on 400 images: STDP features already beat the untrained network's."""
    r = _example("stdp_digits").run(epochs=1, neurons=20, T=15, limit=400, progress=False)
    assert r["weight_change"] > 0.01
    assert r["accuracy_stdp"] > r["accuracy_random"] + 0.05, r
    assert abs(r["spikes_random_matched"] - r["spikes_stdp"]) < 0.05 * r["spikes_stdp"], "firing matched"


def test_rl_cartpole_short_run():
    pytest.importorskip("gymnasium", reason="gymnasium not installed: pip install 'snnir[rl]'")
    r = _example("rl_cartpole").train(episodes=12, validate_every=6, test_episodes=3, progress=False)
    assert r["episodes"] == 12 and r["weight_change"] > 0, r
    assert 8 <= r["test_min"] <= r["test_average"] <= 500

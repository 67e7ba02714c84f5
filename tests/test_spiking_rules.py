"""Pair rules with learnable time constants: hand-computed updates, vectors, rate form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticinfer.discovery import DiscoveryError, EIRules, PairRule, TraceRule


def test_spike_triggered_updates_by_hand():
    r = PairRule(-0.2, 0.1, 0.5, 0.3, 0.015, 0.03, learning_rate=0.5)
    # pre spike with postsynaptic trace 2: 0.5·(−0.2 + 0.3·2) = 0.2
    assert float(r.on_pre(2.0)) == pytest.approx(0.2)
    # post spike with presynaptic trace 0.4: 0.5·(0.1 + 0.5·0.4) = 0.15
    assert float(r.on_post(0.4)) == pytest.approx(0.15)


def test_rate_form_by_hand_and_as_trace_rule():
    r = PairRule(-0.2, 0.1, 0.5, 0.3, 0.015, 0.03, learning_rate=0.5)
    pre, post = jnp.array([[10.0, 20.0]]), jnp.array([[5.0]])
    dw = r(pre, post, jnp.zeros((1, 2)), jnp.zeros(1))
    pair = 0.3 * 0.03 + 0.5 * 0.015
    expected = 0.5 * (-0.2 * np.array([10, 20]) + 0.1 * 5 + pair * 5 * np.array([10, 20]))
    np.testing.assert_allclose(np.asarray(dw)[0], expected)
    t = r.as_trace_rule()
    assert isinstance(t, TraceRule) and t.tau_post == pytest.approx(0.03)
    np.testing.assert_allclose(np.asarray(t(pre, post, jnp.zeros((1, 2)), jnp.zeros(1))), np.asarray(dw))


def test_vectors_roundtrip_and_vmap():
    theta = jnp.arange(1.0, 25.0) / 100
    rules = EIRules.from_vector(theta, learning_rates={"ee": 0.1})
    np.testing.assert_allclose(np.asarray(rules.to_vector()), np.asarray(theta))
    assert rules.ee.learning_rate == 0.1 and rules.ii.learning_rate == 1.0
    assert float(rules.ie.tau_pre) == pytest.approx(0.17)
    assert EIRules.parameter_names()[:2] == ("ee:alpha", "ee:beta")
    batch = jax.vmap(lambda th: EIRules.from_vector(th).ii.kappa)(jnp.stack([theta, 2 * theta]))
    np.testing.assert_allclose(np.asarray(batch), [0.22, 0.44])
    only = EIRules.from_vector(theta[:6], plastic=("ie",))
    assert only.plastic == ("ie",) and only.ee is None


def test_errors():
    with pytest.raises(DiscoveryError, match="tau_pre"):
        PairRule(tau_pre=-0.01)
    with pytest.raises(DiscoveryError, match="12 parameters"):
        EIRules.from_vector(jnp.zeros(6), plastic=("ee", "ii"))
    with pytest.raises(DiscoveryError, match="unknown synapse types"):
        EIRules.from_vector(jnp.zeros(6), plastic=("xx",))

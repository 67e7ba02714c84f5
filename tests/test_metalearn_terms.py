"""Candidate local terms and the sparse LocalRule: each term against its hand-written formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.metalearn import TERM_POOL, LayerSignals, LocalRule, find_term


def _signals(key, n_in=4, n_out=3):
    ks = jax.random.split(key, 5)
    return LayerSignals(
        y_pre=jax.random.uniform(ks[0], (n_in,)),
        y_post=jax.random.uniform(ks[1], (n_out,)),
        e_pre=jax.random.normal(ks[2], (n_in,)),
        e_post=jax.random.normal(ks[3], (n_out,)),
        w=jax.random.normal(ks[4], (n_out, n_in)),
    )


# Element (i, j) of each term, written out by hand: i indexes the layer's output neurons, j its inputs.
HAND_WRITTEN = {
    "pseudo_gradient": lambda s, i, j: s.e_post[i] * s.y_pre[j],
    "error_hebbian": lambda s, i, j: s.e_post[i] * s.e_pre[j],
    "oja": lambda s, i, j: s.y_post[i] * s.y_pre[j] - s.y_post[i] ** 2 * s.w[i, j],
    "hebbian": lambda s, i, j: s.y_post[i] * s.y_pre[j],
    "decay": lambda s, i, j: s.w[i, j],
    "post_activity_pre_error": lambda s, i, j: s.y_post[i] * s.e_pre[j],
    "error_only": lambda s, i, j: s.e_post[i],
    "three_factor": lambda s, i, j: s.e_post[i] * s.y_post[i] * s.y_pre[j],
    "error_decay": lambda s, i, j: s.e_post[i] ** 2 * s.w[i, j],
    "pre_decay": lambda s, i, j: s.w[i, j] * s.y_pre[j] ** 2,
}


def test_pool_has_at_least_eight_distinct_named_terms():
    assert len(TERM_POOL) >= 8
    assert set(HAND_WRITTEN) == {t.alias for t in TERM_POOL}
    assert len({t.name for t in TERM_POOL}) == len(TERM_POOL)
    assert find_term("pseudo_gradient").name == "e_{l+1}·y_lᵀ"
    assert find_term("e_{l+1}·e_lᵀ").alias == "error_hebbian"


@pytest.mark.parametrize("term", TERM_POOL, ids=lambda t: t.alias)
def test_term_equals_hand_written_formula(term, key):
    s = _signals(key)
    np_s = LayerSignals(*(np.asarray(a) for a in (s.y_pre, s.y_post, s.e_pre, s.e_post, s.w)))
    want = np.array([[HAND_WRITTEN[term.alias](np_s, i, j) for j in range(4)] for i in range(3)])
    got = np.asarray(term(s))
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_rule_is_learning_rate_times_weighted_sum_of_terms(key):
    k1, k2 = jax.random.split(key)
    s = _signals(k1, 5, 2)
    theta = jax.random.normal(k2, (len(TERM_POOL),))
    rule = LocalRule(TERM_POOL, theta, learning_rate=0.3)
    want = 0.3 * sum(float(c) * np.asarray(t(s)) for c, t in zip(theta, TERM_POOL))
    np.testing.assert_allclose(np.asarray(rule(s)), want, rtol=1e-12)
    np.testing.assert_allclose(float(rule.penalty()), float(jnp.sum(jnp.abs(theta))))


def test_equation_prints_signs_and_threshold():
    rule = LocalRule.from_terms({"pseudo_gradient": 0.93, "decay": -0.02, "hebbian": 0.001}, learning_rate=1.0)
    assert rule.equation(precision=2) == "ΔW = 0.93·e_{l+1}·y_lᵀ − 0.02·W + 0.00·y_{l+1}·y_lᵀ"
    assert rule.equation(threshold=0.01, precision=2) == "ΔW = 0.93·e_{l+1}·y_lᵀ − 0.02·W"
    assert rule.surviving(0.01) == ("e_{l+1}·y_lᵀ", "W")
    pruned = rule.pruned(0.01)
    assert pruned.names == ("e_{l+1}·y_lᵀ", "W")
    np.testing.assert_allclose(np.asarray(pruned.coeffs), [0.93, -0.02])
    neg_first = LocalRule.from_terms({"decay": -0.5, "oja": 1.0}, learning_rate=0.05)
    assert str(neg_first) == "ΔW = 0.05·(−0.500·W + 1.000·(y_{l+1}·y_lᵀ − diag(y_{l+1}²)·W))"


def test_pool_constructor_and_lookup():
    rule = LocalRule.pool({"error_hebbian": 0.5})
    assert rule.names == tuple(t.name for t in TERM_POOL)
    assert rule.coefficients["e_{l+1}·e_lᵀ"] == 0.5
    assert float(rule.coefficient("error_hebbian")) == 0.5
    assert float(rule.coefficient("pseudo_gradient")) == 0.0
    default = LocalRule.pool()
    assert default.coefficients == {t.name: (1.0 if t.alias == "pseudo_gradient" else 0.0) for t in TERM_POOL}
    assert LocalRule.feedback_alignment(2.0).equation() == "ΔW = 0.05·(2.000·e_{l+1}·y_lᵀ)"


def test_rule_errors_are_plasticinfer_errors():
    with pytest.raises(pi.ModelError, match="unknown term 'hebb'"):
        find_term("hebb")
    with pytest.raises(pi.ModelError, match="distinct"):
        LocalRule(["decay", "W"])
    with pytest.raises(pi.ModelError, match="coefficients of shape"):
        LocalRule(["decay", "hebbian"], [1.0])
    with pytest.raises(pi.ModelError, match="no term has"):
        LocalRule(["decay"], [0.001]).pruned(0.01)
    with pytest.raises(pi.ModelError, match="learning_rate"):
        LocalRule(["decay"], learning_rate=0.0)
    assert issubclass(pi.ModelError, pi.PlasticInferError)

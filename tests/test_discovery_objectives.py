"""Discovery objectives against independent oracles: the analytic B3 manifold, PCA geometry, finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.discovery import (
    DiscoveryError,
    GuardedNetwork,
    HomeostasisObjective,
    LateralPCANetwork,
    LIFHomeostasisObjective,
    PC1Objective,
    PCANetworkObjective,
    TraceRule,
    decaying_spectrum,
    homeostatic_fixed_point,
    principal_angles,
)
from plasticinfer.discovery._pca import conditioned_angles, random_rotation, subspace_misalignment


# --------------------------------------------------------------------------------------
# B3: the analytic manifold against the simulated rate model
# --------------------------------------------------------------------------------------

STABLE_RULES = [
    # (alpha, beta, gamma, kappa, tau_pre, tau_post)
    (-0.2, 0.0, 1.0, 1.0, 0.02, 0.02),  # Vogels, ν* = 5 Hz
    (-0.2, 0.1, 0.5, 0.5, 0.02, 0.02),  # ν* = 6.67 Hz
    (-0.05, 0.3, 0.0, 0.0, 0.02, 0.02),  # no pairing term, ν* = 1.67 Hz
    (-0.3, 0.05, 2.0, 0.5, 0.01, 0.03),  # asymmetric traces, ν* = 8 Hz
]


@pytest.mark.parametrize("params", STABLE_RULES)
def test_rate_model_steady_state_is_the_analytic_manifold(params, key):
    a, b, g, k, tp, tq = params
    rule = TraceRule(a, b, g, k, tau_pre=tp, tau_post=tq, learning_rate=2e-3)
    nu_pre = 10.0
    expected = -a * nu_pre / (b + (k * tq + g * tp) * nu_pre)
    assert float(rule.fixed_point(nu_pre)) == pytest.approx(expected)
    obj = HomeostasisObjective.create(target=5.0, nu_inh=nu_pre, n_steps=1500, n_networks=2)
    m = obj.evaluate(rule, key)
    assert m["rate_hz"] == pytest.approx(expected, rel=2e-3)
    # the same rule written as a rate-form Taylor rule has the same fixed point and dynamics
    taylor = rule.as_taylor()
    assert float(homeostatic_fixed_point(taylor, nu_pre)) == pytest.approx(expected)
    mt = obj.evaluate(taylor, key)
    assert mt["rate_hz"] == pytest.approx(m["rate_hz"], rel=1e-9)


def test_fixed_point_depends_on_input_rate_unless_beta_is_zero():
    vogels = TraceRule.vogels(5.0)
    assert float(vogels.fixed_point(3.0)) == pytest.approx(5.0)
    assert float(vogels.fixed_point(30.0)) == pytest.approx(5.0)
    post_only = TraceRule(-0.05, 0.3, 0.0, 0.0)
    assert float(post_only.fixed_point(20.0)) == pytest.approx(2 * float(post_only.fixed_point(10.0)))


def test_taylor_fixed_point_refuses_terms_outside_the_formula():
    with pytest.raises(DiscoveryError, match="x·y only"):
        homeostatic_fixed_point(pi.oja(1.0), 10.0)


def test_trace_rule_rate_form_is_the_mean_of_spike_updates():
    """α·ν_pre + β·ν_post + (κτ_post + γτ_pre)·ν_pre·ν_post per synapse, batch-averaged."""
    rule = TraceRule(0.3, -0.2, 0.7, 1.1, tau_pre=0.01, tau_post=0.03, learning_rate=0.5)
    pre = jnp.array([[2.0, 4.0, 6.0], [1.0, 0.0, 3.0]])
    post = jnp.array([[5.0], [7.0]])
    dw = rule(pre, post, jnp.zeros((1, 3)), jnp.zeros(2))
    c = 1.1 * 0.03 + 0.7 * 0.01
    manual = np.mean([[0.3 * x + -0.2 * p[0] + c * x * p[0] for x in xs] for xs, p in zip(np.asarray(pre), np.asarray(post))], axis=0)
    np.testing.assert_allclose(np.asarray(dw)[0], 0.5 * manual, rtol=1e-12)


def test_lif_vogels_reaches_target_roughly(key):
    obj = LIFHomeostasisObjective.create(duration=20.0, measure=8.0, n_networks=2)
    m = obj.evaluate(obj.reference_rule(), key)
    zero = obj.evaluate(obj.default_rule(), key)
    # spike correlations bias the trace rule upwards (docs/discovery.md); it still lands near 5 Hz
    assert 3.5 < m["rate_hz"] < 8.0
    assert m["loss"] < zero["loss"]
    assert m["manifold_rate_hz"] == pytest.approx(5.0)


def test_lif_needs_a_trace_rule(key):
    obj = LIFHomeostasisObjective.create(duration=0.05, measure=0.05)
    with pytest.raises(DiscoveryError, match="TraceRule"):
        obj.loss(pi.hebbian(), obj.sample(key))


# --------------------------------------------------------------------------------------
# B1 and B2 geometry
# --------------------------------------------------------------------------------------


def test_principal_angles_of_known_subspaces(getkey):
    q = np.asarray(random_rotation(getkey(), 6))
    a = q[:2]
    mix = np.array([[2.0, 1.0], [0.5, -1.0]])
    np.testing.assert_allclose(principal_angles(mix @ a, a), 0.0, atol=1e-6)
    np.testing.assert_allclose(principal_angles(a, q[2:4]), 90.0, atol=1e-6)
    theta = np.radians(30.0)
    b = np.stack([np.cos(theta) * q[0] + np.sin(theta) * q[3], q[1]])
    np.testing.assert_allclose(sorted(principal_angles(b, a)), [0.0, 30.0], atol=1e-6)
    # the differentiable misalignment is the mean of sin² of the principal angles
    mis = float(subspace_misalignment(jnp.asarray(b), jnp.asarray(a), ridge=0.0))
    assert mis == pytest.approx(np.mean(np.sin(np.radians(principal_angles(b, a))) ** 2), rel=1e-6)
    # rows collapsed onto one direction (plus crumbs) span one dimension, not two
    crumbs = jnp.asarray(np.stack([a[0] + 1e-4 * a[1], a[0] - 1e-4 * a[1]]))
    assert float(subspace_misalignment(crumbs, jnp.asarray(a))) > 0.45
    np.testing.assert_allclose(sorted(np.asarray(conditioned_angles(crumbs, jnp.asarray(a)))), [0.0, 90.0], atol=1e-4)


def test_decaying_spectrum_extends_design_b1():
    np.testing.assert_allclose(decaying_spectrum(3), [1.0, 0.5, 1e-6])
    ev = decaying_spectrum(100)
    assert ev[0] == 1.0 and ev[1] == 0.5 and ev[-1] == pytest.approx(1e-6) and np.all(np.diff(ev) < 0)


def test_pc1_loss_is_minimal_for_oja_and_bad_for_anti_oja(key):
    obj = PC1Objective.create(None, 3, n_networks=8)
    ep = obj.sample(key)
    oja = obj.reference_rule()
    jloss = eqx.filter_jit(obj.loss)
    loss = lambda r: float(jloss(r, ep))  # noqa: E731
    l_oja = loss(oja)
    anti = oja.with_coefficients({"x*y": -1.0, "y^2*w": 1.0})
    assert l_oja < 5e-3
    assert loss(anti) > 100 * l_oja
    assert loss(obj.default_rule()) > 100 * l_oja  # no learning: w stays random
    assert loss(oja.with_coefficients({"y^2*w": -0.5})) > 10 * l_oja  # wrong ratio → |w| = √2


def test_moments_contraction_equals_synapse_contraction(getkey):
    # formerly MomentTaylorRule vs the core rule; the moments-first evaluation now lives in TaylorRule
    full = pi.TaylorRule.full(("x", "y", "w", "r"), 2)
    coeffs = jax.random.normal(getkey(), (len(full.terms),))
    moments, synapse = (pi.TaylorRule(full.terms, coeffs, learning_rate=0.3, contraction=c) for c in ("moments", "synapse"))
    pre = jax.random.normal(getkey(), (7, 4))
    post = jax.random.normal(getkey(), (7, 3))
    w = jax.random.normal(getkey(), (3, 4))
    r = jax.random.normal(getkey(), (7,))
    np.testing.assert_allclose(moments(pre, post, w, r), synapse(pre, post, w, r), rtol=1e-10, atol=1e-12)


def test_guard_keeps_a_diverging_rule_finite(key):
    obj = PC1Objective.create(None, 3, n_networks=2, n_steps=50)
    ep = obj.sample(key)
    exploding = obj.reference_rule().with_coefficients({"y^2*w": 5.0})
    value, grad = jax.jit(jax.value_and_grad(lambda c: obj.loss(eqx.tree_at(lambda r: r.coeffs, exploding, c), ep)))(exploding.coeffs)
    assert np.isfinite(float(value)) and float(value) > 1.0
    assert np.all(np.isfinite(np.asarray(grad)))
    w = eqx.filter_jit(obj.final_weights)(exploding, ep)
    assert np.max(np.abs(np.asarray(w))) <= GuardedNetwork(pi.FeedForward(3, 1)).bound


# The gradients of the PC1, PCA-network and rate-homeostasis objectives against finite differences: the contract
# tests over every objective (tests/test_objectives_contract.py, registry in tests/helpers.py::OBJECTIVES).


def test_lateral_network_with_oja_and_anti_hebbian_spans_the_top_pcs(key):
    obj = PCANetworkObjective.create(None, 8, 3, n_networks=2, n_steps=300)
    m = obj.evaluate(obj.reference_rule(), key)
    assert m["max_angle_deg"] < 10.0
    assert m["norm"] == pytest.approx(1.0, abs=0.05)
    ff_only = {"ff": obj.reference_rule()["ff"], "lateral": pi.TaylorRule.from_terms({"x*y": 0.0}, learning_rate=0.1)}
    assert obj.evaluate(ff_only, key)["max_angle_deg"] > 30.0  # without decorrelation every output finds PC1


def test_lateral_network_keeps_a_zero_diagonal(getkey):
    net = LateralPCANetwork(4, 3)
    w = {"ff": jax.random.normal(getkey(), (3, 4)), "lateral": jnp.full((3, 3), 0.1)}
    rule = {"ff": pi.oja(0.1), "lateral": pi.hebbian(-0.1)}
    new, _, y = net.step(rule, w, None, {"x": jax.random.normal(getkey(), (5, 4))})
    np.testing.assert_array_equal(np.diag(np.asarray(new["lateral"])), 0.0)
    lat = w["lateral"] * (1 - jnp.eye(3))
    expected = jnp.linalg.solve(jnp.eye(3) - lat, w["ff"])
    assert y.shape == (5, 3)
    x = jnp.ones((1, 4))
    np.testing.assert_allclose(np.asarray(net.outputs(w, x)), np.asarray(x @ expected.T), rtol=1e-12)


def test_objective_arguments_are_checked():
    with pytest.raises(DiscoveryError, match="eigenvalue"):
        PC1Objective.create(None, 3, spectrum=[1.0, 0.5])
    with pytest.raises(DiscoveryError, match="target < drive"):
        HomeostasisObjective.create(target=30.0, drive=25.0)
    with pytest.raises(DiscoveryError, match="gap"):
        PCANetworkObjective.create(None, 6, 2, spectrum=[1.0, 0.5, 0.5, 0.4, 0.3, 0.2])


def test_correlated_inputs_give_detailed_balance_only_with_a_pairing_term(key):
    """docs/discovery.md: with shared group fluctuations the pairing term equalises the net drive per group."""
    obj = HomeostasisObjective.create(fluctuation=0.5, n_steps=1500, n_networks=2)
    lr = obj.learning_rate
    pairing = obj.evaluate(TraceRule.vogels(5.0, learning_rate=5 * lr), key)
    no_pairing = obj.evaluate(TraceRule(-0.15, 0.3, 0.0, 0.0, learning_rate=5 * lr), key)
    assert pairing["unbalanced"] < 0.01 < 0.5 < no_pairing["unbalanced"]
    assert abs(no_pairing["rate_hz"] - 5.0) < 0.1 and abs(pairing["rate_hz"] - 5.0) < 0.5

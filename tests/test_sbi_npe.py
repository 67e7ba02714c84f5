"""Neural posterior estimation against an analytic posterior; SBC ranks and coverage on a cheap simulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticinfer.discovery import BoxPrior, DiscoveryError, GaussianPrior, run_npe, sbc, simulate_batched

A = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
SIGMA = 0.5


def linear_simulator(theta, key):
    return jnp.asarray(A) @ theta + SIGMA * jax.random.normal(key, (3,), theta.dtype)


def analytic_posterior(x, prior_sd=1.0):
    """θ ~ N(0, s²I), x | θ ~ N(Aθ, σ²I): Gaussian posterior."""
    prec = A.T @ A / SIGMA**2 + np.eye(2) / prior_sd**2
    cov = np.linalg.inv(prec)
    return cov @ A.T @ x / SIGMA**2, np.sqrt(np.diag(cov))


@pytest.fixture(scope="module")
def linear_npe():
    prior = GaussianPrior(("a", "b"), [0.0, 0.0], [1.0, 1.0])
    return run_npe(jax.random.key(0), linear_simulator, prior, n_simulations=4000, batch_size=1000, flow_layers=3, nn_width=32, max_epochs=150)


@pytest.mark.slow
def test_npe_recovers_analytic_gaussian_posterior(linear_npe):
    for x_obs in (np.array([0.8, -0.3, 0.5]), np.array([-1.5, 1.0, 0.0])):
        mean, sd = analytic_posterior(x_obs)
        s = np.asarray(linear_npe.posterior.sample(jax.random.key(1), jnp.asarray(x_obs), 4000))
        assert np.all(np.abs(s.mean(0) - mean) < 0.3 * sd)  # amortised NPE at 4000 simulations: within 0.3 posterior sd
        np.testing.assert_allclose(s.std(0), sd, rtol=0.2)
    assert linear_npe.dropped == 0 and linear_npe.simulations_per_minute > 0


@pytest.mark.slow
def test_sbc_ranks_are_uniform_and_coverage_matches(linear_npe):
    res = sbc(jax.random.key(2), linear_npe.posterior, linear_simulator, n_tests=200, n_samples=100, batch_size=200)
    assert res.ranks.shape == (200, 2) and res.ranks.max() <= 100
    assert np.all(res.uniformity_pvalues() > 0.001)
    np.testing.assert_allclose(res.coverage[0.9], 0.9, atol=0.07)  # binomial sd at n=200 is 0.021
    np.testing.assert_allclose(res.coverage[0.5], 0.5, atol=0.11)


@pytest.mark.slow  # needs the trained flow of the slow tier's NPE checks (15 s to train on 2 cores)
def test_sbc_detects_a_miscalibrated_posterior(linear_npe):
    """The check has teeth: a posterior whose spread is shrunk 3x fails coverage."""
    post = linear_npe.posterior
    import equinox as eqx

    narrow = eqx.tree_at(lambda p: p.z_std, post, post.z_std / 3)
    res = sbc(jax.random.key(3), narrow, linear_simulator, n_tests=200, n_samples=100, batch_size=200)
    assert np.all(res.coverage[0.9] < 0.6)


def test_box_prior_bijection_and_errors(getkey):
    prior = BoxPrior(("x", "tau"), [-1.0, 0.005], [1.0, 0.05])
    th = prior.sample(getkey(), 500)
    assert bool(jnp.all(prior.contains(th)))
    np.testing.assert_allclose(np.asarray(prior.from_unconstrained(prior.to_unconstrained(th))), np.asarray(th), rtol=1e-6, atol=1e-9)
    with pytest.raises(DiscoveryError, match="low < high"):
        BoxPrior(("x",), [1.0], [0.0])
    with pytest.raises(DiscoveryError, match="at least 20"):
        run_npe(getkey(), linear_simulator, GaussianPrior(("a", "b"), [0, 0], [1, 1]), n_simulations=5)


def test_simulate_batched_pads_and_keeps_order(getkey):
    theta = jnp.arange(14.0).reshape(7, 2)
    x = simulate_batched(lambda th, k: th * 2.0, theta, getkey(), batch_size=3)
    np.testing.assert_allclose(x, 2 * np.asarray(theta))

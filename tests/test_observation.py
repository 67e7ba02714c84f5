"""Contract tests over every observation model in tests/helpers.py::OBSERVATIONS."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import OBSERVATIONS

NAMES = sorted(OBSERVATIONS)


def _case(name, key, shape=(400,)):
    model, outputs, scipy_dist, discrete = OBSERVATIONS[name]
    out = outputs(key, shape)
    return model, out, scipy_dist(model, np.asarray(out)), discrete


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name, getkey):
    model, out, dist, discrete = _case(name, getkey(), (50,))
    obs = np.asarray(model.sample(getkey(), out))
    expected = dist.logpmf(obs) if discrete else dist.logpdf(obs)
    np.testing.assert_allclose(np.asarray(model.log_prob(out, jnp.asarray(obs))), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_sampling_moments_match_the_distribution(name, getkey):
    """Sample mean and variance of many draws at one output agree with scipy's (5 standard errors)."""
    model, out, dist, _ = _case(name, getkey(), (1,))
    n = 20000
    batch = jnp.broadcast_to(out, (n,) + out.shape[1:]) if out.ndim > 1 else jnp.broadcast_to(out, (n,))
    draws = np.asarray(model.sample(getkey(), batch), dtype=float).reshape(n, -1)[:, 0]
    mean, var, kurt = (float(np.ravel(v)[0]) for v in dist.stats(moments="mvk"))
    assert abs(draws.mean() - mean) < 5 * np.sqrt(var / n)
    # standard error of the sample variance: σ²·sqrt((excess kurtosis + 2) / n)
    assert abs(draws.var() - var) < 5 * var * np.sqrt((kurt + 2.0) / n)


@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_never_reach_values_or_gradients(name, getkey):
    model, out, _, _ = _case(name, getkey(), (6,))
    obs = jnp.asarray(model.sample(getkey(), out), dtype=float)
    mask = jnp.array([True, False, True, True, False, True])
    poisoned = jnp.where(mask, obs, jnp.nan)
    lp = model.trial_log_prob(out, poisoned, mask)
    expected = jnp.sum(jnp.where(mask, model.log_prob(out, obs), 0.0))
    np.testing.assert_allclose(float(lp), float(expected), rtol=1e-12)
    g = jax.grad(lambda o: model.trial_log_prob(o, poisoned, mask))(out)
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_through_a_results_file(name, tmp_path):
    """A model holding the observation model saves and loads, with and without like=."""
    import plasticinfer as pi
    from plasticinfer._fit_result import FitResult

    obs_model = OBSERVATIONS[name][0]
    network = pi.ChoiceCircuit(2) if isinstance(obs_model, pi.BernoulliChoice) else pi.FeedForward(3, 2)
    model = pi.PlasticityModel.create(pi.TaylorRule(["x*y", "w"]), network, obs_model, key=jax.random.key(0))
    res = FitResult(model, jax.tree_util.tree_map(lambda a: a[None] if hasattr(a, "shape") else a, model),
                    np.zeros((1, 0)), None, np.zeros(0, int), np.asarray(0), np.asarray([-1]), False, 0)
    path = res.save(tmp_path / "m.nc")
    for back in (FitResult.load(path, like=model), FitResult.load(path)):
        assert type(back.model.observation) is type(obs_model)
        for a, b in zip(jax.tree_util.tree_leaves(back.model.observation), jax.tree_util.tree_leaves(obs_model)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert back.model.observation == obs_model or jax.tree_util.tree_structure(back.model.observation) == jax.tree_util.tree_structure(obs_model)

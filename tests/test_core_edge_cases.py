"""The core engine used as a stranger would: each case once gave a silently wrong number (a fixed term moved by
restarts, a zero-width interval, a clipped likelihood, a wrong ground truth) or a misleading result; now it is right
or refused by name."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import plasticinfer as pi
from plasticinfer.cli import run
from plasticinfer.errors import PosteriorWarning


@pytest.fixture(scope="module")
def activity():
    rule = pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=0.05)
    inputs = pi.GaussianInputs.with_spectrum(jax.random.key(0), jnp.linspace(2.0, 0.2, 4))
    return pi.make_activity_data(rule, pi.FeedForward(4, 2), inputs, key=jax.random.key(1), n_trajectories=2, n_trials=40)


def _model(syn, rule):
    return pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(0))


def test_restarts_never_jitter_fixed_terms(activity):
    # the jitter was added to every coefficient: the "fixed" x*y came back as 0.72 from the best restart
    rule = pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": 0.0, "w": 0.0}, learning_rate=0.05).with_fixed(["x*y"])
    model = _model(activity, rule)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = pi.fit(model, activity.data, steps=10, restarts=4, key=jax.random.key(3), restart_scale=0.3, progress=False)
        ri = pi.fit_independent(model, activity.data, steps=5, restarts=3, key=jax.random.key(3), restart_scale=0.3, progress=False)
    np.testing.assert_array_equal(np.asarray(r.restarts.rule.coeffs)[:, 0], 1.0)
    assert r.model.rule.coefficients["x*y"] == 1.0
    np.testing.assert_array_equal(np.asarray(ri.restarts.rule.coeffs)[..., 0], 1.0)
    np.testing.assert_array_equal(ri.coefficients["x*y"].to_numpy(), 1.0)
    # the free terms are still jittered: restarts start apart
    assert np.ptp(np.asarray(r.restarts.rule.coeffs)[:, 1]) > 0


def test_laplace_intervals_are_nan_off_a_maximum_and_check_their_arguments(activity):
    m = activity.true_model
    good = pi.laplace_intervals(m, activity.data)
    assert np.all(good["se"] > 0) and np.all(good["lower"] < good["estimate"])
    off = pi.PlasticityModel(
        pi.TaylorRule(m.rule.terms, jnp.array([3.0, 1.0]), learning_rate=0.05), m.network, m.observation, m.initial_weights
    )
    # the clipped negative variance printed as se 0 and a zero-width interval
    with pytest.warns(PosteriorWarning, match="not positive definite"):
        bad = pi.laplace_intervals(off, activity.data)
    assert bad[["se", "lower", "upper"]].isna().all().all()
    for level in (95, 0, 1, -1):
        with pytest.raises(pi.ModelError, match=r"level .*must be > 0 and < 1"):
            pi.laplace_intervals(m, activity.data, level=level)
    with pytest.raises(pi.ModelError, match="pass result.model"):
        pi.laplace_intervals(pi.fit(m, activity.data, steps=1, progress=False), activity.data)


def test_poisson_log_prob_matches_scipy_for_silent_units():
    # log(rate + 1e-12) stopped at -27.6: 37 nats wrong at activity -40, and the gradient vanished
    p = pi.PoissonCounts(dt=0.5)
    for a in (-60.0, -40.0, -31.0, -29.0, -3.0, 0.0, 5.0):
        lam = np.log1p(np.exp(a)) * 0.5
        np.testing.assert_allclose(float(p.log_prob(jnp.asarray(a, jnp.float32), 3.0)), scipy.stats.poisson.logpmf(3, lam), rtol=2e-6)
    g = jax.grad(lambda x: p.log_prob(x, 3.0))(jnp.asarray(-40.0))
    np.testing.assert_allclose(float(g), 3.0, rtol=1e-5)


def test_make_activity_data_refuses_a_negative_noise():
    # noise=-0.1 drew the noise of 0.1 but recorded σ = 1e-6 as the truth
    inputs = pi.GaussianInputs.with_spectrum(jax.random.key(0), jnp.linspace(2.0, 0.2, 3))
    rule = pi.TaylorRule.from_terms({"x*y": 1.0}, learning_rate=0.01)
    with pytest.raises(pi.ModelError, match=r"noise .*must be ≥ 0; got -0.1"):
        pi.make_activity_data(rule, pi.FeedForward(3, 2), inputs, key=jax.random.key(0), noise=-0.1)
    with pytest.raises(pi.ModelError, match="n_trajectories must be ≥ 1"):
        pi.make_activity_data(rule, pi.FeedForward(3, 2), inputs, key=jax.random.key(0), n_trajectories=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(clip_norm=0.0), r"clip_norm .*must be > 0"),
        (dict(clip_norm=-1.0), r"clip_norm .*must be > 0"),
        (dict(restart_scale=float("nan")), "restart_scale must be a finite number"),
        (dict(convergence_tol=-1.0), "convergence_tol must be ≥ 0"),
        (dict(patience=10), "pass validation="),
    ],
)
def test_fit_refuses_settings_that_silently_did_something_else(activity, kwargs, message):
    model = _model(activity, pi.TaylorRule.from_terms({"x*y": 0.0}, learning_rate=0.05))
    with pytest.raises(pi.ModelError, match=message):
        pi.fit(model, activity.data, steps=2, progress=False, **kwargs)


def test_covariance_rule_refuses_one_sample_per_trial():
    # (x − x̄)(y − ȳ) over one sample is 0: the weights never moved, without a word
    model = pi.PlasticityModel.create(pi.CovarianceRule(0.5), pi.FeedForward(3, 2), pi.GaussianActivity(1.0), key=jax.random.key(0))
    with pytest.raises(pi.ModelError, match="needs several samples per trial"):
        model.simulate({"x": jnp.ones((1, 5, 3))})
    batched = model.simulate({"x": jax.random.normal(jax.random.key(1), (1, 5, 4, 3))}, save_weights=True)
    assert float(jnp.max(jnp.abs(jnp.diff(batched.weights["w"], axis=1)))) > 0


def test_r2_of_a_prediction_that_blows_up_is_minus_infinity():
    true = np.array([0.0, 1.0, 2.0])
    assert pi.compare.r2_score(true, np.array([0.0, np.inf, 1.0])) == -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning either
        assert pi.compare.r2_score(true, np.array([0.0, 1e200, 1.0])) == -np.inf
    assert np.isnan(pi.compare.r2_score(np.ones(3), np.ones(3)))
    assert pi.compare.r2_score(true, true) == 1.0


def test_a_cli_fit_that_never_moves_is_an_error_and_writes_nothing(activity, tmp_path, capsys):
    from plasticinfer._convert import activity_dataset

    nc = tmp_path / "s.nc"
    pi.data.write_netcdf(activity_dataset(activity), nc)
    out = tmp_path / "fit"
    assert run(["fit", str(nc), "--learning-rate", "1e6", "--steps", "10", "--restarts", "2", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "never moved from its start" in err and "nothing was written" in err and "Traceback" not in err
    assert not out.exists()

"""Posteriors against oracles: an analytic conjugate posterior, a grid posterior, and a known synthetic rule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.autoguide import AutoMultivariateNormal

import plasticinfer as pi
from plasticinfer import bayes

SIGMA, PRIOR_SD = 0.3, 1.0


@pytest.fixture(scope="module")
def linear_gaussian():
    """y_t = W x_t + N(0, σ²) with static weights: the posterior of W under a Normal prior is analytic."""
    k_x, k_w, k_n = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(k_x, (1, 30, 3))
    w_true = jax.random.normal(k_w, (2, 3))
    y = x @ w_true.T + SIGMA * jax.random.normal(k_n, (1, 30, 2))
    data = pi.TrialData({"x": x}, y, jnp.ones_like(y, bool))
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*y": 0.0}, fixed=["x*y"]), pi.FeedForward(3, 2), pi.GaussianActivity(SIGMA, learn_sigma=False),
        initial_weights={"w": jnp.zeros((2, 3))},
    )
    xx = np.asarray(x[0])
    cov = np.linalg.inv(np.eye(3) / PRIOR_SD**2 + xx.T @ xx / SIGMA**2)
    mean = (cov @ xx.T @ np.asarray(y[0]) / SIGMA**2).T  # (post, pre)
    return model, data, mean, np.sqrt(np.diag(cov))


@pytest.mark.slow  # 20–33 s on 2 cores: the slow tier (still run by CI)
def test_nuts_matches_conjugate_posterior(linear_gaussian):
    model, data, mean, sd = linear_gaussian
    priors = bayes.Priors(initial_weights=bayes.Normal(PRIOR_SD), observation=None)
    post = bayes.sample(model, data, key=jax.random.key(0), priors=priors, method=bayes.NUTS(warmup=300, samples=500))
    draws = post.draws("initial_w")[:, :, 0].reshape(-1, 2, 3)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.15 * sd.max())
    np.testing.assert_allclose(draws.std(0), np.broadcast_to(sd, (2, 3)), rtol=0.15)
    assert post.summary()["r_hat"].max() < 1.02


def test_svi_full_rank_matches_conjugate_posterior(linear_gaussian):
    model, data, mean, sd = linear_gaussian
    priors = bayes.Priors(initial_weights=bayes.Normal(PRIOR_SD), observation=None)
    method = bayes.SVI(guide=AutoMultivariateNormal, steps=3000, learning_rate=0.02, draws=2000)
    post = bayes.sample(model, data, key=jax.random.key(1), priors=priors, method=method, warn=False)
    draws = post.draws("initial_w")[0, :, 0]
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.2 * sd.max())
    np.testing.assert_allclose(draws.std(0), np.broadcast_to(sd, (2, 3)), rtol=0.25)


@pytest.fixture(scope="module")
def choice_posterior():
    truth = {"x*r": 0.5, "w": -0.05}
    syn = pi.make_choice_data(pi.TaylorRule.from_terms(truth), key=jax.random.key(21), n_subjects=6, inverse_temperature=1.0)
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.0, "w": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=6, initial_weights={"w": jnp.zeros((1, 2))},
    )
    start = pi.fit(model, syn.data, steps=30, progress=False, fit_initial_weights=False)
    post = bayes.sample(start.model, syn.data, key=jax.random.key(2), priors=bayes.Priors(coefficients=bayes.Laplace(1.0)),
                        method=bayes.NUTS(warmup=300, samples=400), warn=False)
    return post, syn, truth


@pytest.mark.slow
def test_posterior_of_known_rule_covers_truth(choice_posterior):
    post, _, truth = choice_posterior
    table = post.summary(interval=0.9)
    for term, value in truth.items():
        row = table.loc[f"theta[{term}]"]
        assert row["q5%"] <= value <= row["q95%"], (term, row)
        assert row["ess_bulk"] > 100 and row["r_hat"] < 1.03
    assert not any("divergent" in m for m in post.diagnostics())
    assert list(post.coefficients.coords["term"].values) == ["x*r", "w"]
    assert post.ess_per_second().min() > 0
    assert post.mean_model().rule.coefficient("x*r") == pytest.approx(table.loc["theta[x*r]", "mean"])


@pytest.mark.slow
def test_inference_data_groups_and_netcdf_roundtrip(choice_posterior, tmp_path):
    post, syn, _ = choice_posterior
    idata = post.idata
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups()
    ll = idata.log_likelihood["observations"]
    assert ll.dims == ("chain", "draw", "subject", "trial") and ll.shape == (2, 400, 6, 240)
    np.testing.assert_allclose(idata.log_likelihood["per_subject"].values, ll.values.sum(-1))
    # the stored pointwise log-likelihood is the engine's, at every draw
    m = post.model_at(1, 7)
    np.testing.assert_allclose(ll.values[1, 7], m.log_likelihood(syn.data), rtol=1e-10)
    path = tmp_path / "posterior.nc"
    post.save(path)
    back = bayes.Posterior.load(path, post.spec.template, priors=post.spec.priors)
    np.testing.assert_allclose(back.draws("theta"), post.draws("theta"))
    assert back.summary().index.equals(post.summary().index)


@pytest.mark.slow
def test_psis_loo_warns_that_it_is_optimistic(choice_posterior):
    post, _, _ = choice_posterior
    with pytest.warns(bayes.PosteriorWarning, match="optimistic"):
        loo = post.loo()
    total = float(post.log_likelihood.mean((0, 1)).sum())
    assert loo.elpd_loo < total  # leaving trials out costs likelihood
    assert loo.n_data_points == 6 * 240


@pytest.mark.slow  # 20–33 s on 2 cores: the slow tier (still run by CI)
def test_grid_posterior_of_one_coefficient():
    """One free coefficient: the NUTS posterior against a numerically integrated grid posterior."""
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.4}), key=jax.random.key(5), n_subjects=2,
                              trials_per_block=40, inverse_temperature=1.0)
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.3}), pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=2, initial_weights={"w": jnp.zeros((1, 2))},
    )
    priors = bayes.Priors(coefficients=bayes.Normal(0.5), observation=None)
    post = bayes.sample(model, syn.data, key=jax.random.key(6), priors=priors, method=bayes.NUTS(warmup=300, samples=700))
    grid = jnp.linspace(-1.0, 2.0, 3001)
    ll = jax.vmap(lambda t: jnp.sum(model.__class__(model.rule.with_coefficients({"x*r": t}), model.network, model.observation,
                                                    model.initial_weights).log_likelihood(syn.data)))(grid)
    logp = np.asarray(ll) - 0.5 * (np.asarray(grid) / 0.5) ** 2
    p = np.exp(logp - logp.max())
    p /= p.sum()
    g = np.asarray(grid)
    mean = (p * g).sum()
    sd = np.sqrt((p * (g - mean) ** 2).sum())
    draws = post.draws("theta")[..., 0].ravel()
    assert draws.mean() == pytest.approx(mean, abs=0.1 * sd)
    assert draws.std() == pytest.approx(sd, rel=0.1)
    cdf = np.cumsum(p)
    assert np.quantile(draws, 0.05) == pytest.approx(g[np.searchsorted(cdf, 0.05)], abs=0.15 * sd)


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_bad_run_warns_with_advice():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.4}), key=jax.random.key(7), n_subjects=1,
                              trials_per_block=20, inverse_temperature=1.0)
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.0, "r": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False),
        initial_weights={"w": jnp.zeros((1, 2))},
    )
    # 'r' moves both options' weights alike: unidentified; a 10-draw run cannot converge
    with pytest.warns(bayes.PosteriorWarning, match="R-hat|ESS"):
        post = bayes.sample(model, syn.data, key=jax.random.key(8), method=bayes.NUTS(warmup=10, samples=10))
    assert any("what" in m or "Run" in m or "Draw" in m for m in post.diagnostics())


def test_sample_rejects_mismatched_data():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.4}), key=jax.random.key(7), n_subjects=2, trials_per_block=10)
    model = pi.PlasticityModel.create(pi.TaylorRule.from_terms({"x*r": 0.0}), pi.ChoiceCircuit(2), pi.BernoulliChoice(),
                                      initial_weights={"w": jnp.zeros((1, 2))})
    with pytest.raises(pi.ModelError, match="n_trajectories=2"):
        bayes.sample(model, syn.data, key=jax.random.key(0))
    with pytest.raises(pi.ModelError, match="NUTS"):
        model2 = pi.PlasticityModel.create(model.rule, model.network, model.observation, n_trajectories=2,
                                           initial_weights={"w": jnp.zeros((1, 2))})
        bayes.sample(model2, syn.data, key=jax.random.key(0), method="nuts")

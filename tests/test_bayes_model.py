"""The NumPyro model shares the engine's likelihood; priors, parameter groups and warm starts are consistent."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.bayes import ModelSpec, parameter_groups


def _choice_model(n, terms=("x*r", "w"), values=(0.4, -0.05), **kw):
    rule = pi.TaylorRule.from_terms(dict(zip(terms, values)), **kw)
    return pi.PlasticityModel.create(
        rule, pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, 0.1, learn_temperature=False), n_trajectories=n,
        initial_weights={"w": jnp.zeros((1, 2))},
    )


@pytest.fixture(scope="module")
def choice_data():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}), key=jax.random.key(11), n_subjects=3,
                              trials_per_block=40, inverse_temperature=1.0)
    return syn.data


def test_groups_skip_fixed_terms_and_held_parameters():
    model = _choice_model(2, ("x*r", "w", "x"), (0.1, 0.2, 0.3), fixed=["x"])
    groups = {g.name: g for g in parameter_groups(model)}
    assert set(groups) == {"theta", "bias", "initial_w"}  # β held (learn_temperature=False), no expectation rate
    assert groups["theta"].labels == ("x*r", "w")
    np.testing.assert_allclose(groups["theta"].get(model), [0.1, 0.2])
    new = groups["theta"].set(model, jnp.asarray([1.0, 2.0]))
    np.testing.assert_allclose(new.rule.coeffs, [1.0, 2.0, 0.3])  # the fixed term keeps its value
    assert groups["initial_w"].shape == (2, 1, 2)
    rpe = pi.PlasticityModel(model.rule, pi.ChoiceCircuit(2, reward_expectation=True), model.observation, model.initial_weights)
    assert "network_expectation_logit" in {g.name for g in parameter_groups(rpe)}
    assert bayes.count_free_parameters(model, per_trajectory=True) == 2 + 1 + 2
    assert bayes.count_free_parameters(model) == 2 + 1 + 4


def test_pointwise_is_the_engine_likelihood(choice_data):
    model = _choice_model(3)
    spec = ModelSpec(model, bayes.Priors())
    values = {"theta": jnp.asarray([0.3, -0.02]), "bias": jnp.asarray(0.2)}
    got = spec.pointwise(values, choice_data)
    m = eqx.tree_at(lambda m: (m.rule.coeffs, m.observation.bias), model, (values["theta"], values["bias"]))
    np.testing.assert_allclose(got, m.log_likelihood(choice_data), rtol=1e-12)
    # masked-out trials contribute nothing
    masked = choice_data.with_mask(jnp.zeros_like(choice_data.mask).at[:, :10].set(True))
    ll = spec.pointwise(values, masked)
    assert np.all(np.asarray(ll)[:, 10:] == 0.0) and np.all(np.asarray(ll)[:, :10] < 0.0)


def test_hierarchical_likelihood_matches_per_subject_models(choice_data):
    model = _choice_model(3)
    spec = ModelSpec(model, bayes.Priors(), bayes.Hierarchical())
    theta = jnp.asarray([[0.3, -0.02], [0.5, -0.04], [0.1, 0.0]])
    bias = jnp.asarray([0.1, -0.2, 0.3])
    got = np.asarray(spec.pointwise({"theta": theta, "bias": bias}, choice_data))
    for s in range(3):  # oracle: an ordinary single-subject model per subject
        m = eqx.tree_at(lambda m: (m.rule.coeffs, m.observation.bias), _choice_model(1), (theta[s], bias[s]))
        np.testing.assert_allclose(got[s], m.log_likelihood(choice_data.trajectory(s))[0], rtol=1e-12)


def test_numpyro_model_log_density_is_prior_plus_likelihood(choice_data):
    model = _choice_model(3)
    priors = bayes.Priors(coefficients=bayes.Laplace(0.5), observation=bayes.Normal(2.0))
    spec = ModelSpec(model, priors)
    params = {"theta": jnp.asarray([0.3, -0.02]), "bias": jnp.asarray(0.2)}
    with jax.numpy_dtype_promotion("standard"):
        logp, _ = numpyro.infer.util.log_density(spec.numpyro_model, (choice_data,), {}, params)
    from scipy import stats

    expected = (
        stats.laplace.logpdf([0.3, -0.02], scale=0.5).sum()
        + stats.norm.logpdf(0.2, scale=2.0)
        + float(jnp.sum(spec.pointwise(params, choice_data)))
    )
    assert float(logp) == pytest.approx(expected, rel=1e-10)


def test_horseshoe_warm_start_reproduces_the_value():
    prior = bayes.RegularisedHorseshoe(global_scale=0.1, slab_scale=2.0)
    value = jnp.asarray([0.0, 0.03, -0.8, 1.5])
    latent = prior.latent_values("theta", value)
    with jax.numpy_dtype_promotion("standard"):
        tr = numpyro.handlers.trace(numpyro.handlers.substitute(lambda: prior.sample("theta", (4,)), data=latent)).get_trace()
    np.testing.assert_allclose(tr["theta"]["value"], value, atol=1e-12)
    assert np.all(np.abs(np.asarray(latent["theta_z"])) <= 2.0)  # the start is typical for z ~ N(0, 1)


def test_per_term_prior_scales_and_errors():
    model = _choice_model(1)
    spec = ModelSpec(model, bayes.Priors(coefficients=bayes.Normal(scale={"w": 0.05, "default": 1.0})))
    g = spec.groups[0]
    np.testing.assert_allclose(spec.prior_for(g).variance(g.shape, g.labels), [1.0, 0.05**2])
    with pytest.raises(bayes.PriorError, match="not sampled"):
        ModelSpec(model, bayes.Priors(coefficients=bayes.Normal(scale={"y": 1.0})))
    with pytest.raises(bayes.PriorError, match="nothing to sample"):
        ModelSpec(_choice_model(1, fixed=["x*r", "w"]), bayes.Priors(observation=None))
    assert bayes.laplace_scale_for_l1(0.01, 1000) == pytest.approx(0.1)


def test_warm_start_from_independent_fit(choice_data):
    model = _choice_model(3)
    per_subject = eqx.filter_vmap(lambda t: eqx.tree_at(lambda m: m.rule.coeffs, _choice_model(1), t))(
        jnp.asarray([[0.2, -0.01], [0.4, -0.03], [0.6, -0.05]])
    )
    fake = pi.FitResult(per_subject, per_subject, np.zeros((3, 1, 1)), None, np.zeros(0), np.zeros(3, int), np.full((3, 1), -1),
                        False, 1, independent=True)
    spec = ModelSpec(model, bayes.Priors(), bayes.Hierarchical(observation=False))
    latent = spec.latent_init(fake)
    np.testing.assert_allclose(latent["theta_mu"], [0.4, -0.03])
    recon = latent["theta_mu"] + latent["theta_tau"] * latent["theta_z"]
    np.testing.assert_allclose(recon, [[0.2, -0.01], [0.4, -0.03], [0.6, -0.05]], atol=1e-12)


def test_likelihood_compression_only_touches_astronomical_values():
    """Regions where a rule makes weights explode (log-lik ≈ −1e200) keep finite gradients; plausible
    log-likelihoods are untouched; NaN (overflowed weights) becomes −inf, a divergence for NUTS."""
    from plasticinfer.bayes._numpyro_model import LOG_LIKELIHOOD_FLOOR, _compress

    for v in (0.0, -3.5, -1e4, -0.999 * LOG_LIKELIHOOD_FLOOR):
        assert float(_compress(jnp.asarray(v))) == v
    xs = -jnp.logspace(7, 250, 50)
    ys = jax.vmap(_compress)(xs)
    assert np.all(np.diff(np.asarray(ys)) < 0)  # still monotone: worse stays worse
    assert np.all(np.asarray(ys) > -1e11) and np.all(np.asarray(ys) <= -1e7)
    g = jax.vmap(jax.grad(_compress))(xs)
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) > 0)
    at = LOG_LIKELIHOOD_FLOOR
    left, right = float(_compress(jnp.asarray(-at * (1 + 1e-9)))), float(_compress(jnp.asarray(-at * (1 - 1e-9))))
    assert abs(left - right) < 1.0  # continuous at the floor
    assert float(_compress(jnp.asarray(jnp.nan))) == -np.inf

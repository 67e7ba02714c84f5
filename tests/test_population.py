"""PopulationModel: subjects' rule parameters drawn from N(μ, σ²), scored by their marginal likelihood."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.bayes._groups import count_free_parameters
from plasticinfer.compare import PopulationModel, QAgentRule, agent_model

from test_agents import _simulate_agent


def _data(alphas, key):
    parts = [_simulate_agent(QAgentRule(float(a)), pi.BernoulliChoice(3.0, 0.0), 1, jax.random.fold_in(key, i)) for i, a in enumerate(alphas)]
    return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, 0), *parts)


def _per_subject(model, data):
    with jax.numpy_dtype_promotion("standard"):
        return np.asarray(model.log_likelihood(data)).sum(-1)


@pytest.fixture(scope="module")
def data():
    return _data([0.1, 0.5, 0.3], jax.random.key(7))


def _model(data):
    return agent_model(QAgentRule(0.3), pi.BernoulliChoice(3.0, 0.0, learn_temperature=False), data)


def test_marginal_is_the_log_mean_of_the_draws_likelihoods(data):
    """The implementation's oracle: log (1/M) Σ_k p(y_s | θ_k) over the model's own draws, each scored by a plain model."""
    pm = eqx.tree_at(lambda m: m.log_scale, PopulationModel.from_model(_model(data), n_draws=8), jnp.asarray([0.7]))
    rules = pm.subject_rules()
    per_draw = np.stack([
        _per_subject(eqx.tree_at(lambda m: m.rule, _model(data), jax.tree_util.tree_map(lambda a: a[k], rules)), data) for k in range(8)
    ])
    expected = np.log(np.mean(np.exp(per_draw - per_draw.max(0)), axis=0)) + per_draw.max(0)
    got = np.asarray(pm.log_likelihood(data))
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-10)
    assert np.all(got[:, 1:] == 0)  # the marginal does not factor over trials: it sits in the first column
    # the draws are μ + σ·ε with σ = exp(0.7) and ε standard normal from the model's key
    eps = np.asarray(jax.random.normal(pm.key, (8, 1), jnp.float64))[:, 0]
    np.testing.assert_allclose(np.asarray(rules.alpha_logit), float(pm.rule.alpha_logit) + np.exp(0.7) * eps, rtol=1e-12)


def test_marginal_agrees_with_quadrature(data):
    """With 16,384 draws the Monte Carlo marginal matches a 60-node Gauss–Hermite integral over the logit."""
    base = _model(data)
    mu, sigma = float(base.rule.alpha_logit), 0.8
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    at = jax.jit(jax.vmap(lambda z: eqx.tree_at(lambda m: m.rule.alpha_logit, base, mu + sigma * z).log_likelihood(data).sum(-1)))
    lls = np.asarray(at(jnp.asarray(nodes)))
    top = lls.max(0)
    quad = np.log(np.sum(weights[:, None] * np.exp(lls - top), axis=0) / np.sqrt(2 * np.pi)) + top
    pm = eqx.tree_at(lambda m: m.log_scale, PopulationModel.from_model(base, n_draws=16384), jnp.asarray([np.log(sigma)]))
    np.testing.assert_allclose(np.asarray(jax.jit(lambda m: m.log_likelihood(data).sum(-1))(pm)), quad, atol=0.05)


def test_no_spread_is_the_shared_model(data):
    base = _model(data)
    pm = eqx.tree_at(lambda m: m.log_scale, PopulationModel.from_model(base), jnp.asarray([-40.0]))
    np.testing.assert_allclose(_per_subject(pm, data), _per_subject(base, data), rtol=1e-10)


def test_population_counts_its_spread_as_parameters_and_refuses_bad_settings(data):
    base = _model(data)
    pm = PopulationModel.from_model(base)
    assert count_free_parameters(pm, initial_weights=False) == count_free_parameters(base, initial_weights=False) + 1
    with pytest.raises(pi.ModelError, match="scale"):
        PopulationModel.from_model(base, scale=0.0)
    with pytest.raises(pi.ModelError, match="n_draws"):
        PopulationModel.from_model(base, n_draws=1)


@pytest.mark.slow
def test_population_fit_finds_the_spread_and_predicts_unseen_animals_better_than_a_shared_rule():
    """The control: animals whose learning rates differ (0.1 or 0.5) are predicted better, on animals the fit never
    saw, by the population than by one shared rule; animals that share one rate (0.3) get a smaller fitted spread."""
    key = jax.random.key(11)
    mixed = _data([0.1, 0.5] * 6, key)
    same = _data([0.3] * 12, jax.random.fold_in(key, 1))
    policy = pi.BernoulliChoice(3.0, 0.0, learn_temperature=False)
    hyps = {
        "shared": agent_model(QAgentRule(0.3), policy, mixed),
        "population": PopulationModel.from_model(agent_model(QAgentRule(0.3), policy, mixed), n_draws=32),
    }
    res = pi.compare.compare(hyps, mixed, split=pi.compare.SubjectKFold(k=2, seed=0), per_subject=False, baselines=False,
                             fit_initial_weights=False, steps=40, restarts=1, progress=False)
    ps = res.per_subject().pivot(index="subject", columns="hypothesis", values="heldout_ll")
    assert ps["population"].sum() > ps["shared"].sum() + 2.0
    fit_mixed = pi.fit(hyps["population"], mixed, steps=40, fit_initial_weights=False, progress=False).model
    pm_same = PopulationModel.from_model(agent_model(QAgentRule(0.3), policy, same), n_draws=32)
    fit_same = pi.fit(pm_same, same, steps=40, fit_initial_weights=False, progress=False).model
    assert float(fit_mixed.scale[0]) > 0.6 and float(fit_same.scale[0]) < 0.5 * float(fit_mixed.scale[0])

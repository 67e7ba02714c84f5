"""The fly analysis: finite numbers on the real data, no leakage from held-out trials, synthetic recovery."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.fly import analyse_choices, deviance_explained, get_hypotheses
from plasticinfer.fly._report import write_report


@pytest.fixture(scope="module")
def flies(shared_data):
    return pi.datasets.load("rajagopalan2023", path=shared_data).isel(subject=slice(0, 4))


@pytest.mark.slow
def test_real_flies_give_finite_scores_and_a_report(flies, tmp_path):
    a = analyse_choices(flies, ["x·r", "x·r + w"], key=jax.random.key(0), steps=20, in_sample=True)
    s = a.scores
    assert s.sizes == {"hypothesis": 3, "subject": 4}  # base rate is always added
    for v in ("heldout_loglik", "insample_loglik", "de_coin_heldout", "de_base_heldout"):
        assert np.all(np.isfinite(s[v].values)), v
    assert np.all(s["de_base_heldout"].sel(hypothesis="base rate").values == 0)
    # held-out trials: the last 20 % of each block (16 of 80)
    assert int(s["n_heldout"].values[0]) == 3 * 16
    paths = write_report(a, tmp_path)
    text = paths["report"].read_text()
    assert "Wilcoxon" in text and "5.85 %" in text
    assert (tmp_path / "traces.png").stat().st_size > 10_000


def test_heldout_observations_never_reach_the_fit(flies):
    """Changing the recorded choices of held-out trials (not the inputs the fly learned from) leaves the fit unchanged."""
    from plasticinfer._convert import choice_data

    data = choice_data(flies)
    train, held = data.split_trials(0.2, groups=flies["block"].values)
    assert not np.any(np.asarray(train.mask) & np.asarray(held.mask))
    flipped_obs = jnp.where(held.mask, 1 - data.observations, data.observations)
    tampered = pi.TrialData(data.inputs, flipped_obs, train.mask)
    h = get_hypotheses(["x·r + w"])["x·r + w"]
    model = h.model(4, key=jax.random.key(0))
    a = pi.fit_independent(model, train, steps=15, progress=False)
    b = pi.fit_independent(model, tampered, steps=15, progress=False)
    np.testing.assert_array_equal(np.asarray(a.model.rule.coeffs), np.asarray(b.model.rule.coeffs))


def test_deviance_explained_oracle():
    assert deviance_explained([-50.0], [-50.0])[0] == 0.0
    assert deviance_explained([-45.0], [-50.0])[0] == pytest.approx(0.1)
    assert deviance_explained([0.0], [-50.0])[0] == 1.0


@pytest.mark.slow
def test_synthetic_flies_same_trial_structure_recovered_with_covering_intervals(flies):
    """Known rule x·r + w, the real flies' block schedule; the fitted rule's 95 % intervals cover the truth."""
    p = jnp.asarray(np.nan_to_num(flies["p_reward"].transpose("subject", "trial", "option").values))
    truth = pi.TaylorRule.from_terms({"x*r": 0.8, "w": -0.08})
    n_subj = 18
    p18 = jnp.concatenate([p] * 5)[:n_subj]
    model_true = pi.PlasticityModel.create(
        truth, pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, 0.0, lapse=0.01), n_trajectories=n_subj,
        initial_weights={"w": jnp.zeros((1, 2))},
    )
    data, _ = pi.simulate_choices(model_true, pi.one_hot_cues(2), p18, key=jax.random.key(7))
    h = get_hypotheses(["x·r + w"])["x·r + w"]
    model = h.model(n_subj, key=jax.random.key(1))
    res = pi.fit(model, data, steps=60, fit_initial_weights=False, fit_observation=False, progress=False)
    iv = pi.laplace_intervals(res.model, data)
    for term, value in truth.coefficients.items():
        assert iv.loc[term, "lower"] <= value <= iv.loc[term, "upper"], (term, iv)
    assert iv.loc["x*r", "se"] < 0.3  # informative, not vacuous


@pytest.mark.slow
def test_hierarchical_fit_recovers_population_decay(shared_data, tmp_path):
    """Flies whose own coefficients scatter around a population with negative decay, on the real
    flies' reward schedule: the population mean's 90 % interval covers the truth, P(μ(w) < 0) is
    high, and the report carries the posterior."""
    from plasticinfer import bayes
    from plasticinfer.fly import hierarchical_fit

    n = 6
    flies = pi.datasets.load("rajagopalan2023", path=shared_data).isel(subject=slice(0, n))
    p = jnp.asarray(np.nan_to_num(flies["p_reward"].transpose("subject", "trial", "option").values))
    rng = np.random.default_rng(3)
    xr_true = 0.8 + 0.1 * rng.standard_normal(n)
    w_true = -0.08 + 0.01 * rng.standard_normal(n)
    choices, rewards = [], []
    for s in range(n):
        m = pi.PlasticityModel.create(
            pi.TaylorRule.from_terms({"x*r": float(xr_true[s]), "w": float(w_true[s])}), pi.ChoiceCircuit(2),
            pi.BernoulliChoice(1.0, 0.0, lapse=0.01), n_trajectories=1, initial_weights={"w": jnp.zeros((1, 2))},
        )
        d, _ = pi.simulate_choices(m, pi.one_hot_cues(2), p[s : s + 1], key=jax.random.key(100 + s))
        choices.append(np.asarray(d.observations[0]))
        rewards.append(np.asarray(d.inputs["reward"][0]))
    tm = flies["trial_mask"].transpose("subject", "trial").values
    ds = flies.copy()
    ds["choice"] = (("subject", "trial"), np.where(tm, np.stack(choices), ds["choice"].transpose("subject", "trial").values))
    ds["reward"] = (("subject", "trial"), np.where(tm, np.stack(rewards), ds["reward"].transpose("subject", "trial").values))

    pop = hierarchical_fit(ds, "x·r + w", key=jax.random.key(0), method=bayes.NUTS(warmup=150, samples=150), start_steps=40)
    mu = pop.posterior.idata.posterior["theta_mu"]
    for term, value in {"x*r": 0.8, "w": -0.08}.items():
        lo, hi = np.quantile(mu.sel(term=term).values, [0.05, 0.95])
        assert lo <= value <= hi, (term, lo, hi)
    assert pop.probability_decay_negative() > 0.9
    per = pop.per_subject()
    assert list(per.index) == [str(s) for s in flies["subject"].values]
    assert per["P(w < 0)"].between(0, 1).all() and (per["P(w < 0)"] > 0.5).sum() >= n - 1
    assert "P(population decay" in str(pop)

    a = analyse_choices(ds, ["x·r + w"], key=jax.random.key(0), steps=10, in_sample=False)
    paths = write_report(a, tmp_path, posterior=pop)
    text = paths["report"].read_text()
    assert "Hierarchical posterior" in text and "P(w < 0)" in text
    assert (tmp_path / "posterior.png").stat().st_size > 10_000
    back = bayes.Posterior.load(tmp_path / "posterior.nc", like=pop.posterior.spec.template,
                                priors=pop.posterior.spec.priors, hierarchical=pop.posterior.spec.hierarchical)
    np.testing.assert_allclose(back.draws("theta_mu"), pop.posterior.draws("theta_mu"))

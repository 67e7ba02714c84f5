"""Bayesian, discovery and meta-learning entry points given plausible mistakes: each once ran on and returned
wrong numbers (a sampler with a negative step size, a posterior read against other priors, another subject's
rule, a misspelt normalisation) or died in a bare traceback; now each gives a library error naming the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.errors import DiscoveryError, ModelError, PriorError


@pytest.fixture(scope="module")
def choice_problem():
    from tests.test_distributed import _problem  # 4 subjects of a two-term choice model

    return _problem()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: bayes.SVI(learning_rate=-1.0), "SVI.learning_rate must be > 0; got -1.0"),
        (lambda: bayes.SVI(steps=0), "SVI.steps must be ≥ 1"),
        (lambda: bayes.SVI(draws=0), "SVI.draws must be ≥ 1"),
        (lambda: bayes.SVI(guide="AutoNormal"), "SVI.guide must be an autoguide class"),
        (lambda: bayes.SVI(final_fraction=2.0), "SVI.final_fraction must be ≥ 0 and ≤ 1; got 2.0"),
        (lambda: bayes.NUTS(max_tree_depth=0), "NUTS.max_tree_depth must be ≥ 1"),
        (lambda: bayes.NUTS(target_accept=1.5), r"NUTS.target_accept \(a probability, e.g. 0.8 or 0.95\) must be > 0 and < 1; got 1.5"),
        (lambda: bayes.NUTS(samples=2.5), "NUTS.samples must be an integer"),
        (lambda: bayes.NUTS(init_jitter=-1.0), "NUTS.init_jitter must be ≥ 0; got -1.0"),
    ],
)
def test_sampler_settings_are_checked_when_built(make, match):
    with pytest.raises(ModelError, match=match):
        make()


def test_numbers_of_every_kind_pass_the_checks():
    """NumPy and JAX scalars, whole floats for counts, and an infinite clip norm are valid settings."""
    nuts = bayes.NUTS(target_accept=np.float32(0.9), init_jitter=jnp.asarray(0.01), warmup=100.0, samples=np.int64(50))
    assert nuts.warmup == 100 and isinstance(nuts.warmup, int) and nuts.samples == 50
    svi = bayes.SVI(learning_rate=np.float32(0.01), final_fraction=np.float64(0.1), clip_norm=np.inf, steps=1e3)
    assert svi.steps == 1000 and isinstance(svi.steps, int)
    from plasticinfer.discovery import gradient_search

    res = gradient_search(_quadratic(), key=jax.random.key(0), restarts=np.int64(2), steps=np.int64(4), l1=np.float32(1e-3),
                          init_scale=jnp.asarray(0.1), progress=False)
    assert res.n_restarts == 2 and res.loss_history.shape[-1] == 4


def test_sample_arguments_are_checked(choice_problem):
    model, data = choice_problem
    with pytest.raises(ModelError, match="hierarchical must be pi.bayes.Hierarchical"):
        bayes.sample(model, data, key=jax.random.key(0), hierarchical=True)
    with pytest.raises(ModelError, match="init must be a PlasticityModel or the result of fit"):
        bayes.sample(model, data, key=jax.random.key(0), init="map")
    with pytest.raises(PriorError, match="HalfNormal prior scale must be positive"):
        bayes.sample(model, data, key=jax.random.key(0), hierarchical=bayes.Hierarchical(),
                     priors=bayes.Priors(population_scale=bayes.HalfNormal(-1.0)))


@pytest.fixture(scope="module")
def svi_posterior(choice_problem):
    model, data = choice_problem
    priors = bayes.Priors(coefficients=bayes.Normal(0.5))
    post = bayes.sample(model, data, key=jax.random.key(1), priors=priors, method=bayes.SVI(steps=40, draws=20), warn=False, progress=False)
    return post, priors


def test_posterior_load_checks_the_priors_it_was_sampled_with(svi_posterior, choice_problem, tmp_path):
    post, priors = svi_posterior
    model, _ = choice_problem
    path = post.save(tmp_path / "post.nc")
    back = bayes.Posterior.load(path, like=model, priors=priors)
    np.testing.assert_array_equal(back.draws("theta"), post.draws("theta"))
    with pytest.raises(pi.DataError, match=r"sampled with priors=.*Normal\(scale=0.5.*not given priors= or hierarchical= \(the defaults\)"):
        bayes.Posterior.load(path, like=model)
    with pytest.raises(pi.DataError, match=r"sampled with priors=.*given priors=.*Normal\(scale=0.01"):
        bayes.Posterior.load(path, like=model, priors=bayes.Priors(coefficients=bayes.Normal(0.01)))
    # the same priors written another way load
    for same in (bayes.Normal({"w": 0.5, "x*r": 0.5}), bayes.Normal(np.float64(0.5)), bayes.Normal({"default": 0.5})):
        bayes.Posterior.load(path, like=model, priors=bayes.Priors(coefficients=same))
    with pytest.raises(ModelError, match="Posterior.load .* needs a PlasticityModel"):
        bayes.Posterior.load(path, like=None)


def test_subject_model_refuses_a_subject_that_is_not_there(svi_posterior):
    post, _ = svi_posterior
    assert post.subject_model(3).n_trajectories == 1
    np.testing.assert_array_equal(post.subject_model(-1).rule.coeffs, post.subject_model(3).rule.coeffs)  # as a list index
    for bad in (4, -5, 1.0):
        with pytest.raises(ModelError, match=r"subject must be an integer in 0 … 3 \(or −4 … −1 from the end;"):
            post.subject_model(bad)


def test_svi_loss_that_rose_is_reported(svi_posterior):
    post, _ = svi_posterior
    rising = bayes.Posterior(post.idata, post.spec, post.method, post.seconds, np.linspace(900.0, 5e10, 200))
    assert any(m.startswith("SVI's loss rose from 2.387e+09") and "not a posterior" in m for m in rising.diagnostics())
    falling = bayes.Posterior(post.idata, post.spec, post.method, post.seconds, np.r_[np.linspace(900, 100, 100), np.full(100, 100.0)])
    assert not any("rose" in m for m in falling.diagnostics())


def test_summary_and_calibration_intervals_are_fractions(svi_posterior, choice_problem):
    post, _ = svi_posterior
    with pytest.raises(ModelError, match=r"interval \(a fraction, e.g. 0.9 for the central 90 % interval\) must be > 0 and < 1; got 90"):
        post.summary(interval=90)
    model, data = choice_problem
    sim = lambda m, k: pi.simulate(m, data.inputs).trajectory  # noqa: E731 - never reached
    nuts = bayes.NUTS(warmup=5, samples=5, chains=1)
    for kwargs, match in [
        ({"n_rank_draws": -5}, "n_rank_draws must be ≥ 1"),
        ({"n_rank_draws": 0}, "n_rank_draws must be ≥ 1"),
        ({"interval": 90}, r"interval \(a fraction"),
        ({"method": bayes.SVI(steps=5)}, "simulation_based_calibration runs NUTS"),
    ]:
        with pytest.raises(ModelError, match=match):
            bayes.simulation_based_calibration(model, sim, key=jax.random.key(0), n_datasets=2, method=kwargs.pop("method", nuts),
                                               progress=False, **kwargs)


# ---- discovery ---------------------------------------------------------------------------------------------------


def _quadratic():
    from tests.test_discovery_search import CENTRE, WEIGHTS, Quadratic

    return Quadratic(CENTRE, WEIGHTS)


def test_search_arguments_need_an_objective_a_key_and_non_negative_sizes():
    from plasticinfer.discovery import cma_search, gradient_search

    obj = _quadratic()
    for search in (gradient_search, cma_search):
        with pytest.raises(DiscoveryError, match="needs key=jax.random.key"):
            search(obj, key=None, progress=False)
        with pytest.raises(DiscoveryError, match="key must be a JAX PRNG key"):
            search(obj, key=0, progress=False)
        with pytest.raises(DiscoveryError, match="needs an objective such as PC1Objective"):
            search(None, key=jax.random.key(0), progress=False)
        with pytest.raises(DiscoveryError, match=r"l1 must be a non-negative number \(0 for no sparsity penalty\); got -1.0"):
            search(obj, key=jax.random.key(0), l1=-1.0, progress=False)
        with pytest.raises(DiscoveryError, match="init_scale must be ≥ 0"):
            search(obj, key=jax.random.key(0), init_scale=-1.0, progress=False)


def test_pruning_happens_after_its_share_of_the_steps():
    import optax
    from plasticinfer.discovery import gradient_search

    obj = _quadratic()
    kw = dict(key=jax.random.key(0), restarts=2, optimiser=optax.adam(5e-2), clip_norm=None, prune=0.25, progress=False)
    res = gradient_search(obj, steps=20, **kw)  # 60 % of 20: step 12, inside the second chunk of 10
    assert res.settings["prune_step"] == 12
    history = res.loss_history
    assert np.isfinite(history).all() and history.shape[-1] == 20
    assert gradient_search(obj, steps=2, **kw).settings["prune_step"] == 1  # the fewest steps that can prune
    with pytest.warns(pi.errors.PlasticInferWarning, match="not pruned: after 0.6 of 1 steps is step 1"):
        assert gradient_search(obj, steps=1, **kw).settings["prune_step"] is None
    with pytest.warns(pi.errors.PlasticInferWarning, match="not pruned: after 0.05 of 5 steps is step 0, at the random start"):
        short = gradient_search(obj, steps=5, **{**kw, "prune_at": 0.05})
    assert short.settings["prune_step"] is None and (np.asarray(short.rules.coeffs) != 0).all()  # nothing zeroed


def test_families_refuse_an_unknown_reference():
    from plasticinfer.discovery import find_families
    from tests.test_discovery_search import _fake_result

    res = _fake_result([[-0.2, 0.0, 1.0, 1.0], [-0.4, 0.0, 2.1, 1.9]], [True, True])
    assert find_families(res, reference="alpha")[0].median["alpha"] == pytest.approx(-1.0)
    with pytest.raises(DiscoveryError, match="reference='alhpa' is not a parameter of these rules.*'alpha'"):
        find_families(res, reference="alhpa")
    failed = _fake_result([[-0.2, 0.0, 1.0, 1.0]], [False])  # no successful solution: still refused, not []
    assert find_families(failed, reference="alpha") == []
    with pytest.raises(DiscoveryError, match="reference='alhpa' is not a parameter"):
        find_families(failed, reference="alhpa")


def test_memory_verdict_is_a_whole_sentence():
    from plasticinfer.discovery._memory import MemoryGroup, memory_report

    rng = np.random.default_rng(0)
    strong = MemoryGroup("posterior", np.full(8, 0.9), np.ones(8), np.full(100, 0.5))
    weak = MemoryGroup("prior", np.full(8, 0.6), np.ones(8), np.full(100, 0.5))
    chance = MemoryGroup("posterior", np.full(8, 0.5), np.ones(8), np.full(100, 0.6))
    won = memory_report({"posterior": strong, "prior": weak}, "posterior", np.full(8, 0.6), rng=rng).verdict
    assert "above every control" in won
    lost = memory_report({"posterior": chance, "prior": weak}, "posterior", np.full(8, 0.6), rng=rng).verdict
    assert lost.startswith("No memory claim") and lost.endswith(".") and not lost.endswith("; .")
    below_chance_only = memory_report(
        {"posterior": MemoryGroup("posterior", np.full(8, 0.9), np.ones(8), np.full(100, 0.95)), "prior": weak},
        "posterior", np.full(8, 0.6), rng=rng,
    ).verdict
    assert below_chance_only == "No memory claim for posterior rules: mean AUC is not above the shuffled-label 95th percentile."


# ---- meta-learning -----------------------------------------------------------------------------------------------


def test_meta_learning_arguments_are_checked():
    from plasticinfer.metalearn import FeedbackNetwork, meta_learn

    with pytest.raises(ModelError, match="meta_learn needs a pi.metalearn.LocalRule.*got TaylorRule"):
        meta_learn(pi.TaylorRule(["x*y"]), None, None, key=jax.random.key(0))
    with pytest.raises(ModelError, match="FeedbackNetwork.feedback must be RandomFeedback"):
        FeedbackNetwork((4, 3, 2), "random")
    ev = _evaluation({"meta": [0.5, 0.6], "fa": [0.4, 0.4], "bp": [0.4, 0.4]})
    assert np.isnan(ev.gap_closed("meta", "fa", "bp"))
    assert _evaluation({"meta": [0.5, 0.5], "fa": [0.4, 0.4], "bp": [0.6, 0.6]}).gap_closed("meta", "fa", "bp") == pytest.approx(0.5)


def _evaluation(acc):
    from plasticinfer.metalearn import LearnerEvaluation

    names = tuple(acc)
    a = np.asarray([acc[n] for n in names], float)
    return LearnerEvaluation(learners=names, accuracy=a, loss=-a, curve=np.zeros(a.shape + (1,)))


def test_family_task_sizes_are_checked_in_the_library():
    from plasticinfer.discovery._plausibility import FamilyTask
    from plasticinfer.discovery._rule_families import run_families

    with pytest.raises(DiscoveryError, match="at least one excitatory"):
        FamilyTask.create(jax.random.key(0), n_exc=0, n_inh=4)
    with pytest.raises(DiscoveryError, match="segment and duration must be positive"):
        FamilyTask.create(jax.random.key(0), n_exc=8, n_inh=2, segment=0.0)
    task = FamilyTask.create(jax.random.key(0), n_exc=8, n_inh=2, duration=0.2, transient=0.0, segment=0.1)
    for kwargs, match in [({"batch_size": 0}, "batch_size must be ≥ 1; got 0"), ({"n_predictive": 0}, "n_predictive must be")]:
        with pytest.raises(DiscoveryError, match=match):
            run_families(jax.random.key(1), task, n_simulations=20, **kwargs)


@pytest.mark.parametrize(
    "make, match",
    [
        # the objective scores against axis 0: an unsorted spectrum scored Oja's rule against the wrong vector
        (lambda d: d.PC1Objective.create(None, 3).with_spectrum([0.5, 1.0, 0.1]), r"list the spectrum largest first"),
        (lambda d: d.PC1Objective.create(None, 3).with_spectrum([1.0, -0.5, 0.1]), r"finite and non-negative"),
        (lambda d: d.PC1Objective.create(None, 3).with_spectrum([1.0, 1.0, 0.1]), r"strictly largest"),
        # a negative norm reversed every gradient (the search climbed the loss); 0 froze it
        (lambda d: d.gradient_search(d.PC1Objective.create(None, 3), key=jax.random.key(0), restarts=1, steps=2, clip_norm=-1.0,
                                     progress=False), r"clip_norm .* must be > 0; got -1.0"),
        (lambda d: d.gradient_search(d.PC1Objective.create(None, 3), key=jax.random.key(0), restarts=1, steps=2, clip_norm=0,
                                     progress=False), r"clip_norm .* must be > 0; got 0"),
        (lambda d: d.cma_search(d.HomeostasisObjective.create(n_steps=20, measure_steps=10), key=jax.random.key(0), restarts=1, generations=1,
                                popsize=1, progress=False), r"popsize must be at least 2"),
        (lambda d: d.cma_search(d.HomeostasisObjective.create(n_steps=20, measure_steps=10), key=jax.random.key(0), restarts=1, generations=1,
                                popsize=0, progress=False), r"popsize must be ≥ 1|popsize must be at least"),
        (lambda d: d.HomeostasisObjective.create(n_networks=0), r"n_networks, n_steps and n_samples must be at least 1"),
        (lambda d: d.HomeostasisObjective.create().with_rates(nu_inh=-5), r"input rates must be positive"),
        (lambda d: d.generalisation({"same": d.PC1Objective.create(None, 3)}, d.PC1Objective.create(None, 3).reference_rule(),
                                    key=jax.random.key(0)), r"a stack of rules with a leading axis"),
    ],
    ids=["unsorted-spectrum", "negative-eigenvalue", "tied-top", "clip-negative", "clip-zero", "popsize-1", "popsize-0",
         "no-networks", "negative-rate", "one-rule"],
)
def test_discovery_arguments_that_gave_wrong_numbers_or_bare_errors_are_refused(make, match):
    from plasticinfer import discovery

    with pytest.raises(DiscoveryError, match=match):
        make(discovery)


def test_a_search_records_its_default_optimiser_and_family_and_fa_thresholds_are_checked():
    from plasticinfer import discovery, metalearn
    from tests.test_discovery_search import _fake_result

    res = discovery.gradient_search(discovery.PC1Objective.create(None, 3), key=jax.random.key(0), restarts=1, steps=2, progress=False)
    assert res.settings["optimiser"].startswith("Adam 0.03, cosine-decayed")  # was recorded as a user-supplied one
    fake = _fake_result([[-0.2, 0.0, 1.0, 1.0]], [True])
    for bad in (-1, 1.0, 2):
        with pytest.raises(DiscoveryError, match=r"threshold .* must be ≥ 0 and < 1"):
            discovery.find_families(fake, reference="alpha", threshold=bad)
    with pytest.raises(ModelError, match=r"threshold .* must be ≥ 0; got -1"):
        metalearn.feedback_alignment_experiment(threshold=-1, key=jax.random.key(0))


def test_a_pca_network_search_takes_one_rule_for_both_matrices():
    """One rule for W and L is what _rule_for allows; the search's per-term scales needed a dict (AttributeError)."""
    from plasticinfer import discovery

    obj = discovery.PCANetworkObjective.create(None, 4, 2, n_steps=5)
    res = discovery.gradient_search(obj, pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}), key=jax.random.key(0), restarts=1,
                                    steps=2, progress=False)
    assert np.isfinite(np.asarray(res.losses)).all()


def test_generalisation_scores_a_stack_of_another_kind_of_rule():
    """The one-rule check compares with the objective's own kind of rule: a stack of TraceRules searched on a PC1
    objective is scored, not refused as 'one rule'."""
    from plasticinfer import discovery
    from plasticinfer.discovery._homeostasis import TraceRule

    pc1 = discovery.PC1Objective.create(jax.random.key(0), 4, n_samples=8, n_steps=5, n_networks=2)
    res = discovery.gradient_search(pc1, TraceRule(), key=jax.random.key(1), restarts=2, steps=3, progress=False)
    out = discovery.generalisation({"λ₂ = 0.8": pc1.with_spectrum(discovery.decaying_spectrum(4, second=0.8))}, res.rules,
                                   key=jax.random.key(2))
    assert all(np.shape(v) == (2,) for v in out["λ₂ = 0.8"].values())

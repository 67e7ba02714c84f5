"""Simulation-based calibration (small version of benchmarks/bench_calibration.py) and its statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer import bayes
from plasticinfer.bayes import CalibrationResult


def _result(ranks, covered):
    d, k = ranks.shape
    z = np.zeros((d, k))
    return CalibrationResult([f"p{j}" for j in range(k)], z, ranks, 99, covered, 0.9, z, z, np.zeros(d, int), np.ones(d), 1.0)


def test_uniformity_statistics_detect_non_uniform_ranks():
    rng = np.random.default_rng(0)
    uniform = _result(rng.integers(0, 100, (200, 2)), rng.random((200, 2)) < 0.9)
    skewed = _result(np.minimum(rng.integers(0, 100, (200, 2)), rng.integers(0, 100, (200, 2))), np.ones((200, 2), bool))
    assert uniform.uniformity().loc["all", "p_chi2"] > 0.01
    assert skewed.uniformity().loc["all", "p_chi2"] < 1e-6  # an overconfident or biased posterior shows up
    assert skewed.uniformity().loc["p0", "p_ks"] < 1e-6
    assert uniform.coverage["p0"] == pytest.approx(uniform.covered[:, 0].mean())
    assert "coverage" in uniform.summary()
    df = uniform.to_dataframe()
    assert len(df) == 400 and set(df.columns) >= {"dataset", "parameter", "rank", "covered"}


@pytest.mark.slow
def test_sbc_small_rule_is_calibrated(tmp_path):
    n = 1
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}), pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=n, initial_weights={"w": jnp.zeros((1, 2))},
    )
    p, _ = pi.data.block_schedule(((0.2, 0.8), (0.8, 0.2)), 60)
    p = jnp.broadcast_to(p, (n,) + p.shape)
    cues = pi.one_hot_cues(2)
    priors = bayes.Priors(
        coefficients=bayes.Normal(scale={"x*r": 0.3, "w": 0.03}, loc={"x*r": 0.5, "w": -0.05}), observation=None
    )
    res = bayes.simulation_based_calibration(
        model, lambda k, m: pi.data.simulate_choices(m, cues, p, key=k)[0], key=jax.random.key(0), n_datasets=20, priors=priors,
        method=bayes.NUTS(warmup=150, samples=150), n_rank_draws=99,
    )
    assert res.truth.shape == (20, 2) and res.ranks.min() >= 0 and res.ranks.max() <= 99
    assert np.std(res.truth[:, 0]) == pytest.approx(0.3, rel=0.5)  # the truth really is drawn from the prior
    assert 0.75 <= res.overall_coverage <= 1.0, res.summary()
    assert res.uniformity().loc["all", "p_chi2"] > 0.001, res.summary()
    fig = res.plot()
    fig.savefig(tmp_path / "ranks.png")


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_sbc_progress_is_a_bar_or_a_callback_and_changes_no_rank(monkeypatch, capsys):
    """``progress=True`` (default) draws a bar over the datasets where someone watches (forced here: pytest's
    stderr is not a terminal); a callable is called ``(done, total)`` after each dataset instead. The ranks
    do not depend on which."""
    import plasticinfer.bayes._calibration as calibration

    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.5}), pi.ChoiceCircuit(2), pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=1, initial_weights={"w": jnp.zeros((1, 2))},
    )  # fmt: skip
    p, _ = pi.data.block_schedule(((0.2, 0.8), (0.8, 0.2)), 10)
    cues = pi.one_hot_cues(2)
    settings = dict(
        key=jax.random.key(1), n_datasets=3, priors=bayes.Priors(coefficients=bayes.Normal(0.3, loc=0.5), observation=None),
        method=bayes.NUTS(warmup=10, samples=10, chains=1, max_tree_depth=3), n_rank_draws=9,
    )  # fmt: skip
    sim = lambda k, m: pi.data.simulate_choices(m, cues, p[None], key=k)[0]  # noqa: E731
    monkeypatch.setattr(calibration, "show_progress", lambda progress: bool(progress))
    calls = []
    logged = bayes.simulation_based_calibration(model, sim, progress=lambda done, total: calls.append((done, total)), **settings)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert "simulation-based calibration" not in capsys.readouterr().err  # a callback replaces the bar
    shown = bayes.simulation_based_calibration(model, sim, **settings)
    assert "simulation-based calibration" in capsys.readouterr().err
    np.testing.assert_array_equal(shown.ranks, logged.ranks)
    bayes.simulation_based_calibration(model, sim, progress=False, **settings)
    assert "simulation-based calibration" not in capsys.readouterr().err

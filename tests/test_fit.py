import os
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi


def _small_problem(key, n_traj=3, n_trials=120, rule=None):
    rule = rule or pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=0.02)
    k_in, k_data = jax.random.split(key)
    inputs = pi.GaussianInputs.with_spectrum(k_in, jnp.array([2.0, 1.0, 0.5, 0.2]))
    syn = pi.make_activity_data(rule, pi.FeedForward(4, 2), inputs, key=k_data, n_trajectories=n_traj, n_trials=n_trials, init_scale=0.3)
    return syn


def _model(n_traj, key, terms=("x*y", "y^2*w", "w", "x"), lr=0.02):
    rule = pi.TaylorRule(list(terms), learning_rate=lr)
    return pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=n_traj, key=key, init_scale=0.1)


def test_fit_recovers_small_rule_and_beats_truth(getkey):
    syn = _small_problem(getkey())
    res = pi.fit(_model(3, getkey()), syn.data, steps=150, progress=False)
    c = res.model.rule.coefficients
    assert c["x*y"] == pytest.approx(1.0, abs=0.1)
    assert c["y^2*w"] == pytest.approx(-1.0, abs=0.1)
    assert abs(c["w"]) < 0.1 and abs(c["x"]) < 0.1
    # the maximum-likelihood fit must be at least as good as the truth on its own data
    truth = pi.PlasticityModel(
        res.model.rule.with_coefficients({"x*y": 1.0, "y^2*w": -1.0, "w": 0.0, "x": 0.0}),
        res.model.network,
        syn.true_model.observation,
        syn.true_model.initial_weights,
    )
    n = syn.data.n_observed
    assert -res.model.log_likelihood(syn.data).sum() / n <= -truth.log_likelihood(syn.data).sum() / n + 1e-6
    assert res.loss_history.shape == (1, res.steps_run)
    assert np.all(np.diff(res.loss_history[0][np.isfinite(res.loss_history[0])]) <= 1e-9)  # L-BFGS with line search: monotone


def test_objective_is_per_observation(getkey):
    """Duplicating every trajectory doubles the observations but leaves the per-observation objective unchanged."""
    from plasticinfer._fit import trainable_filter
    from plasticinfer._optimise import _make_objective
    import equinox as eqx

    syn = _small_problem(getkey(), n_traj=2, n_trials=30)
    model = _model(2, getkey())
    doubled_data = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), syn.data)
    doubled_model = pi.PlasticityModel(model.rule, model.network, model.observation, jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), model.initial_weights))
    vals = []
    for m, d in [(model, syn.data), (doubled_model, doubled_data)]:
        p, s = eqx.partition(m, trainable_filter(m))
        vals.append(float(_make_objective(s, 0.1)(p, d)))
    assert vals[0] == pytest.approx(vals[1], rel=1e-12)


def test_nan_guard_keeps_best_finite_and_reports(getkey):
    syn = _small_problem(getkey(), n_traj=1, n_trials=60)
    model = _model(1, getkey(), terms=("x*y", "y^2*w", "w^2", "x^2*w^2"), lr=1.0)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = pi.fit(model, syn.data, optimiser=optax.sgd(50.0), steps=20, progress=False)
    assert res.diverged_at[0] >= 0
    assert any("diverged" in str(w.message) for w in rec)
    leaves = jax.tree_util.tree_leaves(res.model)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in leaves if hasattr(l, "dtype") and np.issubdtype(l.dtype, np.floating))
    assert np.isnan(res.loss_history[0, -1])  # no losses recorded after divergence


def test_all_diverged_raises(getkey):
    syn = _small_problem(getkey(), n_traj=1, n_trials=60)
    model = _model(1, getkey(), terms=("x*y", "w^2"), lr=1.0)
    model = pi.PlasticityModel(model.rule.with_coefficients({"w^2": 1e6}), model.network, model.observation, model.initial_weights)
    with pytest.raises(pi.FitDivergedError, match="non-finite"):
        pi.fit(model, syn.data, optimiser=optax.adam(1e-2), steps=5, progress=False)


def test_restarts_choose_best_and_need_key(getkey):
    syn = _small_problem(getkey(), n_traj=2, n_trials=60)
    model = _model(2, getkey())
    with pytest.raises(pi.ModelError, match="PRNG key"):
        pi.fit(model, syn.data, restarts=3, steps=5, progress=False)
    res = pi.fit(model, syn.data, restarts=3, key=getkey(), steps=30, progress=False, optimiser=optax.adam(1e-2))
    assert res.loss_history.shape == (3, 30)
    restart_coeffs = np.asarray(res.restarts.rule.coeffs)
    assert restart_coeffs.shape == (3, 4)
    assert not np.allclose(restart_coeffs[0], restart_coeffs[1])  # restarts were jittered
    best = int(res.best_restart)
    np.testing.assert_allclose(res.model.rule.coeffs, restart_coeffs[best])


def test_early_stopping_on_heldout_split(getkey):
    syn = _small_problem(getkey(), n_traj=2, n_trials=80)
    train, held = syn.data.split_trials(0.25)
    assert not np.any(np.asarray(train.mask) & np.asarray(held.mask))
    res = pi.fit(_model(2, getkey()), train, validation=held, patience=20, eval_every=5, steps=2000, progress=False, optimiser=optax.adam(3e-2))
    assert res.validation_history is not None and res.validation_history.shape[1] == len(res.validation_steps)
    assert res.stopped_early and res.steps_run < 2000


def test_frozen_parts_stay_fixed(getkey):
    syn = _small_problem(getkey(), n_traj=1, n_trials=40)
    model = _model(1, getkey())
    res = pi.fit(model, syn.data, steps=10, fit_initial_weights=False, fit_observation=False, progress=False)
    np.testing.assert_array_equal(res.model.initial_weights["w"], model.initial_weights["w"])
    np.testing.assert_array_equal(res.model.observation.log_sigma, model.observation.log_sigma)
    assert not np.allclose(res.model.rule.coeffs, model.rule.coeffs)


def test_fit_independent_recovers_per_subject_rules(getkey):
    """Two subjects with different true rules: each gets its own estimate."""
    true = [pi.TaylorRule.from_terms({"x*r": 1.0, "w": -0.05}, learning_rate=0.5), pi.TaylorRule.from_terms({"x*r": 0.3, "w": -0.05}, learning_rate=0.5)]
    datas = [pi.make_choice_data(r, key=getkey(), n_subjects=1, inverse_temperature=0.3, trials_per_block=150).data for r in true]
    data = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *datas)
    rule0 = pi.TaylorRule(["x*r", "w"], learning_rate=0.5)
    model = pi.PlasticityModel.create(rule0, pi.ChoiceCircuit(2), pi.BernoulliChoice(0.3, learn_temperature=False), n_trajectories=2, initial_weights={"w": jnp.zeros((1, 2))})
    res = pi.fit_independent(model, data, steps=60, fit_initial_weights=False, progress=False)
    xr_coef = np.asarray(res.model.rule.coeffs[:, 0])
    assert res.coefficients.shape == (2, 2)
    assert xr_coef[0] > xr_coef[1] + 0.3
    assert res.subject(1).rule.coefficients["x*r"] == pytest.approx(float(xr_coef[1]))


def test_save_load_round_trip(tmp_path, getkey):
    syn = _small_problem(getkey(), n_traj=1, n_trials=40)
    model = _model(1, getkey())
    res = pi.fit(model, syn.data, steps=5, progress=False)
    res.save(tmp_path / "fit.nc")
    back = pi.FitResult.load(tmp_path / "fit.nc", like=model)
    np.testing.assert_allclose(back.model.rule.coeffs, res.model.rule.coeffs)
    np.testing.assert_allclose(back.model.initial_weights["w"], res.model.initial_weights["w"])
    np.testing.assert_allclose(back.loss_history, res.loss_history)
    ds = res.to_dataset()
    assert list(ds["term"].values) == list(model.rule.names)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary leftovers
    with pytest.raises(pi.DataError):
        pi.FitResult.load(tmp_path / "missing.nc", like=model)
    (tmp_path / "junk.nc").write_bytes(b"not a netcdf")
    with pytest.raises(pi.DataError, match="junk.nc"):
        pi.FitResult.load(tmp_path / "junk.nc", like=model)


def test_unmasked_nan_in_data_is_reported(getkey):
    syn = _small_problem(getkey(), n_traj=1, n_trials=20)
    obs = syn.data.observations.at[0, 3, :].set(jnp.nan)
    bad = pi.TrialData(syn.data.inputs, obs, jnp.ones_like(obs, bool))
    with pytest.raises(pi.ModelError, match=r"\(trajectory, trial, ...\) = \(0, 3"):
        pi.fit(_model(1, getkey()), bad, steps=2, progress=False)


SHARDING_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_enable_x64", True)
    import plasticinfer as pi
    assert len(jax.devices()) == 2, jax.devices()
    k = jax.random.key(3)
    inputs = pi.GaussianInputs.isotropic(3)
    syn = pi.make_activity_data(pi.oja(0.05), pi.FeedForward(3, 2), inputs, key=k, n_trajectories=2, n_trials=40)
    model = pi.PlasticityModel.create(pi.TaylorRule(["x*y", "y^2*w"], learning_rate=0.05), pi.FeedForward(3, 2),
                                      pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(4))
    kw = dict(restarts=4, key=jax.random.key(5), steps=20, progress=False, optimiser=optax.adam(1e-2))
    two = pi.fit(model, syn.data, **kw)
    one = pi.fit(model, syn.data, devices=jax.devices()[:1], **kw)
    np.testing.assert_allclose(two.restarts.rule.coeffs, one.restarts.rule.coeffs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(two.loss_history, one.loss_history, rtol=1e-12)
    print("SHARDED-OK")
    """
)


def test_sharded_restarts_equal_single_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    script = tmp_path / "shard.py"
    script.write_text(SHARDING_SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED-OK" in out.stdout

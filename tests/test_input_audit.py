"""Inputs a new user gives that used to crash deep in JAX or fit nothing without a word (found by an audit).

The suite runs with ``jax_enable_x64`` (conftest), the setting of tutorials 01 and 03.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi


def _neural(rng, n_trials=30):
    return pi.TrialData(
        {"x": jnp.asarray(rng.normal(size=(1, n_trials, 3)))},
        jnp.asarray(rng.normal(size=(1, n_trials, 2))),
        jnp.ones((1, n_trials, 2), bool),
    )


def _model(initial_weights, coefficient_dtype=jnp.float64):
    rule = pi.TaylorRule.from_terms({"x*y": 0.0, "w": 0.0}, learning_rate=0.01)
    rule = pi.TaylorRule(rule.terms, jnp.zeros(2, coefficient_dtype), learning_rate=0.01)
    return pi.PlasticityModel.create(
        rule, pi.FeedForward(3, 2), pi.GaussianActivity(0.5), n_trajectories=1, initial_weights=initial_weights
    )


def test_float32_parameters_in_a_float64_session_fit_and_sample():
    """float32 initial weights (from a file) beside float64 coefficients made the optimiser's loop change dtype:
    a bare ``TypeError: cond branches must have equal output types``. Now the model is brought to one dtype
    and fits exactly as the same model built in float64."""
    rng = np.random.default_rng(0)
    data = _neural(rng)
    w0 = 0.1 * rng.normal(size=(1, 2, 3))
    mixed = _model({"w": w0.astype(np.float32)})
    same = _model({"w": jnp.asarray(w0.astype(np.float32), jnp.float64)})
    fit_mixed = pi.fit(mixed, data, steps=20, progress=False)
    fit_same = pi.fit(same, data, steps=20, progress=False)
    np.testing.assert_array_equal(np.asarray(fit_mixed.model.rule.coeffs), np.asarray(fit_same.model.rule.coeffs))
    assert fit_mixed.model.initial_weights["w"].dtype == jnp.float64
    # a float32 model throughout (as saved in a float32 session) with float64 data: fitted in float64
    all32 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32) if eqx_float(a) else a, same)
    fit32 = pi.fit(all32, data, steps=20, progress=False)
    np.testing.assert_allclose(np.asarray(fit32.model.rule.coeffs), np.asarray(fit_same.model.rule.coeffs), rtol=1e-5, atol=1e-7)
    independent = pi.fit_independent(mixed, data, steps=5, progress=False)
    assert independent.model.initial_weights["w"].dtype == jnp.float64
    post = pi.bayes.sample(
        mixed, data, method=pi.bayes.SVI(steps=5, draws=4), init=fit_mixed, key=jax.random.key(0), progress=False
    )
    assert np.isfinite(post.coefficients.values).all() and post.coefficients.shape[-1] == 2


def eqx_float(a):
    return hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)


def test_one_float_dtype_keeps_a_uniform_model_as_it_is():
    rng = np.random.default_rng(1)
    model = _model({"w": 0.1 * rng.normal(size=(1, 2, 3))})
    assert pi._model.one_float_dtype(model) is model
    assert pi._model.one_float_dtype(model, like=_neural(rng)) is model
    mixed = _model({"w": np.zeros((1, 2, 3), np.float32)}, coefficient_dtype=jnp.float32)
    mixed = pi.PlasticityModel(mixed.rule, mixed.network, pi.GaussianActivity(jnp.asarray(0.5, jnp.float64)), mixed.initial_weights)
    out = pi._model.one_float_dtype(mixed)
    assert {a.dtype for a in jax.tree_util.tree_leaves(out) if eqx_float(a)} == {jnp.dtype(jnp.float64)}


def test_a_fit_with_one_trial_per_trajectory_is_refused_by_name():
    """With one trial per trajectory the rule never reaches the likelihood: the fit returned the starting
    coefficients as 'converged'. Now refused, and fit_rule=False still fits the rest."""
    rng = np.random.default_rng(2)
    data = _neural(rng, n_trials=1)
    model = _model({"w": 0.1 * rng.normal(size=(1, 2, 3))})
    with pytest.raises(pi.ModelError, match=r"no observation after the first trial.*transpose.*fit_rule=False"):
        pi.fit(model, data, steps=5, progress=False)
    with pytest.raises(pi.ModelError, match="no observation after the first trial"):
        pi.bayes.sample(model, data, method=pi.bayes.SVI(steps=5, draws=4), key=jax.random.key(0), progress=False)
    assert pi.fit(model, data, steps=5, progress=False, fit_rule=False).loss_history.size > 0
    # observed only on the first trial of longer trajectories: the same
    masked = pi.TrialData(data.inputs | {"x": jnp.repeat(data.inputs["x"], 4, axis=1)},
                          jnp.repeat(data.observations, 4, axis=1), jnp.arange(4)[None, :, None] == 0)
    with pytest.raises(pi.ModelError, match="no observation after the first trial"):
        pi.fit(model, masked, steps=5, progress=False)


def test_a_session_passed_as_a_column_warns_that_it_reads_as_one_trial_subjects():
    choice = np.array([0, 1, 1, 0, 1, 0])[:, None]  # one fly's session, (trial, 1)
    reward = np.array([1.0, 0, 1, 0, 1, 0])[:, None]
    with pytest.warns(pi.PlasticInferWarning, match=r"behaviour_dataset: choice is 6 × 1, read as 6 subjects of 1 trial each.*\[choice\]"):
        ds = pi.behaviour_dataset(choice, reward)
    assert dict(ds.sizes)["subject"] == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the intended layout loads silently
        assert dict(pi.behaviour_dataset(choice.T, reward.T).sizes)["trial"] == 6
        assert dict(pi.behaviour_dataset([choice[:, 0]], [reward[:, 0]]).sizes)["trial"] == 6


def test_subject_ids_given_as_one_string_are_refused():
    with pytest.raises(pi.data.SchemaError, match=r"subjects must be a list of ids.*'ab'.*\['ab'\]"):
        pi.behaviour_dataset([[0, 1, 1]], [[1.0, 0.0, 1.0]], subjects="ab")


@pytest.mark.parametrize("shape_x, shape_y", [((20, 4), (20, 2)), ((4, 4), (4, 4))])
def test_one_subjects_2d_arrays_to_neural_dataset_say_to_wrap_them_in_a_list(shape_x, shape_y):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=shape_x), rng.normal(size=shape_y)
    with pytest.raises(pi.data.SchemaError, match=r"one \(n_trials, neurons\) array per subject.*\[input\] and \[activity\]"):
        pi.neural_dataset(x, y)
    assert dict(pi.neural_dataset([x], [y]).sizes)["trial"] == shape_x[0]


def test_fit_with_nothing_free_says_so():
    rng = np.random.default_rng(4)
    data = _neural(rng)
    model = _model({"w": 0.1 * rng.normal(size=(1, 2, 3))})
    held = dict(fit_rule=False, fit_initial_weights=False, fit_observation=False, fit_network=False)
    for fitter in (pi.fit, pi.fit_independent):
        with pytest.raises(pi.ModelError, match=r"nothing to fit.*fit_rule=False.*model.log_likelihood\(data\)"):
            fitter(model, data, steps=3, progress=False, **held)


def test_the_errors_module_works_as_the_docs_show():
    """docs/core.md showed plasticinfer.errors.X after a bare ``import plasticinfer`` (an AttributeError); it now
    shows the import that works, checked here in a fresh interpreter as a user would run it."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "core.md").read_text()
    shown = re.search(r"`(from plasticinfer\.errors import ConvergenceWarning)`", docs).group(1)
    code = f"import warnings\n{shown}\nwarnings.simplefilter('error', ConvergenceWarning)\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_laplace_names_the_call_that_works_for_an_independent_fit():
    rng = np.random.default_rng(5)
    data = pi.TrialData(
        {"x": jnp.asarray(rng.normal(size=(2, 30, 3)))}, jnp.asarray(rng.normal(size=(2, 30, 2))), jnp.ones((2, 30, 2), bool)
    )
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*y": 0.0, "w": 0.0}, learning_rate=0.01), pi.FeedForward(3, 2), pi.GaussianActivity(0.5),
        n_trajectories=2, initial_weights={"w": 0.1 * rng.normal(size=(2, 3))},
    )
    result = pi.fit_independent(model, data, steps=20, progress=False)
    with pytest.raises(pi.ModelError, match=r"pass result\.subject\(i\) and"):
        pi.laplace_intervals(result.model, data)
    intervals = pi.laplace_intervals(result.subject(1), data.trajectory(1))  # what the message says works
    assert intervals is not None


def test_a_mat_file_cut_after_its_header_is_named_truncated_not_a_mapping_problem(tmp_path):
    """A MAT file cut short (here: its 128-byte header alone; a real session cut in half reads the same) loaded
    as a file with no variables, and the message asked for --map / columns= instead."""
    import scipy.io

    full = tmp_path / "full.mat"
    scipy.io.savemat(full, {"choice_order": np.ones((80, 3))}, do_compression=True)
    cut = tmp_path / "cut.mat"
    cut.write_bytes(full.read_bytes()[:128])
    with pytest.raises(pi.DataError, match=r"cut\.mat.*no variable could be read.*truncated"):
        pi.load(cut)


def test_text_choice_codes_in_hdf5_load_with_choice_codes(tmp_path):
    """HDF5 choices stored as text (b'L'/b'R') were refused as 'must be numeric' even with choice_codes; now they
    map like a table's text codes, an empty code pads, and without choice_codes the message says what to pass."""
    import h5py

    path = tmp_path / "behaviour.h5"
    with h5py.File(path, "w") as f:
        f["behav/choice"] = np.array([[b"L", b"R", b"R", b"L"], [b"R", b"R", b"L", b""]])
        f["behav/reward"] = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, np.nan]])
    mapping = {"choice": "/behav/choice", "reward": "/behav/reward"}
    ds = pi.load(path, mapping=mapping, choice_codes={"L": 0, "R": 1})
    np.testing.assert_array_equal(ds["choice"].values[0], [0, 1, 1, 0])
    np.testing.assert_array_equal(ds["choice"].values[1, :3], [1, 1, 0])
    np.testing.assert_array_equal(ds["trial_mask"].values, [[True] * 4, [True] * 3 + [False]])
    with pytest.raises(pi.DataError, match=r"choice\[0, 0\].*found 'L'.*choice_codes"):
        pi.load(path, mapping=mapping)


def test_write_together_keeps_each_threads_batch_apart(tmp_path):
    """The batch of write_together lived in a module global: another thread's block joined it, and lost its files
    when the first block failed."""
    import threading

    from plasticinfer._io import atomic_write, write_together

    a_in, b_done, seen = threading.Event(), threading.Event(), {}

    def first():
        try:
            with write_together():
                atomic_write(tmp_path / "a.txt", lambda p: p.write_text("a"))
                a_in.set()
                b_done.wait(30)
                raise RuntimeError("the first block fails")
        except RuntimeError:
            pass

    def second():
        a_in.wait(30)
        with write_together():
            atomic_write(tmp_path / "b.txt", lambda p: p.write_text("b"))
        seen["b written at the end of its block"] = (tmp_path / "b.txt").exists()
        b_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {"b written at the end of its block": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]  # a.txt: none of the failed block's files


def test_from_matrices_warns_once_about_a_column_of_trials():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pi.data.from_matrices(np.array([[0.0], [1.0], [1.0]]), np.array([[1.0], [0.0], [1.0]]))
    assert sum("read as 3 subjects of 1 trial" in str(w.message) for w in caught) == 1

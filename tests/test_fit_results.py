"""Self-describing fit results: term-indexed coefficients, named parameters, configuration, checked loading."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi

KW = dict(steps=8, progress=False, optimiser=optax.adam(1e-2), convergence_tol=np.inf)


@pytest.fixture(scope="module")
def problem():
    syn = pi.make_activity_data(
        pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=jax.random.key(0), n_trajectories=2, n_trials=30
    )
    model = _model(("x*y", "y^2*w", "w"))
    return syn, model


def _model(terms, key=4):
    rule = pi.TaylorRule(list(terms), learning_rate=0.05)
    return pi.PlasticityModel.create(rule, pi.FeedForward(3, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(key))


def test_file_is_self_describing(problem, tmp_path):
    syn, model = problem
    res = pi.fit(model, syn.data, **KW)
    ds = res.to_dataset()
    assert ds["coefficient"].dims == ("term",)
    assert list(ds["term"].values) == ["x*y", "y^2*w", "w"]
    np.testing.assert_array_equal(ds["coefficient"].values, np.asarray(res.model.rule.coeffs))
    # parameters under their path in the model, no param_000 names or dims
    for name in ("rule.coeffs", "initial_weights.w", "observation.log_sigma", "restarts.rule.coeffs"):
        assert name in ds
    assert not [v for v in list(ds.variables) + list(ds.dims) if str(v).startswith("param_")]
    assert ds["rule.coeffs"].dims == ("term",) and ds["initial_weights.w"].dims[0] == "trajectory"
    np.testing.assert_array_equal(ds["initial_weights.w"].values, np.asarray(res.model.initial_weights["w"]))
    a = ds.attrs
    assert a["rule_terms"] == "x*y, y^2*w, w" and a["rule_variables"] == "w, x, y"
    assert a["learning_rate"] == '{"rule": 0.05}'
    assert a["network"] == "FeedForward(n_pre=3, n_post=2, activation=identity)"
    assert a["observation"].startswith("GaussianActivity(")
    assert "0x" not in "".join(str(v) for v in a.values())  # no memory addresses


def test_same_fit_twice_gives_identical_files(problem, tmp_path):
    syn, model = problem
    one = pi.fit(model, syn.data, **KW).save(tmp_path / "one.nc")
    two = pi.fit(model, syn.data, **{**KW, "optimiser": optax.adam(1e-2)}).save(tmp_path / "two.nc")
    assert one.read_bytes() == two.read_bytes()


def test_load_with_like_checks_terms_and_shapes(problem, tmp_path):
    syn, model = problem
    res = pi.fit(model, syn.data, **KW)
    path = res.save(tmp_path / "fit.nc")
    back = pi.FitResult.load(path, like=model)
    np.testing.assert_array_equal(back.model.rule.coeffs, res.model.rule.coeffs)
    np.testing.assert_array_equal(back.restarts.initial_weights["w"], res.restarts.initial_weights["w"])
    assert back.converged == res.converged and back.interrupted is False
    # a 27-term template must not silently load a 3-term file
    big = pi.PlasticityModel.create(
        pi.TaylorRule.full(("x", "y", "w"), 2), pi.FeedForward(3, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(1)
    )
    with pytest.raises(pi.DataError, match=r"(?s)fit.nc.*terms: file has 3.*like= has 27.*'rule.coeffs': file has shape \(3,\)"):
        pi.FitResult.load(path, like=big)
    wider = pi.PlasticityModel.create(
        pi.TaylorRule(["x*y", "y^2*w", "w"], learning_rate=0.05), pi.FeedForward(3, 4), pi.GaussianActivity(0.5),
        n_trajectories=2, key=jax.random.key(1),
    )
    with pytest.raises(pi.DataError, match=r"'initial_weights.w': file has shape \(2, 2, 3\), like= has \(2, 4, 3\)"):
        pi.FitResult.load(path, like=wider)


def test_load_without_like_rebuilds_the_model(problem, tmp_path):
    syn, model = problem
    res = pi.fit(model, syn.data, **KW)
    back = pi.FitResult.load(res.save(tmp_path / "fit.nc"))
    assert isinstance(back.model.rule, pi.TaylorRule) and back.model.rule.names == model.rule.names
    assert back.model.rule.learning_rate == 0.05 and back.model.network == model.network
    # the rebuilt model computes the same likelihood as the fitted one
    np.testing.assert_array_equal(np.asarray(back.model.log_likelihood(syn.data)), np.asarray(res.model.log_likelihood(syn.data)))
    np.testing.assert_array_equal(back.loss_history, res.loss_history)


def test_independent_round_trip(problem, tmp_path):
    syn, model = problem
    res = pi.fit_independent(model, syn.data, **KW)
    path = res.save(tmp_path / "ind.nc")
    for back in (pi.FitResult.load(path, like=model), pi.FitResult.load(path)):
        assert back.independent and back.n_subjects == 2
        np.testing.assert_array_equal(back.model.rule.coeffs, res.model.rule.coeffs)
        assert str(back.subject(1).rule) == str(res.subject(1).rule)
        np.testing.assert_array_equal(back.subject_converged, res.subject_converged)
    assert res.subject_converged.tolist() == [True, True]  # convergence_tol=inf: no verdict against
    from plasticinfer._optimise import diagnose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pi.PlasticInferWarning)  # the convergence warning of subjects still learning
        short = pi.fit_independent(model, syn.data, **{**KW, "convergence_tol": 1e-4})
    expect = [not diagnose(short.loss_history[s, short.best_restart[s]], tol=1e-4) for s in range(2)]  # each subject's own verdict
    assert short.subject_converged.tolist() == expect and short.converged == all(expect)
    back = pi.FitResult.load(short.save(tmp_path / "short.nc"), like=model)
    assert back.subject_converged.tolist() == expect and pi.fit(model, syn.data, **KW).subject_converged is None


def test_old_format_is_refused_clearly(problem, tmp_path):
    syn, model = problem
    ds = pi.fit(model, syn.data, **KW).to_dataset()
    ds.attrs.pop("format")
    pi.data.write_netcdf(ds, tmp_path / "old.nc")
    with pytest.raises(pi.DataError, match="old.nc.*Re-run the fit"):
        pi.FitResult.load(tmp_path / "old.nc", like=model)


def test_fit_accepts_loader_dataset(problem):
    """fit takes the validated xarray Dataset from the loaders; same numbers as the TrialData."""
    from plasticinfer._convert import activity_dataset

    syn, model = problem
    ds = pi.validate(activity_dataset(syn))
    data = pi.TrialData.from_dataset(ds)
    np.testing.assert_array_equal(np.asarray(data.observations), np.asarray(syn.data.observations))
    a = pi.fit(model, ds, **KW)
    b = pi.fit(model, data, **KW)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    with pytest.raises(pi.DataError, match="xarray Dataset"):
        pi.TrialData.from_dataset({"activity": 1})


def test_independent_fit_keeps_the_datasets_subject_labels(problem, tmp_path):
    """Per-subject coefficients are indexed by the dataset's subject labels, kept through save/load."""
    from plasticinfer._convert import activity_dataset

    syn, model = problem
    ds = pi.validate(activity_dataset(syn)).assign_coords(subject=["fly_b", "fly_a"][: syn.data.n_trajectories])
    labelled = pi.fit_independent(model, ds, **KW)
    plain = pi.fit_independent(model, syn.data, **KW)
    assert labelled.subjects == ("fly_b", "fly_a")
    assert list(labelled.coefficients.index) == ["fly_b", "fly_a"] and labelled.coefficients.index.name == "subject"
    assert plain.subjects is None and list(plain.coefficients.index) == [0, 1]
    np.testing.assert_array_equal(labelled.coefficients.to_numpy(), plain.coefficients.to_numpy())
    # by label or by position: the same subject
    assert labelled.subject("fly_a").rule.coefficients == labelled.subject(1).rule.coefficients
    assert labelled.equation(subject="fly_a") == labelled.equation(subject=1)
    with pytest.raises(pi.ModelError, match="no subject labelled 'fly_c'.*fly_b, fly_a"):
        labelled.subject("fly_c")
    with pytest.raises(pi.ModelError, match="subject 2 is out of range.*2 subjects"):
        labelled.subject(2)
    back = pi.FitResult.load(labelled.save(tmp_path / "fit.nc"), like=model)
    assert back.subjects == ("fly_b", "fly_a")
    assert back.coefficients.equals(labelled.coefficients)
    assert pi.FitResult.load(plain.save(tmp_path / "plain.nc"), like=model).subjects is None


def test_the_settings_attribute_says_which_optimiser_ran(tmp_path):
    """The file recorded every optax optimiser as the same closure repr ('GradientTransformationExtraArgs(init=<function
    chain.<locals>.init_fn ...'): the default L-BFGS, Adam and SGD could not be told apart."""
    import json

    import optax

    from plasticinfer._io import read_netcdf

    rule = pi.TaylorRule(["x*y", "w"], learning_rate=0.05)
    inputs = pi.GaussianInputs.with_spectrum(jax.random.key(0), jnp.array([1.0, 0.5]))
    syn = pi.make_activity_data(pi.TaylorRule.from_terms({"x*y": 1.0}, learning_rate=0.05), pi.FeedForward(2, 1), inputs,
                                key=jax.random.key(1), n_trajectories=1, n_trials=10)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(2, 1), pi.GaussianActivity(0.5), n_trajectories=1, key=jax.random.key(2))
    recorded = {}
    for name, opt in (("default", None), ("adam", optax.adam(0.05)), ("sgd", optax.sgd(1e-3))):
        res = pi.fit(model, syn.data, steps=2, optimiser=opt, progress=False)
        recorded[name] = json.loads(read_netcdf(res.save(tmp_path / f"{name}.nc")).attrs["settings"])["optimiser"]
    assert "lbfgs" in recorded["default"] and "default" in recorded["default"]
    assert recorded["adam"] == recorded["sgd"] and recorded["adam"].startswith("user-supplied optax transformation")
    assert "function" not in " ".join(recorded.values())
    # an optimiser given its words records them
    from plasticinfer._optimise import described

    for words, opt in (("Adam 0.05", optax.adam(0.05)), ("L-BFGS", optax.lbfgs())):  # a line search keeps its arguments
        res = pi.fit(model, syn.data, steps=2, optimiser=described(opt, words), progress=False)
        assert json.loads(read_netcdf(res.save(tmp_path / "described.nc")).attrs["settings"])["optimiser"] == words

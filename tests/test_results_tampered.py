"""A results file edited by hand (or damaged) loads as what it shows or not at all: wrong numbers under wrong names,
a parameter of another shape, a True/False attribute that is neither, a number that is text — each refused by name.
The files a save writes record every parameter's shape; a loaded model is checked against it and against the file's
own readable coefficients."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import plasticinfer as pi
from plasticinfer._io import read_netcdf
from plasticinfer.discovery import SearchResult, TraceRule
from plasticinfer.errors import FileFormatError


def _model(n_trajectories=2):
    rule = pi.TaylorRule(["x*y", "y^2*w", "w"], learning_rate=0.05)
    return pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=n_trajectories,
                                     key=jax.random.key(4))


def _fit(path, model=None):
    model = _model() if model is None else model
    model = eqx.tree_at(lambda m: m.rule.coeffs, model, jnp.array([0.25, -0.5, 0.125]))
    restarts = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]) if eqx.is_array(a) else a, model)
    res = pi.FitResult(model, restarts, np.ones((2, 3)), None, np.zeros(0, int), np.array(0), np.array([-1, -1]), False, 3)
    return res.save(path)


def _edit(src, dst, change):
    ds = change(read_netcdf(src))
    return pi.data.write_netcdf(ds, dst)


def _replace(ds, name, values, dim):
    return ds.drop_vars(name).assign({name: xr.DataArray(values, dims=list(ds[name].dims[:-1]) + [dim])})


def test_an_intact_fit_file_loads_and_records_its_shapes(tmp_path):
    path = _fit(tmp_path / "fit.nc")
    loaded = pi.FitResult.load(path)
    assert loaded.model.rule.names == ("x*y", "y^2*w", "w")
    np.testing.assert_array_equal(loaded.model.rule.coeffs, [0.25, -0.5, 0.125])
    assert '"shape": [3]' in read_netcdf(path).attrs["model_structure"]
    pi.FitResult.load(path, like=_model())


def test_relabelled_or_edited_coefficients_are_refused(tmp_path):
    good = _fit(tmp_path / "fit.nc")
    # term labels swapped: the file would show w = 0.25 while the model loads x*y = 0.25
    swapped = _edit(good, tmp_path / "swapped.nc", lambda d: d.assign_coords(term=["w", "y^2*w", "x*y"]))
    with pytest.raises(FileFormatError, match=r"swapped\.nc: the file labels its coefficients with terms \['w'"):
        pi.FitResult.load(swapped)
    # a value edited in the readable table but not in the parameters (or the other way round)
    edited = _edit(good, tmp_path / "edited.nc", lambda d: d.assign(coefficient=d["coefficient"] * 2))
    with pytest.raises(FileFormatError, match=r"edited\.nc: .*coefficient values that differ from its parameters"):
        pi.FitResult.load(edited)


def test_a_parameter_of_another_shape_is_refused_with_and_without_a_template(tmp_path):
    good = _fit(tmp_path / "fit.nc")
    five = _edit(good, tmp_path / "five.nc", lambda d: _replace(d, "rule.coeffs", np.arange(5.0), "t5"))
    with pytest.raises(FileFormatError, match=r"five\.nc: parameter 'rule\.coeffs' is stored with shape \(5,\), but .*\(3,\)"):
        pi.FitResult.load(five)
    wide = _edit(good, tmp_path / "wide.nc", lambda d: _replace(d, "initial_weights.w", np.zeros((2, 2, 7)), "d7"))
    with pytest.raises(FileFormatError, match=r"parameter 'initial_weights\.w' is stored with shape \(2, 2, 7\)"):
        pi.FitResult.load(wide)
    # the restarts too: without like= (rebuilt from the file) and with it (checked against the template)
    restarts = _edit(good, tmp_path / "restarts.nc", lambda d: _replace(d, "restarts.rule.coeffs", np.zeros((2, 5)), "t5"))
    for like in (None, _model()):
        with pytest.raises(FileFormatError, match=r"'restarts\.rule\.coeffs' is stored with shape \(2, 5\), which is not the model's \(3,\)"):
            pi.FitResult.load(restarts, like=like)


def test_flags_and_numbers_that_are_text_are_refused(tmp_path):
    good = _fit(tmp_path / "fit.nc")

    def attr(name, value):
        def change(d):
            d = d.copy()
            d.attrs[name] = value
            return d

        return change

    for name, value, message in (
        ("independent", "yes", r"attribute 'independent' is 'yes', not 0 or 1"),
        ("stopped_early", 2, r"attribute 'stopped_early' is 2, not 0 or 1"),
        ("steps_run", "n/a", r"a stored value does not convert"),
    ):
        bad = _edit(good, tmp_path / f"{name}.nc", attr(name, value))
        with pytest.raises(FileFormatError, match=rf"{name}\.nc: .*{message}"):
            pi.FitResult.load(bad)


def test_a_pytree_result_checks_its_shapes(tmp_path):
    rules = jax.tree_util.tree_map(lambda *a: jnp.stack(a), TraceRule(-0.2, 0.0, 1.0, 1.0), TraceRule(-0.1, 0.3, 0.0, 0.5))
    res = SearchResult(rules, np.array([0.5, 1.0]), {"loss": np.array([0.5, 1.0])}, np.array([True, False]),
                       np.ones((2, 3)), "gradient", 1.0, {"restarts": 2})  # fmt: skip
    good = res.save(tmp_path / "search.nc")
    SearchResult.load(good)
    name = next(str(k) for k in read_netcdf(good).data_vars if str(k).startswith("rules."))
    bad = _edit(good, tmp_path / "bad.nc", lambda d: _replace(d, name, np.zeros(3), "d3"))
    with pytest.raises(FileFormatError, match=rf"bad\.nc: parameter '{name[len('rules.'):]}' is stored with shape \(3,\)"):
        SearchResult.load(bad)


def test_a_float64_file_loaded_in_a_float32_session_says_it_is_rounded(tmp_path):
    good = _fit(tmp_path / "fit.nc")  # the suite runs in float64
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.warns(pi.PlasticInferWarning, match=r"stores float64 values and JAX runs in float32"):
            loaded = pi.FitResult.load(good)
        assert loaded.model.rule.coeffs.dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in a float64 session: exact, no warning
        assert pi.FitResult.load(good).model.rule.coeffs.dtype == jnp.float64

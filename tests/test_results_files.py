"""Every result type saves and loads one way: exact round trips, and any other kind of file refused by name."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import plasticinfer as pi
from helpers import SPEEDS, as_loaded
from plasticinfer._results_io import named_leaves
from plasticinfer.errors import FileFormatError
from plasticinfer.bayes import CalibrationResult
from plasticinfer.discovery import (
    BoxPrior,
    FamiliesResult,
    FamilyTask,
    NPEPosterior,
    NPEResult,
    PlausibilityConstraints,
    SBCResult,
    SearchResult,
    TraceRule,
)
from plasticinfer.discovery._memory import MemoryGroup, MemoryReport
from plasticinfer.discovery._plausibility import PredictiveCheck
from plasticinfer.discovery._sbi import _flow
from plasticinfer.metalearn import TERM_POOL, LocalRule, MetaLearnResult


def _assert_leaves_equal(a, b):
    la, lb = named_leaves(a), named_leaves(b)
    assert list(la) == list(lb)
    for k in la:
        assert la[k].dtype == lb[k].dtype, k
        np.testing.assert_array_equal(la[k], lb[k], err_msg=k)


def _meta() -> MetaLearnResult:
    rule = LocalRule.pool({"pseudo_gradient": 0.5, "oja": -0.125}, terms=TERM_POOL, learning_rate=0.05, dtype=jnp.float32)
    coeffs = np.stack([np.asarray(rule.coeffs), np.asarray(rule.coeffs) * 3])
    return MetaLearnResult(
        rule=rule, final_rule=rule.with_coeffs(rule.coeffs * 2), loss_history=np.array([1.0, 0.5, np.nan], np.float32),
        validation_history=np.array([1.0, 0.375]), validation_steps=np.array([0, 2]), coeff_history=coeffs, diverged_at=2,
        steps_run=3, wall_time=1.25, settings={"steps": 3, "l1": 0.03, "meta_batch": 2}, converged=False,
        convergence_message="still falling",
    )  # fmt: skip


def _calibration() -> CalibrationResult:
    rng = np.random.default_rng(0)
    d, k = 4, 2
    return CalibrationResult(
        ["theta[x*r]", "bias"], rng.normal(size=(d, k)), rng.integers(0, 100, (d, k)), 99, rng.random((d, k)) < 0.9, 0.9,
        rng.normal(size=(d, k)), rng.random((d, k)), np.array([0, 3, 0, 1]), np.array([1.0, 1.02, np.nan, 1.001]), 12.5,
    )  # fmt: skip


def _sbc() -> SBCResult:
    rng = np.random.default_rng(1)
    return SBCResult(rng.integers(0, 11, (5, 2)), 10, {0.5: np.array([0.6, 0.2]), 0.9: np.array([0.8, 1.0])}, ("a", "b"))


def _npe() -> NPEResult:
    """An (untrained) posterior with a flow from a key the loader's template does not use, so a load that did
    not fill the stored weights would differ."""
    prior = BoxPrior(("a", "b"), [0.0, -1.0], [1.0, 2.0])
    std = [jnp.asarray(v) for v in ([0.5, -0.25, 1.0], [1.0, 2.0, 0.5], [0.125, 0.0], [1.5, 0.75])]
    post = NPEPosterior(_flow(jax.random.key(11), 2, 3, 2, 8, jnp.float64), prior, *std, 2, 8)
    rng = np.random.default_rng(2)
    return NPEResult(post, rng.random((6, 2)), rng.normal(size=(6, 3)), 1, 0.5, 2.25, np.array([3.0, 2.0]), np.array([3.5, 2.5]))


def _families(with_sbc: bool) -> FamiliesResult:
    """A small study built by hand (no simulation): the task of the spiking-families tests, an untrained posterior."""
    task = FamilyTask.create(jax.random.key(7), n_exc=16, n_inh=4, p=0.5, duration=0.2, transient=0.05, segment=0.05)
    prior, d, m = task.prior(), len(task.parameter_names), len(task.summary_names)
    rng = np.random.default_rng(3)
    std = [jnp.asarray(rng.normal(size=n)) for n in (m, m, d, d)]
    post = NPEPosterior(_flow(jax.random.key(12), d, m, 1, 4, jnp.float64), prior, *std, 1, 4)
    npe = NPEResult(post, rng.random((5, d)), rng.normal(size=(5, m)), 0, 1.5, 3.0, np.array([2.0]), np.array([2.5]))
    check = PredictiveCheck(0.25, (0.1, 0.5), 0.125, (0.05, 0.3), {"rate_i": 0.5, "rate_e": 1.0}, {"rate_e": 0.25}, 8,
                            rng.random((8, d)), np.array([True, False] * 4))  # fmt: skip
    groups = {n: MemoryGroup(n, rng.random(3), rng.random(3), rng.random(4)) for n in ("prior", "posterior (plausible)", "no plasticity")}
    diffs = {"prior": (0.125, -0.5, 0.75), "no plasticity": (0.25, 0.0, 0.5)}  # unsorted: order must survive
    memory = MemoryReport(groups, rng.random(3), diffs, "no evidence")
    sbc = SBCResult(rng.integers(0, 11, (3, d)), 10, {0.5: rng.random(d), 0.9: rng.random(d)}, tuple(task.parameter_names)) if with_sbc else None
    constraints = PlausibilityConstraints(rate_e=(2.0, 20.0))
    return FamiliesResult(task, constraints, npe, rng.normal(size=(7, d)), check, sbc, memory, {"hand-written": ["a", "b"]})


def _fit_file(path):
    rule = pi.TaylorRule(["x*y", "w"], learning_rate=0.05)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(3, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(4))
    restarts = jax.tree_util.tree_map(lambda a: a[None] if eqx.is_array(a) else a, model)
    res = pi.FitResult(model, restarts, np.ones((1, 3)), None, np.zeros(0, int), np.array(0), np.array([-1]), False, 3)
    return res.save(path)


def test_metalearn_result_round_trip(tmp_path):
    res = _meta()
    back = MetaLearnResult.load(res.save(tmp_path / "meta.nc"))
    for name in ("rule", "final_rule"):
        a, b = getattr(res, name), getattr(back, name)
        assert b.terms == a.terms and b.learning_rate == a.learning_rate
        _assert_leaves_equal(a, b)
    for name in ("loss_history", "validation_history", "validation_steps", "coeff_history"):
        assert getattr(back, name).dtype == getattr(res, name).dtype, name
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name), err_msg=name)
    for name in ("diverged_at", "steps_run", "settings", "converged", "convergence_message"):
        assert getattr(back, name) == getattr(res, name), name
    assert np.isnan(back.wall_time)  # files hold no wall time
    assert back.equation() == res.equation()


def test_calibration_result_round_trip(tmp_path):
    res = _calibration()
    back = CalibrationResult.load(res.save(tmp_path / "calibration.nc"))
    assert back.names == res.names and back.n_rank_draws == 99 and back.interval == 0.9 and np.isnan(back.seconds)
    for name in ("truth", "ranks", "covered", "posterior_mean", "posterior_sd", "divergences", "max_rhat"):
        assert getattr(back, name).dtype == getattr(res, name).dtype, name
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name), err_msg=name)
    assert back.summary() == res.summary().replace("12 s", "wall time not saved")


def test_sbc_result_round_trip(tmp_path):
    res = _sbc()
    back = SBCResult.load(res.save(tmp_path / "sbc.nc"))
    assert back.names == res.names and back.n_samples == res.n_samples
    np.testing.assert_array_equal(back.ranks, res.ranks)
    assert list(back.coverage) == list(res.coverage)
    for lv in res.coverage:
        np.testing.assert_array_equal(back.coverage[lv], res.coverage[lv])


def test_npe_result_round_trip(tmp_path):
    res = _npe()
    back = NPEResult.load(res.save(tmp_path / "npe.nc"))
    assert isinstance(back.posterior.prior, BoxPrior) and back.posterior.prior.names == ("a", "b")
    assert (back.posterior.flow_layers, back.posterior.nn_width) == (2, 8)
    _assert_leaves_equal(res.posterior, back.posterior)  # flow weights and masks, prior bounds, standardisation
    for name in ("theta", "x", "loss_history", "validation_history"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name), err_msg=name)
    assert back.dropped == res.dropped and np.isnan(back.simulation_seconds) and np.isnan(back.training_seconds)
    key, x_obs = jax.random.key(5), jnp.array([0.5, 0.0, 1.0])
    np.testing.assert_array_equal(back.posterior.sample(key, x_obs, 4), res.posterior.sample(key, x_obs, 4))


@pytest.mark.parametrize("with_sbc", [True, False])
def test_families_result_round_trip(tmp_path, with_sbc):
    res = _families(with_sbc)
    back = FamiliesResult.load(res.save(tmp_path / "families.nc"))
    # the task: its network's arrays and every static setting
    assert type(back.task) is FamilyTask and type(back.task.network) is type(res.task.network)
    _assert_leaves_equal(res.task, back.task)
    assert jax.tree_util.tree_structure(back.task) == jax.tree_util.tree_structure(res.task)
    assert back.constraints == res.constraints
    np.testing.assert_array_equal(back.posterior_samples, res.posterior_samples)
    _assert_leaves_equal(res.npe.posterior, back.npe.posterior)
    for name in ("theta", "x", "loss_history", "validation_history"):
        np.testing.assert_array_equal(getattr(back.npe, name), getattr(res.npe, name), err_msg=name)
    assert back.npe.dropped == 0 and np.isnan(back.npe.simulation_seconds) and np.isnan(back.npe.training_seconds)
    c, cb = res.check, back.check
    for name in ("posterior_fraction", "posterior_interval", "prior_fraction", "prior_interval", "per_summary_posterior", "per_summary_prior", "n"):
        assert getattr(cb, name) == getattr(c, name), name
    for name in ("posterior_theta", "posterior_accepted"):
        assert type(getattr(cb, name)) is np.ndarray and getattr(cb, name).dtype == getattr(c, name).dtype
        np.testing.assert_array_equal(getattr(cb, name), getattr(c, name), err_msg=name)
    assert list(back.memory.groups) == list(res.memory.groups)
    for g, group in res.memory.groups.items():
        assert back.memory.groups[g].name == group.name
        for name in ("auc", "speed", "null_means"):
            np.testing.assert_array_equal(getattr(back.memory.groups[g], name), getattr(group, name))
    np.testing.assert_array_equal(back.memory.matched, res.memory.matched)
    assert list(back.memory.differences.items()) == list(res.memory.differences.items())
    assert back.memory.verdict == res.memory.verdict
    assert back.memory_names == res.memory_names
    assert list(back.check.per_summary_posterior) == list(res.check.per_summary_posterior)
    if with_sbc:
        np.testing.assert_array_equal(back.sbc.ranks, res.sbc.ranks)
        assert back.sbc.names == res.sbc.names and list(back.sbc.coverage) == [0.5, 0.9]
        for lv in (0.5, 0.9):
            np.testing.assert_array_equal(back.sbc.coverage[lv], res.sbc.coverage[lv])
    else:
        assert back.sbc is None
    assert SPEEDS.search(res.markdown()) and not SPEEDS.search(back.markdown())  # files hold no wall times
    assert back.markdown() == as_loaded(res.markdown())


LOADERS = {
    "search": SearchResult.load,
    "metalearn": MetaLearnResult.load,
    "calibration": CalibrationResult.load,
    "sbc": SBCResult.load,
    "npe": NPEResult.load,
    "families": FamiliesResult.load,
}


def test_each_load_refuses_a_fit_result_file(tmp_path):
    path = _fit_file(tmp_path / "fit.nc")
    for kind, load in LOADERS.items():
        with pytest.raises(pi.DataError, match=r"fit\.nc: not a plasticinfer .*holds a plasticinfer fit result \('plasticinfer-fit/2'"):
            load(path)


def test_each_load_refuses_another_kind_and_a_foreign_file(tmp_path):
    files = {
        "metalearn": _meta().save(tmp_path / "meta.nc"),
        "calibration": _calibration().save(tmp_path / "calibration.nc"),
        "sbc": _sbc().save(tmp_path / "sbc.nc"),
    }
    with pytest.raises(pi.DataError, match=r"meta\.nc: not a plasticinfer SBC result: the file holds a plasticinfer meta-learning"):
        SBCResult.load(files["metalearn"])
    with pytest.raises(pi.DataError, match=r"not a plasticinfer meta-learning result: the file holds a plasticinfer calibration"):
        MetaLearnResult.load(files["calibration"])
    with pytest.raises(pi.DataError, match=r"not a plasticinfer calibration result: the file holds a plasticinfer SBC"):
        CalibrationResult.load(files["sbc"])
    with pytest.raises(pi.DataError, match=r"not a plasticinfer NPE result: the file holds a plasticinfer SBC"):
        NPEResult.load(files["sbc"])
    with pytest.raises(pi.DataError, match=r"not a plasticinfer rule-families result: the file holds a plasticinfer NPE"):
        FamiliesResult.load(_npe().save(tmp_path / "npe.nc"))
    with pytest.raises(pi.DataError, match=r"not a plasticinfer fit result: the file holds a plasticinfer meta-learning"):
        pi.FitResult.load(files["metalearn"])
    foreign = pi.data.write_netcdf(xr.Dataset({"x": ("t", np.arange(3.0))}), tmp_path / "other.nc")
    for load in LOADERS.values():
        with pytest.raises(pi.DataError, match="other.nc: not a plasticinfer .*no plasticinfer format tag"):
            load(foreign)


def test_report_annotations_may_not_replace_what_a_result_stores(tmp_path):
    rules = jax.tree_util.tree_map(lambda *a: jnp.stack(a), TraceRule(-0.2, 0.0, 1.0, 1.0), TraceRule(-0.1, 0.3, 0.0, 0.5))
    res = SearchResult(rules, np.array([0.5, 1.0]), {"loss": np.array([0.5, 1.0])}, np.array([True, False]),
                       np.ones((2, 3)), "gradient", 1.0)  # fmt: skip
    with pytest.raises(pi.DataError, match=r"reuse names the search result stores: \['loss'\]"):
        res.save(tmp_path / "s.nc", xr.Dataset({"loss": ("restart", np.zeros(2))}))
    assert not (tmp_path / "s.nc").exists()


def _search() -> SearchResult:
    rules = jax.tree_util.tree_map(lambda *a: jnp.stack(a), TraceRule(-0.2, 0.0, 1.0, 1.0), TraceRule(-0.1, 0.3, 0.0, 0.5))
    return SearchResult(rules, np.array([0.5, 1.0]), {"loss": np.array([0.5, 1.0])}, np.array([True, False]),
                        np.ones((2, 3)), "gradient", 1.0, {"restarts": 2})  # fmt: skip


DAMAGED = {  # kind: (write a good file, its load, an attribute and a variable the load needs)
    "fit": (_fit_file, pi.FitResult.load, "model_structure", "loss"),
    "search": (lambda p: _search().save(p), SearchResult.load, "rules_structure", "loss_history"),
    "metalearn": (lambda p: _meta().save(p), MetaLearnResult.load, "settings", "coeff_history"),
    "sbc": (lambda p: _sbc().save(p), SBCResult.load, "n_samples", "coverage"),
    "npe": (lambda p: _npe().save(p), NPEResult.load, None, "posterior.x_mean"),
    "calibration": (lambda p: _calibration().save(p), CalibrationResult.load, "n_rank_draws", "posterior_sd"),
}


SAVERS = {kind: write for kind, (write, *_) in DAMAGED.items()} | {"families": lambda p: _families(True).save(p)}


def test_the_same_result_saves_the_same_bytes_whatever_its_run_time(tmp_path):
    """Results files are deterministic: the same result saved twice a second apart, and the same result with
    another wall time (a run that took longer), give byte-identical files; the wall time of a loaded result is NaN."""
    import time

    first = {kind: save(tmp_path / f"{kind}-1.nc") for kind, save in SAVERS.items()}
    time.sleep(1.1)  # a creation or modification time stored to the second would differ
    for kind, save in SAVERS.items():
        assert save(tmp_path / f"{kind}-2.nc").read_bytes() == first[kind].read_bytes(), kind
    for kind, build, field in (("search", _search, "wall_time"), ("metalearn", _meta, "wall_time"), ("calibration", _calibration, "seconds")):
        res = build()
        setattr(res, field, 999.0)
        assert res.save(tmp_path / f"{kind}-slow.nc").read_bytes() == first[kind].read_bytes(), kind
        back = type(res).load(first[kind])
        assert np.isnan(getattr(back, field)), kind
        if kind != "metalearn":
            assert "wall time not saved" in back.summary(), kind
    for kind in ("npe", "families"):
        res = _npe() if kind == "npe" else _families(True)
        npe = res if kind == "npe" else res.npe
        npe.simulation_seconds, npe.training_seconds = 77.0, 88.0
        assert res.save(tmp_path / f"{kind}-slow.nc").read_bytes() == first[kind].read_bytes(), kind


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_results_file_is_refused_by_name_not_with_a_bare_exception(kind, tmp_path):
    """A results file with a variable or attribute gone (cut short, edited by hand) or a JSON attribute cut off
    gave a bare KeyError or JSONDecodeError; it is one FileFormatError naming the file."""
    from plasticinfer._io import read_netcdf

    write, load, attr, var = DAMAGED[kind]
    good = write(tmp_path / "good.nc")
    load(good)  # the intact file loads
    ds = read_netcdf(good)
    damaged = {"variable": ds.drop_vars(var)}
    if attr is not None:
        damaged["attribute"] = ds.copy()
        del damaged["attribute"].attrs[attr]
        if isinstance(ds.attrs[attr], str):  # a JSON attribute cut off
            damaged["json"] = ds.copy()
            damaged["json"].attrs[attr] = ds.attrs[attr][: len(ds.attrs[attr]) // 2]
    assert var in ds, (kind, list(ds.data_vars))
    for what, bad in damaged.items():
        path = pi.data.write_netcdf(bad, tmp_path / f"{what}.nc")
        with pytest.raises(FileFormatError, match=rf"{what}\.nc: a damaged or incomplete .*Re-create it"):
            load(path)

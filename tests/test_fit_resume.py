"""Checkpoint, resume and Ctrl-C: a resumed fit ends where an uninterrupted one does; convergence diagnostics."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import optax
import pytest

from helpers import interrupt_chunk

import plasticinfer as pi
from plasticinfer import _optimise
from plasticinfer import _interrupt
from plasticinfer.errors import ConvergenceWarning, PlasticInferWarning


@pytest.fixture(scope="module")
def problem():
    syn = pi.make_activity_data(
        pi.oja(0.05), pi.FeedForward(3, 2), pi.GaussianInputs.isotropic(3), key=jax.random.key(0), n_trajectories=2, n_trials=30
    )
    rule = pi.TaylorRule(["x*y", "y^2*w", "w"], learning_rate=0.05)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(3, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(4))
    return syn, model


def _quiet(f, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlasticInferWarning)
        return f(*a, **kw)


def _same(a, b):
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-12, atol=0)
    for x, y in zip(jax.tree_util.tree_leaves(a.restarts), jax.tree_util.tree_leaves(b.restarts)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    assert a.steps_run == b.steps_run


@pytest.mark.parametrize(
    "optimiser", [pytest.param(None, marks=pytest.mark.slow), optax.adam(1e-2)], ids=["lbfgs", "adam"]
)
def test_resume_equals_uninterrupted(problem, tmp_path, optimiser):
    syn, model = problem
    kw = dict(progress=False, optimiser=optimiser, restarts=2, key=jax.random.key(7), eval_every=5)
    full = _quiet(pi.fit, model, syn.data, steps=20, **kw)
    ck = tmp_path / "fit.ckpt"
    half = _quiet(pi.fit, model, syn.data, steps=10, checkpoint=ck, checkpoint_every=5, **kw)
    assert half.steps_run == 10 and ck.exists()
    resumed = _quiet(pi.fit, model, syn.data, steps=20, checkpoint=ck, checkpoint_every=5, resume=True, **kw)
    _same(resumed, full)


def test_resume_with_validation_and_independent(problem, tmp_path):
    syn, model = problem
    train, held = syn.data.split_trials(0.3)
    kw = dict(progress=False, optimiser=optax.adam(1e-2), validation=held, eval_every=4)
    full = _quiet(pi.fit_independent, model, train, steps=16, **kw)
    ck = tmp_path / "ind.ckpt"
    _quiet(pi.fit_independent, model, train, steps=8, checkpoint=ck, checkpoint_every=4, **kw)
    resumed = _quiet(pi.fit_independent, model, train, steps=16, checkpoint=ck, checkpoint_every=4, resume=True, **kw)
    _same(resumed, full)
    np.testing.assert_allclose(resumed.validation_history, full.validation_history, rtol=1e-12)
    np.testing.assert_array_equal(resumed.validation_steps, full.validation_steps)


def test_checkpoint_of_another_problem_is_refused(problem, tmp_path):
    syn, model = problem
    ck = tmp_path / "fit.ckpt"
    _quiet(pi.fit, model, syn.data, steps=4, checkpoint=ck, progress=False, optimiser=optax.adam(1e-2))
    other = syn.data.with_mask(np.asarray(syn.data.mask).copy() & (np.arange(30)[None, :, None] < 20))
    with pytest.raises(pi.DataError, match="fit.ckpt.*different fit"):
        pi.fit(model, other, steps=8, checkpoint=ck, resume=True, progress=False, optimiser=optax.adam(1e-2))
    with pytest.raises(pi.DataError, match="different fit"):  # another learning rate
        pi.fit(model, syn.data, steps=8, checkpoint=ck, resume=True, progress=False, optimiser=optax.adam(1e-3))
    with pytest.raises(pi.DataError, match="different fit"):  # another penalty
        pi.fit(model, syn.data, steps=8, checkpoint=ck, resume=True, progress=False, optimiser=optax.adam(1e-2), l1=0.1)
    with pytest.raises(pi.ModelError, match="resume=True needs checkpoint"):
        pi.fit(model, syn.data, steps=8, resume=True, progress=False)


@pytest.mark.slow
def test_interrupt_returns_best_so_far_and_resumes(problem, tmp_path, monkeypatch):
    syn, model = problem
    kw = dict(progress=False, optimiser=optax.adam(1e-2), eval_every=5)
    full = _quiet(pi.fit, model, syn.data, steps=20, **kw)
    real = _optimise.run_steps
    ck = tmp_path / "fit.ckpt"
    interrupt_chunk(monkeypatch, 3)
    with pytest.warns(PlasticInferWarning, match="interrupted at step 10 of 20"):
        res = pi.fit(model, syn.data, steps=20, checkpoint=ck, checkpoint_every=100, **kw)
    monkeypatch.setattr(_optimise, "run_steps", real)
    assert res.interrupted and not res.converged and res.steps_run == 10
    assert "interrupted" in res.convergence_message
    np.testing.assert_allclose(res.loss_history, full.loss_history[:, :10], rtol=1e-12)
    # the best parameters so far: the loss of the returned model is the best recorded one
    best = pi.fit(res.model, syn.data, steps=1, progress=False, optimiser=optax.sgd(0.0), convergence_tol=np.inf)
    assert best.loss_history[0, 0] == pytest.approx(np.nanmin(res.loss_history), rel=1e-12)
    # the interrupt wrote the checkpoint; resuming finishes exactly like the uninterrupted run
    resumed = _quiet(pi.fit, model, syn.data, steps=20, checkpoint=ck, checkpoint_every=100, resume=True, **kw)
    _same(resumed, full)
    saved = pi.FitResult.load(res.save(tmp_path / "int.nc"), like=model)
    assert saved.interrupted


def test_a_swallowed_ctrl_c_on_the_command_line_still_stops_the_fit(problem, monkeypatch):
    """The command line counts SIGINTs; when the KeyboardInterrupt was lost (raised in a destructor or a C
    callback), the fit stops after its current chunk with that chunk's steps kept."""
    syn, model = problem
    kw = dict(progress=False, optimiser=optax.adam(1e-2), eval_every=5)
    five = _quiet(pi.fit, model, syn.data, steps=5, **kw)
    monkeypatch.setattr(_interrupt, "_count", 1)
    with pytest.warns(PlasticInferWarning, match="interrupted at step 5 of 20"):
        res = pi.fit(model, syn.data, steps=20, **kw)
    assert res.interrupted and res.steps_run == 5
    np.testing.assert_allclose(res.loss_history, five.loss_history, rtol=1e-12)


def test_an_interrupted_fit_stops_the_analysis_built_on_it(problem, monkeypatch):
    """A comparison must not rank half-fitted models: the interrupt of one of its fits goes on up."""
    syn, _ = problem
    calls = interrupt_chunk(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("ignore", PlasticInferWarning)
        pi.compare.compare(["x*y", "x*y - y^2*w"], syn.data, steps=6, restarts=1, progress=False, key=jax.random.key(2))
    assert len(calls) == 2


def test_convergence_still_falling(problem, tmp_path):
    syn, model = problem
    with pytest.warns(ConvergenceWarning, match="still falling") as record:
        res = pi.fit(model, syn.data, steps=10, progress=False, optimiser=optax.adam(1e-3))
    assert not res.converged and "still falling" in res.convergence_message
    assert {w.filename for w in record if issubclass(w.category, ConvergenceWarning)} == {__file__}  # the user's line, however deep in the library it was raised
    ds = pi.FitResult.load(res.save(tmp_path / "f.nc"), like=model)
    assert not ds.converged and ds.convergence_message == res.convergence_message


def test_convergence_flat_and_diverged(problem):
    syn, model = problem
    with pytest.warns(ConvergenceWarning, match="never moved"):
        flat = pi.fit(model, syn.data, steps=10, progress=False, optimiser=optax.sgd(1e-15))
    assert not flat.converged
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        huge = pi.fit(model, syn.data, steps=10, progress=False, optimiser=optax.adam(1e6))
    assert not huge.converged and "non-finite" in huge.convergence_message
    assert {type(w.message) for w in rec} >= {ConvergenceWarning}


@pytest.mark.slow
def test_convergence_converged(problem):
    syn, model = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = pi.fit(model, syn.data, steps=200, progress=False)  # L-BFGS to its optimum
    assert res.converged and res.convergence_message == ""


def test_diagnose_oracle():
    """The rule itself on hand-made histories."""
    t = np.arange(100.0)
    assert _optimise.diagnose(np.exp(-t / 5), tol=1e-4) == ""  # settled
    assert "still falling" in _optimise.diagnose(1 - t / 100, tol=1e-4)  # linear decrease to the end
    assert "never moved" in _optimise.diagnose(np.full(100, 3.0), tol=1e-4)
    assert "non-finite at step 40" in _optimise.diagnose(np.where(t < 40, 1 - t / 100, np.nan), tol=1e-4)


def test_a_checkpoint_of_an_earlier_format_is_refused_with_advice(problem, tmp_path):
    """A checkpoint whose saved state has another layout (an earlier version's) is named as such, not as another fit."""
    import json

    syn, model = problem
    ck = tmp_path / "fit.ckpt"
    kw = dict(steps=4, checkpoint=ck, progress=False, optimiser=optax.adam(1e-2))
    _quiet(pi.fit, model, syn.data, **kw)
    with np.load(ck) as f:
        arrays = dict(f)
    header = json.loads(arrays["__header__"].tobytes())
    header["format"] = "plasticinfer-checkpoint/1"
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(ck, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(pi.DataError, match=r"fit.ckpt: a checkpoint of an earlier plasticinfer .*Delete it"):
        pi.fit(model, syn.data, resume=True, **kw)

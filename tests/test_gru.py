"""The tiny GRU ceiling: shapes, training lowers the loss, it beats a coin flip on RW data, early stopping sees only training animals."""

import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.compare import ComparisonError, FitSettings, GRUHypothesis, TinyGRU, fit_gru
from plasticinfer.compare._gru import previous_trial_inputs
from plasticinfer.compare._splits import Fold, subjects


def _rw_data(key, n_subjects=24):
    syn = pi.make_choice_data(pi.rescorla_wagner(0.3), key=key, n_subjects=n_subjects, inverse_temperature=5.0,
                              block_probabilities=((0.9, 0.1), (0.1, 0.9)), trials_per_block=40)
    return syn.data


def _random_data(n_subjects, n_trials=30, seed=0):
    rng = np.random.default_rng(seed)
    c = jnp.asarray(rng.integers(0, 2, (n_subjects, n_trials)))
    r = jnp.asarray((rng.random((n_subjects, n_trials)) < 0.5).astype(float))
    cues = jnp.broadcast_to(jnp.eye(2), (n_subjects, n_trials, 2, 2))
    return pi.TrialData({"cues": cues, "choice": c, "reward": r}, c, jnp.ones((n_subjects, n_trials), bool))


def _subject_fold(data, train_idx, test_idx):
    return Fold("test", subjects(data, train_idx), subjects(data, test_idx), np.asarray(train_idx), np.asarray(test_idx))


def test_inputs_are_the_previous_trial():
    c = jnp.asarray([1, 0, 1])
    r = jnp.asarray([1.0, 0.0, 0.0])
    x = np.asarray(previous_trial_inputs(c, r))
    np.testing.assert_array_equal(x, [[0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]])


def test_shapes_and_masked_likelihood(key):
    data = _random_data(3)
    gru = TinyGRU(2, key=key)
    assert gru.logits(data.inputs["choice"][0], data.inputs["reward"][0]).shape == (data.n_trials,)
    ll = gru.log_likelihood(data)
    assert ll.shape == (3, data.n_trials)
    masked = pi.TrialData(data.inputs, data.observations, data.mask.at[:, 5:].set(False))
    assert np.all(np.asarray(gru.log_likelihood(masked))[:, 5:] == 0)
    # the logit for trial t must not depend on trial t's own choice (no peeking)
    c = data.inputs["choice"][0]
    r = data.inputs["reward"][0].astype(float)
    flipped = c.at[10].set(1 - c[10])
    np.testing.assert_allclose(gru.logits(c, r)[:11], gru.logits(flipped, r)[:11])
    h = 2  # GRU: input, recurrent and bias weights of 3 gates, the candidate's extra bias, then the readout
    assert gru.n_parameters() == 3 * h * 4 + 3 * h * h + 3 * h + h + (h + 1)
    with pytest.raises(ComparisonError, match="hidden"):
        TinyGRU(0, key=key)


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_a_coin_flip(key):
    data = _rw_data(key)
    fold = _subject_fold(data, np.arange(16), np.arange(16, 24))
    hyp = GRUHypothesis(hidden=2, steps=600, learning_rate=3e-2, eval_every=50, patience=300)
    score = hyp.score(fold, FitSettings(restarts=1))
    fit = hyp.last_fit
    assert fit.initial_loss > 0.6  # an untrained network is near a coin flip (log 2 = 0.69)
    assert fit.loss_history[-1] < fit.initial_loss - 0.2
    assert fit.loss_history[-1] <= fit.loss_history[0]
    # held-out animals: better than log(1/2) per choice by a clear margin (the RW agent has β = 5)
    per_choice = score.test_ll.sum() / score.n_test.sum()
    assert per_choice > np.log(0.5) + 0.05
    assert score.per_subject_params is False and len(score.test_ll) == 8


@pytest.mark.slow
def test_early_stopping_uses_only_training_animals(key):
    data = _rw_data(key, 12)
    fold = _subject_fold(data, np.arange(8), np.arange(8, 12))
    hyp = GRUHypothesis(hidden=2, steps=200, eval_every=50, patience=100, validation_fraction=0.25, seed=3)
    fit_part, val_part, val_subjects = hyp.split_training(fold)
    assert set(val_subjects.tolist()) <= set(range(8)) and len(val_subjects) == 2
    assert fit_part.n_trajectories + val_part.n_trajectories == 8
    first = hyp.score(fold, FitSettings(restarts=1))
    # scramble the held-out animals' choices: the fitted network (its training log-lik) must not change
    scrambled = pi.TrialData(fold.test.inputs, 1 - fold.test.observations, fold.test.mask)
    second = hyp.score(Fold("test", fold.train, scrambled, fold.train_subjects, fold.test_subjects), FitSettings(restarts=1))
    np.testing.assert_allclose(first.train_ll, second.train_ll)
    assert not np.allclose(first.test_ll, second.test_ll)
    # one training animal: validation is its own late training trials
    one = _subject_fold(data, [0], [1])
    fp, vp, vs = hyp.split_training(one)
    assert len(vs) == 0
    assert not np.any(np.asarray(fp.mask) & np.asarray(vp.mask))


def test_fit_gru_without_validation_runs_all_steps(key):
    data = _random_data(4)
    res = fit_gru(TinyGRU(1, key=key), data, None, steps=100, eval_every=50)
    assert res.best_step == 100 and len(res.loss_history) == 2
    # steps that are not a multiple of eval_every: the last chunk runs what is left, no more
    odd = fit_gru(TinyGRU(1, key=key), data, None, steps=70, eval_every=30)
    assert odd.best_step == 70 and list(odd.validation_steps) == [30, 60, 70]


def test_the_early_stopping_verdict_reaches_the_comparison(key):
    """A GRU's training fit is 'converged' when early stopping ended it (the validation loss had stopped improving
    for `patience` steps), not when it ran out of steps still improving; the verdict reaches fits.csv's column
    (GRU rows had none)."""
    data = _random_data(6, n_trials=40)
    fold = _subject_fold(data, np.arange(4), np.arange(4, 6))
    stopped = GRUHypothesis(hidden=1, steps=2000, learning_rate=5e-2, eval_every=10, patience=20)
    score = stopped.score(fold, FitSettings(restarts=1))
    fit = stopped.last_fit
    assert fit.validation_steps[-1] < 2000 and fit.validation_steps[-1] - fit.best_step >= 20  # early stopping ended it
    assert score.converged == [True]
    cut = GRUHypothesis(hidden=1, steps=20, learning_rate=1e-3, eval_every=10, patience=500)
    assert cut.score(fold, FitSettings(restarts=1)).converged == [False]  # ran out of steps (20 < patience)
    assert fit_gru(TinyGRU(1, key=key), data, None, steps=20, eval_every=10).converged(500) is False
    result = pi.compare.compare({"GRU": cut}, data, split=pi.compare.HeldOutTrials(0.25), baselines=False, steps=2,
                                restarts=1, key=key, progress=False)  # fmt: skip
    assert result.fits["converged"].tolist() == [False] and "GRU: the shared fit" in result.convergence_note()

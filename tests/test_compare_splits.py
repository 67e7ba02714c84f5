"""Splits respect time and never leak held-out observations into training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.compare import ComparisonError, HeldOutTrials, InSample, LeaveFutureOut, LeaveOneSubjectOut
from plasticinfer.compare._splits import trial_valid


@pytest.fixture(scope="module")
def syn():
    return pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(0), n_subjects=3, trials_per_block=20)


def _padded(data):
    mask = np.ones((3, 60), bool)
    mask[1, 45:] = False  # subject 1 has 45 trials, padded at the end
    return data.with_mask(jnp.asarray(mask))


def _masks(fold):
    return np.asarray(fold.train.mask), np.asarray(fold.test.mask)


@pytest.mark.parametrize("split", [HeldOutTrials(0.25), HeldOutTrials(0.3, by_block=False), LeaveFutureOut(0.7)])
def test_trial_splits_are_disjoint_and_cover_valid_trials(syn, split):
    data = _padded(syn.data)
    (fold,) = split.folds(data, blocks=syn.block)
    tr, te = _masks(fold)
    assert not (tr & te).any()
    np.testing.assert_array_equal(tr | te, np.asarray(data.mask))  # padded trials in neither
    assert not te[1, 45:].any()
    fold.check_no_leak()


def test_heldout_trials_are_the_last_of_each_block(syn):
    (fold,) = HeldOutTrials(0.25).folds(syn.data, blocks=syn.block)
    te = np.asarray(fold.test.mask)[0]
    block = np.asarray(syn.block)[0]
    for b in np.unique(block):
        idx = np.flatnonzero(block == b)
        np.testing.assert_array_equal(np.flatnonzero(te[idx]), np.arange(15, 20))


def test_leave_future_out_trains_only_on_the_past(syn):
    data = _padded(syn.data)
    (fold,) = LeaveFutureOut(0.75).folds(data)
    tr, te = _masks(fold)
    for i in range(3):
        assert np.flatnonzero(tr[i]).max() < np.flatnonzero(te[i]).min()
    assert tr[1].sum() == round(0.75 * 45)


def test_future_and_calibration_cuts_count_valid_trials_not_positions(syn):
    # a mask with gaps before and among the valid trials (missed trials still step the weights, unscored)
    mask = np.ones((3, 60), bool)
    mask[:, :8] = False
    mask[:, 30:34] = False
    data = syn.data.with_mask(jnp.asarray(mask))  # 48 valid trials per subject
    tr, te = _masks(LeaveFutureOut(0.75).folds(data)[0])
    assert (tr.sum(axis=1) == 36).all() and (te.sum(axis=1) == 12).all()  # counted as positions: 24 and 24
    for i in range(3):
        assert np.flatnonzero(tr[i]).max() < np.flatnonzero(te[i]).min() and not (tr[i] & ~mask[i]).any()
    cal = LeaveOneSubjectOut(calibration_fraction=0.5).folds(data)[0]
    c, t = np.asarray(cal.calibration.mask)[0], np.asarray(cal.test.mask)[0]
    assert c.sum() == 24 and t.sum() == 24 and np.flatnonzero(c).max() < np.flatnonzero(t).min()  # as positions: 16 and 32


def test_leave_one_subject_out(syn):
    folds = LeaveOneSubjectOut().folds(syn.data)
    assert len(folds) == 3
    for s, fold in enumerate(folds):
        assert s not in fold.train_subjects and list(fold.test_subjects) == [s]
        assert fold.train.n_trajectories == 2 and fold.test.n_trajectories == 1
        np.testing.assert_array_equal(fold.test.observations[0], syn.data.observations[s])
        assert fold.new_subjects
    cal = LeaveOneSubjectOut(calibration_fraction=0.2).folds(syn.data)[0]
    c, t = np.asarray(cal.calibration.mask)[0], np.asarray(cal.test.mask)[0]
    assert not (c & t).any() and c[:12].all() and not c[12:].any() and t[12:].all()


def test_in_sample_and_errors(syn):
    (fold,) = InSample().folds(syn.data)
    np.testing.assert_array_equal(fold.train.mask, fold.test.mask)
    with pytest.raises(ComparisonError):
        LeaveOneSubjectOut().folds(syn.data.trajectory(0))
    with pytest.raises(ComparisonError):
        LeaveFutureOut(1.5).folds(syn.data)
    assert trial_valid(syn.data).all()


def test_an_in_sample_comparison_does_not_call_itself_held_out():
    data = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(0), n_subjects=2,
                               trials_per_block=10).data
    kw = dict(steps=2, restarts=1, progress=False, baselines=False)
    in_sample = pi.compare.compare(["x*r"], data, split=pi.compare.InSample(), **kw).summary().splitlines()[0]
    assert "scored on the trials they were fitted to (in-sample" in in_sample and "held-out subjects" not in in_sample
    assert "2 held-out subjects" in pi.compare.compare(["x*r"], data, **kw).summary().splitlines()[0]

"""Subject-level protocols (DatasetSplit, SubjectKFold), per-subject metrics, AIC/BIC against hand
computations, fitted coefficients, and the saved files read back."""

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import plasticinfer as pi
from plasticinfer.compare import (
    BaseRate,
    CoinFlip,
    ComparisonError,
    ComparisonResult,
    DatasetSplit,
    HeldOutTrials,
    LeaveOneSubjectOut,
    SubjectKFold,
    compare,
)
from plasticinfer.compare._splits import subjects


@pytest.fixture(scope="module")
def syn():
    return pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.6, "w": -0.1}), key=jax.random.key(11), n_subjects=5,
                               block_probabilities=((0.2, 0.8), (0.8, 0.2)), trials_per_block=20, inverse_temperature=1.0)


@pytest.fixture(scope="module")
def syn_ds(syn):
    n = syn.data.n_trajectories
    return pi.behaviour_dataset(
        [np.asarray(syn.data.observations[i]) for i in range(n)], [np.asarray(syn.data.inputs["reward"][i]) for i in range(n)],
        block=[np.asarray(syn.block[i]) for i in range(n)], subjects=[f"fly{i}" for i in range(n)],
        subject_coords={"split": ["training", "test", "training", "test", "training"]},
    )


# ---- splits (no fitting) -------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_subject_k_fold_holds_every_subject_out_once(syn, k):
    folds = SubjectKFold(k, seed=3).folds(syn.data)
    assert len(folds) == k
    held = np.concatenate([f.test_subjects for f in folds])
    assert sorted(held.tolist()) == list(range(5))  # each subject exactly once
    for f in folds:
        assert not set(f.train_subjects) & set(f.test_subjects) and len(f.train_subjects) + len(f.test_subjects) == 5
        assert f.new_subjects and f.calibration is None
        np.testing.assert_array_equal(f.test.observations, subjects(syn.data, f.test_subjects).observations)
        np.testing.assert_array_equal(f.test.mask, np.ones((len(f.test_subjects), 40), bool))  # every trial scored
    sizes = sorted(len(f.test_subjects) for f in folds)
    assert sizes[-1] - sizes[0] <= 1
    again = SubjectKFold(k, seed=3).folds(syn.data)
    assert all(np.array_equal(a.test_subjects, b.test_subjects) for a, b in zip(folds, again))
    if k < 5:
        other = SubjectKFold(k, seed=4).folds(syn.data)
        assert any(not np.array_equal(a.test_subjects, b.test_subjects) for a, b in zip(folds, other)) or k == 2


def test_subject_k_fold_errors(syn):
    for k in (1, 6):
        with pytest.raises(ComparisonError, match="2 ≤ k"):
            SubjectKFold(k).folds(syn.data)


def test_dataset_split_reads_the_split_coordinate(syn, syn_ds):
    split = DatasetSplit().for_dataset(syn_ds)
    (fold,) = split.folds(syn.data)
    assert fold.train_subjects.tolist() == [0, 2, 4] and fold.test_subjects.tolist() == [1, 3]
    with pytest.raises(ComparisonError, match="pass the xarray dataset"):
        DatasetSplit().folds(syn.data)
    with pytest.raises(ComparisonError, match="neither"):
        DatasetSplit(labels=("training", "test", "x", "test", "training")).folds(syn.data)
    with pytest.raises(ComparisonError, match="no 'split' coordinate"):
        DatasetSplit().for_dataset(syn_ds.drop_vars("split"))


def test_dataset_split_of_mohanta2022(shared_data):
    """mohanta2022 comes as 88 training and 44 test flies."""
    ds = pi.datasets.load("mohanta2022", path=shared_data)
    from plasticinfer._convert import choice_data

    (fold,) = DatasetSplit().for_dataset(ds).folds(choice_data(ds))
    assert len(fold.train_subjects) == 88 and len(fold.test_subjects) == 44
    assert all(str(s).startswith("test_") for s in ds["subject"].values[fold.test_subjects])


# ---- a population fit on the dataset's own split --------------------------------------------


@pytest.fixture(scope="module")
def shared(syn_ds):
    return compare(["x*r + w"], syn_ds, split=DatasetSplit(), per_subject=False, steps=15, restarts=2,
                   baselines=[CoinFlip(), BaseRate()], key=jax.random.key(2))


def _ll(model, data):
    with jax.numpy_dtype_promotion("standard"):
        return np.asarray(model.log_likelihood(data)).sum(-1)


@pytest.mark.slow
def test_shared_fit_scores_naive_held_out_subjects(shared, syn):
    """Held-out subjects start naive (w₀ = 0, not fitted) under the shared fitted rule: a direct log-likelihood."""
    model = shared.fitted[("x*r + w", "dataset test subjects")]
    test = subjects(syn.data, [1, 3])
    naive = pi.PlasticityModel.create(model.rule, model.network, model.observation, n_trajectories=2,
                                      initial_weights={"w": np.zeros((1, 2))})
    expected = _ll(naive, test)
    ps = shared.per_subject().set_index(["hypothesis", "subject"])
    np.testing.assert_allclose([ps.loc[("x*r + w", 1), "heldout_ll"], ps.loc[("x*r + w", 3), "heldout_ll"]], expected, rtol=1e-10)
    assert sorted(shared.scores["subject"].unique()) == [1, 3]  # only the dataset's test flies are scored
    assert (ps["n_heldout_trials"] == 40).all()


@pytest.mark.slow
def test_shared_fit_information_criteria_count_the_fit_once(shared, syn):
    """AIC/BIC of a shared fit: its training log-likelihood and parameters counted once, not once per held-out subject."""
    model = shared.fitted[("x*r + w", "dataset test subjects")]
    train = subjects(syn.data, [0, 2, 4])
    ll = _ll(model, train).sum()
    k = 3  # θ(x·r), θ(w), bias (β fixed, w₀ not fitted)
    n = 3 * 40
    assert shared.information_criterion("x*r + w", "aic") == pytest.approx(-2 * ll + 2 * k, rel=1e-9)
    assert shared.information_criterion("x*r + w", "bic") == pytest.approx(-2 * ll + k * np.log(n), rel=1e-9)
    t = shared.table()
    assert t.loc["x*r + w", "aic"] == pytest.approx(-2 * ll + 2 * k, rel=1e-9)
    # the pooled base rate is a shared fit too: one rate of 3 training flies, k − 1 = 1 parameter
    obs = np.asarray(train.observations)
    p1 = (obs.sum() + 0.5) / (obs.size + 1.0)
    ll_base = np.sum(np.where(obs == 1, np.log(p1), np.log(1 - p1)))
    assert t.loc["base rate", "aic"] == pytest.approx(-2 * ll_base + 2 * 1)
    coef = shared.coefficients.query("hypothesis == 'x*r + w'")
    assert (coef["subject"] == -1).all() and set(coef["term"]) == {"x*r", "w"}
    assert dict(zip(coef["term"], coef["value"])) == pytest.approx(model.rule.coefficients)


@pytest.mark.slow
def test_per_subject_metrics(shared):
    ps = shared.per_subject()
    np.testing.assert_allclose(ps["loglik_per_trial"], ps["heldout_ll"] / ps["n_heldout_trials"])
    np.testing.assert_allclose(ps["normalized_likelihood"], np.exp(ps["heldout_ll"] / 40))
    np.testing.assert_allclose(ps.query("hypothesis == 'coin flip'")["normalized_likelihood"], 0.5)
    t = shared.table(reference="coin flip")
    nl = ps.query("hypothesis == 'x*r + w'")["normalized_likelihood"]
    assert t.loc["x*r + w", "mean_normalized_likelihood"] == pytest.approx(nl.mean())
    assert t.loc["x*r + w", "se_normalized_likelihood"] == pytest.approx(stats.sem(nl))
    assert t.loc["x*r + w", "p_better_than_reference"] == pytest.approx(shared.paired_test("x*r + w", "coin flip").p_value)


@pytest.mark.slow
def test_save_and_load_round_trip(shared, tmp_path):
    paths = shared.save(tmp_path / "cmp")
    scores = pd.read_csv(paths["scores"])
    assert list(scores.columns[:6]) == ["hypothesis", "subject", "n_heldout", "heldout_loglik", "loglik_per_trial", "normalized_likelihood"]
    assert set(scores["subject"]) == {"fly1", "fly3"}
    coef = pd.read_csv(paths["coefficients"])
    assert list(coef.columns[:4]) == ["hypothesis", "subject", "term", "value"] and set(coef["subject"]) == {"shared"}
    back = ComparisonResult.load(tmp_path / "cmp")
    pd.testing.assert_frame_equal(back.per_subject(), shared.per_subject(), check_dtype=False)
    pd.testing.assert_frame_equal(back.table(), shared.table(), check_dtype=False)
    assert back.split_description == shared.split_description and back.subject_names == shared.subject_names
    assert not list((tmp_path / "cmp").glob(".*.tmp"))
    with pytest.raises(ComparisonError, match="missing"):
        ComparisonResult.load(tmp_path)


# ---- per-subject fits: AIC/BIC summed over subjects -----------------------------------------


@pytest.mark.slow
def test_per_subject_information_criteria(syn):
    data = subjects(syn.data, [0, 1, 2])
    res = compare(["x*r"], data, split=HeldOutTrials(0.25), blocks=np.asarray(syn.block)[:3], steps=10, restarts=1,
                  baselines=False)
    stacked = res.fitted[("x*r", "held-out trials")]
    (fold,) = HeldOutTrials(0.25).folds(data, blocks=np.asarray(syn.block)[:3])
    ll = np.array([_ll(jax.tree_util.tree_map(lambda a: a[i] if hasattr(a, "shape") and a.ndim else a, stacked),
                       subjects(fold.train, [i]))[0] for i in range(3)])
    n = np.asarray(fold.train.mask).sum(1)
    k = 2  # θ(x·r) and the bias, per subject
    assert res.information_criterion("x*r", "aic") == pytest.approx(np.sum(-2 * ll + 2 * k), rel=1e-9)
    assert res.information_criterion("x*r", "bic") == pytest.approx(np.sum(-2 * ll + k * np.log(n)), rel=1e-9)
    coef = res.coefficient_table("x*r")
    assert len(coef) == 3 and coef["x*r"].to_numpy() == pytest.approx(np.asarray(stacked.rule.coeffs)[:, 0])


@pytest.mark.slow
def test_subject_k_fold_compare(syn):
    res = compare(["x*r"], syn.data, split=SubjectKFold(2, seed=0), per_subject=False, steps=5, restarts=1,
                  baselines=[BaseRate()])
    assert sorted(res.scores.query("hypothesis == 'x*r'")["subject"]) == [0, 1, 2, 3, 4]
    assert len(res.fits.query("hypothesis == 'x*r'")) == 2  # one shared fit per fold
    with pytest.raises(ComparisonError, match="per_subject=False"):
        compare(["x*r"], syn.data, split=LeaveOneSubjectOut(), steps=2, restarts=1, baselines=False)

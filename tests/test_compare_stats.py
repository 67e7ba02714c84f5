"""Comparison statistics against independent oracles."""

import itertools

import numpy as np
import pytest
from scipy import stats

from plasticinfer.compare import aic, bic, deviance_explained, wilcoxon_signed_rank


def _exact_wilcoxon_greater(d):
    """Brute force: P(W+ ≥ observed) over all 2^n sign flips (no ties, no zeros)."""
    ranks = stats.rankdata(np.abs(d))
    w_obs = ranks[d > 0].sum()
    count = 0
    for signs in itertools.product([0, 1], repeat=len(d)):
        count += ranks[np.asarray(signs, bool)].sum() >= w_obs - 1e-12
    return count / 2 ** len(d)


def test_wilcoxon_matches_enumeration_and_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.normal(0.3, 1.0, 9)
        b = rng.normal(0.0, 1.0, 9)
        t = wilcoxon_signed_rank(a, b, alternative="greater")
        assert t.p_value == pytest.approx(_exact_wilcoxon_greater(a - b), rel=1e-10)
        ref = stats.wilcoxon(a - b, alternative="greater")
        assert t.p_value == pytest.approx(ref.pvalue) and t.statistic == pytest.approx(ref.statistic)
        assert t.n_better == int(np.sum(a > b)) and t.median_difference == pytest.approx(np.median(a - b))
    big = rng.normal(0.2, 1.0, 60)  # normal approximation
    assert wilcoxon_signed_rank(big, alternative="two-sided").p_value == pytest.approx(stats.wilcoxon(big).pvalue)


def test_wilcoxon_drops_zero_differences_and_handles_all_equal():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = np.array([1.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # one zero difference, five positive
    t = wilcoxon_signed_rank(a, b, alternative="greater")
    assert t.n == 5 and t.n_better == 5
    assert t.p_value == pytest.approx(1 / 2**5)
    same = wilcoxon_signed_rank(a, a)
    assert same.p_value == 1.0 and same.n == 0


def test_deviance_explained():
    ll_null = np.array([-100.0, -50.0])
    np.testing.assert_allclose(deviance_explained(ll_null, ll_null), 0.0)
    np.testing.assert_allclose(deviance_explained([0.0, 0.0], ll_null), 1.0)
    np.testing.assert_allclose(deviance_explained([-90.0, -60.0], ll_null), [0.1, -0.2])
    assert np.isnan(deviance_explained(5.0, 3.0))  # densities: not defined


def test_information_criteria():
    assert aic(-10.0, 3) == pytest.approx(26.0)
    assert bic(-10.0, 3, 100) == pytest.approx(20.0 + 3 * np.log(100))

"""Statistics of a comparison: deviance explained, AIC/BIC, paired Wilcoxon signed-rank tests across subjects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._errors import ComparisonError


def deviance_explained(ll_model, ll_null):
    """1 − D_model / D_null with D = −2·log-likelihood on the same trials (elementwise).

    0 for the null itself; 1 for a perfect model; negative when the model is worse than the null.
    Defined for discrete observations (choices), whose log-likelihood is ≤ 0; for densities
    (activity) it is NaN — compare log-likelihood gains instead. NaN too where the null's deviance is
    (numerically) 0: a null that predicts every held-out choice leaves nothing to explain, and the ratio
    would be a huge number (−10²⁰ %) from rounding.
    """
    ll_model = np.asarray(ll_model, dtype=float)
    ll_null = np.asarray(ll_null, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - ll_model / ll_null
    return np.where((ll_null < -NULL_DEVIANCE_FLOOR) & (ll_model <= 0), out, np.nan)


#: a null log-likelihood above −this (nats) leaves no deviance to explain (:func:`deviance_explained` is NaN)
NULL_DEVIANCE_FLOOR = 1e-6


def aic(ll, n_params):
    """Akaike information criterion −2·ll + 2k (lower is better)."""
    return -2.0 * np.asarray(ll, dtype=float) + 2.0 * np.asarray(n_params, dtype=float)


def bic(ll, n_params, n_observations):
    """Bayesian information criterion −2·ll + k·log n (lower is better)."""
    return -2.0 * np.asarray(ll, dtype=float) + np.asarray(n_params, dtype=float) * np.log(np.asarray(n_observations, dtype=float))


@dataclass
class PairedTest:
    """A Wilcoxon signed-rank test of per-subject differences a − b.

    Attributes:
        statistic: scipy's statistic (sum of ranks of positive differences for one-sided tests).
        p_value: p-value for ``alternative``.
        n: subjects with a non-zero difference.
        n_better: subjects where a > b.
        median_difference: median of a − b.
        alternative: "greater" (a better than b), "less" or "two-sided".
    """

    statistic: float
    p_value: float
    n: int
    n_better: int
    median_difference: float
    alternative: str

    def __str__(self) -> str:
        return (
            f"Wilcoxon signed-rank ({self.alternative}): {self.n_better} of {self.n} subjects better, median "
            f"difference {self.median_difference:+.4g}, p = {self.p_value:.3g}"
        )


def wilcoxon_signed_rank(a, b=None, *, alternative: str = "two-sided") -> PairedTest:
    """Paired Wilcoxon signed-rank test of a − b across subjects (zero differences dropped).

    Exact p-values for small samples without ties, the normal approximation otherwise (scipy's
    ``method="auto"``).
    """
    a = np.asarray(a, dtype=float)
    d = a - (np.asarray(b, dtype=float) if b is not None else 0.0)
    d = d[np.isfinite(d)]
    if alternative not in ("two-sided", "greater", "less"):
        raise ComparisonError(f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}")
    nz = d[d != 0]
    if nz.size == 0:
        return PairedTest(np.nan, 1.0, 0, 0, float(np.median(d)) if d.size else np.nan, alternative)
    from scipy import stats  # here, not at import: scipy.stats costs every `import plasticinfer` ~0.5 s

    res = stats.wilcoxon(nz, alternative=alternative, zero_method="wilcox", method="auto")
    return PairedTest(float(res.statistic), float(res.pvalue), int(nz.size), int((nz > 0).sum()), float(np.median(d)), alternative)


__all__ = ["deviance_explained", "aic", "bic", "wilcoxon_signed_rank", "PairedTest"]

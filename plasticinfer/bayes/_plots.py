"""Plots of posteriors: pairwise scatter with correlations; calibration rank histograms."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def plot_pairs(flat: pd.DataFrame, *, truth: Mapping[str, float] | None = None, max_draws: int = 1000, max_columns: int = 10):
    """Lower-triangle scatter of every pair of columns, histograms on the diagonal, r in each panel."""
    import matplotlib.pyplot as plt

    cols = list(flat.columns)[:max_columns]
    n = len(cols)
    rng = np.random.default_rng(0)
    rows = flat.iloc[rng.permutation(len(flat))[: max_draws]] if len(flat) > max_draws else flat
    size = max(1.6 * n, 3.0)
    fig, axes = plt.subplots(n, n, figsize=(size, size), squeeze=False)
    truth = dict(truth or {})
    corr = flat[cols].corr().to_numpy() if n > 1 else np.ones((1, 1))
    for i, ci in enumerate(cols):
        for j, cj in enumerate(cols):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(flat[ci].to_numpy(), bins=30, color="C0", alpha=0.8)
                if _key(ci) in truth:
                    ax.axvline(truth[_key(ci)], color="C3", lw=1.5)
            else:
                ax.scatter(rows[cj].to_numpy(), rows[ci].to_numpy(), s=3, alpha=0.35, color="C0", rasterized=True)
                if _key(ci) in truth and _key(cj) in truth:
                    ax.plot([truth[_key(cj)]], [truth[_key(ci)]], marker="x", color="C3", ms=8, mew=2)
                ax.text(0.03, 0.92, f"r={corr[i, j]:+.2f}", transform=ax.transAxes, fontsize=8, va="top",
                        color="C3" if abs(corr[i, j]) >= 0.9 else "k")
            if i == n - 1:
                ax.set_xlabel(ci, fontsize=8)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(ci, fontsize=8)
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=7)
    fig.suptitle("pairwise posterior" + (" (× truth)" if truth else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _key(label: str) -> str:
    """``theta[x*r]`` → ``x*r`` (truth dicts are keyed by term); other labels unchanged."""
    if label.endswith("]") and "[" in label:
        return label[label.index("[") + 1 : -1]
    return label


def plot_ranks(ranks: np.ndarray, n_draws: int, names: list[str], coverage: Mapping[str, float] | None = None, bins: int = 10):
    """Histogram of simulation-based-calibration ranks per parameter, with what uniform ranks give.

    The bins are those of :meth:`CalibrationResult.uniformity` (runs of consecutive integer ranks, as equal
    as integers allow); each bar spans its rank values, and the grey line and band are that bin's expected
    count and central 99 % binomial range under uniform ranks (so a bin holding one value more than its
    neighbours is drawn against its own, higher, expectation).
    """
    import matplotlib.pyplot as plt
    from scipy import stats

    from ._calibration import rank_bins, rank_counts

    n_sets, k = ranks.shape
    edges, share = rank_bins(n_draws, bins)
    expected = n_sets * share
    lo, hi = stats.binom.ppf(0.005, n_sets, share), stats.binom.ppf(0.995, n_sets, share)
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 2.8), squeeze=False)
    for j, ax in enumerate(axes[0]):
        counts = rank_counts(ranks[:, j], edges)
        ax.stairs(hi, edges, baseline=lo, fill=True, color="0.85", zorder=0)
        ax.stairs(expected, edges, color="0.3", lw=1, baseline=None, zorder=2.5)  # over the bars
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="C0", edgecolor="white")
        title = names[j]
        if coverage is not None and names[j] in coverage:
            title += f"\n90 % coverage {100 * coverage[names[j]]:.0f} %"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("rank of truth among draws", fontsize=8)
    axes[0, 0].set_ylabel("datasets", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["plot_pairs", "plot_ranks"]

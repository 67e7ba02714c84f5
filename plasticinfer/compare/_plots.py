"""Comparison plot: per subject and per hypothesis."""

from __future__ import annotations

import numpy as np


def plot_comparison(result):
    """Two panels: (left) held-out log-likelihood per observation relative to the base-rate null (or the
    best hypothesis), one line per subject across hypotheses; (right) total held-out log-likelihood gain
    over the null, per hypothesis, best first."""
    import matplotlib.pyplot as plt

    ps = result.per_subject()
    order = result.ranking()
    null = next((n for n in ("base rate", "mean activity") if n in result.baselines), order[-1])
    ref = ps[ps["hypothesis"] == null].set_index("subject")["heldout_ll_per_obs"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(7.0, 1.3 * len(order) + 4), 4.0), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(order))
    subjects = sorted(ps["subject"].unique())
    grid = np.full((len(subjects), len(order)), np.nan)
    for j, name in enumerate(order):
        d = ps[ps["hypothesis"] == name].set_index("subject")["heldout_ll_per_obs"]
        for i, s in enumerate(subjects):
            if s in d.index:
                grid[i, j] = d[s] - ref[s]
    for i in range(len(subjects)):
        ax1.plot(x, grid[i], color="0.7", lw=0.8, zorder=1)
    for j, name in enumerate(order):
        colour = "C0" if name in result.hypotheses else "C7"
        ax1.scatter(np.full(len(subjects), x[j]), grid[:, j], s=14, color=colour, zorder=2)
        ax1.scatter([x[j]], [np.nanmedian(grid[:, j])], marker="_", s=400, color="C3", zorder=3)
    ax1.axhline(0.0, color="k", lw=0.8)
    ax1.set_xticks(x, order, rotation=30, ha="right", fontsize=8)
    ax1.set_ylabel(f"held-out log-lik per observation\nminus {null} (nats)")
    ax1.set_title("per subject (red: median)", fontsize=9)
    totals = [ps[ps["hypothesis"] == n]["heldout_ll"].sum() - ps[ps["hypothesis"] == null]["heldout_ll"].sum() for n in order]
    colours = ["C0" if n in result.hypotheses else "C7" for n in order]
    ax2.barh(x[::-1], totals, color=colours)
    ax2.set_yticks(x[::-1], order, fontsize=8)
    ax2.axvline(0.0, color="k", lw=0.8)
    ax2.set_xlabel(f"total held-out log-lik gain over {null} (nats)")
    ax2.set_title("all subjects (blue: hypotheses, grey: baselines)", fontsize=9)
    split = result.split if isinstance(result.split, str) else type(result.split).__name__
    fig.suptitle(f"model comparison — {split}", fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["plot_comparison"]

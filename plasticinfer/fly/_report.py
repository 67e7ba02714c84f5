"""The fly analysis report: markdown + PNG figures + the comparison's CSV files, written atomically.

Everything in it is computed from the analysis's comparison results (:class:`~plasticinfer.compare.ComparisonResult`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import remove_earlier_outputs, write_figure, write_text
from ..compare._baselines import BASE_RATE
from ..compare._parse import rule_equation
from ..compare._result import _format, data_title
from ..compare._splits import HeldOutTrials
from ._analysis import DECAY_PAIRS, SUBJECT_SPLITS, ChoiceAnalysis, choice_probabilities, decay_summary

#: The published analysis of the rajagopalan2023 flies; quoted only when the report is about that dataset.
PUBLISHED = {
    "rajagopalan2023": (
        "Mehta et al. (NeurIPS 2024) on these flies: median in-sample deviance explained 5.85 % without and "
        "7.06 % with a weight-decay term (against a coin flip), 17 of 18 flies improved, decay coefficient small "
        "and negative."
    ),
}
#: The list of files a report wrote, kept in its folder: the next report into the same folder removes those of
#: them it does not write again (a figure it does not draw, an in-sample comparison it did not run), and only those.
MANIFEST = "report_files.json"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_traces(analysis: ChoiceAnalysis, hypothesis: str, subjects=(0, 1, 2)):
    """P(choice = option 1) over trials for a few subjects, observed choices and block boundaries."""
    plt = _plt()
    model = analysis.fitted_per_subject(hypothesis)
    if model is None:
        return None
    data = analysis.data
    probs = choice_probabilities(model, data)
    choice = np.asarray(data.observations)
    mask = np.asarray(data.mask)
    block = analysis.dataset["block"].transpose("subject", "trial").values
    subjects = [s for s in subjects if s < data.n_trajectories]
    fig, axes = plt.subplots(len(subjects), 1, figsize=(10, 2.2 * len(subjects) + 0.6), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], subjects):
        n = int(mask[s].sum())
        t = np.arange(n)
        ax.plot(t, probs[s, :n], color="tab:blue", lw=1.5, label=f"P(option 1), {hypothesis}")
        smooth = np.convolve(choice[s, :n], np.ones(10) / 10, mode="same")
        ax.plot(t, smooth, color="0.5", lw=1, label="observed, 10-trial mean")
        ax.scatter(t, choice[s, :n] * 1.04 - 0.02, s=4, color="k", alpha=0.5, label="observed choice")
        if "p_reward" in analysis.dataset:
            p = analysis.dataset["p_reward"].transpose("subject", "trial", "option").values[s, :n]
            with np.errstate(invalid="ignore", divide="ignore"):
                share = p[:, 1] / p.sum(1)
            ax.plot(t, share, color="tab:orange", lw=1, ls=":", label="reward share of option 1")
        for b in np.flatnonzero(np.diff(block[s, :n]) != 0):
            ax.axvline(b + 0.5, color="k", lw=0.8, ls="--")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel(analysis.subjects[s][-12:], fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=4, loc="upper center", frameon=False)  # above the panels, off the data
    axes[-1, 0].set_xlabel("trial")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    return fig


def plot_deviance(analysis: ChoiceAnalysis):
    """Held-out deviance explained (vs the base rate) per subject and hypothesis."""
    plt = _plt()
    ps = analysis.heldout.per_subject()
    hyps = [h for h in analysis.heldout.ranking() if h != BASE_RATE]
    col = "dev_explained_vs_base_rate"
    fig, ax = plt.subplots(figsize=(9, 3.8))
    rng = np.random.default_rng(0)
    for i, h in enumerate(hyps):
        v = 100 * ps.loc[ps["hypothesis"] == h, col].to_numpy(float)
        ax.scatter(i + 0.15 * rng.standard_normal(v.size), v, s=12, alpha=0.7)
        ax.plot([i - 0.3, i + 0.3], [np.nanmedian(v)] * 2, color="k", lw=2)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(hyps)), hyps, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel("held-out deviance explained\nvs base rate (% of its deviance)")
    ax.set_title("each dot a subject; bar = median", fontsize=9)
    fig.tight_layout()
    return fig


def plot_decay(analysis: ChoiceAnalysis, hypothesis: str = "x·r + w"):
    plt = _plt()
    d = decay_summary(analysis, hypothesis)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(d["values"], bins=12, color="tab:purple", alpha=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("θ(w), decay coefficient (per trial)")
    ax.set_ylabel("subjects")
    ax.set_title(f"{hypothesis}: {d['negative']}/{d['n']} negative", fontsize=9)
    fig.tight_layout()
    return fig


def _describe_data(analysis: ChoiceAnalysis) -> list[str]:
    ds = analysis.dataset
    lines = [f"Data: {data_title(ds.attrs, 'a behaviour dataset')}"]
    for label, key in (("Source", "source"), ("Licence", "license"), ("Citation", "citation")):
        if ds.attrs.get(key):
            lines.append(f"{label}: {str(ds.attrs[key]).strip()}")
    n_trials = np.asarray(ds["trial_mask"].sum("trial"))
    lines.append(f"{ds.sizes['subject']} subjects, {int(n_trials.min())}–{int(n_trials.max())} trials each.")
    return lines


def _describe_split(analysis: ChoiceAnalysis) -> str:
    split = analysis.heldout.split
    if isinstance(split, HeldOutTrials):
        return f"the last {split.fraction:.0%} of each block held out (fitted on the rest)"
    return f"held out by {analysis.heldout.split_description}"


def write_report(
    analysis: ChoiceAnalysis, out, *, title: str | None = None, posterior=None, advice: Callable[[str], str] | None = None
) -> dict[str, Path]:
    """Write report.md, table.csv, the held-out comparison's files (scores.csv, coefficients.csv, …;
    :meth:`ComparisonResult.save`), the in-sample comparison in ``in_sample/`` and figures into ``out``.

    ``advice`` rewrites the hierarchical posterior's text (its sampler warnings) for the report's reader; the
    command line passes one that names its options instead of Python calls."""
    plt = _plt()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = dict(analysis.heldout.save(out))
    if analysis.in_sample is not None:
        paths.update({f"in_sample_{k}": v for k, v in analysis.in_sample.save(out / "in_sample").items()})
    if analysis.control is not None:
        paths.update({f"control_{k}": v for k, v in analysis.control.save(out / "control").items()})
    table = analysis.table()
    paths["fly_table"] = write_text(table.to_csv(), out / "table.csv")  # "table" is the comparison's comparison.csv
    result = analysis.heldout
    hyps = result.hypotheses
    best = next((h for h in result.ranking() if h in hyps), None)
    figs = {}
    traces = plot_traces(analysis, best) if best is not None else None
    if traces is not None:
        figs["traces"] = traces
    figs["deviance"] = plot_deviance(analysis)
    if "x·r + w" in hyps:
        figs["decay"] = plot_decay(analysis, "x·r + w")
    for name, fig in figs.items():
        paths[name] = write_figure(fig, out / f"{name}.png", dpi=110)
        plt.close(fig)
    s = result.settings
    lines = [f"# {title or 'Choice-learning analysis'}", ""]
    lines += _describe_data(analysis)
    lines += [
        "",
        f"Hypotheses fitted {'per subject' if s.per_subject else 'as one rule shared by the training subjects'} "
        f"(MAP, {s.steps} L-BFGS steps × {s.restarts} starts, β = 1, no lapses, initial weights "
        f"{'fitted' if s.fit_initial_weights else 'at 0 (a naive fly)'}, fitted bias); {_describe_split(analysis)}. "
        "Log-likelihoods in nats. Deviance explained DE = 1 − D_model/D_null, D = −2·log-likelihood on the same "
        "held-out trials; 'vs coin' uses P = 0.5 (the published metric), 'vs base rate' "
        + ("the training subjects' pooled smoothed choice rate" if isinstance(result.split, SUBJECT_SPLITS)
           else "each subject's smoothed training choice rate")
        + " (a fair null). Normalized likelihood = exp(log-likelihood per held-out trial).",
        "",
        "## Hypotheses ranked by total held-out log-likelihood",
        "",
        "```",
        _short(table).to_string(),
        "```",
        "",
    ]
    if result.convergence_note():
        lines += [f"**Warning: {result.convergence_note()}.**", ""]
    if best is not None and table.loc[best, "heldout_ll"] <= table.loc[BASE_RATE, "heldout_ll"]:
        lines += [
            f"**No rule hypothesis predicts the held-out choices better than the base rate** (the best rule, {best}, "
            f"scores {table.loc[best, 'heldout_ll'] - table.loc[BASE_RATE, 'heldout_ll']:+.2f} nats against it). "
            "Below, 'best' means only the best of the rules.",
            "",
        ]
    for a, b in DECAY_PAIRS:
        if a in hyps and b in hyps:
            pr = analysis.paired(a, b)
            lines.append(
                f"- **{b}** vs **{a}** (held-out): {pr.n_better}/{pr.n} subjects improve, median gain "
                f"{pr.median_difference:+.4f} nats per observation, Wilcoxon signed-rank p = {pr.p_value:.3g}."
            )
            if analysis.in_sample is not None:
                ins = analysis.in_sample.table()
                pi_ = analysis.paired(a, b, in_sample=True)
                lines.append(
                    f"  In-sample (all trials, vs coin): median DE {100 * ins.loc[a, 'median_dev_explained_vs_coin']:.2f} % → "
                    f"{100 * ins.loc[b, 'median_dev_explained_vs_coin']:.2f} %, {pi_.n_better}/{pi_.n} subjects improve."
                )
    if "x·r + w" in hyps:
        d = decay_summary(analysis, "x·r + w")
        where = "all trials" if analysis.in_sample is not None else "training trials"
        of = ("the shared fit" if d["n"] == 1 else f"fold fits (one shared rule per fold)") if d["shared"] else "subjects"
        lines.append(
            f"- Decay coefficient θ(w) of x·r + w ({where}): median {d['median']:.3f} "
            f"(IQR {d['q25']:.3f} … {d['q75']:.3f}); negative in {d['negative']}/{d['n']} {of}."
        )
    if best is not None and s.per_subject is False:
        models = {fold: m for (h, fold), m in result.fitted.items() if h == best and hasattr(m, "rule")}
        for fold, model in models.items():
            reward_expectation = bool(getattr(getattr(model, "network", None), "reward_expectation", False))
            which = "shared fit" if len(models) == 1 else f"shared fit of fold {fold!r} ({len(models)} folds, one rule each)"
            line = f"- Best hypothesis, {which}: {rule_equation(model.rule, reward_expectation=reward_expectation)}"
            if hasattr(model, "scale"):
                line += f" (population mean; spread σ across subjects {np.round(np.asarray(model.scale), 3).tolist()})"
            lines.append(line)
    if analysis.control is not None:
        lines += _control_lines(analysis, best)
    if posterior is not None:
        text = str(posterior) if advice is None else advice(str(posterior))
        lines += ["", "## Hierarchical posterior", "", "```", text, "```", ""]
        if hasattr(posterior, "per_subject"):
            lines += ["Per-fly posteriors (90 % intervals):", "", "```", posterior.per_subject().round(3).to_string(), "```"]
        if hasattr(posterior, "plot"):
            fig = posterior.plot()
            paths["posterior"] = write_figure(fig, out / "posterior.png", dpi=110)
            plt.close(fig)
            figs["posterior"] = None
        if hasattr(posterior, "posterior"):
            posterior.posterior.save(out / "posterior.nc")
            paths["posterior_nc"] = out / "posterior.nc"
    published = PUBLISHED.get(str(analysis.dataset.attrs.get("dataset", "")))
    if published is not None:
        lines += [
            "",
            "## Compared with the published analysis",
            "",
            published,
            "",
            "Differences to keep in mind: the published figures are in-sample, against a coin flip; the held-out "
            + (
                "figures here score choices whose likelihood the fit never used (the network still learns from "
                "those trials' choices and rewards, so the score is somewhat optimistic, as pointwise LOO is; "
                "`plasticinfer compare --split future` holds out only each fly's last trials)"
                if isinstance(analysis.heldout.split, HeldOutTrials)
                else "figures here score flies the fit never saw"
            )
            + ", and are also reported against the base rate, "
            "which already explains part of the coin-flip deviance (a fly's overall odour bias). Odours are coded "
            "one-hot (the chosen odour's synapse learns, every synapse decays); the fitted choice bias absorbs the "
            "flies' side preferences.",
            "",
        ]
    lines += [
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{name}]({name}.png)" for name in figs]
    paths["report"] = write_text("\n".join(lines) + "\n", out / "report.md")
    remove_earlier_outputs(out, paths.values(), MANIFEST)
    return paths


def _short(table):
    cols = [c for c in ["rank", "kind", "n_params", "heldout_ll", "delta_ll_vs_best", "mean_normalized_likelihood",
                        "se_normalized_likelihood", "median_dev_explained_vs_coin", "median_dev_explained_vs_base_rate",
                        "median_dev_explained_vs_coin_in_sample", "subjects_better_than_base", "p_best_better"] if c in table]
    return _format(table[cols])


def _control_lines(analysis: ChoiceAnalysis, best: str | None) -> list[str]:
    """The report's claims beside the same comparison on rewards shuffled within each subject."""
    real, null = analysis.heldout, analysis.control
    lines = [
        "",
        "## Control: rewards shuffled within each subject",
        "",
        "The same held-out comparison on the same choices, with each subject's rewards permuted among its trials: "
        "choice bias and autocorrelation stay, the relation to reward goes. A claim about reward learning should "
        "hold with the real rewards and fail here.",
        "",
    ]
    null_table = null.table()
    real_table = real.table()
    gain = lambda t, h: t.loc[h, "heldout_ll"] - t.loc[BASE_RATE, "heldout_ll"]  # noqa: E731
    for h in [h for h in null.hypotheses if h in real_table.index]:
        lines.append(
            f"- {h}: held-out log-likelihood vs the base rate {gain(real_table, h):+.2f} nats with the real rewards, "
            f"{gain(null_table, h):+.2f} with shuffled rewards; better than the base rate in "
            f"{int(real_table.loc[h, 'subjects_better_than_base'])}/{int(real_table.loc[h, 'n_subjects'])} vs "
            f"{int(null_table.loc[h, 'subjects_better_than_base'])}/{int(null_table.loc[h, 'n_subjects'])} subjects."
        )
    for a, b in DECAY_PAIRS:
        if a in null.hypotheses and b in null.hypotheses:
            pr, pn = real.paired_test(b, a, alternative="greater"), null.paired_test(b, a, alternative="greater")
            if pr.median_difference <= 0:
                verdict = "the decay term does not help held-out with the real rewards"
            elif pn.median_difference >= pr.median_difference:
                verdict = "the decay term helps as much or more without the reward relation: its gain is not evidence about reward learning"
            elif pn.median_difference > 0:
                verdict = (f"the decay term helps more with the real rewards, though {pn.median_difference / pr.median_difference:.0%} "
                           "of its gain remains without them (choice autocorrelation)")
            else:
                verdict = "the decay term helps only with the real rewards"
            lines.append(
                f"- {b} vs {a}: median gain {pr.median_difference:+.4f} nats per observation with the real rewards "
                f"({pr.n_better}/{pr.n} subjects improve), {pn.median_difference:+.4f} with shuffled rewards "
                f"({pn.n_better}/{pn.n}) — {verdict}."
            )
    if best is not None and best in null.hypotheses:
        margin = gain(real_table, best) - gain(null_table, best)
        lines.append(
            f"- The best rule, {best}, gains {margin:+.2f} nats over its own fit to shuffled rewards"
            + (" — no more than a rule fitted to choices alone." if margin <= 0 else ".")
        )
    return lines

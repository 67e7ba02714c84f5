"""`compare`: rank named hypotheses by held-out log-likelihood, per subject and overall, against fair baselines."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from .._io import write_figure, write_text
from .._model import PlasticityModel
from .._trial_data import TrialData
from ._baselines import BASE_RATE, COIN_FLIP, MEAN_ACTIVITY, RESCORLA_WAGNER, STATIC_WEIGHTS, standard_baselines
from .._errors import ComparisonError
from ._hypotheses import AbstractHypothesis, FitSettings, ModelHypothesis, as_hypothesis, is_choice_data
from ._splits import AbstractSplit, HeldOutTrials
from ._stats import PairedTest, aic, bic, deviance_explained, wilcoxon_signed_rank

#: Nulls for "deviance explained", in report order: (column suffix, baseline name).
NULLS = (("coin", COIN_FLIP), ("base_rate", BASE_RATE), ("rw", RESCORLA_WAGNER), ("mean", MEAN_ACTIVITY), ("static", STATIC_WEIGHTS))


@dataclass
class ComparisonResult:
    """Scores of every hypothesis on every subject.

    Attributes:
        scores: one row per (hypothesis, fold, subject): held-out and training log-likelihood,
            observation counts and parameter counts.
        hypotheses: names of the user's hypotheses, in the order given.
        baselines: names of the baselines included.
        split: the split used.
        settings: the fitting settings.
        subject_names: a label per subject.
        discrete: whether observations are discrete (choices): deviance explained is reported for
            them; for densities (activity) the held-out log-likelihood gain per observation instead.
    """

    scores: pd.DataFrame
    hypotheses: list[str]
    baselines: list[str]
    split: AbstractSplit
    settings: FitSettings
    subject_names: list[str] = field(default_factory=list)
    discrete: bool = True

    @property
    def names(self) -> list[str]:
        return self.hypotheses + self.baselines

    def per_subject(self) -> pd.DataFrame:
        """Per (hypothesis, subject): held-out log-lik, per observation, deviance explained vs each null, AIC/BIC."""
        g = self.scores.groupby(["hypothesis", "subject"], sort=False)
        df = g.agg(
            heldout_ll=("test_ll", "sum"),
            n_heldout=("n_test", "sum"),
            train_ll=("train_ll", "sum"),
            n_train=("n_train", "sum"),
            n_params=("n_params", "first"),
            per_subject_params=("per_subject_params", "first"),
        ).reset_index()
        df["heldout_ll_per_obs"] = df["heldout_ll"] / df["n_heldout"]
        for suffix, null in NULLS:
            if null not in self.baselines:
                continue
            ref = df[df["hypothesis"] == null].set_index("subject")["heldout_ll"]
            if self.discrete:
                df[f"dev_explained_vs_{suffix}"] = deviance_explained(df["heldout_ll"], df["subject"].map(ref))
            else:
                df[f"ll_gain_vs_{suffix}"] = (df["heldout_ll"] - df["subject"].map(ref)) / df["n_heldout"]
        per = df["per_subject_params"].astype(bool)
        df["aic"] = np.where(per, aic(df["train_ll"], df["n_params"]), np.nan)
        df["bic"] = np.where(per, bic(df["train_ll"], df["n_params"], df["n_train"]), np.nan)
        if self.subject_names:
            df.insert(2, "subject_name", [self.subject_names[int(s)] for s in df["subject"]])
        return df.drop(columns=["per_subject_params"])

    def ranking(self) -> list[str]:
        """Every hypothesis and baseline, best held-out log-likelihood first."""
        tot = self.scores.groupby("hypothesis")["test_ll"].sum()
        return list(tot.sort_values(ascending=False).index)

    def paired_test(self, a: str, b: str, *, alternative: str = "greater") -> PairedTest:
        """Wilcoxon signed-rank test across subjects of held-out log-lik per observation, ``a`` vs ``b``.

        ``alternative="greater"`` asks whether ``a`` predicts held-out trials better than ``b``
        (e.g. a = "x·r + w", b = "x·r": does adding the decay term help?).
        """
        for n in (a, b):
            if n not in self.names:
                raise ComparisonError(f"no hypothesis {n!r}; compared: {self.names}")
        ps = self.per_subject().set_index(["hypothesis", "subject"])["heldout_ll_per_obs"]
        xa, xb = ps.loc[a], ps.loc[b]
        common = xa.index.intersection(xb.index)
        return wilcoxon_signed_rank(xa.loc[common].to_numpy(), xb.loc[common].to_numpy(), alternative=alternative)

    def table(self) -> pd.DataFrame:
        """One row per hypothesis: held-out log-lik (total, per observation, Δ to the best), median deviance
        explained against each null, subjects better than the base rate, AIC/BIC, and a paired test against the best."""
        ps = self.per_subject()
        order = self.ranking()
        best = order[0]
        rows = []
        tot_best = ps[ps["hypothesis"] == best]["heldout_ll"].sum()
        for name in order:
            d = ps[ps["hypothesis"] == name]
            row = {
                "hypothesis": name,
                "kind": "hypothesis" if name in self.hypotheses else "baseline",
                "n_params": float(d["n_params"].iloc[0]),
                "heldout_ll": float(d["heldout_ll"].sum()),
                "heldout_ll_per_obs": float(d["heldout_ll"].sum() / d["n_heldout"].sum()),
                "delta_ll_vs_best": float(d["heldout_ll"].sum() - tot_best),
            }
            for suffix, null in NULLS:
                for col in (f"dev_explained_vs_{suffix}", f"ll_gain_vs_{suffix}"):
                    if col in d:
                        row[f"median_{col}"] = float(np.nanmedian(d[col])) if np.isfinite(d[col]).any() else np.nan
            base = BASE_RATE if BASE_RATE in self.baselines else (MEAN_ACTIVITY if MEAN_ACTIVITY in self.baselines else None)
            if base is not None:
                ref = ps[ps["hypothesis"] == base].set_index("subject")["heldout_ll"]
                row["subjects_better_than_base"] = int((d.set_index("subject")["heldout_ll"] > ref).sum())
                row["n_subjects"] = int(len(d))
            row["aic"] = float(d["aic"].sum()) if d["aic"].notna().all() else _shared_ic(self.scores, name, "aic")
            row["bic"] = float(d["bic"].sum()) if d["bic"].notna().all() else _shared_ic(self.scores, name, "bic")
            if name != best and len(d) > 1:
                t = self.paired_test(best, name, alternative="greater")
                row["p_best_better"] = t.p_value
            else:
                row["p_best_better"] = np.nan
            rows.append(row)
        out = pd.DataFrame(rows)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        return out.set_index("hypothesis")

    def summary(self) -> str:
        t = self.table()
        cols = [c for c in ["rank", "kind", "n_params", "heldout_ll_per_obs", "delta_ll_vs_best", "median_dev_explained_vs_coin",
                            "median_dev_explained_vs_base_rate", "median_dev_explained_vs_rw", "median_ll_gain_vs_mean",
                            "median_ll_gain_vs_static", "subjects_better_than_base", "p_best_better"] if c in t]
        head = (
            f"model comparison: {self.split!r}, {'per-subject' if self.settings.per_subject else 'shared'} fits "
            f"({self.settings.steps} L-BFGS steps), {self.scores['subject'].nunique()} subjects"
        )
        return head + "\n" + _format(t[cols]).to_string()

    def to_markdown(self) -> str:
        t = self.table()
        body = _format(t).to_markdown() if _has_tabulate() else "```\n" + _format(t).to_string() + "\n```"
        lines = [
            "# Model comparison",
            "",
            f"- split: `{self.split!r}`",
            f"- fits: {'one per subject (fit_independent)' if self.settings.per_subject else 'one shared rule (fit)'}, "
            f"{self.settings.steps} L-BFGS steps × {self.settings.restarts} starts, l1 = {self.settings.l1}, initial weights "
            f"{'fitted' if self.settings.fit_initial_weights else 'fixed'}",
            f"- ranking by held-out log-likelihood: {' > '.join(self.ranking())}",
            "- deviance explained = 1 − D_model/D_null on the held-out trials, D = −2·log-lik; the coin-flip null is "
            "for comparability with published numbers only."
            if self.discrete
            else "- activity: log-likelihood gain per held-out observation over each null (densities: no deviance ratio).",
            "",
            body,
        ]
        return "\n".join(lines) + "\n"

    def plot(self):
        from ._plots import plot_comparison

        return plot_comparison(self)

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write comparison.csv, comparison.md, per_subject.csv and comparison.png (each atomically)."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "table": folder / "comparison.csv",
            "markdown": folder / "comparison.md",
            "per_subject": folder / "per_subject.csv",
            "plot": folder / "comparison.png",
        }
        write_text(self.table().to_csv(), paths["table"])
        write_text(self.to_markdown(), paths["markdown"])
        write_text(self.per_subject().to_csv(index=False), paths["per_subject"])
        fig = self.plot()
        write_figure(fig, paths["plot"], dpi=120, bbox_inches="tight")
        plt.close(fig)
        return paths


def _shared_ic(scores: pd.DataFrame, name: str, which: str) -> float:
    d = scores[scores["hypothesis"] == name]
    if d["per_subject_params"].all():
        return np.nan
    total = 0.0
    for _, f in d.groupby("fold"):  # shared fits: one parameter count per fold
        ll, k, n = f["train_ll"].sum(), f["n_params"].iloc[0], f["n_train"].sum()
        total += float(aic(ll, k) if which == "aic" else bic(ll, k, n))
    return total


def _format(t: pd.DataFrame) -> pd.DataFrame:
    out = t.copy()
    for c in out.columns:
        if c.startswith("median_dev"):
            out[c] = (100 * out[c]).round(2).astype(str) + " %"
    return out.round(4)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def compare(
    hypotheses: Mapping[str, PlasticityModel | object],
    data: TrialData,
    *,
    split: AbstractSplit | None = None,
    blocks=None,
    per_subject: bool = True,
    baselines: bool | Sequence[AbstractHypothesis] = True,
    steps: int = 300,
    l1: float = 0.0,
    fit_initial_weights: bool | None = None,
    restarts: int = 4,
    restart_scale: float = 0.2,
    key: PRNGKeyArray | None = None,
    subject_names: Sequence[str] | None = None,
    progress: bool = False,
) -> ComparisonResult:
    """Fit every hypothesis on the training part of each fold and score it on the held-out part.

    Args:
        hypotheses: name → a :class:`PlasticityModel` (its values are the fit's start) or a rule
            (the standard model for the data is built: ``ChoiceCircuit`` + ``BernoulliChoice`` with
            β fixed at 1 for choices, ``FeedForward`` + ``GaussianActivity`` for activity).
        data: the data (all subjects).
        split: how to hold data out (default ``HeldOutTrials(0.25)``: the last quarter of each block).
            ``LeaveFutureOut``, ``LeaveOneSubjectOut`` (needs ``per_subject=False``), ``InSample``.
        blocks: (trajectory, trial) block labels for ``HeldOutTrials``.
        per_subject: fit each subject separately (``fit_independent``) — the usual per-animal
            analysis — or one shared rule (``fit``) with per-subject initial weights.
        baselines: ``True`` adds the standard baselines (choices: coin flip, base rate,
            Rescorla–Wagner; activity: mean activity, static weights); ``False`` none; or a list.
        steps, l1: fitting settings (L-BFGS steps, L1 penalty), the same for every hypothesis.
        fit_initial_weights: fit each subject's initial weights. Default: no for choice data (the
            weights start at the model's values, 0 — a naive animal — and the fitted bias carries any
            initial preference: a fitted initial weight difference and the bias are interchangeable
            when learning is weak, and fits drift along that ridge to huge cancelling values);
            yes for activity data.
        restarts, restart_scale: every fit starts from the hypothesis's values and from ``restarts − 1``
            jittered copies (rule coefficients + ``restart_scale``·N(0, 1)); the best training loss wins.
            Fits of learning models have local optima (e.g. "no learning, strong bias"): one start can
            make the true rule lose.
        key: PRNG key for the restarts (the same jitter for every hypothesis) and for initial weights of
            activity models built from rules; required unless ``restarts=1`` and no such model is built.
        subject_names: labels for the per-subject table.
        progress: show fitting progress bars.
    """
    if not hypotheses:
        raise ComparisonError("give at least one hypothesis (a dict name → model or rule)")
    split = split if split is not None else HeldOutTrials(0.25)
    if fit_initial_weights is None:
        fit_initial_weights = not is_choice_data(data)
    import jax

    k_fit, k_model = jax.random.split(key) if key is not None else (None, None)
    settings = FitSettings(
        steps=steps, l1=l1, per_subject=per_subject, fit_initial_weights=fit_initial_weights, restarts=restarts,
        restart_scale=restart_scale, key=k_fit, progress=progress,
    )
    hyps = [as_hypothesis(name, value, data, key=k_model) for name, value in hypotheses.items()]
    template = next((h.model for h in hyps if isinstance(h, ModelHypothesis)), None)
    if baselines is True:
        base = standard_baselines(data, template)
    elif baselines is False:
        base = []
    else:
        base = list(baselines)
    names = [h.name for h in hyps] + [b.name for b in base]
    if len(set(names)) != len(names):
        raise ComparisonError(f"hypothesis names must be unique (baselines included); got {names}")
    if blocks is not None and np.shape(blocks) != (data.n_trajectories, data.n_trials):
        raise ComparisonError(f"blocks must have shape (trajectory, trial) = {(data.n_trajectories, data.n_trials)}")
    folds = split.folds(data, blocks=blocks)
    rows = []
    for h in hyps + base:
        if not h.applies_to(data):
            continue
        for fold in folds:
            s = h.score(fold, settings)
            pos = {subj: i for i, subj in enumerate(fold.train_subjects.tolist())}
            for j, subj in enumerate(fold.test_subjects.tolist()):
                i = pos.get(subj)
                rows.append(
                    {
                        "hypothesis": h.name,
                        "fold": fold.name,
                        "subject": int(subj),
                        "test_ll": float(s.test_ll[j]),
                        "n_test": int(s.n_test[j]),
                        "train_ll": float(s.train_ll[i]) if i is not None else float(np.sum(s.train_ll)),
                        "n_train": int(s.n_train[i]) if i is not None else int(np.sum(s.n_train)),
                        "n_params": int(s.n_params),
                        "per_subject_params": bool(s.per_subject_params),
                    }
                )
    scores = pd.DataFrame(rows)
    bad = scores[~np.isfinite(scores["test_ll"])]
    if len(bad):
        raise ComparisonError(
            f"non-finite held-out log-likelihood for {sorted(set(bad['hypothesis']))}; the fit diverged — lower the "
            "learning rate of those rules, add l1=..., or drop unstable terms (w^2)"
        )
    used_base = [b.name for b in base if b.applies_to(data)]
    return ComparisonResult(
        scores, [h.name for h in hyps], used_base, split, settings, list(subject_names or []), discrete=is_choice_data(data)
    )


__all__ = ["compare", "ComparisonResult"]

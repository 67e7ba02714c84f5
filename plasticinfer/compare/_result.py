"""`ComparisonResult`: every hypothesis's held-out scores, training fits and fitted coefficients, with the
per-subject metrics, the ranking table, paired tests, and its files (written atomically, read back)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import write_figure, write_text, write_together
from .._results_io import reading
from ._baselines import BASE_RATE, COIN_FLIP, MEAN_ACTIVITY, RESCORLA_WAGNER, STATIC_WEIGHTS
from .._errors import ComparisonError, FileFormatError
from ._hypotheses import FitSettings
from ._splits import AbstractSplit, InSample
from ._stats import PairedTest, aic, bic, deviance_explained, wilcoxon_signed_rank

#: Nulls for "deviance explained", in report order: (column suffix, baseline name).
NULLS = (("coin", COIN_FLIP), ("base_rate", BASE_RATE), ("rw", RESCORLA_WAGNER), ("mean", MEAN_ACTIVITY), ("static", STATIC_WEIGHTS))
#: Subject label of a shared fit (one parameter set for all its training subjects) in fits and coefficients.
SHARED = -1

SCORE_COLUMNS = ["hypothesis", "fold", "subject", "test_ll", "n_test", "n_test_trials", "n_params", "per_subject_params",
                 "calibration_converged"]
FIT_COLUMNS = ["hypothesis", "fold", "subject", "train_ll", "n_train", "n_params", "converged"]
COEFFICIENT_COLUMNS = ["hypothesis", "fold", "subject", "term", "value"]


#: The files :meth:`ComparisonResult.save` writes, by name.
RESULT_FILES = {
    "table": "comparison.csv", "markdown": "comparison.md", "per_subject": "per_subject.csv", "plot": "comparison.png",
    "scores": "scores.csv", "coefficients": "coefficients.csv", "fits": "fits.csv", "settings": "comparison.json",
}

@dataclass
class ComparisonResult:
    """Scores of every hypothesis on every subject.

    Attributes:
        scores: one row per (hypothesis, fold, held-out subject): held-out log-likelihood ``test_ll``,
            held-out observations ``n_test`` and trials ``n_test_trials``, parameter count.
        fits: one row per fit: per (hypothesis, fold, training subject) for per-subject fits, per
            (hypothesis, fold) with ``subject = -1`` for a shared fit: training log-likelihood,
            training observations, free parameters — the input of AIC/BIC.
        coefficients: fitted rule coefficients, one row per (hypothesis, fold, subject, term);
            ``subject = -1`` for shared fits.
        hypotheses: names of the user's hypotheses, in the order given.
        baselines: names of the baselines included.
        split: the split used (its description after :meth:`load`).
        settings: the fitting settings.
        subject_names: a label per subject.
        discrete: whether observations are discrete (choices): deviance explained is reported for
            them; for densities (activity) the held-out log-likelihood gain per observation instead.
        fitted: the fitted models by (hypothesis, fold), for plots (not saved).
        source: a description of the data (title, dataset name, source) when compare was given a dataset.
    """

    scores: pd.DataFrame
    hypotheses: list[str]
    baselines: list[str]
    split: AbstractSplit | str
    settings: FitSettings
    subject_names: list[str] = field(default_factory=list)
    discrete: bool = True
    fits: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FIT_COLUMNS))
    coefficients: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COEFFICIENT_COLUMNS))
    fitted: dict = field(default_factory=dict, repr=False)
    source: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return self.hypotheses + self.baselines

    @property
    def split_description(self) -> str:
        return self.split if isinstance(self.split, str) else repr(self.split)

    def _check(self, *names: str) -> None:
        for n in names:
            if n not in self.names:
                raise ComparisonError(f"no hypothesis {n!r}; compared: {self.names}")

    def subject_label(self, subject: int) -> str:
        if subject == SHARED:
            return "shared"
        return self.subject_names[int(subject)] if self.subject_names else str(int(subject))

    # ---- per subject ----------------------------------------------------------------

    def per_subject(self) -> pd.DataFrame:
        """Per (hypothesis, subject): held-out log-likelihood (total, per observation, per trial), the
        normalized likelihood exp(log-lik per trial), deviance explained vs each null, and AIC/BIC of
        per-subject fits (NaN for shared fits, whose criteria are per fit: see :meth:`table`)."""
        g = self.scores.groupby(["hypothesis", "subject"], sort=False)
        df = g.agg(
            heldout_ll=("test_ll", "sum"),
            n_heldout=("n_test", "sum"),
            n_heldout_trials=("n_test_trials", "sum"),
            n_params=("n_params", "first"),
            per_subject_params=("per_subject_params", "first"),
        ).reset_index()
        df["heldout_ll_per_obs"] = df["heldout_ll"] / df["n_heldout"]
        df["loglik_per_trial"] = df["heldout_ll"] / df["n_heldout_trials"]
        df["normalized_likelihood"] = np.exp(df["loglik_per_trial"])
        own = self.fits[self.fits["subject"] != SHARED].groupby(["hypothesis", "subject"])[["train_ll", "n_train"]].sum()
        idx = pd.MultiIndex.from_arrays([df["hypothesis"], df["subject"]])
        df["train_ll"] = own["train_ll"].reindex(idx).to_numpy()
        df["n_train"] = own["n_train"].reindex(idx).to_numpy()
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
            df.insert(2, "subject_name", [self.subject_label(s) for s in df["subject"]])
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
        self._check(a, b)
        ps = self.per_subject().set_index(["hypothesis", "subject"])["heldout_ll_per_obs"]
        xa, xb = ps.loc[a], ps.loc[b]
        common = xa.index.intersection(xb.index)
        return wilcoxon_signed_rank(xa.loc[common].to_numpy(), xb.loc[common].to_numpy(), alternative=alternative)

    def information_criterion(self, name: str, which: str = "aic") -> float:
        """AIC or BIC of ``name``'s training fits: each fit counted once with its own parameters
        (per-subject fits: summed over subjects; a shared fit: its total training log-likelihood and
        parameter count once), averaged over folds (each fold is a separate fit of different data)."""
        self._check(name)
        if which not in ("aic", "bic"):
            raise ComparisonError(f"which must be 'aic' or 'bic'; got {which!r}")
        d = self.fits[self.fits["hypothesis"] == name]
        if d.empty:
            return np.nan
        ic = aic(d["train_ll"], d["n_params"]) if which == "aic" else bic(d["train_ll"], d["n_params"], d["n_train"])
        return float(pd.Series(np.asarray(ic, float), index=d.index).groupby(d["fold"]).sum().mean())

    def coefficient_table(self, hypothesis: str, fold: str | None = None) -> pd.DataFrame:
        """Fitted coefficients of ``hypothesis``: one row per fitted subject (or ``shared``), one column per term."""
        self._check(hypothesis)
        d = self.coefficients[self.coefficients["hypothesis"] == hypothesis]
        if fold is not None:
            d = d[d["fold"] == fold]
        if d.empty:
            raise ComparisonError(f"hypothesis {hypothesis!r} has no fitted Taylor coefficients")
        wide = d.pivot_table(index=["fold", "subject"], columns="term", values="value", sort=False)
        wide.index = wide.index.set_levels([[self.subject_label(s) for s in wide.index.levels[1]]], level=[1])
        return wide

    def equation(self, hypothesis: str, subject: int | None = None, fold: str | None = None) -> str:
        """The fitted rule of ``hypothesis`` as an equation — ``(r−E[r])`` where the model passes the
        reward-prediction error — for a shared fit, or ``subject``'s per-subject fit; ``fold`` names the
        fold when the split has several (each fits its own rule)."""
        from ._parse import rule_equation

        self._check(hypothesis)
        models = {f: m for (h, f), m in self.fitted.items() if h == hypothesis and (fold is None or f == fold)}
        if not models:
            raise ComparisonError(f"no fitted model of {hypothesis!r} kept (baselines without a rule, or a loaded result)")
        if len(models) > 1:
            raise ComparisonError(
                f"{hypothesis!r} was fitted in {len(models)} folds ({', '.join(map(repr, models))}), one rule each; pass fold="
            )
        f, model = next(iter(models.items()))
        if self.settings.per_subject:
            if subject is None:
                raise ComparisonError(f"{hypothesis!r} was fitted per subject; pass subject=")
            row = self.fits[(self.fits["hypothesis"] == hypothesis) & (self.fits["fold"] == f)]["subject"].tolist()
            if subject not in row:
                raise ComparisonError(f"subject {subject} was not fitted in fold {f!r}")
            import jax

            i = row.index(subject)
            model = jax.tree_util.tree_map(lambda a: a[i] if getattr(a, "ndim", 0) else a, model)
        net = model.network
        return rule_equation(model.rule, reward_expectation=bool(getattr(net, "reward_expectation", False)))

    # ---- per hypothesis -------------------------------------------------------------

    def table(self, reference: str | None = None) -> pd.DataFrame:
        """One row per hypothesis: held-out log-lik (total, per observation, Δ to the best), mean
        normalized likelihood over subjects and its standard error, median deviance explained against
        each null, subjects better than the base rate, AIC/BIC, a paired test against the best and,
        with ``reference`` (e.g. ``"base rate"``), a paired test of each hypothesis against it."""
        if reference is not None:
            self._check(reference)
        ps = self.per_subject()
        order = self.ranking()
        best = order[0]
        rows = []
        tot_best = ps[ps["hypothesis"] == best]["heldout_ll"].sum()
        for name in order:
            d = ps[ps["hypothesis"] == name]
            nl = d.loc[d["n_heldout_trials"] > 0, "normalized_likelihood"].to_numpy(float)  # subjects with held-out trials
            row = {
                "hypothesis": name,
                "kind": "hypothesis" if name in self.hypotheses else "baseline",
                "n_params": float(d["n_params"].mean()),  # per fit: a subject's (their mean), or the shared fit's
                "heldout_ll": float(d["heldout_ll"].sum()),
                "heldout_ll_per_obs": float(d["heldout_ll"].sum() / d["n_heldout"].sum()),
                "delta_ll_vs_best": float(d["heldout_ll"].sum() - tot_best),
                "mean_normalized_likelihood": float(np.mean(nl)) if nl.size else np.nan,
                "se_normalized_likelihood": float(np.std(nl, ddof=1) / np.sqrt(nl.size)) if nl.size > 1 else np.nan,
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
            row["aic"] = self.information_criterion(name, "aic")
            row["bic"] = self.information_criterion(name, "bic")
            row["p_best_better"] = self.paired_test(best, name).p_value if name != best and len(d) > 1 else np.nan
            if reference is not None:
                row["p_better_than_reference"] = self.paired_test(name, reference).p_value if name != reference and len(d) > 1 else np.nan
            rows.append(row)
        out = pd.DataFrame(rows)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        return out.set_index("hypothesis")

    def summary(self) -> str:
        t = self.table()
        cols = [c for c in ["rank", "kind", "n_params", "heldout_ll_per_obs", "delta_ll_vs_best", "mean_normalized_likelihood",
                            "median_dev_explained_vs_coin", "median_dev_explained_vs_base_rate", "median_dev_explained_vs_rw",
                            "median_ll_gain_vs_mean", "median_ll_gain_vs_static", "subjects_better_than_base", "p_best_better"] if c in t]
        head = (
            f"model comparison: {self.split_description}, {'per-subject' if self.settings.per_subject else 'shared'} fits "
            f"({self.settings.steps} L-BFGS steps × {self.settings.restarts} starts), {self.scores['subject'].nunique()} "
            + ("subjects scored on the trials they were fitted to (in-sample: not a held-out comparison)"
               if isinstance(self.split, InSample) or str(self.split).startswith("InSample") else "held-out subjects")
            + self._unscored_note()
            + "; log-likelihoods in nats"
        )
        note = self.convergence_note()
        return head + "\n" + _format(t[cols]).to_string() + (f"\nwarning: {note}" if note else "")

    def unscored_subjects(self) -> list[str]:
        """Subjects scored on no held-out trial (too few trials for the split), left out of the means over subjects."""
        n = self.scores.groupby("subject", sort=True)["n_test_trials"].sum()
        return [self.subject_label(s) for s in n.index[n.to_numpy() == 0]]

    def _unscored_note(self) -> str:
        empty = self.unscored_subjects()
        return f" ({', '.join(empty)}: no held-out trials, left out of the means over subjects)" if empty else ""

    def unconverged_fits(self) -> pd.DataFrame:
        """The training fits (rows of ``fits``) whose loss had not settled: their scores may not be their best."""
        return self.fits[self.fits["converged"].eq(False)]  # None: no verdict

    def unconverged_calibrations(self) -> pd.DataFrame:
        """The held-out subjects (rows of ``scores``) whose calibration fit — their initial weights fitted on their
        first trials, everything else fixed — had not settled: their held-out scores may not be their best."""
        if "calibration_converged" not in self.scores:
            return self.scores.iloc[:0]
        return self.scores[self.scores["calibration_converged"].eq(False)]

    def convergence_note(self) -> str:
        def listed(d):
            names = [self.subject_label(s) if s != SHARED else f"the shared fit of {f}" for s, f in zip(d["subject"], d["fold"])]
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

        def which(bad):
            return "; ".join(f"{h}: {listed(d)}" for h, d in bad.groupby("hypothesis", sort=False))

        notes = []
        bad = self.unconverged_fits()
        if len(bad):
            notes.append(f"{len(bad)} of {self.fits['converged'].notna().sum()} training fits had not converged ({which(bad)}; "
                         "fits.csv, column converged)")
        cal = self.unconverged_calibrations()
        if len(cal):
            notes.append(f"the calibration fits of {len(cal)} of {self.scores['calibration_converged'].notna().sum()} held-out "
                         f"subjects' initial weights had not converged ({which(cal)}; scores.csv, column calibration_converged)")
        if not notes:
            return ""
        return ("; ".join(notes) + ": their scores may not be their best; run more steps (compare's steps=, --steps on the "
                "command line; a GRU has its own, GRUHypothesis(steps=...), --gru-steps)")

    def to_markdown(self) -> str:
        t = self.table()
        note = self.convergence_note()
        body = _format(t).to_markdown() if _has_tabulate() else "```\n" + _format(t).to_string() + "\n```"
        lines = [
            "# Model comparison",
            "",
            f"- data: {data_title(self.source)}" if self.source else None,
            f"- split: `{self.split_description}`",
            f"- fits: {'one per subject (fit_independent)' if self.settings.per_subject else 'one shared rule (fit)'}, "
            f"{self.settings.steps} L-BFGS steps × {self.settings.restarts} starts, l1 = {self.settings.l1}, initial weights "
            f"{'fitted' if self.settings.fit_initial_weights else 'fixed'}",
            f"- ranking by held-out log-likelihood: {' > '.join(self.ranking())}",
            "- log-likelihoods in nats; normalized likelihood = exp(held-out log-likelihood per trial), "
            + ("the geometric mean probability of the observed choices" if self.discrete
               else "a density per trial over its recorded neurons, not a probability (compare it only between subjects "
                    "recording the same neurons)")
            + " (mean ± standard error over subjects)" + self._unscored_note(),
            "- deviance explained = 1 − D_model/D_null on the held-out trials, D = −2·log-lik; the coin-flip null is "
            "for comparability with published numbers only."
            if self.discrete
            else "- activity: log-likelihood gain per held-out observation over each null (densities: no deviance ratio).",
            "- AIC/BIC: of the training fits, each fit's log-likelihood and parameters counted once (a shared fit once, "
            "per-subject fits summed over subjects), averaged over folds.",
            "- p_best_better: one-sided Wilcoxon signed-rank p-value across subjects that the best hypothesis beats this "
            "one (held-out log-lik per observation); empty for the best itself and with one subject. A deviance explained "
            "is empty where the null predicts every held-out choice (nothing left to explain).",
            f"- **{note}**" if note else None,
            "",
            body,
        ]
        return "\n".join(x for x in lines if x is not None) + "\n"

    def plot(self):
        from ._plots import plot_comparison

        return plot_comparison(self)

    # ---- files ----------------------------------------------------------------------

    def scores_table(self) -> pd.DataFrame:
        """The rows of ``scores.csv``: hypothesis, subject, n_heldout (trials), heldout_loglik,
        loglik_per_trial, normalized_likelihood, then fold and the bookkeeping :meth:`load` needs."""
        s = self.scores
        return pd.DataFrame(
            {
                "hypothesis": s["hypothesis"],
                "subject": [self.subject_label(x) for x in s["subject"]],
                "n_heldout": s["n_test_trials"].astype(int),
                "heldout_loglik": s["test_ll"],
                "loglik_per_trial": s["test_ll"] / s["n_test_trials"],
                "normalized_likelihood": np.exp(s["test_ll"] / s["n_test_trials"]),
                "fold": s["fold"],
                "subject_index": s["subject"].astype(int),
                "n_heldout_observations": s["n_test"].astype(int),
                "n_params": s["n_params"].astype(int),
                "per_subject_params": s["per_subject_params"].astype(bool),
                # True/False for a held-out subject whose initial weights were fitted on its calibration trials
                "calibration_converged": s["calibration_converged"] if "calibration_converged" in s else None,
            }
        )

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write comparison.csv (the table), comparison.md, per_subject.csv, comparison.png, scores.csv
        (per hypothesis and held-out subject), coefficients.csv (hypothesis, subject, term, value; subject
        ``shared`` for shared fits), fits.csv (training fits) and comparison.json (settings): all of them or,
        when one fails, none (the folder's earlier files stay as they were). :meth:`load` reads them back."""
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise ComparisonError(f"{folder}: exists and is not a folder; a comparison is saved as a folder of files — give a folder path")
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / file for name, file in RESULT_FILES.items()}
        with write_together():  # every file or none: a folder half of this comparison and half of an earlier one would load
            self._write(paths)
        return paths

    def _write(self, paths: dict[str, Path]) -> None:
        import matplotlib.pyplot as plt

        write_text(self.table().to_csv(), paths["table"])
        write_text(self.to_markdown(), paths["markdown"])
        write_text(self.per_subject().to_csv(index=False), paths["per_subject"])
        write_text(self.scores_table().to_csv(index=False), paths["scores"])
        coef = self.coefficients
        write_text(
            pd.DataFrame({"hypothesis": coef["hypothesis"], "subject": [self.subject_label(s) for s in coef["subject"]],
                          "term": coef["term"], "value": coef["value"], "fold": coef["fold"],
                          "subject_index": coef["subject"].astype(int)}).to_csv(index=False),
            paths["coefficients"],
        )
        fits = self.fits
        write_text(
            pd.DataFrame({"hypothesis": fits["hypothesis"], "fold": fits["fold"], "subject": [self.subject_label(s) for s in fits["subject"]],
                          "subject_index": fits["subject"].astype(int), "train_loglik": fits["train_ll"],
                          "n_train": fits["n_train"].astype(int), "n_params": fits["n_params"].astype(int),
                          "converged": fits["converged"]}).to_csv(index=False),
            paths["fits"],
        )
        settings = {k: v for k, v in asdict(self.settings).items() if k not in ("key",)}
        meta = {
            "hypotheses": self.hypotheses, "baselines": self.baselines, "split": self.split_description, "settings": settings,
            "subject_names": self.subject_names, "discrete": self.discrete, "source": {k: str(v) for k, v in self.source.items()},
            "rows": {"scores": len(self.scores), "fits": len(self.fits), "coefficients": len(self.coefficients)},
        }
        write_text(json.dumps(meta, indent=2, ensure_ascii=False), paths["settings"])
        fig = self.plot()
        write_figure(fig, paths["plot"], dpi=120, bbox_inches="tight")
        plt.close(fig)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ComparisonResult":
        """Read a comparison written by :meth:`save` (fitted models are not saved: ``fitted`` is empty)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ComparisonError(
                f"{folder}: " + ("no such folder" if not folder.exists() else "is a file, not a folder")
                + "; give the folder a comparison was saved to (ComparisonResult.save, or plasticinfer compare/fly --out)"
            )
        need = ["comparison.json", "scores.csv", "fits.csv", "coefficients.csv"]
        missing = [n for n in need if not (folder / n).exists()]
        if missing:
            raise ComparisonError(f"{folder}: missing {missing}; is this a folder written by ComparisonResult.save?")
        with reading(folder, "comparison folder"):
            return cls._read(folder)

    @classmethod
    def _read(cls, folder: Path) -> "ComparisonResult":
        meta = json.loads((folder / "comparison.json").read_text(encoding="utf-8"))
        expected = {"hypotheses": list, "baselines": list, "split": str, "settings": dict, "subject_names": list}
        wrong = [k for k, t in expected.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), t)]
        unknown = sorted(set(meta.get("settings") or {}) - {f.name for f in fields(FitSettings)}) if isinstance(meta, dict) else []
        if wrong or unknown:
            raise FileFormatError(
                f"{folder / 'comparison.json'}: " + (f"{wrong} missing or of the wrong type" if wrong else f"unknown settings {unknown}")
                + ": the file was edited or damaged. Save the comparison again (or re-run it)."
            )
        keep = {"keep_default_na": False, "na_values": [""]}
        sc = pd.read_csv(folder / "scores.csv", dtype={"subject": str}, **keep)
        scores = pd.DataFrame(
            {"hypothesis": sc["hypothesis"], "fold": sc["fold"], "subject": sc["subject_index"].astype(int),
             "test_ll": sc["heldout_loglik"].astype(float), "n_test": sc["n_heldout_observations"].astype(int),
             "n_test_trials": sc["n_heldout"].astype(int), "n_params": sc["n_params"].astype(int),
             "per_subject_params": sc["per_subject_params"].astype(bool),
             # folders saved before the column (or without a calibration part): no verdict
             "calibration_converged": _verdicts(sc, "calibration_converged", folder / "scores.csv")}
        )
        fi = pd.read_csv(folder / "fits.csv", dtype={"subject": str}, **keep)
        fits = pd.DataFrame(
            {"hypothesis": fi["hypothesis"], "fold": fi["fold"], "subject": fi["subject_index"].astype(int),
             "train_ll": fi["train_loglik"].astype(float), "n_train": fi["n_train"].astype(int), "n_params": fi["n_params"].astype(int),
             # True/False, empty where nothing was optimised (a baseline); folders saved before the column: unknown
             "converged": _verdicts(fi, "converged", folder / "fits.csv")}
        )
        co = pd.read_csv(folder / "coefficients.csv", dtype={"subject": str}, **keep)
        coefficients = pd.DataFrame(
            {"hypothesis": co["hypothesis"], "fold": co["fold"], "subject": co["subject_index"].astype(int),
             "term": co["term"].astype(str), "value": co["value"].astype(float)}
        )
        rows = meta.get("rows", {})  # folders saved before the row counts were kept are checked by their contents
        for name, table in (("scores", scores), ("fits", fits), ("coefficients", coefficients)):
            if name in rows and len(table) != int(rows[name]):
                raise FileFormatError(
                    f"{folder / (name + '.csv')}: {len(table)} rows where the comparison saved {int(rows[name])}: the file was "
                    "cut short or edited. Save the comparison again (or re-run it)."
                )
        n_names = len(meta["subject_names"])
        for name, table in (("scores", scores), ("fits", fits), ("coefficients", coefficients)):
            index = table["subject"].to_numpy()
            bad = (index < -1) | ((index >= n_names) if n_names else np.zeros(len(index), bool))
            if bad.any():
                raise FileFormatError(
                    f"{folder / (name + '.csv')}: subject_index {int(index[bad][0])} where the comparison has "
                    f"{n_names} subjects: the file was edited or damaged. Save the comparison again (or re-run it)."
                )
        twice = coefficients.duplicated(["hypothesis", "fold", "subject", "term"])
        if twice.any():
            r = coefficients[twice].iloc[0]
            raise FileFormatError(
                f"{folder / 'coefficients.csv'}: term {r['term']!r} of {r['hypothesis']!r} appears twice for one fit: the "
                "file was edited or damaged. Save the comparison again (or re-run it)."
            )
        names = list(meta["hypotheses"]) + list(meta["baselines"])
        for fold, d in scores.groupby("fold", sort=False):
            subjects = set(d["subject"])
            short = [h for h in names if set(d.loc[d["hypothesis"] == h, "subject"]) != subjects]
            if short:
                raise FileFormatError(
                    f"{folder / 'scores.csv'}: in fold {fold!r}, {short} are not scored on every held-out subject "
                    f"({sorted(subjects)}): the file was cut short or edited. Save the comparison again (or re-run it)."
                )
        return cls(
            scores, list(meta["hypotheses"]), list(meta["baselines"]), meta["split"], FitSettings(**meta["settings"]),
            list(meta["subject_names"]), bool(meta["discrete"]), fits, coefficients, {}, dict(meta.get("source", {})),
        )


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


def _verdicts(table: pd.DataFrame, column: str, path) -> list[bool | None]:
    """A saved True/False column read back: None where it is empty (no verdict) or the file predates the column."""
    if column not in table:
        return [None] * len(table)

    def verdict(v):
        if v == "" or pd.isna(v):
            return None
        if str(v) not in ("True", "False"):
            raise FileFormatError(f"{path}: a damaged or incomplete comparison folder: column {column!r} holds {v!r}, not True, "
                                  "False or empty. Save the comparison again (or re-run it).")
        return str(v) == "True"

    return [verdict(v) for v in table[column]]


__all__ = ["ComparisonResult", "NULLS", "SHARED"]


def data_title(attrs, default: str = "unnamed dataset") -> str:
    """The data's title or dataset name, else its description or the file it came from (a lab file has
    no title); the comparison's markdown and the fly report both name the data with it."""
    for key in ("title", "dataset", "description", "source_file", "source"):
        if attrs.get(key):
            return str(attrs[key]).strip()
    return default

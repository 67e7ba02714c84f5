"""The fly analysis is :func:`plasticinfer.compare.compare` with the standard fly hypotheses: held-out
comparison (and an in-sample one for published figures), the decay summary, choice-probability traces."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

import equinox as eqx
import jax
import numpy as np
import pandas as pd
import xarray as xr
from jaxtyping import PRNGKeyArray

from .._errors import DataError
from .._trial_data import TrialData
from ..compare._compare import RESTARTS, compare
from .._errors import ComparisonError
from ..compare._parse import RuleHypothesis
from ..compare._result import SHARED, ComparisonResult
from ..compare._splits import AbstractSplit, DatasetSplit, HeldOutTrials, InSample, LeaveOneSubjectOut, SubjectKFold
from ..compare._stats import PairedTest
from ._hypotheses import get_hypotheses

#: Splits that hold out whole subjects: one rule shared by the training subjects (a population fit).
SUBJECT_SPLITS = (LeaveOneSubjectOut, SubjectKFold, DatasetSplit)

#: Hypothesis pairs without / with a weight-decay term, whose comparison the report states.
DECAY_PAIRS = [("x·r", "x·r + w"), ("x·(r−E[r])", "x·(r−E[r]) + w")]


def shuffle_rewards(ds: xr.Dataset, seed: int = 0) -> xr.Dataset:
    """The dataset with each subject's rewards permuted among its real trials (choices untouched).

    The null for any claim about reward learning: choices keep their order, their autocorrelation and their
    bias, while the rewards lose their relation to them. A finding that holds as well here is not about
    rewards.
    """
    rng = np.random.default_rng(seed)
    reward = ds["reward"].transpose("subject", "trial")
    mask = ds["trial_mask"].transpose("subject", "trial").values
    values = reward.values.copy()
    for i in range(values.shape[0]):
        idx = np.flatnonzero(mask[i])
        values[i, idx] = values[i, rng.permutation(idx)]
    out = ds.copy()
    out["reward"] = reward.copy(data=values).transpose(*ds["reward"].dims)
    out.attrs["control"] = f"rewards shuffled within each subject (seed {seed})"
    return out


def choice_probabilities(batched_model, data: TrialData) -> np.ndarray:
    """P(choice = option 1) on every trial, (subject, trial), teacher-forced on the observed choices, for a
    model stacked over subjects (a per-subject fit); ``data`` has one trajectory per subject."""

    def one(m, d):
        traj = m.simulate(jax.tree_util.tree_map(lambda a: a[None], d.inputs))
        return m.observation.probability(traj.outputs[0])

    return np.asarray(eqx.filter_vmap(one)(batched_model, data))


@dataclass
class ChoiceAnalysis:
    """Results of :func:`analyse_choices`: the held-out comparison, the in-sample one, and the data.

    Attributes:
        heldout: the held-out :class:`ComparisonResult` (what ranks the hypotheses).
        in_sample: every hypothesis fitted and scored on all trials (for published, in-sample figures), or None.
        dataset: the behaviour dataset analysed.
        hypotheses: the hypotheses compared.
        timings: seconds per comparison.
        control: the same held-out comparison, of the decay pairs and the best rule, on the data with
            each subject's rewards shuffled (:func:`shuffle_rewards`), or None when not run.
    """

    heldout: ComparisonResult
    in_sample: ComparisonResult | None
    dataset: xr.Dataset
    hypotheses: dict[str, RuleHypothesis]
    timings: dict = field(default_factory=dict)
    control: ComparisonResult | None = None

    @cached_property
    def data(self) -> TrialData:
        from .._convert import choice_data

        return choice_data(self.dataset)

    @property
    def subjects(self) -> list[str]:
        return [str(s) for s in self.dataset["subject"].values]

    def table(self) -> pd.DataFrame:
        """The held-out comparison table (:meth:`ComparisonResult.table`), plus in-sample median deviance
        explained against a coin flip when the in-sample comparison was run."""
        t = self.heldout.table()
        if self.in_sample is not None:
            ins = self.in_sample.table()
            if "median_dev_explained_vs_coin" in ins:
                t["median_dev_explained_vs_coin_in_sample"] = ins["median_dev_explained_vs_coin"].reindex(t.index)
        return t

    def paired(self, without: str, with_: str, *, in_sample: bool = False) -> PairedTest:
        """Does ``with_`` predict better than ``without``? Wilcoxon signed-rank across subjects (held-out by default)."""
        result = self.in_sample if in_sample else self.heldout
        if result is None:
            raise ComparisonError("no in-sample comparison: run analyse_choices(..., in_sample=True)")
        return result.paired_test(with_, without, alternative="greater")

    def coefficients(self, hypothesis: str, *, in_sample: bool = True) -> pd.DataFrame:
        """Fitted Taylor coefficients, one row per subject (or ``shared``), from the in-sample fits when
        available (``in_sample=True``), else from the held-out comparison's training fits."""
        result = self.in_sample if (in_sample and self.in_sample is not None) else self.heldout
        return result.coefficient_table(hypothesis).droplevel("fold")

    def fitted_per_subject(self, hypothesis: str):
        """A per-subject fitted model of ``hypothesis`` covering every subject (in-sample, else held-out), or None."""
        for result in (self.in_sample, self.heldout):
            if result is None or not result.settings.per_subject:
                continue
            models = [m for (h, _), m in result.fitted.items() if h == hypothesis]
            if len(models) == 1 and result.scores["subject"].nunique() == self.data.n_trajectories:
                return models[0]
        return None


def analyse_choices(
    ds: xr.Dataset,
    hypotheses=None,
    *,
    key: PRNGKeyArray,
    split: AbstractSplit | None = None,
    heldout_fraction: float = 0.2,
    steps: int = 150,
    restarts: int = RESTARTS,
    per_subject: bool | None = None,
    in_sample: bool = True,
    extra: dict | None = None,
    control: bool = True,
    progress: bool = True,
    log=None,
) -> ChoiceAnalysis:
    """Compare rule hypotheses on a behaviour dataset: :func:`compare` with the standard fly hypotheses.

    Every hypothesis is fitted with the same settings as any comparison (``restarts`` starts per fit,
    β fixed at 1, no lapses, initial weights at 0 — a naive fly — and a fitted bias) and scored on
    held-out data against compare's baselines (coin flip, base rate, Rescorla–Wagner).

    Args:
        ds: a behaviour dataset (docs/data-format.md), e.g. ``pi.datasets.load("rajagopalan2023")``.
        hypotheses: standard hypothesis names or equations (``"x*r + w"``, ``"x·(r−E[r]) + w"``), a list
            of :class:`RuleHypothesis`, or a dict; default all standard ones (:func:`standard_hypotheses`).
        key: PRNG key (restarts; MLP initialisation).
        split: default ``HeldOutTrials(heldout_fraction)`` (the last part of each block). Subject-level
            splits (``DatasetSplit()``: the dataset's own train/test flies; ``SubjectKFold``;
            ``LeaveOneSubjectOut``) fit one rule shared by the training flies.
        steps, restarts: L-BFGS steps and starts per fit.
        per_subject: one fit per fly (default for trial splits) or one shared rule (default, and
            required, for subject-level splits).
        in_sample: also fit and score every hypothesis on all trials (per fly), for comparison with
            in-sample published figures and for the fitted coefficients on all the data.
        extra: more hypotheses, name → anything :func:`compare` takes (classical agents from
            :func:`~plasticinfer.compare.classical_agents`, a :class:`~plasticinfer.compare.GRUHypothesis`,
            population models from :func:`~plasticinfer.compare.as_populations`); they join the held-out
            comparison only (the in-sample one fits rules per fly).
        control: also run the held-out comparison of the decay pairs (x·r vs x·r + w, and with r−E[r]) and of
            the best rule hypothesis on the data with each subject's rewards shuffled (:func:`shuffle_rewards`):
            the null the report holds every reward-learning claim against. Costs about one more comparison
            of those hypotheses.
        progress: show fitting progress bars (only on a terminal or in Jupyter).
        log: called with one line before each fit (see :func:`compare`); the in-sample fits' lines say so.
    """
    from ..data import validate

    ds = validate(ds)
    if ds.attrs.get("kind") != "behaviour":
        raise DataError(f"analyse_choices needs a behaviour dataset; got kind={ds.attrs.get('kind')!r}")
    hyps = get_hypotheses(hypotheses)
    if not hyps:
        raise ComparisonError("no hypotheses to compare (baselines are always included; name at least one rule)")
    split = split if split is not None else HeldOutTrials(heldout_fraction)
    if per_subject is None:
        per_subject = not isinstance(split, SUBJECT_SPLITS)
    kwargs = dict(steps=steps, restarts=restarts, key=key, progress=progress)
    t0 = time.perf_counter()
    clash = sorted(set(extra or {}) & set(hyps))
    if clash:
        raise ComparisonError(f"extra hypotheses {clash} have the names of standard ones; rename them")
    heldout = compare({**hyps, **(extra or {})}, ds, split=split, per_subject=per_subject, log=log, **kwargs)
    timings = {"held-out": time.perf_counter() - t0}
    ins = None
    if in_sample:
        t0 = time.perf_counter()
        in_log = None if log is None else (lambda line: log(f"in-sample {line}"))
        ins = compare(hyps, ds, split=InSample(), per_subject=True, log=in_log, **kwargs)
        timings["in-sample"] = time.perf_counter() - t0
    null = None
    if control:
        best = next((h for h in heldout.ranking() if h in hyps), None)
        names = [h for pair in DECAY_PAIRS for h in pair if h in hyps]
        names += [best] if best is not None and best not in names else []
        t0 = time.perf_counter()
        null_log = None if log is None else (lambda line: log(f"control (shuffled rewards) {line}"))
        null = compare({h: hyps[h] for h in names}, shuffle_rewards(ds), split=split, per_subject=per_subject,
                       log=null_log, **kwargs)  # fmt: skip
        timings["control"] = time.perf_counter() - t0
    return ChoiceAnalysis(heldout, ins, ds, hyps, timings, null)


def decay_summary(analysis: ChoiceAnalysis | ComparisonResult, hypothesis: str = "x·r + w", all_trials: bool = True) -> dict:
    """Median, spread and sign count of the fitted decay coefficient θ(w) across subjects.

    From a :class:`ChoiceAnalysis` (the in-sample fits with ``all_trials`` when run, else the held-out
    comparison's training fits) or directly from a :class:`ComparisonResult`.
    """
    if isinstance(analysis, ChoiceAnalysis):
        result = analysis.in_sample if (all_trials and analysis.in_sample is not None) else analysis.heldout
    else:
        result = analysis
    coef = result.coefficients
    d = coef[(coef["hypothesis"] == hypothesis) & (coef["term"] == "w")]
    if d.empty:
        raise ComparisonError(f"hypothesis {hypothesis!r} has no pure-w (decay) term; compared: {result.hypotheses}")
    theta = d["value"].to_numpy(float)
    return {
        "median": float(np.median(theta)),
        "q25": float(np.quantile(theta, 0.25)),
        "q75": float(np.quantile(theta, 0.75)),
        "negative": int((theta < 0).sum()),
        "n": int(theta.size),
        "values": theta,
        "shared": bool((d["subject"] == SHARED).all()),
    }


__all__ = ["analyse_choices", "ChoiceAnalysis", "choice_probabilities", "decay_summary", "shuffle_rewards", "SUBJECT_SPLITS", "DECAY_PAIRS"]

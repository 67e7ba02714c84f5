"""`compare`: rank named hypotheses by held-out log-likelihood, per subject and overall, against fair baselines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray

from .._trial_data import TrialData
from ._baselines import standard_baselines
from .._errors import ComparisonError, PlasticInferWarning
from .._errors import warn as _warn
from .._fit import check_l1
from .._optimise import fit_context
from ._hypotheses import AbstractHypothesis, FitSettings, ModelHypothesis, as_hypothesis, is_choice_data
from ._parse import RuleHypothesis
from ._result import COEFFICIENT_COLUMNS, FIT_COLUMNS, SCORE_COLUMNS, SHARED, ComparisonResult
from ._splits import AbstractSplit, HeldOutTrials, trial_valid

#: Restarts of every fit, in every path (compare, fly, command line).
RESTARTS = 4


def compare(
    hypotheses: Mapping[str, object] | Sequence[str | RuleHypothesis],
    data,
    *,
    split: AbstractSplit | None = None,
    blocks=None,
    per_subject: bool = True,
    baselines: bool | Sequence[AbstractHypothesis] = True,
    steps: int = 300,
    l1: float = 0.0,
    fit_initial_weights: bool | None = None,
    restarts: int = RESTARTS,
    restart_scale: float = 0.2,
    key: PRNGKeyArray | None = None,
    subject_names: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ComparisonResult:
    """Fit every hypothesis on the training part of each fold and score it on the held-out part.

    Args:
        hypotheses: name → hypothesis, or a list of equation strings / :class:`RuleHypothesis` (named by
            their text). A hypothesis is an equation string (``"x*r + w"``, ``"x·(r−E[r]) + w"``: see
            :func:`parse_hypothesis`), a :class:`RuleHypothesis`, a rule (the standard model for the data is
            built: ``ChoiceCircuit`` + ``BernoulliChoice`` with β fixed at 1 for choices, ``FeedForward`` +
            ``GaussianActivity`` for activity), a :class:`PlasticityModel` (its values are the fit's start),
            or any :class:`AbstractHypothesis`.
        data: the data (all subjects): a :class:`TrialData`, or a validated xarray dataset (behaviour or
            neural schema, docs/data-format.md), from which the block labels, subject names and — for
            :class:`DatasetSplit` — the train/test subjects are taken.
        split: how to hold data out (default ``HeldOutTrials(0.25)``: the last quarter of each block).
            ``LeaveFutureOut``; population fits (need ``per_subject=False``): ``LeaveOneSubjectOut``,
            ``SubjectKFold(k, seed)``, ``DatasetSplit()``; ``InSample``.
        blocks: (trajectory, trial) block labels for ``HeldOutTrials``.
        per_subject: fit each subject separately (``fit_independent``) — the usual per-animal
            analysis — or one shared rule (``fit``).
        baselines: ``True`` adds the standard baselines (choices: coin flip, base rate,
            Rescorla–Wagner; activity: mean activity, static weights); ``False`` none; or a list.
        steps, l1: fitting settings (L-BFGS steps, L1 penalty), the same for every hypothesis (a
            :class:`RuleHypothesis` may carry its own ``l1``).
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
            activity models (and MLP rules) built here; required unless ``restarts=1`` and no such model is built.
        subject_names: labels for the per-subject table (default: the dataset's subject coordinate).
        progress: show fitting progress bars (only on a terminal or in Jupyter).
        log: called with one line before each fit (``"[2/6] x·r + w"``, with the fold when there are
            several), e.g. ``print`` or a logger's ``info``: progress that reads well in a log file.
    """
    if not hypotheses:
        raise ComparisonError("give at least one hypothesis (a dict name → equation, rule or model, or a list of equations)")
    if split is not None and not isinstance(split, AbstractSplit):
        raise ComparisonError(
            f"split must be a split object such as HeldOutTrials(0.25), LeaveFutureOut(), LeaveOneSubjectOut(); got {split!r}"
        )
    l1 = check_l1(l1, error=ComparisonError)
    data, blocks, subject_names, split, source = _prepare(data, blocks, subject_names, split)
    if fit_initial_weights is None:
        fit_initial_weights = not is_choice_data(data)
    import jax

    k_fit, k_model = jax.random.split(key) if key is not None else (None, None)
    settings = FitSettings(
        steps=steps, l1=l1, per_subject=per_subject, fit_initial_weights=fit_initial_weights, restarts=restarts,
        restart_scale=restart_scale, key=k_fit, progress=progress,
    )
    hyps = [as_hypothesis(name, value, data, key=k_model) for name, value in _named(hypotheses)]
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
    skipped = [h.name for h in hyps if not h.applies_to(data)]
    if skipped:  # e.g. a GRU (two-option choices only) on three-option data: said, not silently absent from the table
        if len(skipped) == len(hyps):
            raise ComparisonError(f"none of the hypotheses {skipped} applies to these data (a GRU or an agent needs two-option choice data)")
        _warn(f"hypotheses {skipped} do not apply to these data (a GRU or an agent needs two-option choice data) and were left out", PlasticInferWarning)
        hyps = [h for h in hyps if h.name not in skipped]
    folds = split.folds(data, blocks=blocks)
    _check_heldout_trials(folds, data.n_trajectories, subject_names, split)
    for h in hyps + list(base):  # what a fit would refuse, refused before the first fit (not after hours of others)
        if h.applies_to(data):
            try:
                h.check(data, settings, folds)
            except ComparisonError as e:
                if baselines is not True or h not in base:
                    raise
                # a standard baseline the user did not name (e.g. static weights, whose unfitted weights an input seen
                # only in held-out trials would reach): said and left out rather than refusing the comparison
                _warn(f"the {h.name!r} baseline cannot be scored on this split and was left out: {e}", PlasticInferWarning)
                base = [b for b in base if b is not h]
    rows, fit_rows, coef_rows, fitted = [], [], [], {}
    todo = [(h, fold) for h in hyps + base if h.applies_to(data) for fold in folds]
    for done, (h, fold) in enumerate(todo, 1):
        where = fold.name if "fold" in fold.name else f"fold {fold.name}"  # "subjects fold 2/2" names itself
        if log is not None:
            log(f"[{done}/{len(todo)}] {h.name}" + (f", {where}" if len(folds) > 1 else ""))
        names = [subject_names[i] for i in fold.train_subjects.tolist()] if subject_names else None
        with fit_context(f"{h.name}" + (f", {where}" if len(folds) > 1 else ""), subjects=names):
            s = h.score(fold, settings)  # its fits' convergence warnings name the hypothesis, fold and subjects
        n_trials = trial_valid(fold.test).sum(axis=1)
        train_pos = {u: i for i, u in enumerate(fold.train_subjects.tolist())}
        k = np.broadcast_to(np.asarray(s.n_params, int), (len(train_pos),) if s.per_subject_params else ())  # per subject
        for j, subj in enumerate(fold.test_subjects.tolist()):
            k_j = k[train_pos[subj]] if s.per_subject_params and subj in train_pos else k.max()
            rows.append([h.name, fold.name, int(subj), float(s.test_ll[j]), int(s.n_test[j]), int(n_trials[j]),
                         int(k_j), bool(s.per_subject_params), s.calibration_converged])
        units = fold.train_subjects.tolist() if s.per_subject_params else [SHARED]
        converged = [None] * len(units) if s.converged is None else (s.converged if s.per_subject_params else [all(s.converged)])
        if s.per_subject_params:
            fit_rows += [[h.name, fold.name, int(u), float(s.train_ll[i]), int(s.n_train[i]), int(k[i]), converged[i]]
                         for i, u in enumerate(units)]
        else:
            fit_rows.append([h.name, fold.name, SHARED, float(np.sum(s.train_ll)), int(np.sum(s.n_train)), int(k), converged[0]])
        for u, record in zip(units, s.coefficients or []):
            coef_rows += [[h.name, fold.name, int(u), term, float(v)] for term, v in record.items()]
        if s.model is not None:
            fitted[(h.name, fold.name)] = s.model
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    bad = scores[~np.isfinite(scores["test_ll"])]
    if len(bad):
        raise ComparisonError(
            f"non-finite held-out log-likelihood for {sorted(set(bad['hypothesis']))}; the fit diverged — lower the "
            "learning rate of those rules, add an L1 penalty (in Python, compare(..., l1=...)), or drop unstable terms (w^2)"
        )
    used_base = [b.name for b in base if b.applies_to(data)]
    return ComparisonResult(
        scores, [h.name for h in hyps], used_base, split, settings, list(subject_names or []), discrete=is_choice_data(data),
        fits=pd.DataFrame(fit_rows, columns=FIT_COLUMNS), coefficients=pd.DataFrame(coef_rows, columns=COEFFICIENT_COLUMNS),
        fitted=fitted, source=source,
    )


def _check_heldout_trials(folds, n_subjects: int, subject_names, split) -> None:
    """Before any fit: refuse a split that holds out no trial at all; warn, naming them, about subjects it holds out
    none of (they are left out of the means over subjects)."""
    held = np.zeros(n_subjects, dtype=int)
    scored = np.zeros(n_subjects, dtype=bool)
    for fold in folds:
        held[fold.test_subjects] += trial_valid(fold.test).sum(axis=1)
        scored[fold.test_subjects] = True
    empty = np.flatnonzero(scored & (held == 0))
    if not len(empty):
        return
    names = [str(subject_names[i]) if subject_names else str(i) for i in empty]
    if not held.any():
        raise ComparisonError(
            f"{split} holds out no trial of any subject (each has too few trials); nothing to score. Use data with more "
            "trials per subject, or a split that holds out whole subjects."
        )
    _warn(
        f"subject(s) {names} have no held-out trials under {split} (too few trials); they are left out of the means "
        "over subjects (mean normalized likelihood and its standard error)",
        PlasticInferWarning,
    )


def _named(hypotheses):
    """(name, value) pairs from a mapping or a list of equation strings / RuleHypothesis."""
    if isinstance(hypotheses, Mapping):
        return list(hypotheses.items())
    if isinstance(hypotheses, str):
        hypotheses = [hypotheses]
    out = []
    for h in hypotheses:
        if isinstance(h, str):
            out.append((h.strip(), h))
        elif isinstance(h, RuleHypothesis):
            out.append((h.name, h))
        else:
            raise ComparisonError(
                f"a list of hypotheses must hold equation strings or RuleHypothesis; got {type(h).__name__} — "
                "pass a dict name → rule/model for other kinds"
            )
    return out


def _prepare(data, blocks, subject_names, split):
    """TrialData, blocks, subject names, the split (completed from the dataset) and a data description."""
    split = split if split is not None else HeldOutTrials(0.25)
    if isinstance(data, TrialData):
        return data, blocks, subject_names, split, {}
    import xarray as xr

    if not isinstance(data, xr.Dataset):
        raise ComparisonError(f"data must be a TrialData or an xarray Dataset (docs/data-format.md); got {type(data).__name__}")
    from .._convert import activity_data, choice_data
    from ..data import validate

    ds = validate(data)
    kind = ds.attrs.get("kind")
    if kind == "behaviour":
        td = choice_data(ds)
        if blocks is None and "block" in ds:
            blocks = np.asarray(ds["block"].transpose("subject", "trial").values)
    elif kind == "neural":
        td = activity_data(ds)
    else:
        raise ComparisonError(f"data: attrs kind must be 'behaviour' or 'neural' (docs/data-format.md); got {kind!r}")
    if subject_names is None and "subject" in ds.coords:
        subject_names = [str(s) for s in ds["subject"].values]
    source = {k: str(ds.attrs[k]) for k in ("dataset", "title", "source", "description", "source_file") if k in ds.attrs}
    return td, blocks, subject_names, split.for_dataset(ds), source


__all__ = ["compare", "ComparisonResult", "RESTARTS"]

"""Per-subject MAP fits of every hypothesis, scored on held-out trials against fair nulls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import equinox as eqx
import jax
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray

from .._convert import choice_data
from .._errors import DataError
from .._fit import FitResult, fit_independent
from .._rules import TaylorRule
from .._trial_data import TrialData
from ._hypotheses import Hypothesis, get_hypotheses

LOG_HALF = float(np.log(0.5))


def per_subject_log_likelihood(batched_model, data: TrialData) -> np.ndarray:
    """Log-likelihood of every trial, (subject, trial), for a model batched over subjects
    (as returned by :func:`fit_independent`); ``data`` has one trajectory per subject."""
    per = jax.tree_util.tree_map(lambda a: a[:, None], data)
    ll = eqx.filter_vmap(lambda m, d: m.log_likelihood(d)[0])(batched_model, per)
    return np.asarray(ll)


def choice_probabilities(batched_model, data: TrialData) -> np.ndarray:
    """P(choice = option 1) on every trial, (subject, trial), teacher-forced on the observed choices."""

    def one(m, d):
        traj = m.simulate(jax.tree_util.tree_map(lambda a: a[None], d.inputs))
        return m.observation.probability(traj.outputs[0])

    per = jax.tree_util.tree_map(lambda a: a, data)
    return np.asarray(eqx.filter_vmap(one)(batched_model, per))


def deviance_explained(ll_model, ll_null) -> np.ndarray:
    """1 − D_model / D_null with D = −2·log-likelihood on the same trials (per subject)."""
    ll_model = np.asarray(ll_model, dtype=float)
    ll_null = np.asarray(ll_null, dtype=float)
    return 1.0 - ll_model / ll_null


@dataclass
class ChoiceAnalysis:
    """Results of :func:`analyse_choices`; ``scores`` is an xarray Dataset (hypothesis × subject)."""

    scores: xr.Dataset
    fits: dict[str, FitResult]
    hypotheses: dict[str, Hypothesis]
    data: TrialData
    train: TrialData
    heldout: TrialData
    dataset: xr.Dataset
    timings: dict = field(default_factory=dict)

    def table(self):
        """Per-hypothesis summary (pandas): held-out log-lik, median deviance explained vs each null."""
        import pandas as pd

        s = self.scores
        rows = []
        for h in s["hypothesis"].values:
            sh = s.sel(hypothesis=h)
            rows.append(
                {
                    "hypothesis": h,
                    "held-out log-lik (sum)": float(sh["heldout_loglik"].sum()),
                    "median DE vs coin (held-out) %": 100 * float(sh["de_coin_heldout"].median()),
                    "median DE vs base rate (held-out) %": 100 * float(sh["de_base_heldout"].median()),
                    "median DE vs coin (in-sample) %": 100 * float(sh["de_coin_insample"].median()),
                }
            )
        return pd.DataFrame(rows).set_index("hypothesis").sort_values("held-out log-lik (sum)", ascending=False)

    def paired(self, without: str, with_: str):
        """Paired comparison across subjects of held-out log-likelihood: how many improve, Wilcoxon p."""
        from scipy.stats import wilcoxon

        a = self.scores["heldout_loglik"].sel(hypothesis=without).values
        b = self.scores["heldout_loglik"].sel(hypothesis=with_).values
        diff = b - a
        p = float(wilcoxon(b, a).pvalue) if np.any(diff != 0) else 1.0
        return {"improved": int((diff > 0).sum()), "n": int(len(diff)), "median_gain": float(np.median(diff)), "wilcoxon_p": p}

    def coefficients(self, hypothesis: str):
        """Fitted Taylor coefficients per subject (pandas), for a Taylor hypothesis."""
        import pandas as pd

        df = self.fits[hypothesis].coefficients
        df.index = list(self.scores["subject"].values)
        return pd.DataFrame(df)


def analyse_choices(
    ds: xr.Dataset,
    hypotheses=None,
    *,
    key: PRNGKeyArray,
    heldout_fraction: float = 0.2,
    steps: int = 150,
    in_sample: bool = True,
    progress: bool = False,
) -> ChoiceAnalysis:
    """Fit every hypothesis to every subject (MAP, subjects vmapped) and score it on held-out trials.

    The last ``heldout_fraction`` of each block (coordinate ``block``) is held out: a
    hypothesis is fitted on the rest and scored on those trials (the network still
    learns from held-out trials' choices and rewards, since later trials depend on them).
    Deviance explained is reported against a coin flip (the published metric) and
    against the fitted base-rate model (a fair null). With ``in_sample``, every
    hypothesis is also fitted on all trials and scored there, for comparison with
    in-sample published figures.
    """
    from ..data import validate

    ds = validate(ds)
    if ds.attrs.get("kind") != "behaviour":
        raise DataError(f"analyse_choices needs a behaviour dataset; got kind={ds.attrs.get('kind')!r}")
    hyps = get_hypotheses(hypotheses) if hypotheses is None or not isinstance(hypotheses, dict) else hypotheses
    if "base rate" not in hyps:
        hyps = {**hyps, "base rate": get_hypotheses(["base rate"])["base rate"]}
    data = choice_data(ds)
    groups = ds["block"].transpose("subject", "trial").values if "block" in ds.coords or "block" in ds else None
    train, held = data.split_trials(heldout_fraction, groups=groups)
    n_subj = data.n_trajectories
    n_in = int(data.inputs["cues"].shape[-1])
    names = list(hyps)
    out = {k: np.full((len(names), n_subj), np.nan) for k in ("heldout_loglik", "train_loglik", "insample_loglik")}
    fits, timings = {}, {}
    mask_tr = np.asarray(train.mask)
    mask_he = np.asarray(held.mask)
    mask_all = np.asarray(data.mask)
    for i, name in enumerate(names):
        h = hyps[name]
        k_model, key = jax.random.split(key)
        model = h.model(n_subj, n_in=n_in, key=k_model)
        t0 = time.perf_counter()
        res = fit_independent(model, train, steps=steps, l1=h.l1, progress=progress, fit_rule=h.plastic)
        ll = per_subject_log_likelihood(res.model, data)
        out["heldout_loglik"][i] = np.where(mask_he, ll, 0.0).sum(1)
        out["train_loglik"][i] = np.where(mask_tr, ll, 0.0).sum(1)
        fits[name] = res
        if in_sample:
            res_all = fit_independent(model, data, steps=steps, l1=h.l1, progress=progress, fit_rule=h.plastic)
            ll_all = per_subject_log_likelihood(res_all.model, data)
            out["insample_loglik"][i] = np.where(mask_all, ll_all, 0.0).sum(1)
            fits[name + " (all trials)"] = res_all
        timings[name] = time.perf_counter() - t0
    n_held = mask_he.sum(1)
    n_all = mask_all.sum(1)
    coin_held = LOG_HALF * n_held
    coin_all = LOG_HALF * n_all
    base = names.index("base rate")
    scores = xr.Dataset(
        {
            "heldout_loglik": (("hypothesis", "subject"), out["heldout_loglik"]),
            "train_loglik": (("hypothesis", "subject"), out["train_loglik"]),
            "insample_loglik": (("hypothesis", "subject"), out["insample_loglik"]),
            "n_heldout": ("subject", n_held),
            "n_trials": ("subject", n_all),
            "de_coin_heldout": (("hypothesis", "subject"), deviance_explained(out["heldout_loglik"], coin_held)),
            "de_base_heldout": (
                ("hypothesis", "subject"),
                deviance_explained(out["heldout_loglik"], out["heldout_loglik"][base]),
            ),
            "de_coin_insample": (("hypothesis", "subject"), deviance_explained(out["insample_loglik"], coin_all)),
        },
        coords={"hypothesis": names, "subject": [str(s) for s in ds["subject"].values]},
        attrs={
            "heldout": f"last {heldout_fraction:.0%} of each block",
            "steps": steps,
            "dataset": str(ds.attrs.get("dataset", ds.attrs.get("description", ""))),
        },
    )
    return ChoiceAnalysis(scores, fits, hyps, data, train, held, ds, timings)


def decay_summary(analysis: ChoiceAnalysis, hypothesis: str = "x·r + w", all_trials: bool = True) -> dict:
    """Median, spread and sign count of the fitted decay coefficient θ(w) across subjects."""
    key = hypothesis + (" (all trials)" if all_trials and hypothesis + " (all trials)" in analysis.fits else "")
    rule = analysis.fits[key].model.rule
    if not isinstance(rule, TaylorRule) or "w" not in rule.names:
        raise DataError(f"hypothesis {hypothesis!r} has no pure-w (decay) term")
    theta = np.asarray(rule.coeffs)[:, rule.names.index("w")]
    return {
        "median": float(np.median(theta)),
        "q25": float(np.quantile(theta, 0.25)),
        "q75": float(np.quantile(theta, 0.75)),
        "negative": int((theta < 0).sum()),
        "n": int(theta.size),
        "values": theta,
    }


__all__ = ["analyse_choices", "ChoiceAnalysis", "deviance_explained", "per_subject_log_likelihood", "choice_probabilities", "decay_summary"]

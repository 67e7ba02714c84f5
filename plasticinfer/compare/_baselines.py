"""Baselines every hypothesis must beat: coin flip, base rate (or mean activity), Rescorla–Wagner (or static weights).

A gain reported against a coin flip alone can be a bias the animal had from the start; the base
rate shows whether *learning* helps, and Rescorla–Wagner whether a new rule beats the textbook one.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from .._errors import ComparisonError
from .._model import PlasticityModel
from .._rules import TaylorRule
from .._trial_data import TrialData
from ._hypotheses import AbstractHypothesis, FitSettings, FoldScore, ModelHypothesis, choice_model, is_binary_choice_data, is_choice_data, n_observations
from ._splits import Fold

COIN_FLIP = "coin flip"
BASE_RATE = "base rate"
RESCORLA_WAGNER = "Rescorla–Wagner"
MEAN_ACTIVITY = "mean activity"
STATIC_WEIGHTS = "static weights"


def _masked(data: TrialData):
    mask = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape))
    return np.asarray(data.observations), mask


@dataclass
class CoinFlip(AbstractHypothesis):
    """Every option equally likely on every trial: log(1/n_options) per choice. No parameters.

    The null of published "deviance explained" numbers; kept for comparability only.
    """

    name: str = COIN_FLIP

    def applies_to(self, data):
        return is_choice_data(data)

    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        n_options = int(fold.test.inputs["cues"].shape[-2])
        n_test, n_train = n_observations(fold.test), n_observations(fold.train)
        lp = -np.log(n_options)
        return FoldScore(n_test * lp, n_test, n_train * lp, n_train, 0, True)


@dataclass
class BaseRate(AbstractHypothesis):
    """No learning: each option chosen at its training-trial rate (per subject; pooled for new subjects).

    Choice data: P(option k) = (count_k + ½) / (n + ½·K) on the subject's training trials. This is
    the one base rate of the package (the fly analysis uses it too). Activity
    data ("mean activity"): each recorded neuron Gaussian with its training mean and sd (2 parameters
    per neuron with a training observation: each subject's own count, or the pooled count for new subjects); a
    held-out neuron with fewer than 2 training values, or only equal ones, is refused (it has no density).
    """

    name: str = BASE_RATE

    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        obs_tr, m_tr = _masked(fold.train)
        obs_te, m_te = _masked(fold.test)
        pos = {s: i for i, s in enumerate(fold.train_subjects.tolist())}
        new = fold.new_subjects
        choice = is_choice_data(fold.train)
        test_ll, train_ll = [], []
        if choice:
            k = int(fold.train.inputs["cues"].shape[-2])

            def rates(rows):
                counts = np.array([np.sum((obs_tr[rows] == o) & m_tr[rows]) for o in range(k)], float)
                return (counts + 0.5) / (counts.sum() + 0.5 * k)

            def ll(obs, mask, p):
                idx = np.where(mask, obs, 0).astype(int)
                return float(np.sum(np.where(mask, np.log(p[idx]), 0.0)))

            pooled = rates(list(range(len(fold.train_subjects))))
            for i in range(len(fold.train_subjects)):
                train_ll.append(ll(obs_tr[i], m_tr[i], pooled if new else rates([i])))
            for j, s in enumerate(fold.test_subjects.tolist()):
                test_ll.append(ll(obs_te[j], m_te[j], pooled if new else rates([pos[s]])))
            n_params = k - 1
        else:

            def moments(rows):
                o = obs_tr[rows]
                m = m_tr[rows]
                axes = tuple(range(o.ndim - 1))
                cnt = np.maximum(m.sum(axes), 1)
                mu = np.where(m, o, 0.0).sum(axes) / cnt
                var = np.where(m, (o - mu) ** 2, 0.0).sum(axes) / cnt
                return mu, np.sqrt(np.maximum(var, 1e-12))

            def degenerate(rows):  # per neuron: fewer than 2 training values, or all equal (an sd of 0: no density)
                o, m = obs_tr[rows], m_tr[rows]
                axes = tuple(range(o.ndim - 1))
                hi = np.where(m, o, -np.inf).max(axes)
                lo = np.where(m, o, np.inf).min(axes)
                return (m.sum(axes) < 2) | (hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi)))

            def ll(obs, mask, mu, sd):
                z = (np.where(mask, obs, mu) - mu) / sd
                lp = -0.5 * z**2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
                return float(np.sum(np.where(mask, lp, 0.0)))

            recorded = np.asarray(m_tr).reshape(m_tr.shape[0], -1, m_tr.shape[-1]).any(axis=1)  # (subject, neuron)
            everyone = list(range(len(fold.train_subjects)))
            _check_trained_neurons(
                fold, recorded, np.asarray(m_te).reshape(m_te.shape[0], -1, m_te.shape[-1]).any(axis=1),
                degenerate(everyone) if new else np.stack([degenerate([i]) for i in everyone]),
            )
            pooled = moments(everyone)
            for i in range(len(fold.train_subjects)):
                train_ll.append(ll(obs_tr[i], m_tr[i], *(pooled if new else moments([i]))))
            for j, s in enumerate(fold.test_subjects.tolist()):
                test_ll.append(ll(obs_te[j], m_te[j], *(pooled if new else moments([pos[s]]))))
            # a mean and an sd for each neuron with a training observation: an unrecorded neuron has no parameter
            n_params = 2 * (int(recorded.any(axis=0).sum()) if new else recorded.sum(axis=1))  # pooled; or per subject
        # for subjects never seen, one pooled rate of all training subjects: a shared fit
        return FoldScore(
            np.asarray(test_ll), n_observations(fold.test), np.asarray(train_ll), n_observations(fold.train), n_params, not new
        )


def _check_trained_neurons(fold: Fold, recorded: np.ndarray, tested: np.ndarray, degenerate: np.ndarray) -> None:
    """Refuse a neuron held out for a subject whose training values (the subject's own, or every training subject's
    for new subjects) give the baseline no density: none at all, one, or all equal. Each had an sd of 1e-6 and a
    held-out log-likelihood of order -1e11 that made every hypothesis look far better than 'no learning'."""
    pos = {s: i for i, s in enumerate(fold.train_subjects.tolist())}
    whose = "any training subject's" if fold.new_subjects else "its own"
    for j, s in enumerate(fold.test_subjects.tolist()):
        have = recorded.any(axis=0) if fold.new_subjects else recorded[pos[s]]
        flat = degenerate if fold.new_subjects else degenerate[pos[s]]
        for bad, why in ((tested[j] & ~have, f"none in {whose} training trials"),
                         (tested[j] & have & flat, f"only one value, or only equal values (an sd of 0), in {whose} training trials")):
            if bad.any():
                raise ComparisonError(
                    f"{MEAN_ACTIVITY} baseline, fold {fold.name}: neuron(s) {np.flatnonzero(bad).tolist()} of subject {s} "
                    f"have held-out observations but {why}, so the baseline has no mean and sd to predict them with. Drop "
                    "those neurons (or mask their held-out trials), use a split whose training part records them with some "
                    "variation, or compare without baselines (baselines=False; --no-baselines on the command line)."
                )


def rescorla_wagner_model(data: TrialData) -> PlasticityModel:
    """Rescorla–Wagner as a Taylor rule: Δw = θ(x·r)·x·r + θ(x·w)·x·w, in the standard choice model (β = 1).

    Classic RW, Q ← Q + α(r − Q) for the chosen option with P(choice) = σ(β·ΔQ), is exactly
    θ(x·w) = −α and θ(x·r) = β·α after rescaling w by β, so fitting both θ's freely with β = 1
    fits α and β (two parameters, plus the bias like every hypothesis).
    """
    return choice_model(TaylorRule.from_terms({"x*r": 0.0, "x*w": 0.0}), data)


def static_weights_model(template: PlasticityModel) -> PlasticityModel:
    """The template's network and observation model with no plasticity (a zero, fixed rule); w₀ is fitted."""
    rule = TaylorRule.from_terms({"x*y": 0.0}, fixed=["x*y"])
    return PlasticityModel(rule, template.network, template.observation, template.initial_weights)


def standard_baselines(data: TrialData, template: PlasticityModel | None) -> list[AbstractHypothesis]:
    """Coin flip, base rate and Rescorla–Wagner for choices; mean activity and static weights for activity.

    Rescorla–Wagner is a binary choice model (``BernoulliChoice``): it joins only when the choices are
    between two options coded 0/1 (coin flip and base rate take any number of options).
    """
    if is_choice_data(data):
        rw = [ModelHypothesis(RESCORLA_WAGNER, rescorla_wagner_model(data))] if is_binary_choice_data(data) else []
        return [CoinFlip(), BaseRate(), *rw]
    out: list[AbstractHypothesis] = [BaseRate(name=MEAN_ACTIVITY)]
    if template is not None:
        out.append(ModelHypothesis(STATIC_WEIGHTS, static_weights_model(template)))
    return out


__all__ = [
    "CoinFlip",
    "BaseRate",
    "rescorla_wagner_model",
    "static_weights_model",
    "standard_baselines",
    "COIN_FLIP",
    "BASE_RATE",
    "RESCORLA_WAGNER",
    "MEAN_ACTIVITY",
    "STATIC_WEIGHTS",
]

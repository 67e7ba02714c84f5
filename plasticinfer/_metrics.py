"""Recovery metrics: R² of trajectories on held-out data, coefficient error, cosine to the truth."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from ._errors import ModelError
from ._rules import TaylorRule
from ._synthetic import GaussianInputs, rollout


def r2_score(true, pred) -> float:
    """1 − SS_res / SS_tot over all entries (SS_tot about the mean of ``true``).

    A prediction that is not finite everywhere (a fitted rule that blows up) scores −inf: infinitely
    wrong, not undefined. NaN only when ``true`` itself is constant or not finite.
    """
    true = np.asarray(true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if true.shape != pred.shape:
        raise ModelError(f"r2_score: shapes differ {true.shape} vs {pred.shape}")
    if not np.all(np.isfinite(true)):
        return float("nan")
    with np.errstate(over="ignore", invalid="ignore"):
        ss_res = np.sum((true - pred) ** 2)
    ss_tot = np.sum((true - true.mean()) ** 2)
    if not ss_tot > 0:
        return float("nan")
    return float(1.0 - ss_res / ss_tot) if np.isfinite(ss_res) else float("-inf")


def _aligned(fitted: TaylorRule, true: TaylorRule) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Effective coefficients (times learning rate) of both rules on the union of their terms."""
    names = list(dict.fromkeys(list(fitted.names) + list(true.names)))
    f = {n: v * fitted.learning_rate for n, v in fitted.coefficients.items()}
    t = {n: v * true.learning_rate for n, v in true.coefficients.items()}
    return names, np.array([f.get(n, 0.0) for n in names]), np.array([t.get(n, 0.0) for n in names])


def coefficient_error(fitted: TaylorRule, true: TaylorRule) -> dict[str, float]:
    """Fitted minus true coefficient for every term of either rule (in units of η·θ)."""
    names, f, t = _aligned(fitted, true)
    return {n: float(a - b) for n, a, b in zip(names, f, t)}


def cosine_similarity(fitted: TaylorRule, true: TaylorRule) -> float:
    """Cosine between the two rules' coefficient vectors (1 = same direction)."""
    _, f, t = _aligned(fitted, true)
    denom = np.linalg.norm(f) * np.linalg.norm(t)
    return float(f @ t / denom) if denom > 0 else float("nan")


@dataclass
class HeldOutScore:
    r2_weights: float
    r2_activity: float
    n_trajectories: int
    n_trials: int


def heldout_r2(
    fitted_rule,
    true_rule,
    network,
    inputs: GaussianInputs,
    *,
    key: PRNGKeyArray,
    n_trajectories: int = 10,
    n_trials: int = 200,
    init_scale: float = 0.1,
) -> HeldOutScore:
    """R² of weight and activity trajectories under the fitted rule vs the true rule.

    Both rules run on *new* inputs from *new* initial weights (drawn from ``key``, which
    must not be a key used for training — split it from a fresh root).
    """
    k_x, k_w = jax.random.split(key)
    x = inputs.sample(k_x, n_trajectories, n_trials)
    w0 = jax.vmap(lambda k: network.init_weights(k, init_scale))(jax.random.split(k_w, n_trajectories))
    y_true, w_true = rollout(true_rule, network, w0, x)
    y_fit, w_fit = rollout(fitted_rule, network, w0, x)
    wt = np.concatenate([np.asarray(v).ravel() for v in w_true.values()])
    wf = np.concatenate([np.asarray(v).ravel() for v in w_fit.values()])
    return HeldOutScore(r2_score(wt, wf), r2_score(y_true, y_fit), n_trajectories, n_trials)

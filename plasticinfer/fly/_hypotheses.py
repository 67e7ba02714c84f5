"""Named rule hypotheses for two-odour choice learning, and the model each one defines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._errors import ModelError
from .._model import PlasticityModel
from .._networks import ChoiceCircuit
from .._observation import BernoulliChoice
from .._rules import MLPRule, TaylorRule


LAPSE = 0.01


@dataclass(frozen=True)
class Hypothesis:
    """A named learning hypothesis: a rule, whether it sees r or r − E[r], and its sparsity penalty.

    Attributes:
        name: short label, e.g. ``"x·r + w"``.
        make_rule: ``key -> rule`` (the starting point of a fit).
        reward_expectation: the rule sees r − E[r] (E[r] a running average with a fitted rate).
        l1: L1 penalty per observation on the Taylor coefficients (a sparsity prior).
        plastic: False for the base-rate baseline (no learning: fixed zero rule, fitted bias).
        description: one line for reports.
    """

    name: str
    make_rule: Callable[[PRNGKeyArray], object]
    reward_expectation: bool = False
    l1: float = 0.0
    plastic: bool = True
    description: str = ""

    def model(self, n_subjects: int, *, n_in: int = 2, key: PRNGKeyArray, lapse: float = LAPSE) -> PlasticityModel:
        """The choice model: ChoiceCircuit + BernoulliChoice, one set of initial weights per subject.

        The inverse temperature is fixed at 1 (it is only identifiable together with the scale of
        the reward term); the bias, initial weights, rule and (with ``reward_expectation``) the
        expectation rate are fitted. A fixed lapse rate (1 % random choices by default, the same
        for every hypothesis) keeps one surprising choice from costing more than log(0.005).
        """
        net = ChoiceCircuit(n_in, reward_expectation=self.reward_expectation)
        obs = BernoulliChoice(1.0, 0.0, learn_temperature=False, lapse=lapse)
        return PlasticityModel.create(
            self.make_rule(key), net, obs, n_trajectories=n_subjects, initial_weights={"w": jnp.zeros((1, n_in))}
        )


def _taylor(terms, fixed=()):
    return lambda key: TaylorRule.from_terms({t: 0.0 for t in terms}, fixed=fixed)


def standard_hypotheses() -> dict[str, Hypothesis]:
    """The hypotheses of the fly analysis, plus the Rescorla–Wagner and base-rate baselines.

    ``x`` is the chosen odour's input pattern, ``w`` the weights, ``r`` the reward (0/1). With
    binary rewards r² = r, so the full Taylor rule uses powers ≤ 1 (its 8 terms are all
    distinguishable); with one-hot odours x² = x likewise.
    """
    hyps = [
        Hypothesis("x·r", _taylor(["x*r"]), description="reward-modulated Hebbian"),
        Hypothesis("x·r + w", _taylor(["x*r", "w"]), description="… plus weight decay (forgetting)"),
        Hypothesis("x·(r−E[r])", _taylor(["x*r"]), reward_expectation=True, description="reward-prediction-error modulated"),
        Hypothesis(
            "x·(r−E[r]) + w", _taylor(["x*r", "w"]), reward_expectation=True, description="… plus weight decay"
        ),
        Hypothesis(
            "Taylor(x,w,r)",
            lambda key: TaylorRule.full(("x", "w", "r"), 1),
            l1=1e-3,
            description="all 8 monomials of x, w, r (powers ≤ 1) with an L1 sparsity penalty",
        ),
        Hypothesis(
            "MLP(x,w,r)",
            lambda key: MLPRule(("x", "w", "r"), width=8, depth=2, key=key, final_scale=0.1),
            description="Δw = MLP(x, w, r), 2 hidden layers of 8",
        ),
        Hypothesis(
            "Rescorla–Wagner + forgetting",
            _taylor(["x*r", "x*w", "w"]),
            description="baseline: Q ← Q + α(r − Q) for the chosen odour, all Q decay; θ(x·r)=α, θ(x·w)=−α free",
        ),
        Hypothesis(
            "base rate", _taylor(["x*r"], fixed=["x*r"]), plastic=False, description="baseline: no learning, fitted bias"
        ),
    ]
    return {h.name: h for h in hyps}


def get_hypotheses(names=None) -> dict[str, Hypothesis]:
    """Select standard hypotheses by name (all of them by default)."""
    all_h = standard_hypotheses()
    if names is None:
        return all_h
    unknown = [n for n in names if n not in all_h]
    if unknown:
        raise ModelError(f"unknown hypotheses {unknown}; choose from {list(all_h)}")
    return {n: all_h[n] for n in names}


__all__ = ["Hypothesis", "standard_hypotheses", "get_hypotheses"]

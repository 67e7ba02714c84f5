"""The standard rule hypotheses of two-odour choice learning, as :class:`~plasticinfer.compare.RuleHypothesis`.

The baselines (coin flip, base rate, Rescorla–Wagner) are :func:`plasticinfer.compare.compare`'s own and
are always included; they are not hypotheses here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._rules import MLPRule, TaylorRule
from ..compare._baselines import BASE_RATE, COIN_FLIP, RESCORLA_WAGNER
from .._errors import ComparisonError
from ..compare._parse import RuleHypothesis, parse_hypothesis

#: Names of compare's baselines: asking for them selects nothing (they are always in the comparison).
BASELINE_NAMES = (COIN_FLIP, BASE_RATE, RESCORLA_WAGNER)

# Kept for code written against the earlier fly module: a fly hypothesis is a RuleHypothesis.
Hypothesis = RuleHypothesis


def _mlp(key):
    return MLPRule(("x", "w", "r"), width=8, depth=2, key=key, final_scale=0.1)


def standard_hypotheses() -> dict[str, RuleHypothesis]:
    """The hypotheses of the fly analysis.

    ``x`` is the chosen odour's input pattern, ``w`` the weights, ``r`` the reward (0/1). With
    binary rewards r² = r, so the full Taylor rule uses powers ≤ 1 (its 8 terms are all
    distinguishable); with one-hot odours x² = x likewise.
    """
    hyps = [
        parse_hypothesis("x·r"),
        parse_hypothesis("x·r + w"),
        parse_hypothesis("x·(r−E[r])"),
        parse_hypothesis("x·(r−E[r]) + w"),
        RuleHypothesis("Taylor(x,w,r)", TaylorRule.full(("x", "w", "r"), 1), l1=1e-3,
                       description="all 8 monomials of x, w, r (powers ≤ 1) with an L1 sparsity penalty"),
        RuleHypothesis("MLP(x,w,r)", _mlp, description="Δw = MLP(x, w, r), 2 hidden layers of 8"),
        RuleHypothesis("Rescorla–Wagner + forgetting", parse_hypothesis("x*r + x*w + w").rule,
                       description="Q ← Q + α(r − Q) for the chosen odour, all Q decay; θ(x·r)=α, θ(x·w)=−α free"),
    ]
    descriptions = {
        "x·r": "reward-modulated Hebbian",
        "x·r + w": "… plus weight decay (forgetting)",
        "x·(r−E[r])": "reward-prediction-error modulated",
        "x·(r−E[r]) + w": "… plus weight decay",
    }
    out = {}
    for h in hyps:
        if h.name in descriptions:
            h = RuleHypothesis(h.name, h.rule, h.reward_expectation, h.l1, descriptions[h.name])
        out[h.name] = h
    return out


def get_hypotheses(names: Iterable[str | RuleHypothesis] | Mapping[str, RuleHypothesis] | None = None) -> dict[str, RuleHypothesis]:
    """Hypotheses by name: the standard ones (all by default), or equations in the one hypothesis syntax.

    An equation that names a standard hypothesis's terms (``"x*r + w"``, ``"x·(r-E[r]) + w"``) is that
    hypothesis; any other equation (``"x*r + x*w"``) is parsed by :func:`~plasticinfer.compare.parse_hypothesis`.
    Baseline names (coin flip, base rate, Rescorla–Wagner) are skipped: every comparison includes them.
    """
    standard = standard_hypotheses()
    if names is None:
        return standard
    if isinstance(names, Mapping):
        return dict(names)
    if isinstance(names, str):
        names = [names]
    # keyed by the set of terms: "w + x*r" is "x·r + w"
    canonical = {
        (frozenset(h.rule.names), h.reward_expectation): h
        for h in standard.values()
        if isinstance(h.rule, TaylorRule) and not h.l1
    }
    out: dict[str, RuleHypothesis] = {}
    for n in names:
        if isinstance(n, RuleHypothesis):
            out[n.name] = n
            continue
        if n in BASELINE_NAMES:
            continue
        if n in standard:
            out[n] = standard[n]
            continue
        try:
            h = parse_hypothesis(n)
        except ComparisonError as err:
            raise ComparisonError(f"{err}; or choose a standard hypothesis: {list(standard)}") from None
        if not any(h.rule.coefficients.values()):  # same terms, no starting values: the standard hypothesis
            h = canonical.get((frozenset(h.rule.names), h.reward_expectation), h)
        out[h.name] = h
    return out


__all__ = ["Hypothesis", "standard_hypotheses", "get_hypotheses", "BASELINE_NAMES"]

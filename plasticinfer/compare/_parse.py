"""One hypothesis syntax: ``"x*r + w"``, ``"x·(r−E[r]) + w"``, ``"0.3·x·r − 0.05·w"`` → a :class:`RuleHypothesis`.

A hypothesis names the terms of a Taylor rule in x (presynaptic), y (postsynaptic), w (weight) and r
(reward). Writing ``(r−E[r])`` instead of ``r`` (ASCII ``(r-E[r])`` too) says the rule sees the
reward-prediction error: the network passes r − E[r], with E[r] a running average whose rate is fitted.
Numbers in front of terms are the fit's starting values; terms without a number start at 0 (a
hypothesis says *which* terms, the fit finds their values).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
from jaxtyping import PRNGKeyArray

from .._errors import ModelError
from .._fit import check_l1
from .._model import PlasticityModel
from .._rules import RPE, AbstractRule, Monomial, TaylorRule, rule_equation, signed_terms  # noqa: F401 (rule_equation re-exported)
from .._trial_data import TrialData
from .._errors import ComparisonError

#: How the reward-prediction error is printed.
_RPE_PATTERN = re.compile(r"\(\s*r\s*[-−]\s*(?:E\s*\[\s*r\s*\]|E\s*\(\s*r\s*\)|⟨\s*r\s*⟩|<\s*r\s*>)\s*\)")


@dataclass(frozen=True)
class RuleHypothesis:
    """A rule hypothesis before it meets data: which rule, whether it sees r − E[r], its own L1 penalty.

    :func:`compare` builds the standard model for the data from it (choices: ``ChoiceCircuit`` +
    ``BernoulliChoice`` with β fixed at 1; activity: ``FeedForward`` + ``GaussianActivity``).

    Attributes:
        name: label in tables (for parsed hypotheses, the text as given).
        rule: the rule, whose values are the fit's start — or ``key -> rule`` for rules that need a
            random initialisation (an MLP).
        reward_expectation: the rule sees r − E[r] (choice data only).
        l1: this hypothesis's L1 penalty (``None``: the comparison's ``l1``), e.g. a sparsity prior on a
            full Taylor expansion.
        description: one line for reports.
    """

    name: str
    rule: AbstractRule | Callable[[PRNGKeyArray], AbstractRule]
    reward_expectation: bool = False
    l1: float | None = None
    description: str = ""

    def __post_init__(self):
        if self.l1 is not None:
            object.__setattr__(self, "l1", check_l1(self.l1, error=ComparisonError))

    def make_rule(self, key: PRNGKeyArray | None = None) -> AbstractRule:
        if isinstance(self.rule, AbstractRule):
            return self.rule
        if key is None:
            raise ComparisonError(f"hypothesis {self.name!r}: its rule is drawn at random; pass key=")
        return self.rule(key)

    def model(self, data: TrialData, *, key: PRNGKeyArray | None = None, lapse: float = 0.0) -> PlasticityModel:
        """The standard model of this hypothesis for ``data`` (one set of initial weights per trajectory)."""
        from ._hypotheses import activity_model, choice_model, is_choice_data

        if is_choice_data(data):
            return choice_model(self.make_rule(key), data, reward_expectation=self.reward_expectation, lapse=lapse)
        if self.reward_expectation:
            raise ComparisonError(
                f"hypothesis {self.name!r} uses r−E[r], which needs choice data (inputs cues, choice, reward); "
                f"these data have inputs {sorted(data.inputs)}"
            )
        if "x" in data.inputs:
            if key is None:
                raise ComparisonError(f"hypothesis {self.name!r}: building an activity model draws initial weights; pass key=")
            return activity_model(self.make_rule(key), data, key=key)
        raise ComparisonError(
            f"hypothesis {self.name!r}: cannot build a model for inputs {sorted(data.inputs)}; pass a PlasticityModel"
        )

    def equation(self) -> str:
        """The starting rule as an equation, with ``(r−E[r])`` where the rule sees the prediction error."""
        rule = self.rule if isinstance(self.rule, AbstractRule) else None
        if not isinstance(rule, TaylorRule):
            return self.name
        return rule_equation(rule, reward_expectation=self.reward_expectation)


#: The rate η of a rule written as an equation: choice rules run at η = 1 (their coefficients are the whole update),
#: activity rules at a small η so that weights change slowly over trials (the command line's --learning-rate default)
CHOICE_LEARNING_RATE, ACTIVITY_LEARNING_RATE = 1.0, 0.01


def parse_hypothesis(text: str, *, name: str | None = None, learning_rate: float = CHOICE_LEARNING_RATE) -> RuleHypothesis:
    """Parse a hypothesis written as a rule equation (ASCII or Unicode alike).

    ``"x*r + w"``, ``"x·r + w"``, ``"x*(r-E[r]) + w"``, ``"x·(r−E[r]) + w"``, ``"Δw = 0.3·x·r − 0.05·w"``,
    ``"x*y - y^2*w"``, ``"x y²"``. Terms are products of x, y, w, r with optional powers (``^2``, ``**2``,
    ``²``); ``(r−E[r])`` (also ``(r-E(r))``, ``(r-<r>)``) stands for the reward-prediction error and may not
    be mixed with a plain r; ``1`` is the constant term. Numbers in front of terms are starting values
    (terms without one start at 0).

    Raises:
        ComparisonError: naming the part of ``text`` that could not be read.
    """
    if not isinstance(text, str) or not text.strip():
        raise ComparisonError(f"a hypothesis must be a non-empty rule equation such as 'x*r + w'; got {text!r}")
    s = _RPE_PATTERN.sub("ρ", text)
    rpe = "ρ" in s
    s = s.replace("−", "-").replace("–", "-").replace("Δw", "").replace("dw/dt", "").replace("dw", "")
    s = s.split("=", 1)[-1]
    if rpe and re.search(r"(?<![A-Za-z])r(?![A-Za-z])", s):
        raise ComparisonError(
            f"hypothesis {text!r} mixes r and (r−E[r]); the network passes the rule either the reward or the "
            "prediction error, not both — write every reward factor the same way"
        )
    s = s.replace("ρ", "r")
    if "(" in s or ")" in s or "[" in s:
        raise ComparisonError(
            f"cannot parse hypothesis {text!r}: the only bracket allowed is the prediction error (r−E[r]); write terms "
            "as products like 'x*r', 'y^2*w', '0.5·x·y'"
        )
    compact = re.sub(r"\s*(\*\*|\^)\s*", "^", s.strip())
    if not compact:
        raise ComparisonError(f"empty hypothesis {text!r}; write terms such as 'x*r + w'")
    values: dict[Monomial, float] = {}
    try:
        terms = signed_terms(compact, text)
    except ModelError as err:
        raise ComparisonError(f"cannot parse hypothesis {text!r}: {err}") from None
    for sign, number, body in terms:
        try:
            mono = Monomial.parse(body) if body else Monomial()
        except ModelError as err:
            raise ComparisonError(f"cannot parse hypothesis {text!r}: {err}") from None
        if mono in values:
            raise ComparisonError(f"hypothesis {text!r} names the term {mono.name!r} twice")
        bare_one = not body and number == "1"  # "x*r + 1" names the constant term, like "x*r + w" names w
        values[mono] = 0.0 if number is None or bare_one else float(number) * sign
    rule = TaylorRule(list(values), jnp.asarray(list(values.values()), dtype=float), learning_rate=learning_rate)
    return RuleHypothesis(name if name is not None else text.strip(), rule, reward_expectation=rpe)


def hypothesis_text(terms, *, reward_expectation: bool = False) -> str:
    """Canonical Unicode text of a hypothesis from its term names: ``["x*r", "w"]`` → ``"x·r + w"``."""
    parts = [Monomial.parse(t).pretty() if isinstance(t, str) else t.pretty() for t in terms]
    out = " + ".join(parts)
    return re.sub(r"(?<![A-Za-z\[])r(?![A-Za-z\]])", RPE, out) if reward_expectation else out


__all__ = ["RuleHypothesis", "parse_hypothesis", "rule_equation", "hypothesis_text", "RPE"]

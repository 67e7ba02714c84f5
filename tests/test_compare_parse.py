"""One hypothesis syntax: ASCII and Unicode parse to the same rule; r−E[r] switches the network; errors name the text."""

import itertools

import jax
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plasticinfer as pi
from plasticinfer.compare import ComparisonError, RuleHypothesis, compare, parse_hypothesis, rule_equation
from plasticinfer.compare._parse import hypothesis_text


@pytest.mark.parametrize(
    "text, terms, rpe",
    [
        ("x*r + w", {"x*r", "w"}, False),
        ("x·r + w", {"x*r", "w"}, False),
        ("x*(r-E[r]) + w", {"x*r", "w"}, True),
        ("x·(r−E[r]) + w", {"x*r", "w"}, True),
        ("x * ( r - E[r] )", {"x*r"}, True),
        ("x*(r-E(r))", {"x*r"}, True),
        ("Δw = x·y − y²·w", {"x*y", "y^2*w"}, False),
        ("x*y - y**2*w", {"x*y", "y^2*w"}, False),
        ("x y^2 + 1", {"x*y^2", "1"}, False),
    ],
)
def test_ascii_and_unicode_spellings(text, terms, rpe):
    h = parse_hypothesis(text)
    assert isinstance(h, RuleHypothesis) and h.name == text.strip()
    assert set(h.rule.names) == terms and h.reward_expectation is rpe
    assert all(v == 0.0 for v in h.rule.coefficients.values())  # a hypothesis names terms; the fit finds values


def test_numbers_are_starting_values_with_their_signs():
    h = parse_hypothesis("Δw = 0.3·x·r − 0.05·w + 2e-3*x")
    assert h.rule.coefficients == pytest.approx({"x*r": 0.3, "w": -0.05, "x": 2e-3})
    assert parse_hypothesis("x*r - w").rule.coefficients == {"x*r": 0.0, "w": 0.0}


@pytest.mark.parametrize(
    "text, match",
    [
        ("x*r + x*(r-E[r])", "mixes r and"),
        ("x*(r+w)", "bracket"),
        ("x*q", "cannot parse"),
        ("x*r + r*x", "twice"),
        ("", "non-empty"),
        ("x*r +", "no term"),
    ],
)
def test_errors_name_the_text(text, match):
    with pytest.raises(ComparisonError, match=match):
        parse_hypothesis(text)


def test_fitted_equation_prints_the_prediction_error():
    rule = pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.1})
    assert rule_equation(rule, reward_expectation=True) == "Δw = 0.500·x·(r−E[r]) − 0.100·w"
    assert rule_equation(rule) == rule.equation() == "Δw = 0.500·x·r − 0.100·w"
    assert rule_equation(pi.TaylorRule.from_terms({"x*r^2": 1.0}), reward_expectation=True) == "Δw = 1.000·x·(r−E[r])²"


_VARS = st.sampled_from(["x", "y", "w", "r"])
_MONO = st.lists(st.tuples(_VARS, st.integers(1, 2)), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(_MONO, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_property_text_round_trip(monos, unicode, rpe):
    """Any set of monomials written out (ASCII or Unicode, r or r−E[r]) parses back to the same terms."""
    terms = {pi.Monomial.parse("*".join(f"{v}^{p}" for v, p in m)) for m in monos}
    terms = sorted(terms)
    if rpe and not any(t.r for t in terms):
        rpe = False
    text = hypothesis_text(terms, reward_expectation=rpe)
    if not unicode:
        text = text.replace("·", "*").replace("−", "-")
        for sup, digit in zip("²³", "23"):
            text = text.replace(sup, "^" + digit)
    h = parse_hypothesis(text)
    assert set(h.rule.terms) == set(terms) and h.reward_expectation is rpe


@pytest.fixture(scope="module")
def from_strings():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(1), n_subjects=2, trials_per_block=12)
    return compare(["x*r", "x·(r−E[r]) + w"], syn.data, blocks=syn.block, steps=3, restarts=1, baselines=False)


@pytest.mark.slow
def test_compare_takes_equation_strings(from_strings):
    """compare parses strings itself: a list of equations, named by their text; r−E[r] builds the RPE circuit."""
    res = from_strings
    assert res.hypotheses == ["x*r", "x·(r−E[r]) + w"]
    nets = {h: m.network for (h, _), m in res.fitted.items()}
    assert nets["x·(r−E[r]) + w"].reward_expectation and not nets["x*r"].reward_expectation
    with pytest.raises(ComparisonError, match="choice data"):
        parse_hypothesis("x*(r-E[r])").model(pi.TrialData({"x": np.zeros((1, 3, 2))}, np.zeros((1, 3, 1)), np.ones((1, 3, 1), bool)))


def test_every_pair_of_spellings_builds_the_same_model():
    data = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(0), trials_per_block=5).data
    spellings = ["x*(r-E[r]) + w", "x·(r−E[r]) + w", "w + x*(r - E[r])"]
    for a, b in itertools.combinations(spellings, 2):
        ma, mb = parse_hypothesis(a).model(data), parse_hypothesis(b).model(data)
        assert set(ma.rule.names) == set(mb.rule.names) and ma.network.reward_expectation == mb.network.reward_expectation


@pytest.mark.slow
def test_fitted_equations_of_a_comparison_print_the_prediction_error(from_strings):
    res = from_strings
    stacked = res.fitted[("x·(r−E[r]) + w", "held-out trials")]
    eq = res.equation("x·(r−E[r]) + w", subject=1)
    assert "x·(r−E[r])" in eq and "x·r" not in eq
    theta = np.asarray(stacked.rule.coeffs)[1]
    assert f"{abs(theta[0]):.3f}·x·(r−E[r])" in eq and f"{abs(theta[1]):.3f}·w" in eq
    with pytest.raises(ComparisonError, match="subject="):
        res.equation("x·(r−E[r]) + w")


def test_fit_result_equation_prints_the_prediction_error_of_its_network(getkey):
    """FitResult.equation uses the one formatter: a rule fitted in a reward-expectation circuit reads r−E[r]."""
    rule = pi.TaylorRule.from_terms({"x*r": 0.3, "w": -0.05})
    syn = pi.make_choice_data(rule, key=getkey(), n_subjects=1, trials_per_block=10, reward_expectation=True)
    adam = optax.adam(1e-2)  # the optimiser does not matter here, and Adam compiles in a quarter of L-BFGS's time
    res = pi.fit(syn.true_model, syn.data, steps=2, optimiser=adam, progress=False)
    assert "(r−E[r])" in res.equation() and "·r " not in res.equation()
    plain = pi.make_choice_data(rule, key=getkey(), n_subjects=1, trials_per_block=10)
    assert "(r−E[r])" not in pi.fit(plain.true_model, plain.data, steps=2, optimiser=adam, progress=False).equation()

"""Identifiability: aliased terms under binary variables, zero-information directions, posterior correlations."""

import jax
import jax.numpy as jnp
import pytest

import plasticinfer as pi
from plasticinfer import bayes


def test_aliases_from_binary_variables():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5}), key=jax.random.key(0), n_subjects=1, trials_per_block=10)
    assert bayes.binary_variables(syn.data, pi.ChoiceCircuit(2)) == {"x", "r"}
    groups = bayes.aliased_terms(["x*r", "x*r^2", "x^2*r", "w", "x*w", "w^2"], {"x", "r"})
    assert sorted(map(sorted, groups)) == [["x*r", "x*r^2", "x^2*r"]]
    graded = pi.TrialData({"reward": jnp.asarray([[0.0, 0.5]])}, jnp.zeros((1, 2)), jnp.ones((1, 2), bool))
    assert "r" not in bayes.binary_variables(graded)


@pytest.fixture(scope="module")
def report():
    syn = pi.make_choice_data(pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}), key=jax.random.key(1), n_subjects=3,
                              inverse_temperature=1.0)
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.5, "x*r^2": 0.0, "w": -0.05, "r": 0.0}), pi.ChoiceCircuit(2),
        pi.BernoulliChoice(1.0, learn_temperature=False), n_trajectories=3, initial_weights={"w": jnp.zeros((1, 2))},
    )
    priors = bayes.Priors(coefficients=bayes.Normal(0.5), observation=None)
    post = bayes.sample(model, syn.data, key=jax.random.key(2), priors=priors, method=bayes.NUTS(warmup=200, samples=200), warn=False)
    return post, post.identifiability(syn.data, directions={"r vs r²": {"x*r": 1.0, "x*r^2": -1.0}})


@pytest.mark.slow
def test_report_finds_the_degeneracies(report):
    post, rep = report
    assert rep.names == ["x*r", "x*r^2", "w", "r"]
    assert ["x*r", "x*r^2"] in rep.aliases
    # r² = r: only θ(x·r) + θ(x·r²) is identified — strongly negatively correlated
    assert rep.correlation.loc["x*r", "x*r^2"] < -0.9
    assert any({r.term_a, r.term_b} == {"x*r", "x*r^2"} for r in rep.pairs.itertuples())
    # two zero-information directions: x·r − x·r² (aliasing) and r (moves both options alike)
    zero = rep.fisher[rep.fisher["relative_eigenvalue"] < 1e-8]
    assert len(zero) == 2
    assert any("r" in d and "x*r" not in d for d in zero["direction"])
    # along the degeneracy the posterior keeps the prior's spread; the identified terms contract
    deg = rep.degeneracies.set_index("degeneracy")
    assert deg.loc["r vs r²", "ratio"] > 0.7
    assert rep.contraction["w"] > 0.9 and rep.contraction["r"] < 0.3
    text = rep.summary()
    assert "cannot" in text and "zero Fisher information" in text


@pytest.mark.slow
def test_pair_plot(report, tmp_path):
    post, rep = report
    fig = rep.plot(truth={"x*r": 0.5, "w": -0.05})
    assert len(fig.axes) == 16
    fig.savefig(tmp_path / "pairs.png")
    fig2 = post.plot_pairs()
    assert len(fig2.axes) == 16

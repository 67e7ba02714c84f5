"""Classical agents (rule + policy) against plain-loop references of their published equations; fitting recovers them."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from plasticinfer.compare import (
    AcceptReject,
    ComparisonError,
    QAgentRule,
    accept_reject_policy,
    agent_model,
    classical_agents,
    option_taylor_rule,
    softmax_policy,
)

T = 40


def _sequence(seed, n=T, n_subjects=1):
    rng = np.random.default_rng(seed)
    choice = rng.integers(0, 2, size=(n_subjects, n))
    reward = (rng.random((n_subjects, n)) < 0.5).astype(float)
    cues = np.broadcast_to(np.eye(2), (n_subjects, n, 2, 2))
    return pi.TrialData(
        {"cues": jnp.asarray(cues), "choice": jnp.asarray(choice), "reward": jnp.asarray(reward)},
        jnp.asarray(choice),
        jnp.ones((n_subjects, n), bool),
    )


# ---- plain-Python references, written from FlYMazeRL's update equations ---------------------


def ref_values(actions, rewards, *, alpha, kappa=None, forget=(), theta=0.0, gamma=0.0, beta_e=None):
    """Q before every trial. forget: subset of {"chosen", "unchosen"}; kappa None = tied to alpha."""
    k = alpha if kappa is None else kappa
    q = [0.0, 0.0]
    out = []
    for a, r in zip(actions, rewards):
        out.append(list(q))
        if beta_e is None:
            v = max(q)
        else:
            e = [math.exp(beta_e * qi) for qi in q]
            v = sum(ei / sum(e) * qi for ei, qi in zip(e, q))
        target = r + (theta if r == 0 else 0.0) + gamma * v
        other = 1 - a
        if "unchosen" in forget:
            q[other] = (1 - k) * q[other]
        if "chosen" in forget:
            q[a] = (1 - k) * q[a]
        q[a] = (1 - alpha) * q[a] + alpha * target
    return np.array(out)


def ref_softmax(q, beta, bias):
    return np.array([1 / (1 + math.exp(-(beta * (q1 - q0) + bias))) for q0, q1 in q])


def ref_accept_reject(q, weight, intercept):
    """Absorption probability of the documented process, by solving its linear system (not the closed form)."""
    out = []
    for q0, q1 in q:
        a = [1 / (1 + math.exp(-(weight * q0 + intercept))), 1 / (1 + math.exp(-(weight * q1 + intercept)))]
        # P_k = P(end at option 1 | considering k): P_k = a_k·[k == 1] + (1 − a_k)(¾·P_{1−k} + ¼·P_k)
        m = np.array([[1 - 0.25 * (1 - a[0]), -0.75 * (1 - a[0])], [-0.75 * (1 - a[1]), 1 - 0.25 * (1 - a[1])]])
        p = np.linalg.solve(m, np.array([0.0, a[1]]))
        out.append(0.5 * (p[0] + p[1]))
    return np.array(out)


def model_probability(model, data):
    drives = model.simulate(data.inputs).outputs
    return np.asarray(model.observation.probability(drives))[0]


AGENTS = {
    "RW": (dict(alpha=0.3), dict()),
    "F (tied)": (dict(alpha=0.3, forget_unchosen=True), dict(forget=("unchosen",))),
    "DF": (dict(alpha=0.3, forget_unchosen=True, kappa=0.15), dict(kappa=0.15, forget=("unchosen",))),
    "forget all": (dict(alpha=0.3, forget_unchosen=True, forget_chosen=True, kappa=0.1), dict(kappa=0.1, forget=("chosen", "unchosen"))),
    "forget chosen": (dict(alpha=0.3, forget_chosen=True, kappa=0.2), dict(kappa=0.2, forget=("chosen",))),
    "OS": (dict(alpha=0.3, omission=-0.4), dict(theta=-0.4)),
    "LT": (dict(alpha=0.3, gamma=0.6), dict(gamma=0.6)),
    "DF+LT+OS": (
        dict(alpha=0.25, forget_unchosen=True, kappa=0.1, gamma=0.5, omission=-0.3),
        dict(kappa=0.1, forget=("unchosen",), gamma=0.5, theta=-0.3),
    ),
    "ESARSA": (dict(alpha=0.3, gamma=0.5, expected_beta=2.5), dict(gamma=0.5, beta_e=2.5)),
}


@pytest.mark.parametrize("name", sorted(AGENTS))
@pytest.mark.parametrize("policy", ["softmax", "accept-reject"])
def test_agent_probabilities_equal_plain_loop(name, policy):
    rule_kw, ref_kw = AGENTS[name]
    data = _sequence(7)
    if policy == "softmax":
        obs = pi.BernoulliChoice(2.5, -0.3)
    else:
        obs = AcceptReject(3.0, -0.5)
    model = agent_model(QAgentRule(**rule_kw), obs, data)
    got = model_probability(model, data)
    q = ref_values(np.asarray(data.inputs["choice"][0]).tolist(), np.asarray(data.inputs["reward"][0]).tolist(),
                   alpha=rule_kw["alpha"], **ref_kw)
    want = ref_softmax(q, 2.5, -0.3) if policy == "softmax" else ref_accept_reject(q, 3.0, -0.5)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # the likelihood the fit uses is the log of these probabilities
    ll = np.asarray(model.log_likelihood(data))[0]
    obs_choice = np.asarray(data.observations[0])
    np.testing.assert_allclose(ll, np.where(obs_choice == 1, np.log(want), np.log1p(-want)), rtol=1e-9)


def test_accept_reject_closed_form_and_limits():
    ar = AcceptReject(1.0, 0.0)
    z = jnp.asarray([[-3.0, 2.0], [0.7, 0.7], [5.0, -40.0], [-30.0, -31.0]])
    p = np.asarray(ar.probability(z))
    a = 1 / (1 + np.exp(-np.asarray(z)))
    closed = a[:, 1] * (3 - a[:, 0]) / (3 * a[:, 0] + 3 * a[:, 1] - 2 * a[:, 0] * a[:, 1])
    np.testing.assert_allclose(p, closed, rtol=1e-10)
    assert p[1] == pytest.approx(0.5)
    assert p[2] < 1e-15  # an option never accepted is never chosen
    # both acceptances tiny: the ratio stays finite and correct in log space
    assert 0.1 < p[3] < 0.5
    lp = np.asarray(ar.log_prob(z, jnp.asarray([1, 0, 1, 1])))
    assert np.all(np.isfinite(lp))


def test_accept_reject_gradient_matches_finite_differences():
    data = _sequence(3)
    model = agent_model(QAgentRule(0.3, forget_unchosen=True, kappa=0.2), AcceptReject(2.0, -0.2), data)

    def nll(m):
        return -jnp.sum(m.log_likelihood(data))

    g = jax.grad(lambda w: nll(eqx_set(model, w)))(jnp.asarray(2.0))
    h = 1e-6
    fd = (nll(eqx_set(model, jnp.asarray(2.0 + h))) - nll(eqx_set(model, jnp.asarray(2.0 - h)))) / (2 * h)
    assert float(g) == pytest.approx(float(fd), rel=1e-5)


def eqx_set(model, weight):
    import equinox as eqx

    return eqx.tree_at(lambda m: m.observation.weight, model, weight)


def test_agents_need_one_hot_cues_and_valid_options():
    data = _sequence(1)
    bad = pi.TrialData({**data.inputs, "cues": data.inputs["cues"] * 0.5}, data.observations, data.mask)
    with pytest.raises(ComparisonError, match="one-hot"):
        agent_model(QAgentRule(0.2), softmax_policy(), bad)
    with pytest.raises(pi.PlasticInferError, match="kappa"):
        QAgentRule(0.2, kappa=0.1)
    with pytest.raises(pi.PlasticInferError, match="between 0 and 1"):
        QAgentRule(1.5)
    with pytest.raises(ComparisonError, match="unknown policies"):
        classical_agents(data, policies=("greedy",))


def test_parameter_counts_are_the_agents():
    data = _sequence(1)
    from plasticinfer.bayes._groups import count_free_parameters

    agents = classical_agents(data)
    # FlYMazeRL counts: forgetting (α) + accept–reject (weight, intercept) = 3; DF+LT+OS = α κ γ θ + 2 = 6
    assert count_free_parameters(agents["Q, forget unchosen (F) · accept-reject"], initial_weights=False) == 3
    assert count_free_parameters(agents["DF + LT + OS · accept-reject"], initial_weights=False) == 6
    assert count_free_parameters(agents["Q (RW) · softmax"], initial_weights=False) == 3  # α, β, bias


def test_option_taylor_rule_reads_the_other_value():
    data = _sequence(11)
    rule = option_taylor_rule()
    assert "1" not in rule.taylor.names and "r" not in rule.taylor.names
    rule = type(rule)(rule.taylor.with_coefficients({"x*r": 0.0, "x*w": 0.0, "y": 0.1, "x*w*y": -0.2}))
    model = agent_model(rule, pi.BernoulliChoice(1.0, 0.0), data)
    w = np.asarray(model.simulate(data.inputs, save_weights=True).weights["w"])[0, :, 0]
    # plain loop: ΔQ_k = 0.1·Q_other − 0.2·x_k·Q_k·Q_other  (values start at 0 so seed them with reward learning)
    q = np.zeros(2)
    for t, (a, r) in enumerate(zip(np.asarray(data.inputs["choice"][0]), np.asarray(data.inputs["reward"][0]))):
        np.testing.assert_allclose(w[t], q, atol=1e-12)
        x = np.eye(2)[a]
        other = q[::-1]
        q = q + 0.1 * other - 0.2 * x * q * other
    assert "o" in rule.equation() and "q" in rule.equation() and rule.equation().startswith("ΔQ_k =")


def _simulate_agent(rule, policy, n_subjects, key, p=((0.8, 0.2), (0.2, 0.8))):
    """Closed-loop play (choices sampled from the policy, baited rewards), written here with its own scan."""
    p_sched = jnp.asarray(np.concatenate([np.tile(np.asarray(pp), (80, 1)) for pp in p]))
    eye = jnp.eye(2)

    def one(k):
        def body(carry, inp):
            q, bait = carry
            pt, kt = inp
            k1, k2 = jax.random.split(kt)
            c = jax.random.bernoulli(k1, policy.probability(q[0][None, :])[0]).astype(jnp.int32)
            bait = bait | jax.random.bernoulli(k2, pt)
            r = bait[c].astype(float)
            bait = bait.at[c].set(False)
            q = q + rule(eye[c][None, :], q[:, c][None, :], q, r[None])
            return (q, bait), (c, r)

        init = (jnp.zeros((1, 2)), jnp.zeros(2, bool))
        return jax.lax.scan(body, init, (p_sched, jax.random.split(k, p_sched.shape[0])))[1]

    choices, rewards = jax.jit(jax.vmap(one))(jax.random.split(key, n_subjects))
    n = choices.shape[1]
    return pi.TrialData(
        {"cues": jnp.broadcast_to(eye, (n_subjects, n, 2, 2)), "choice": choices, "reward": rewards},
        choices,
        jnp.ones((n_subjects, n), bool),
    )


@pytest.mark.slow
def test_fit_recovers_a_known_agent(key):
    true_rule = QAgentRule(0.3, forget_unchosen=True, kappa=0.1)
    true_policy = AcceptReject(5.0, -1.5)
    data = _simulate_agent(true_rule, true_policy, 40, key)
    start = agent_model(QAgentRule(0.15, forget_unchosen=True, kappa=0.3), accept_reject_policy(), data)
    res = pi.fit(start, data, steps=60, fit_initial_weights=False, progress=False)
    got = res.model.rule.parameters()
    assert got["alpha"] == pytest.approx(0.3, abs=0.1)
    assert got["kappa"] == pytest.approx(0.1, abs=0.06)
    assert float(res.model.observation.weight) == pytest.approx(5.0, rel=0.3)
    assert float(res.model.observation.intercept) == pytest.approx(-1.5, abs=0.5)


@pytest.mark.slow
def test_sparse_rule_search_selects_on_training_animals_and_keeps_the_true_terms(key):
    from plasticinfer.compare import FitSettings, SparseRuleHypothesis, option_taylor_rule
    from plasticinfer.compare._splits import Fold, subjects

    true = option_taylor_rule(init={"x*r": 1.0, "x*w": -0.4})
    true = type(true)(true.taylor.without([n for n in true.taylor.names if n not in ("x*r", "x*w")]))
    data = _simulate_agent(true, pi.BernoulliChoice(3.0, 0.0), 30, key)
    fold = Fold("test", subjects(data, np.arange(20)), subjects(data, np.arange(20, 30)), np.arange(20), np.arange(20, 30))
    hyp = SparseRuleHypothesis("found", option_taylor_rule(), policy=pi.BernoulliChoice(3.0, 0.0, learn_temperature=False),
                               l1_path=(0.0, 1e-2), prune_below=0.05)
    score = hyp.score(fold, FitSettings(steps=50, restarts=1))
    sel = hyp.selection[0]
    assert len(sel["validation_ll"]) == 2 and sel["chosen_l1"] in (0.0, 1e-2)
    assert {"x*r", "x*w"} <= set(sel["terms"])
    assert score.test_ll.sum() / score.n_test.sum() > np.log(0.5) + 0.05
    assert sel["equation"].startswith("ΔQ_k =")

    # population=M: the same selection (shared fits), then the chosen terms refitted as a population
    pop = SparseRuleHypothesis("found", option_taylor_rule(), policy=pi.BernoulliChoice(3.0, 0.0, learn_temperature=False),
                               l1_path=(0.0, 1e-2), prune_below=0.05, population=8)
    pscore = pop.score(fold, FitSettings(steps=50, restarts=1))
    assert pop.selection[0]["terms"] == sel["terms"] and pop.selection[0]["validation_ll"] == sel["validation_ll"]
    assert isinstance(pscore.model, pi.compare.PopulationModel) and pscore.model.n_draws == 8
    assert pscore.n_params == score.n_params + len(sel["terms"])  # one spread per kept coefficient
    assert np.isfinite(pscore.test_ll).all() and pscore.test_ll.sum() / pscore.n_test.sum() > np.log(0.5) + 0.05


def test_sparse_rule_refit_starts_from_the_largest_finite_halving_of_the_selected_rule(key):
    # a selected rule can blow up on animals it was not fitted on (q² feeds back on itself); the
    # refit must start where every training animal's likelihood is finite, as near the rule as possible
    from plasticinfer.compare import SparseRuleHypothesis, option_taylor_rule

    data = _simulate_agent(QAgentRule(0.3), pi.BernoulliChoice(3.0, 0.0), 6, key)
    base = option_taylor_rule(init={"x*r": 1.0, "w^2": 40.0})
    rule = type(base)(base.taylor.without([n for n in base.taylor.names if n not in ("x*r", "w^2")]))
    policy = pi.BernoulliChoice(1.0, 0.0, learn_temperature=False)

    def finite(r):
        with jax.numpy_dtype_promotion("standard"):
            return bool(np.isfinite(float(jnp.sum(agent_model(r, policy, data).log_likelihood(data)))))

    assert not finite(rule)  # the premise: at full strength the values blow up
    hyp = SparseRuleHypothesis("found", rule, policy=policy)
    start, factor = hyp._finite_start(rule, policy, data)
    assert 0 < factor < 1 and finite(start)
    np.testing.assert_allclose(np.asarray(start.taylor.coeffs), factor * np.asarray(rule.taylor.coeffs))
    doubled = eqx.tree_at(lambda r: r.taylor.coeffs, rule, 2 * factor * rule.taylor.coeffs)
    assert not finite(doubled)  # the largest power-of-two shrink that is finite, not any smaller one
    with pytest.raises(ComparisonError, match="diverges on the training animals"):
        hyp._finite_start(rule, policy, data, max_halvings=0)


def test_option_taylor_rule_refuses_an_unknown_starting_term():
    with pytest.raises(pi.ModelError, match="x\\^2"):
        option_taylor_rule(init={"x*r": 1.0, "x^2": 1.0})  # x is binary, so x^2 is no term of the family: refused, not dropped


def test_population_start_halves_the_spread_until_every_draw_is_finite(key):
    # a wide σ puts draws where the values blow up (w² feeds back on itself); a population fit must
    # start where every draw's likelihood is finite, with σ as wide as that allows
    from plasticinfer.compare import PopulationModel, option_taylor_rule

    data = _simulate_agent(QAgentRule(0.3), pi.BernoulliChoice(3.0, 0.0), 6, key)
    base = option_taylor_rule(init={"x*r": 0.5, "w^2": -0.5})
    rule = type(base)(base.taylor.without([n for n in base.taylor.names if n not in ("x*r", "w^2")]))
    model = agent_model(rule, pi.BernoulliChoice(1.0, 0.0, learn_temperature=False), data)
    wide = PopulationModel.from_model(model, scale=50.0, n_draws=16)

    def all_finite(pop):
        shared = pi.PlasticityModel(pop.rule, pop.network, pop.observation, pop.initial_weights)
        with jax.numpy_dtype_promotion("standard"):
            ll = eqx.filter_vmap(lambda r: eqx.tree_at(lambda m: m.rule, shared, r).log_likelihood(data).sum())(pop.subject_rules())
        return bool(np.all(np.isfinite(np.asarray(ll))))

    assert not all_finite(wide)  # the premise
    got = wide.with_finite_draws(data)
    halvings = np.asarray(wide.log_scale - got.log_scale) / np.log(2.0)
    assert all_finite(got) and np.allclose(halvings, np.round(halvings)) and halvings.min() >= 1
    assert not all_finite(eqx.tree_at(lambda m: m.log_scale, got, got.log_scale + np.log(2.0)))  # no halving too many
    np.testing.assert_array_equal(np.asarray(got.rule.taylor.coeffs), np.asarray(wide.rule.taylor.coeffs))  # the mean is kept
    with pytest.raises(pi.ModelError, match="non-finite"):
        wide.with_finite_draws(data, max_halvings=0)

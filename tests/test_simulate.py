from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi
from helpers import NETWORKS, RULES


def _loop_reference(rule, network, weights, trials):
    """Oracle: a plain Python loop over trials calling network.step (no scan, no checkpoint)."""
    n = jax.tree_util.tree_leaves(trials)[0].shape[0]
    state = network.initial_state(weights)
    outs, ws = [], []
    for t in range(n):
        trial = jax.tree_util.tree_map(lambda a: a[t], trials)
        ws.append(weights)
        weights, state, out = network.step(rule, weights, state, trial)
        outs.append(out)
    return np.stack(outs), jax.tree_util.tree_map(lambda *a: np.stack(a), *ws), weights


# the batch-mean covariance rule needs several input samples per trial
PAIRS = [(n, r) for n in sorted(NETWORKS) for r in sorted(RULES) if r != "covariance" or n == "feedforward_batched"]


@pytest.mark.parametrize(("net_name", "rule_name"), PAIRS)
@pytest.mark.parametrize("checkpoint", [True, False, 3, 1])
def test_scan_matches_plain_loop(net_name, rule_name, checkpoint, getkey):
    network, make_trials = NETWORKS[net_name]
    rule = RULES[rule_name](getkey())
    weights = network.init_weights(getkey(), 0.3)
    trials = make_trials(getkey(), 11)
    traj = pi.simulate(rule, network, weights, trials, save_weights=True, checkpoint=checkpoint)
    outs, ws, final = _loop_reference(rule, network, weights, trials)
    np.testing.assert_allclose(traj.outputs, outs, rtol=1e-10, atol=1e-12)
    for k in ws:
        np.testing.assert_allclose(traj.weights[k], ws[k], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(traj.final_weights[k], final[k], rtol=1e-10, atol=1e-12)


def test_user_defined_rule_works(getkey):
    import equinox as eqx

    class AntiHebb(eqx.Module):
        rate: jax.Array

        def __call__(self, pre, post, weight, reward):
            return -self.rate * jnp.atleast_2d(post).T @ jnp.atleast_2d(pre)

    net = pi.FeedForward(3, 2)
    w0 = net.init_weights(getkey())
    x = jax.random.normal(getkey(), (5, 3))
    traj = pi.simulate(AntiHebb(jnp.asarray(0.1)), net, w0, {"x": x})
    ref = pi.simulate(pi.hebbian(-0.1), net, w0, {"x": x})
    np.testing.assert_allclose(traj.outputs, ref.outputs, rtol=1e-12)


@pytest.mark.parametrize("checkpoint", [True, 7, 1])
def test_checkpointed_gradient_equals_plain_and_finite_differences(checkpoint, getkey):
    net = pi.FeedForward(4, 3)
    w0 = net.init_weights(getkey(), 0.3)
    x = jax.random.normal(getkey(), (50, 4))

    def loss(c, ck):
        rule = pi.TaylorRule.from_terms({"x*y": c[0], "y^2*w": c[1], "w": c[2]}, learning_rate=0.05)
        return jnp.sum(pi.simulate(rule, net, w0, {"x": x}, checkpoint=ck).outputs ** 2)

    c = jnp.array([1.0, -1.0, -0.1])
    g_ck = jax.grad(loss)(c, checkpoint)
    g_plain = jax.grad(loss)(c, False)
    np.testing.assert_allclose(g_ck, g_plain, rtol=1e-10)
    eps = 1e-6
    fd = np.array([(loss(c.at[i].add(eps), False) - loss(c.at[i].add(-eps), False)) / (2 * eps) for i in range(3)])
    np.testing.assert_allclose(g_plain, fd, rtol=1e-5)


def test_checkpoint_reduces_reverse_mode_memory(getkey):
    """Compiled temporary memory of the gradient: √T checkpointing must beat storing every step."""
    net = pi.FeedForward(40, 40)
    w0 = net.init_weights(getkey())
    x = jax.random.normal(getkey(), (400, 40))
    rule = pi.oja(0.01)

    def make(ck):
        def loss(r):
            return jnp.sum(pi.simulate(r, net, w0, {"x": x}, checkpoint=ck).final_weights["w"] ** 2)

        return jax.jit(jax.grad(loss)).lower(rule).compile().memory_analysis().temp_size_in_bytes

    plain, ck = make(False), make(True)
    weight_bytes = 40 * 40 * 8
    assert plain >= 300 * weight_bytes  # stores ~T copies of the weights
    assert ck < plain / 5


def test_shape_errors_are_clear(getkey):
    net = pi.FeedForward(4, 3)
    with pytest.raises(pi.ModelError, match=r"weights\['w'\] has shape"):
        pi.simulate(pi.oja(), net, {"w": jnp.zeros((4, 3))}, {"x": jnp.zeros((5, 4))})
    with pytest.raises(pi.ModelError, match="needs"):
        pi.simulate(pi.oja(), net, {"v": jnp.zeros((3, 4))}, {"x": jnp.zeros((5, 4))})
    with pytest.raises(pi.ModelError, match="trial input 'x'"):
        pi.simulate(pi.oja(), net, {"w": jnp.zeros((3, 4))}, {"u": jnp.zeros((5, 4))})
    with pytest.raises(pi.ModelError, match="no rule given"):
        pi.simulate({"ff": pi.oja()}, pi.Recurrent(4, 3), pi.Recurrent(4, 3).init_weights(getkey()), {"x": jnp.zeros((5, 4))})
    # checkpoint: 0 (or any false value) stores every step like False; a negative segment length is refused
    w0, xs = {"w": 0.1 * jax.random.normal(getkey(), (3, 4))}, {"x": jax.random.normal(getkey(), (9, 4))}
    plain = pi.simulate(pi.oja(), net, w0, xs, checkpoint=False).outputs
    np.testing.assert_array_equal(np.asarray(pi.simulate(pi.oja(), net, w0, xs, checkpoint=0).outputs), np.asarray(plain))
    with pytest.raises(pi.ModelError, match="segment length ≥ 1"):
        pi.simulate(pi.oja(), net, w0, xs, checkpoint=-2)


def test_choice_circuit_decays_unchosen_and_tracks_expectation():
    net = pi.ChoiceCircuit(2, reward_expectation=True, expectation_logit=jnp.asarray(0.0))
    rule = pi.TaylorRule.from_terms({"x*r": 1.0, "w": -0.1})
    w = {"w": jnp.array([[0.5, 0.2]])}
    trial = {"cues": jnp.eye(2), "choice": jnp.asarray(0), "reward": jnp.asarray(1.0)}
    new, state, drives = net.step(rule, w, net.initial_state(w), trial)
    # chosen: 0.5 + (1 - E[r]=0) - 0.05 ; unchosen: decay only
    np.testing.assert_allclose(new["w"], [[0.5 + 1.0 - 0.05, 0.2 - 0.02]])
    np.testing.assert_allclose(drives, [0.5, 0.2])
    assert float(state) == pytest.approx(0.5)  # E[r] ← 0 + sigmoid(0)·(1 − 0)


def test_rescorla_wagner_is_a_taylor_rule():
    """θ(x·r)=α, θ(x·w)=−α in the choice circuit equals the textbook RW update of the chosen value."""
    alpha, forget = 0.3, 0.05
    rng = np.random.default_rng(0)
    choices = rng.integers(0, 2, 60)
    rewards = rng.integers(0, 2, 60).astype(float)
    q = np.zeros(2)
    ref = []
    for c, r in zip(choices, rewards):
        ref.append(q.copy())
        q[c] += alpha * (r - q[c])
        q -= forget * q
    net = pi.ChoiceCircuit(2)
    trials = {"cues": jnp.broadcast_to(jnp.eye(2), (60, 2, 2)), "choice": jnp.asarray(choices), "reward": jnp.asarray(rewards)}
    traj = pi.simulate(pi.rescorla_wagner(alpha), net, {"w": jnp.zeros((1, 2))}, trials, save_weights=True)
    ref_nf = []
    q = np.zeros(2)
    for c, r in zip(choices, rewards):
        ref_nf.append(q.copy())
        q[c] += alpha * (r - q[c])
    np.testing.assert_allclose(traj.outputs, np.array(ref_nf), atol=1e-12)
    # with forgetting: the rule adds −f·w to the RW update computed from the same weights
    traj_f = pi.simulate(pi.rescorla_wagner(alpha, forget), net, {"w": jnp.zeros((1, 2))}, trials)
    q = np.zeros(2)
    ref_f = []
    for c, r in zip(choices, rewards):
        ref_f.append(q.copy())
        dq = -forget * q
        dq[c] += alpha * (r - q[c])
        q = q + dq
    np.testing.assert_allclose(traj_f.outputs, np.array(ref_f), atol=1e-12)


# --- closed loop: an environment makes each trial's inputs from the network as it is -------------------------------------


def _bandit_loop_reference(rule, net, env, w, p_reward, key):
    """Oracle: a plain Python loop playing the baited two-armed bandit by hand (same key per trial)."""
    bait = np.zeros(2, bool)
    choices, rewards, probs = [], [], []
    for t, kt in enumerate(jax.random.split(key, p_reward.shape[0])):
        k_choice, k_bait = jax.random.split(kt)
        prob = float(env.observation.probability(net.drives(w, env.cues)))
        choice = int(jax.random.bernoulli(k_choice, prob))
        available = bait | np.asarray(jax.random.bernoulli(k_bait, p_reward[t]))
        reward = float(available[choice])
        available[choice] = False
        bait = available
        w, _, _ = net.step(rule, w, None, {"cues": env.cues, "choice": jnp.asarray(choice), "reward": jnp.asarray(reward)})
        choices.append(choice), rewards.append(reward), probs.append(prob)
    return np.asarray(choices), np.asarray(rewards), np.asarray(probs), w


@pytest.mark.parametrize("checkpoint", [False, 4, 1])
def test_environment_closed_loop_matches_a_plain_loop(checkpoint):
    net = pi.ChoiceCircuit(2)
    env = pi.data.BaitedBandit(pi.one_hot_cues(2), pi.BernoulliChoice(3.0, bias=0.2))
    rule = pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.1})
    w0 = {"w": jnp.array([[0.2, -0.1]])}
    p = jnp.asarray(np.tile([[0.3, 0.7]], (13, 1)))
    key = jax.random.key(11)
    traj = pi.simulate(rule, net, w0, p, environment=env, key=key, checkpoint=checkpoint)
    choice, reward, prob, w_final = _bandit_loop_reference(rule, net, env, w0, np.asarray(p), key)
    np.testing.assert_array_equal(traj.records[0], choice)
    np.testing.assert_array_equal(traj.records[1], reward)
    np.testing.assert_allclose(traj.records[2], prob, rtol=1e-12)
    np.testing.assert_allclose(traj.final_weights["w"], w_final["w"], rtol=1e-12)
    assert 0 < reward.sum() < 13 and 0 < choice.sum() < 13  # the check is not vacuous


def test_bait_semantics():
    """Certain bait on option 0 only: every choice of 0 pays, no choice of 1 does; without baiting the same."""
    net = pi.ChoiceCircuit(2)
    p = jnp.asarray(np.tile([[1.0, 0.0]], (40, 1)))
    for baited in (True, False):
        env = pi.data.BaitedBandit(pi.one_hot_cues(2), pi.BernoulliChoice(1.0), baited=baited)
        traj = pi.simulate(pi.weight_decay(0.0), net, {"w": jnp.zeros((1, 2))}, p, environment=env, key=jax.random.key(0))
        choice, reward, prob = (np.asarray(a) for a in traj.records)
        np.testing.assert_array_equal(reward, (choice == 0).astype(float))
        np.testing.assert_allclose(prob, 0.5)  # the weights never move: P(choice = 1) = sigmoid(0)
        assert 5 < choice.sum() < 35


def test_environment_and_key_go_together():
    net = pi.ChoiceCircuit(2)
    env = pi.data.BaitedBandit(pi.one_hot_cues(2), pi.BernoulliChoice(1.0))
    w0, p = {"w": jnp.zeros((1, 2))}, jnp.full((3, 2), 0.5)
    with pytest.raises(pi.ModelError, match="needs key="):
        pi.simulate(pi.hebbian(), net, w0, p, environment=env)
    with pytest.raises(pi.ModelError, match="pass environment="):
        pi.simulate(pi.hebbian(), net, w0, {"cues": jnp.zeros((3, 2, 2))}, key=jax.random.key(0))


def test_model_simulate_trajectory_is_one_row_of_model_simulate(getkey):
    """``PlasticityModel.simulate_trajectory(i, trials)`` runs trajectory i from its own initial weights."""
    net = pi.FeedForward(4, 3)
    w0 = {"w": 0.3 * jax.random.normal(getkey(), (3, 3, 4))}
    model = pi.PlasticityModel(pi.oja(0.05), net, pi.GaussianActivity(1.0), w0)
    x = jax.random.normal(getkey(), (3, 9, 4))
    every = model.simulate({"x": x})
    for i in range(3):
        one = model.simulate_trajectory(i, {"x": x[i]})
        np.testing.assert_allclose(one.outputs, every.outputs[i], rtol=1e-12)
        np.testing.assert_allclose(one.final_weights["w"], every.final_weights["w"][i], rtol=1e-12)
    assert not np.allclose(every.outputs[0], every.outputs[1])  # the trajectories do differ


def _documented_rule_class():
    """The `SignedHebb` recipe of docs/extending.md, executed as written there."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "extending.md").read_text(encoding="utf-8")
    code = next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "class SignedHebb" in block)
    namespace = {"pi": pi, "jax": jax, "jnp": jnp}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace["SignedHebb"]


@pytest.mark.parametrize("net_name", sorted(NETWORKS))
def test_the_documented_rule_recipe_passes_the_scan_contract(net_name, getkey):
    """docs/extending.md's rule works in every network of the registry and computes the Δw it says."""
    network, make_trials = NETWORKS[net_name]
    rule = _documented_rule_class()(jnp.asarray(0.05))
    weights = network.init_weights(getkey(), 0.3)
    trials = make_trials(getkey(), 11)
    traj = pi.simulate(rule, network, weights, trials, save_weights=True)
    outs, ws, final = _loop_reference(rule, network, weights, trials)
    np.testing.assert_allclose(traj.outputs, outs, rtol=1e-10, atol=1e-12)
    for k in ws:
        np.testing.assert_allclose(traj.final_weights[k], final[k], rtol=1e-10, atol=1e-12)
    # one unbatched sample: Δw = rate · sign(y) xᵀ, a full (n_post, n_pre) matrix (not a broadcast scalar)
    pre, post = jax.random.normal(getkey(), (4,)), jax.random.normal(getkey(), (3,))
    dw = rule(pre, post, jnp.zeros((3, 4)), jnp.zeros(()))
    np.testing.assert_allclose(dw, 0.05 * np.outer(np.sign(post), pre), rtol=1e-12)

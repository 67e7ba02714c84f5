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
@pytest.mark.parametrize("checkpoint", [True, False, 3])
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


@pytest.mark.parametrize("checkpoint", [True, 7])
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

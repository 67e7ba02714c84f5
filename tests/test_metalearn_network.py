"""Feedback network, online episodes and digit episodes: oracles against jax.grad and plain loops."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

import plasticinfer as pi
from plasticinfer.metalearn import (
    DigitsEpisodes,
    FeedbackNetwork,
    LocalRule,
    FeedbackState,
    RandomFeedback,
    SymmetricFeedback,
    digits_split,
    find_term,
    run_episode,
)

PSEUDO_GRADIENT = find_term("pseudo_gradient")


@pytest.mark.parametrize("sizes", [(7, 4), (7, 6, 5, 3)], ids=["one-layer", "three-layer"])
def test_pseudo_gradient_with_symmetric_feedback_is_backprop_gradient(sizes, getkey):
    """Oracle: with B = Wᵀ, e_{l+1}·y_lᵀ = −∂(cross-entropy)/∂W_l for every layer (jax.grad)."""
    net = FeedbackNetwork(sizes, SymmetricFeedback(), activation=jnp.tanh)
    state = net.init(getkey())
    x = jax.random.uniform(getkey(), (sizes[0],))
    label = jnp.asarray(1)
    grads = jax.grad(net.loss)(state.weights, x, label)
    signals = net.signals(state, x, label)
    assert len(signals) == len(sizes) - 1
    for s, g in zip(signals, grads):
        np.testing.assert_allclose(np.asarray(PSEUDO_GRADIENT(s)), -np.asarray(g), rtol=1e-10, atol=1e-12)
    # and the error at the input is −∂L/∂x
    gx = jax.grad(lambda x: net.loss(state.weights, x, label))(x)
    np.testing.assert_allclose(np.asarray(signals[0].e_pre), -np.asarray(gx), rtol=1e-10, atol=1e-12)


def test_default_sharp_softplus_network_also_matches_backprop(getkey):
    net = FeedbackNetwork((64, 10, 8, 5), SymmetricFeedback())
    state = net.init(getkey())
    x = jax.random.uniform(getkey(), (64,))
    grads = jax.grad(net.loss)(state.weights, x, jnp.asarray(4))
    for s, g in zip(net.signals(state, x, jnp.asarray(4)), grads):
        np.testing.assert_allclose(np.asarray(PSEUDO_GRADIENT(s)), -np.asarray(g), rtol=1e-9, atol=1e-12)


def test_random_feedback_uses_its_fixed_matrices(getkey):
    """Random feedback whose B happens to equal Wᵀ gives backprop's errors; any other B gives other errors."""
    sizes = (6, 5, 4, 3)
    fa = FeedbackNetwork(sizes, RandomFeedback(), activation=jnp.tanh)
    bp = FeedbackNetwork(sizes, SymmetricFeedback(), activation=jnp.tanh)
    state = fa.init(getkey())
    assert [b.shape for b in state.feedback] == [(6, 5), (5, 4), (4, 3)]
    x, label = jax.random.uniform(getkey(), (6,)), jnp.asarray(2)
    aligned = FeedbackState(state.weights, tuple(w.T for w in state.weights))
    for s_fa, s_bp in zip(fa.signals(aligned, x, label), bp.signals(state, x, label)):
        np.testing.assert_allclose(np.asarray(s_fa.e_pre), np.asarray(s_bp.e_pre), rtol=1e-12)
    random_errors = fa.signals(state, x, label)
    assert not np.allclose(np.asarray(random_errors[0].e_pre), np.asarray(bp.signals(state, x, label)[0].e_pre))
    # the output layer's error is the same under either pathway: onehot − softmax
    np.testing.assert_allclose(np.asarray(random_errors[-1].e_post), np.asarray(bp.signals(state, x, label)[-1].e_post))
    # an online step changes the forward weights but never the feedback matrices
    weights = dict(zip(fa.weight_shapes(), state.weights))
    new, feedback, _ = fa.step(LocalRule.pool(), weights, state.feedback, {"x": x, "label": label})
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(feedback, state.feedback))
    assert not np.allclose(np.asarray(new["w0"]), np.asarray(state.weights[0]))


def test_scan_episode_matches_plain_python_loop(getkey):
    """run_episode is the core simulate over FeedbackNetwork (an AbstractNetwork, its rule an AbstractRule):
    every step rematerialised (True), segments of 4 (9 examples: a remainder of 1) and stored steps (False)
    all give the query loss and curve of a hand-written loop over the layers' local signals."""
    assert isinstance(FeedbackNetwork(), pi.AbstractNetwork) and isinstance(LocalRule.pool(), pi.AbstractRule)
    episodes = DigitsEpisodes.from_digits((0, 1, 2), n_way=3, k_shot=3, n_query=4, dtype=jnp.float64)
    net = FeedbackNetwork((64, 9, 3))
    rule = LocalRule.pool({"pseudo_gradient": 1.5, "error_hebbian": 0.3, "oja": -0.2, "decay": -0.1}, learning_rate=0.1)
    episode, k_net = episodes.sample(getkey()), getkey()
    state = net.init(k_net, jnp.float64)
    curve = [float(net.accuracy(state.weights, episode.query_x, episode.query_y))]
    for x, y in zip(episode.support_x, episode.support_y):
        signals = net.signals(state, x, y)
        state = FeedbackState(tuple(s.w + rule(s) for s in signals), state.feedback)
        curve.append(float(net.accuracy(state.weights, episode.query_x, episode.query_y)))
    for checkpoint in (True, 4, False):
        out = run_episode(rule, net, episode, k_net, curve=True, checkpoint=checkpoint)
        np.testing.assert_allclose(float(out.query_loss), float(net.loss(state.weights, episode.query_x, episode.query_y)), rtol=1e-10)
        np.testing.assert_allclose(np.asarray(out.curve), curve)
        assert out.curve.shape == (episode.support_x.shape[0] + 1,)
        assert float(out.query_accuracy) == curve[-1]
    # one network step by hand is the same update, and never touches the feedback (the state)
    weights = dict(zip(net.weight_shapes(), net.init(k_net, jnp.float64).weights))
    stepped, feedback, _ = net.step(rule, weights, state.feedback, {"x": episode.support_x[0], "label": episode.support_y[0]})
    assert feedback is state.feedback
    first = net.signals(net.init(k_net, jnp.float64), episode.support_x[0], episode.support_y[0])
    for l, s in enumerate(first):
        np.testing.assert_allclose(np.asarray(stepped[f"w{l}"]), np.asarray(s.w + rule(s)), rtol=1e-12)


def test_rules_and_networks_of_the_two_call_conventions_are_not_mixed(getkey):
    """A meta-learning rule in a core network, or a core rule in a FeedbackNetwork, is refused with a ModelError
    naming what each expects (not a TypeError from inside the trace); init_weights draws what init draws."""
    net, key = FeedbackNetwork((6, 4, 3)), getkey()
    weights, feedback = net.init_weights(key), net.init(key).feedback
    np.testing.assert_array_equal(np.asarray(weights["w1"]), np.asarray(net.init(key).weights[1]))
    trials = {"x": jnp.ones((5, 6)), "label": jnp.zeros(5, int)}
    with pytest.raises(pi.ModelError, match="needs a metalearn.LocalRule.*TaylorRule"):
        pi.simulate(pi.oja(), net, weights, trials, state=feedback)
    with pytest.raises(pi.ModelError, match="LocalRule is a meta-learning rule"):
        pi.simulate(LocalRule.pool(), pi.FeedForward(6, 3), {"w": jnp.zeros((3, 6))}, {"x": jnp.ones((5, 6))})
    with pytest.raises(pi.ModelError, match="init_scale"):
        net.init_weights(key, scale=0.5)


def _digit_of():
    d = load_digits()
    table = {}
    for img, t in zip(np.asarray(d.data) / 16.0, d.target):
        table.setdefault(img.tobytes(), set()).add(int(t))
    return table


def test_episodes_hold_the_right_digits(getkey):
    train, heldout = digits_split((5, 6, 7, 8, 9), n_way=5, k_shot=4, n_query=3, dtype=jnp.float64)
    assert train.classes == (0, 1, 2, 3, 4) and heldout.classes == (5, 6, 7, 8, 9)
    digit = _digit_of()
    for sampler, pool in ((train, {0, 1, 2, 3, 4}), (heldout, {5, 6, 7, 8, 9})):
        ep = sampler.sample(getkey())
        assert ep.support_x.shape == (20, 64) and ep.query_x.shape == (15, 64)
        assert np.bincount(np.asarray(ep.support_y), minlength=5).tolist() == [4] * 5
        assert np.bincount(np.asarray(ep.query_y), minlength=5).tolist() == [3] * 5
        label_to_digits = {}
        for xs, ys in ((ep.support_x, ep.support_y), (ep.query_x, ep.query_y)):
            for img, lab in zip(np.asarray(xs), np.asarray(ys)):
                label_to_digits.setdefault(int(lab), set()).update(digit[img.tobytes()])
        # each label is one digit of the pool, different labels are different digits
        assert all(len(v) == 1 for v in label_to_digits.values())
        assert {next(iter(v)) for v in label_to_digits.values()} == pool
        # query images are not support images
        support = {img.tobytes() for img in np.asarray(ep.support_x)}
        assert not support & {img.tobytes() for img in np.asarray(ep.query_x)}


def test_label_assignment_and_order_vary_between_episodes(getkey):
    train, _ = digits_split(n_way=5, k_shot=2, n_query=1, dtype=jnp.float64)
    digit = _digit_of()
    assignments = set()
    for _ in range(6):
        ep = train.sample(getkey())
        assignments.add(tuple(next(iter(digit[np.asarray(ep.query_x)[np.asarray(ep.query_y) == lab][0].tobytes()])) for lab in range(5)))
    assert len(assignments) > 1


def test_configuration_errors(getkey):
    with pytest.raises(pi.ModelError, match="fewer than n_way"):
        digits_split((7, 8, 9), n_way=5)
    with pytest.raises(pi.ModelError, match="exceeds"):
        DigitsEpisodes.from_digits((0, 1), n_way=2, k_shot=100, n_query=100)
    with pytest.raises(pi.DataError, match="distinct digits"):
        DigitsEpisodes.from_digits((0, 0, 11), n_way=2)
    with pytest.raises(pi.ModelError, match="sizes"):
        FeedbackNetwork((64,))
    train, _ = digits_split(n_way=5, k_shot=2, n_query=1)
    with pytest.raises(pi.ModelError, match="5-way"):
        pi.metalearn.meta_learn(LocalRule.pool(), FeedbackNetwork((64, 8, 3)), train, key=getkey(), steps=1)


def test_float32_episode_under_strict_promotion(getkey):
    """Meta-training runs in float32; a float64 rule is cast, not promoted (strict promotion is on in tests)."""
    episodes = DigitsEpisodes.from_digits((3, 4), n_way=2, k_shot=2, n_query=2, dtype=jnp.float32)
    net = FeedbackNetwork((64, 5, 2))
    out = run_episode(LocalRule.pool(dtype=jnp.float64), net, episodes.sample(getkey()), getkey(), curve=True)
    assert out.query_loss.dtype == jnp.float32 and out.curve.dtype == jnp.float32
    assert eqx.is_array(out.query_accuracy) and np.isfinite(float(out.query_loss))

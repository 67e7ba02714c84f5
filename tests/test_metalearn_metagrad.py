"""Meta-gradient oracle (central finite differences), meta-training progress, reproducibility, divergence guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi
from plasticinfer.metalearn import DigitsEpisodes, FeedbackNetwork, LocalRule, RandomFeedback, meta_loss, meta_learn, tune_scale


@pytest.fixture(scope="module")
def tiny64():
    """A tiny float64 problem: 2-way, 2 online examples per class, one hidden layer of 4."""
    return DigitsEpisodes.from_digits((0, 1, 2), n_way=2, k_shot=2, n_query=2, dtype=jnp.float64), FeedbackNetwork((64, 4, 2))


def test_meta_gradient_matches_central_finite_differences(tiny64, getkey):
    """Oracle: d(meta-loss)/dθ through the whole (checkpointed) online episode vs central differences."""
    episodes, net = tiny64
    keys = jax.random.split(getkey(), 2)
    theta = 0.5 * jax.random.normal(getkey(), (10,)) + jnp.asarray([1.5] + [0.0] * 9)
    rule = LocalRule(coeffs=theta, learning_rate=0.2)
    l1 = 0.01  # no coefficient is near 0, so the penalty is differentiable there

    @jax.jit
    def f(c):
        return meta_loss(rule.with_coeffs(c), net, episodes, keys, l1)[0]

    grad = np.asarray(jax.grad(f)(theta))
    eps = 1e-5
    fd = np.array([(float(f(theta.at[k].add(eps))) - float(f(theta.at[k].add(-eps)))) / (2 * eps) for k in range(10)])
    assert np.abs(grad).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


def test_meta_learning_lowers_the_meta_loss_and_is_reproducible(getkey):
    """A short float32 run improves the validation meta-loss; the same key gives the same coefficients."""
    episodes = DigitsEpisodes.from_digits((0, 1, 2, 3), n_way=3, k_shot=3, n_query=4, dtype=jnp.float32)
    net = FeedbackNetwork((64, 12, 3), RandomFeedback())
    start = LocalRule.pool({"pseudo_gradient": 0.5}, learning_rate=0.1)
    key = getkey()
    opt = optax.adam(3e-2)  # the same object each run, so the compiled meta-step is reused
    kw = dict(optimiser=opt, steps=30, meta_batch=8, l1=1e-3, eval_every=15, validation_episodes=32, progress=False)
    res = meta_learn(start, net, episodes, key=key, **kw)
    assert res.steps_run == 30 and res.diverged_at == -1
    assert res.loss_history.shape == (30,) and np.all(np.isfinite(res.loss_history))
    assert res.validation_steps.tolist() == [0, 15, 30]
    assert res.validation_history[-1] < res.validation_history[0] - 0.02
    assert res.rule.coeffs.dtype == jnp.float32
    assert not np.allclose(np.asarray(res.rule.coeffs), np.asarray(start.coeffs))
    # the returned rule is the best validated iterate
    best = int(np.argmin(res.validation_history))
    np.testing.assert_array_equal(np.asarray(res.rule.coeffs), res.coeff_history[best])
    again = meta_learn(start, net, episodes, key=key, **kw)
    np.testing.assert_array_equal(np.asarray(again.rule.coeffs), np.asarray(res.rule.coeffs))
    np.testing.assert_array_equal(again.loss_history, res.loss_history)
    other = meta_learn(start, net, episodes, key=getkey(), **kw)
    assert not np.array_equal(other.loss_history, res.loss_history)


def test_divergence_stops_and_keeps_best_finite_coefficients(tiny64, getkey):
    episodes, net = tiny64
    start = LocalRule.pool({"pseudo_gradient": 1.0}, terms=["pseudo_gradient", "decay"], learning_rate=0.1)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = meta_learn(start, net, episodes, key=getkey(), optimiser=optax.sgd(-1e8), steps=6, meta_batch=2,
                         eval_every=3, validation_episodes=4, progress=False)
    assert 0 <= res.diverged_at < 6
    assert res.steps_run <= 6
    np.testing.assert_array_equal(np.asarray(res.rule.coeffs), np.asarray(start.coeffs))
    assert np.all(np.isfinite(np.asarray(res.final_rule.coeffs)))
    with pytest.raises(pi.FitDivergedError, match="non-finite"):
        meta_learn(start.with_coeffs(jnp.asarray([1.0, jnp.nan])), net, episodes, key=getkey(), steps=2,
                   validation_episodes=4, progress=False)


def test_tune_scale_returns_the_best_scale_of_its_table(getkey):
    episodes = DigitsEpisodes.from_digits((0, 1), n_way=2, k_shot=5, n_query=5, dtype=jnp.float32)
    net = FeedbackNetwork((64, 8, 2))
    rule = LocalRule.feedback_alignment(1.0, learning_rate=0.1)
    best, table = tune_scale(rule, net, episodes, key=getkey(), scales=(0.01, 1.0, 4.0), n_episodes=8)
    assert set(table) == {0.01, 1.0, 4.0}
    chosen = min(table, key=table.get)
    np.testing.assert_allclose(float(best.coeffs[0]), chosen)
    assert table[0.01] > min(table.values())  # learning (almost) nothing is worse than learning

"""The Taylor rule's two contractions (per synapse / moments first): values, every derivative, the choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticinfer import TaylorRule
from plasticinfer._taylor_contraction import choose_contraction
from test_rules import _plain_taylor, _reference

CONTRACTIONS = ["synapse", "moments"]
# (samples, post, pre): one sample into a wider layer (fitting), many samples into one neuron
# (discovery), and 8 samples, whose 8 × 3 (sample, y-power) pairs take the synapse path's
# matrix-product branch instead of its elementwise one
REGIMES = [(1, 5, 3), (12, 1, 4), (8, 3, 4)]


def _inputs(getkey, n, post, pre):
    return (
        jax.random.normal(getkey(), (n, pre)),
        jax.random.normal(getkey(), (n, post)),
        jax.random.normal(getkey(), (post, pre)),
        jax.random.normal(getkey(), (n,)),
    )


def _rule(getkey, contraction):
    # every power up to 2 of each variable (so every branch of both contractions runs), total degree ≤ 3
    full = TaylorRule.full(("x", "y", "w", "r"), 2, max_degree=3)
    return TaylorRule(full.terms, jax.random.normal(getkey(), (len(full.terms),)), learning_rate=0.7, contraction=contraction)


@pytest.mark.parametrize("contraction", CONTRACTIONS)
@pytest.mark.parametrize("regime", REGIMES)
def test_contraction_matches_the_monomial_oracle(contraction, regime, getkey):
    rule = _rule(getkey, contraction)
    pre, post, w, r = _inputs(getkey, *regime)
    want = 0.7 * sum(float(c) * _reference(t, pre, post, w, r) for c, t in zip(rule.coeffs, rule.terms))
    np.testing.assert_allclose(rule(pre, post, w, r), want, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("contraction", CONTRACTIONS)
@pytest.mark.parametrize("regime", REGIMES)
def test_every_cotangent_matches_autodiff_and_finite_differences(contraction, regime, getkey):
    """Gradients in θ, x, y, w, r against plain autodiff of the term-by-term formula and central differences.

    The loss weighs Δw by a random matrix and squares it, so every cotangent is a dense,
    non-trivial function of all inputs: dropping any term of the backward (the y-derivative,
    the w-derivative, the coefficient path) changes at least one of these five gradients.
    """
    rule = _rule(getkey, contraction)
    args = (rule.coeffs, *_inputs(getkey, *regime))
    u = jax.random.normal(getkey(), args[3].shape)

    def ours(c, pre, post, w, r):
        return jnp.sum(u * TaylorRule(rule.terms, c, learning_rate=0.7, contraction=contraction)(pre, post, w, r) ** 2)

    def plain(c, pre, post, w, r):
        return jnp.sum(u * _plain_taylor(rule, c, pre, post, w, r) ** 2)

    got = jax.jit(jax.grad(ours, argnums=range(5)))(*args)
    # the oracle runs op by op (no jit): small kernels, nothing shared with the code under test
    want = jax.grad(plain, argnums=range(5))(*args)
    # central differences along a random direction in each argument alone, all in one jitted call
    eps = 1e-6
    dirs = [jax.random.normal(getkey(), a.shape) for a in args]

    @jax.jit
    def central(args):
        out = []
        for k in range(5):
            plus = [a + eps * dirs[k] if i == k else a for i, a in enumerate(args)]
            minus = [a - eps * dirs[k] if i == k else a for i, a in enumerate(args)]
            out.append((ours(*plus) - ours(*minus)) / (2 * eps))
        return out

    fds = central(args)
    for g, h, d, fd in zip(got, want, dirs, fds):
        assert float(jnp.max(jnp.abs(h))) > 1e-3  # every variable matters in this loss
        np.testing.assert_allclose(g, h, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("contraction", CONTRACTIONS)
def test_forward_over_reverse_still_works(contraction, getkey):
    """Hessians (Laplace intervals, NUTS mass matrices) go forward over reverse through the rule."""
    rule = _rule(getkey, contraction)
    pre, post, w, r = _inputs(getkey, 2, 3, 2)

    def loss(c, w, impl):
        return jnp.sum(impl(c, w) ** 3)

    ours = lambda c, w: TaylorRule(rule.terms, c, learning_rate=0.7, contraction=contraction)(pre, post, w, r)  # noqa: E731
    plain = lambda c, w: _plain_taylor(rule, c, pre, post, w, r)  # noqa: E731
    hess = lambda impl: jax.jit(jax.jacfwd(jax.grad(lambda c, w: loss(c, w, impl), argnums=(0, 1)), argnums=(0, 1)))  # noqa: E731
    h_ours = hess(ours)(rule.coeffs, w)
    h_plain = hess(plain)(rule.coeffs, w)
    for got, want in zip(jax.tree_util.tree_leaves(h_ours), jax.tree_util.tree_leaves(h_plain)):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)


def test_the_choice_follows_the_shapes():
    full = (3, 3, 3, 3)  # the 81-term rule
    assert choose_contraction(full, n_samples=1, n_post=1000, n_pre=100) == "synapse"  # fitting a wide layer
    pc1 = (3, 3, 3, 1)  # 27 terms over (x, y, w)
    assert choose_contraction(pc1, n_samples=100, n_post=1, n_pre=3) == "moments"  # PC1 discovery
    assert choose_contraction(pc1, n_samples=100, n_post=1, n_pre=100) == "moments"


def test_unknown_contraction_is_a_clear_error():
    from plasticinfer import ModelError

    with pytest.raises(ModelError, match="contraction must be"):
        TaylorRule(["x*y"], contraction="fast")

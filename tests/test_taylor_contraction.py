"""The Taylor rule's two contractions (per synapse / moments first): values, every derivative, the choice."""

import equinox as eqx
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


def _rule(getkey, contraction, derivative="reverse"):
    # every power up to 2 of each variable (so every branch of both contractions runs), total degree ≤ 3
    full = TaylorRule.full(("x", "y", "w", "r"), 2, max_degree=3)
    coeffs = jax.random.normal(getkey(), (len(full.terms),))
    return TaylorRule(full.terms, coeffs, learning_rate=0.7, contraction=contraction, derivative=derivative)


@pytest.mark.parametrize("contraction", CONTRACTIONS)
@pytest.mark.parametrize("regime", REGIMES)
def test_contraction_matches_the_monomial_oracle(contraction, regime, getkey):
    rule = _rule(getkey, contraction)
    pre, post, w, r = _inputs(getkey, *regime)
    want = 0.7 * sum(float(c) * _reference(t, pre, post, w, r) for c, t in zip(rule.coeffs, rule.terms))
    np.testing.assert_allclose(rule(pre, post, w, r), want, rtol=1e-9, atol=1e-11)


# the moments path has no hand-written derivative, so one derivative setting covers it
DERIVATIVES = [("synapse", "reverse"), ("synapse", "forward"), ("moments", "reverse")]


@pytest.mark.parametrize("contraction, derivative", DERIVATIVES)
@pytest.mark.parametrize("regime", REGIMES)
def test_every_cotangent_matches_autodiff_and_finite_differences(contraction, derivative, regime, getkey):
    """Gradients in θ, x, y, w, r against plain autodiff of the term-by-term formula and central differences.

    The loss weighs Δw by a random matrix and squares it, so every cotangent is a dense,
    non-trivial function of all inputs: dropping any term of the backward (the y-derivative,
    the w-derivative, the coefficient path) changes at least one of these five gradients.
    """
    rule = _rule(getkey, contraction, derivative)
    args = (rule.coeffs, *_inputs(getkey, *regime))
    u = jax.random.normal(getkey(), args[3].shape)

    def ours(c, pre, post, w, r):
        rule_c = TaylorRule(rule.terms, c, learning_rate=0.7, contraction=contraction, derivative=derivative)
        return jnp.sum(u * rule_c(pre, post, w, r) ** 2)

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
def test_hessians_in_both_derivative_modes(contraction, getkey):
    """Hessians (Laplace intervals, NUTS mass matrices): forward over reverse through the JVP
    (``derivative="forward"``), reverse over reverse through the VJP (the default)."""
    rule = _rule(getkey, contraction)
    pre, post, w, r = _inputs(getkey, 2, 3, 2)

    def loss(c, w, impl):
        return jnp.sum(impl(c, w) ** 3)

    def ours(derivative):
        return lambda c, w: TaylorRule(rule.terms, c, learning_rate=0.7, contraction=contraction, derivative=derivative)(pre, post, w, r)

    plain = lambda c, w: _plain_taylor(rule, c, pre, post, w, r)  # noqa: E731
    fwd_rev = lambda impl: jax.jit(jax.jacfwd(jax.grad(lambda c, w: loss(c, w, impl), argnums=(0, 1)), argnums=(0, 1)))  # noqa: E731
    rev_rev = lambda impl: jax.jit(jax.jacrev(jax.grad(lambda c, w: loss(c, w, impl), argnums=(0, 1)), argnums=(0, 1)))  # noqa: E731
    want = jax.tree_util.tree_leaves(fwd_rev(plain)(rule.coeffs, w))
    for got in (fwd_rev(ours("forward"))(rule.coeffs, w), rev_rev(ours("reverse"))(rule.coeffs, w)):
        for g, h in zip(jax.tree_util.tree_leaves(got), want):
            np.testing.assert_allclose(g, h, rtol=1e-7, atol=1e-9)


def test_forward_mode_switches_every_rule_in_a_model(getkey):
    """`forward_mode` flips every Taylor rule of a pytree, after which jax.jacfwd works; the default refuses it."""
    import plasticinfer as pi
    from plasticinfer._rules import forward_mode

    model = pi.PlasticityModel(
        {"ff": pi.oja(0.1).with_derivative("reverse"), "rec": pi.hebbian(0.05).with_derivative("reverse")},
        pi.Recurrent(2, 3, plastic=("ff", "rec")),
        pi.GaussianActivity(1.0),
        {"ff": jax.random.normal(getkey(), (1, 3, 2)), "rec": 0.3 * jax.random.normal(getkey(), (1, 3, 3))},
    )
    data = pi.TrialData({"x": jax.random.normal(getkey(), (1, 6, 2))}, jax.random.normal(getkey(), (1, 6, 3)), jnp.ones((1, 6, 3), bool))
    coeffs = lambda m, c: eqx.tree_at(lambda mm: mm.rule["ff"].coeffs, m, c)  # noqa: E731
    f = lambda m: lambda c: coeffs(m, c).log_likelihood(data).sum()  # noqa: E731
    fmodel = forward_mode(model)
    assert {r.derivative for r in fmodel.rule.values()} == {"forward"}
    assert {r.derivative for r in model.rule.values()} == {"reverse"}  # a copy: the original is unchanged
    c0 = model.rule["ff"].coeffs
    np.testing.assert_allclose(jax.jacfwd(f(fmodel))(c0), jax.grad(f(model))(c0), rtol=1e-9)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(f(model))(c0)


def test_auto_derivative_takes_the_vjp_for_large_layers_only(getkey):
    from plasticinfer._taylor_contraction import choose_derivative

    assert choose_derivative(1000, 100) == "reverse"  # the fitting benchmark's layer
    assert choose_derivative(20, 200) == "reverse" and choose_derivative(10, 200) == "reverse"
    assert choose_derivative(2, 10) == "forward" and choose_derivative(10, 100) == "forward"
    # small layers keep forward mode under "auto": jacfwd through the default rule works there
    rule = pi_oja()
    pre, post, w, r = _inputs(getkey, 1, 3, 4)
    g = jax.jacfwd(lambda c: TaylorRule(rule.terms, c)(pre, post, w, r))(rule.coeffs)
    assert g.shape == (3, 4, 2) and bool(jnp.all(jnp.isfinite(g)))


def pi_oja():
    from plasticinfer import oja

    return oja(1.0)


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


@pytest.mark.slow  # about 10 s: in the whole suite (--slow), out of the fast tier
def test_nuts_mass_matrix_hessian_goes_through_the_vjp_and_falls_back_where_forward_mode_is_refused(getkey):
    """The NUTS warm start's Hessian goes forward over reverse. The VJP rule supports that (its forward pass
    is plain JAX, its backward too), only plain forward mode is refused; a potential that refuses forward
    over reverse too falls back to reverse over reverse. Every route gives the JVP rule's matrix."""
    from plasticinfer.bayes._sample import _initial_inverse_mass

    rule = _rule(getkey, "synapse")
    pre, post, w, r = _inputs(getkey, 1, 3, 4)

    @jax.custom_vjp
    def square(v):  # a VJP whose forward pass calls itself: forward mode cannot enter it at all
        return v**2

    square.defvjp(lambda v: (square(v), v), lambda v, g: (2 * v * g,))

    def potential(derivative, sq=jnp.square):
        def f(z):
            rule_z = TaylorRule(rule.terms, z["theta"], learning_rate=0.7, contraction="synapse", derivative=derivative)
            return jnp.sum(rule_z(pre, post, w, r) ** 2) + 0.5 * jnp.sum(sq(z["theta"]))

        return f

    z0 = {"theta": rule.coeffs}
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(potential("reverse"))(z0)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.hessian(potential("reverse", square))(z0)
    want_h = jax.hessian(potential("forward"))(z0)["theta"]["theta"]
    np.testing.assert_allclose(jax.hessian(potential("reverse"))(z0)["theta"]["theta"], want_h, rtol=1e-8, atol=1e-12)
    for dense in (True, False):
        want = _initial_inverse_mass(potential("forward"), z0, dense)
        for got in (_initial_inverse_mass(potential("reverse"), z0, dense), _initial_inverse_mass(potential("reverse", square), z0, dense)):
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_vjp_under_vmap_in_a_checkpointed_recurrent_scan_equals_the_jvp(getkey):
    """The VJP where fits use it: vmapped over trajectories, inside √T-checkpointed segments (with a
    remainder), in a recurrent layer whose presynaptic input is itself computed (so x̄ is needed):
    the gradients in every coefficient and initial weight equal those through the JVP."""
    import plasticinfer as pi

    net = pi.Recurrent(3, 4, plastic=("ff", "rec"))
    full = TaylorRule.full(("x", "y", "w", "r"), 2, max_degree=3)
    coeffs = {k: 0.3 * jax.random.normal(getkey(), (len(full.terms),)) for k in ("ff", "rec")}
    w0 = {"ff": 0.5 * jax.random.normal(getkey(), (3, 4, 3)), "rec": 0.3 * jax.random.normal(getkey(), (3, 4, 4))}
    trials = {"x": jax.random.normal(getkey(), (3, 11, 3)), "reward": jax.random.normal(getkey(), (3, 11))}

    def loss(derivative):
        def f(c, w, tr):
            rules = {k: TaylorRule(full.terms, c[k], learning_rate=0.2, contraction="synapse", derivative=derivative) for k in c}
            return jnp.sum(jnp.sin(pi.simulate(rules, net, w, tr, checkpoint=3).outputs))

        return jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1)), in_axes=(None, 0, 0)))

    got, want = loss("reverse")(coeffs, w0, trials), loss("forward")(coeffs, w0, trials)
    for g, h in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert float(jnp.max(jnp.abs(h))) > 1e-3
        np.testing.assert_allclose(g, h, rtol=1e-8, atol=1e-10)


# rules missing a whole variable: the VJP's branches where x̄, ȳ or r̄ are zeros, and a rule without w terms
REDUCED = {
    "no x": {"y*w": 0.4, "w^2": -0.3, "y^2*r": 0.2, "w*r": 0.5},
    "no y": {"x*r": 0.6, "x*w": -0.2, "x^2*w^2": 0.1},
    "no w, no r": {"x*y": 0.7, "x^2*y": -0.3, "y^2": 0.2},
}


@pytest.mark.parametrize("terms", list(REDUCED.values()), ids=list(REDUCED))
@pytest.mark.parametrize("n", [1, 8])
def test_vjp_of_rules_missing_a_variable_matches_autodiff(terms, n, getkey):
    rule = TaylorRule.from_terms(terms, learning_rate=0.3)
    pre, post, w, r = _inputs(getkey, n, 3, 4)
    u = jax.random.normal(getkey(), w.shape)

    def through_vjp(c, pre, post, w, r):
        rc = TaylorRule(rule.terms, c, learning_rate=0.3, contraction="synapse", derivative="reverse")
        return jnp.sum(u * rc(pre, post, w, r) ** 2)

    plain = lambda c, pre, post, w, r: jnp.sum(u * _plain_taylor(rule, c, pre, post, w, r) ** 2)  # noqa: E731
    args = (rule.coeffs, pre, post, w, r)
    got = jax.jit(jax.grad(through_vjp, argnums=range(5)))(*args)
    want = jax.grad(plain, argnums=range(5))(*args)
    for g, h in zip(got, want):
        np.testing.assert_allclose(g, h, rtol=1e-8, atol=1e-10)


def test_vjp_cotangents_keep_their_primal_dtypes(getkey):
    """Float32 coefficients with float64 activity: each cotangent comes back in its primal's dtype, as through the JVP."""
    from plasticinfer._taylor_contraction import taylor_update

    theta = jax.random.normal(getkey(), (3, 3, 3, 3), jnp.float32)
    pre, post, w, r = _inputs(getkey, 1, 3, 4)

    def f(derivative):
        def g(th, pre, post, w, r):
            return jnp.sum(taylor_update(th, pre, post, w, r, "synapse", scale=0.7, derivative=derivative) ** 2)

        return jax.grad(g, argnums=range(5))

    with jax.numpy_dtype_promotion("standard"):  # the suite runs strict; mixed precision needs standard promotion
        for derivative in ("reverse", "forward"):
            grads = f(derivative)(theta, pre, post, w, r)
            assert [g.dtype for g in grads] == [jnp.float32] + [jnp.float64] * 4, derivative

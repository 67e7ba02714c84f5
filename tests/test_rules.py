import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import plasticinfer as pi
from plasticinfer import Monomial, TaylorRule
from plasticinfer.errors import ComparisonError


def _reference(term: Monomial, pre, post, w, r):
    """Plain-loop oracle: mean over the batch of x_j^a y_i^b w_ij^c r^d."""
    pre, post, w, r = map(np.asarray, (pre, post, w, r))
    out = np.zeros(w.shape)
    for b in range(pre.shape[0]):
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                out[i, j] += term.evaluate(pre[b, j], post[b, i], w[i, j], r[b])
    return out / pre.shape[0]


powers = st.integers(0, 3)


@settings(max_examples=40, deadline=None)
@given(
    a=powers, b=powers, c=powers, d=powers,
    batch=st.integers(1, 3), n_pre=st.integers(1, 4), n_post=st.integers(1, 3), seed=st.integers(0, 10_000),
)
def test_each_named_term_is_its_monomial(a, b, c, d, batch, n_pre, n_post, seed):
    term = Monomial(a, b, c, d)
    # a rule with several terms, all zero except the one under test, named by string
    rule = TaylorRule.full(("x", "y", "w", "r"), 3).with_coefficients({term.name: 1.0})
    k = jax.random.split(jax.random.key(seed), 4)
    pre = jax.random.normal(k[0], (batch, n_pre))
    post = jax.random.normal(k[1], (batch, n_post))
    w = jax.random.normal(k[2], (n_post, n_pre))
    r = jax.random.normal(k[3], (batch,))
    np.testing.assert_allclose(rule(pre, post, w, r), _reference(term, pre, post, w, r), rtol=1e-10, atol=1e-12)


def test_term_names_and_counts():
    assert len(TaylorRule.full(("x", "y", "w", "r"), 2).terms) == 81
    assert len(TaylorRule.full(("x", "y", "w"), 2).terms) == 27
    # total degree ≤ 2 over 4 variables: 1 + 4 + 10
    assert len(TaylorRule.full(("x", "y", "w", "r"), 2, max_degree=2).terms) == 15
    names = TaylorRule.full(("x", "y", "w"), 2).names
    assert "x*y" in names and "y^2*w" in names and "1" in names
    assert Monomial.parse("y^2*w") == Monomial(y=2, w=1)
    assert Monomial.parse("x·y²") == Monomial(x=1, y=2)
    assert Monomial.parse("y ** 2 * w") == Monomial(y=2, w=1)
    assert Monomial(x=1, y=2, w=0, r=1).name == "x*y^2*r"


@pytest.mark.parametrize("bad", ["z*y", "x^-1", "", "x*y^", "x*y*", "*x"])
def test_bad_term_names_raise(bad):
    with pytest.raises(pi.ModelError):
        Monomial.parse(bad)


def test_equation_keeps_minus_signs_and_round_trips():
    rule = TaylorRule.from_equation("Δw = 0.5·x·r − 0.05·w - x*y^2 + 2e-3 y")
    assert rule.coefficients == pytest.approx({"x*r": 0.5, "w": -0.05, "x*y^2": -1.0, "y": 0.002})
    again = TaylorRule.from_equation(rule.equation(precision=6))
    assert again.coefficients == pytest.approx(rule.coefficients)
    assert str(pi.oja()) == "Δw = 1.000·x·y − 1.000·y²·w"


@pytest.mark.parametrize("bad", ["x*y +", "x*y + + w", "x*y - ", "+", "x*y*", "*x", "x*y - *w"])
def test_dangling_operators_in_an_equation_raise(bad):
    """These used to be read silently: "x*y +" as x·y + 1, "+" as the constant, "x*y*" as x·y."""
    with pytest.raises(pi.ModelError, match="cannot parse"):
        TaylorRule.from_equation(bad)
    with pytest.raises(ComparisonError, match="cannot parse"):
        pi.compare.parse_hypothesis(bad)


def test_str_shows_only_nonzero_terms():
    rule = TaylorRule.full(("x", "y", "w"), 2).with_coefficients({"x*y": 0.25})
    assert str(rule) == "Δw = 0.250·x·y"


def test_fixed_terms_get_no_gradient():
    rule = TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, fixed=["y^2*w"])
    pre, post, w = jnp.ones((1, 3)), jnp.ones((1, 2)), jnp.ones((2, 3))

    def f(r):
        return r(pre, post, w, jnp.zeros(1)).sum()

    g = jax.grad(f)(rule)
    assert g.coeffs[0] != 0 and g.coeffs[1] == 0
    assert rule.penalty() == 1.0  # only the free term is penalised


def test_without_and_unknown_terms():
    rule = TaylorRule.full(("x", "y"), 1)
    smaller = rule.without(["1", "x"])
    assert smaller.names == ("y", "x*y")
    with pytest.raises(pi.ModelError, match="not in the rule"):
        rule.with_coefficients({"w": 1.0})
    with pytest.raises(pi.ModelError, match="distinct"):
        TaylorRule(["x", "x"])


def test_powers_have_finite_gradient_at_zero():
    rule = TaylorRule.full(("x", "y", "w"), 2, init=1.0)
    z = jnp.zeros((1, 2))
    g = jax.grad(lambda p: rule(p, jnp.zeros((1, 2)), jnp.zeros((2, 2)), jnp.zeros(1)).sum())(z)
    assert np.all(np.isfinite(g))


def test_classic_rules_match_formulas(getkey):
    pre = jax.random.normal(getkey(), (6, 3))
    post = jax.random.normal(getkey(), (6, 2))
    w = jax.random.normal(getkey(), (2, 3))
    r = jax.random.normal(getkey(), (6,))
    mean_outer = lambda a, b: np.einsum("bi,bj->ij", a, b) / a.shape[0]  # noqa: E731
    np.testing.assert_allclose(pi.hebbian(0.3)(pre, post, w, r), 0.3 * mean_outer(post, pre))
    oja = mean_outer(post, pre) - np.mean(np.asarray(post) ** 2, 0)[:, None] * np.asarray(w)
    np.testing.assert_allclose(pi.oja()(pre, post, w, r), oja, rtol=1e-12)
    xm, ym = 0.3, -0.2
    cov = mean_outer(np.asarray(post) - ym, np.asarray(pre) - xm)
    np.testing.assert_allclose(pi.covariance(xm, ym)(pre, post, w, r), cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pi.CovarianceRule(1.0)(pre, post, w, r), mean_outer(post - post.mean(0), pre - pre.mean(0)), atol=1e-12)
    bcm = mean_outer(np.asarray(post) ** 2 - 0.5 * np.asarray(post), pre)
    np.testing.assert_allclose(pi.bcm(0.5)(pre, post, w, r), bcm, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pi.weight_decay(0.1)(pre, post, w, r), -0.1 * np.asarray(w))
    np.testing.assert_allclose(
        pi.reward_modulated_hebbian(1.0, baseline=0.2)(pre, post, w, r),
        np.mean((np.asarray(r) - 0.2)[:, None] * np.asarray(pre), 0)[None, :].repeat(2, 0),
        rtol=1e-10,
    )


def test_binary_reward_identifiability_warning():
    rule = TaylorRule.full(("x", "r"), 2)
    msgs = rule.warnings_for(binary_reward=True)
    assert any("x*r" in m and "x*r^2" in m for m in msgs)
    assert TaylorRule.from_terms({"x*r": 1.0}).warnings_for(binary_reward=True) == []


def test_mlp_rule_shapes_and_variables(key):
    rule = pi.MLPRule(("x", "y"), width=4, depth=1, key=key)
    out = rule(jnp.ones((2, 3)), jnp.ones((2, 5)), jnp.zeros((5, 3)), jnp.zeros(2))
    assert out.shape == (5, 3)
    # depends only on x and y: changing w and r leaves it unchanged
    out2 = rule(jnp.ones((2, 3)), jnp.ones((2, 5)), jnp.full((5, 3), 7.0), jnp.ones(2))
    np.testing.assert_allclose(out, out2)
    with pytest.raises(pi.ModelError):
        pi.MLPRule(("q",), key=key)


def _plain_taylor(rule: TaylorRule, coeffs, pre, post, w, r):
    """The rule written term by term with broadcasting, differentiated by plain autodiff."""
    out = jnp.zeros_like(w)
    for theta, t in zip(coeffs, rule.terms):
        a, b, c, d = t.powers
        out = out + theta * jnp.mean(
            pre[:, None, :] ** a * post[:, :, None] ** b * w[None] ** c * r[:, None, None] ** d, axis=0
        )
    return rule.learning_rate * out


@pytest.mark.parametrize("batch", [1, 8])  # 1: broadcast path; 8 samples × y-powers > 16: einsum path
# every power up to 3 of x, y and w, in terms of total degree ≤ 3 (20 terms): the full 64-term cube made this
# one compiled program of Hessians take 3.5 GB and a minute to compile per case, for the same code paths
@pytest.mark.parametrize("variables, max_power, max_degree", [(("x", "y", "w", "r"), 1, None), (("x", "y", "w"), 3, 3)])
def test_taylor_derivatives_match_plain_autodiff(batch, variables, max_power, max_degree, getkey):
    """Both hand-written derivatives of the synapse contraction against plain autodiff, in every input.

    ``derivative="reverse"`` (the VJP): gradients and reverse-over-reverse Hessians.
    ``derivative="forward"`` (the JVP): gradients, JVPs and forward-over-reverse Hessians.
    """
    rule = TaylorRule.full(variables, max_power, max_degree=max_degree, learning_rate=0.3)
    coeffs = jax.random.normal(getkey(), (len(rule.terms),))
    pre = jax.random.normal(getkey(), (batch, 4))
    post = jax.random.normal(getkey(), (batch, 3))
    w = jax.random.normal(getkey(), (3, 4))
    r = jax.random.normal(getkey(), (batch,))
    u = jax.random.normal(getkey(), (3, 4))  # a fixed cotangent: scalar loss = Σ u ⊙ Δw²

    def loss(derivative):
        def f(c, pre, post, w, r):
            dw = TaylorRule(rule.terms, c, learning_rate=0.3, contraction="synapse", derivative=derivative)(pre, post, w, r)
            return jnp.sum(u * dw**2)

        return f

    def loss_plain(c, pre, post, w, r):
        return jnp.sum(u * _plain_taylor(rule, c, pre, post, w, r) ** 2)

    args = (coeffs, pre, post, w, r)
    tangents = tuple(jax.random.normal(getkey(), a.shape) for a in args)

    @jax.jit
    def derivatives(args, tangents):
        out = {}
        for name, f in (("reverse", loss("reverse")), ("forward", loss("forward")), ("plain", loss_plain)):
            out[name] = dict(value=f(*args), grad=jax.grad(f, argnums=range(5))(*args))
            if name != "reverse":
                out[name]["jvp"] = jax.jvp(f, args, tangents)[1]
                out[name]["hessian"] = jax.hessian(f, argnums=(0, 3))(*args)
        # the VJP's own derivative: reverse over reverse
        out["reverse"]["hessian"] = jax.jacrev(jax.grad(loss("reverse"), argnums=(0, 3)), argnums=(0, 3))(*args)
        out["plain"]["hessian_rr"] = jax.jacrev(jax.grad(loss_plain, argnums=(0, 3)), argnums=(0, 3))(*args)
        return out

    d = derivatives(args, tangents)
    want = d["plain"]
    for name in ("reverse", "forward"):
        got = d[name]
        np.testing.assert_allclose(got["value"], want["value"], rtol=1e-10)
        for g, h in zip(got["grad"], want["grad"]):
            np.testing.assert_allclose(g, h, rtol=1e-8, atol=1e-10)
        hess_want = want["hessian_rr"] if name == "reverse" else want["hessian"]
        for g, h in zip(jax.tree_util.tree_leaves(got["hessian"]), jax.tree_util.tree_leaves(hess_want)):
            np.testing.assert_allclose(g, h, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(d["forward"]["jvp"], want["jvp"], rtol=1e-8)


def test_one_equation_formatter():
    """Signs, constants, parentheses, η and the threshold, written out by hand."""
    fmt = pi.AbstractRule.format_equation
    assert fmt([(-0.5, "x·y"), (0.25, ""), (0.0, "w")]) == "Δw = −0.500·x·y + 0.250"
    assert fmt([(2.0, "a − b"), (-1e-4, "w")], lhs="ΔW", learning_rate=0.05, threshold=1e-3) == "ΔW = 0.05·(2.000·(a − b))"
    assert fmt([(1e-4, "w")], threshold=1e-3) == "Δw = 0"
    assert fmt([(1.0, "1"), (-2.0, "x")], precision=1) == "Δw = 1.0 − 2.0·x"


def test_every_rule_prints_through_the_one_formatter(key):
    """Every rule class of the package: ``str(rule)`` is ``rule.equation()``, and rules with named terms give
    exactly what the formatter gives for their (coefficient, term) pairs."""
    from plasticinfer.compare import OptionTaylorRule, QAgentRule
    from plasticinfer.discovery import PairRule, TraceRule
    from plasticinfer.metalearn import LocalRule

    fmt = pi.AbstractRule.format_equation
    taylor = TaylorRule.from_terms({"x*r": 0.5, "w": -0.1}, learning_rate=0.3)
    local = LocalRule.from_terms({"pseudo_gradient": 1.0, "decay": -0.02})
    trace = TraceRule(-0.04, 0.0, 1.0, 0.5, tau_pre=0.01, tau_post=0.03)
    pair = PairRule(-0.04, 0.0, 1.0, 0.5, 0.01, 0.03)
    expected = {
        "taylor": (taylor, fmt([(0.5, "x·r"), (-0.1, "w")], learning_rate=0.3)),
        "local": (local, fmt([(1.0, "e_{l+1}·y_lᵀ"), (-0.02, "W")], lhs="ΔW", learning_rate=0.05)),
        "covariance": (pi.CovarianceRule(0.25), "Δw = 0.250·(x−x̄)·(y−ȳ)"),
        "trace": (
            trace,
            "pre spike: Δw = −0.040 + 0.500·x_post; post spike: Δw = 1.000·x_pre  [τ_pre = 10 ms, τ_post = 30 ms]",
        ),
        "pair": (pair, str(trace)),  # same update, same print, whether the time constants are searched or fixed
        "option": (OptionTaylorRule(taylor), "ΔQ_k = 0.3·(0.500·x·r − 0.100·q)"),
        "agent": (QAgentRule(0.25, forget_unchosen=True, kappa=0.125), "QAgentRule(alpha=0.25, kappa=0.125)"),
        "mlp": (pi.MLPRule(("x", "y"), width=4, depth=1, key=key), "Δw = MLP(x, y)  [4 wide, 1 hidden layers]"),
    }
    for name, (rule, text) in expected.items():
        assert rule.equation() == text, name
        assert str(rule) == text, name
    args = (jnp.ones((2, 3)), jnp.ones((2, 1)), jnp.zeros((1, 3)), jnp.ones(2))
    np.testing.assert_allclose(pair(*args), trace(*args))
    np.testing.assert_allclose(trace(*args), -0.04 + 0.5 * 0.03 + 1.0 * 0.01)  # α·ν_pre + (κτ_post + γτ_pre)·ν_pre·ν_post


def test_with_fixed_holds_the_named_terms_and_keeps_the_earlier_ones(getkey):
    """``with_fixed`` adds fixed terms to a copy: no gradient reaches them, the others still learn, values unchanged."""
    import equinox as eqx

    rule = TaylorRule.from_terms({"x*y": 0.5, "w": -0.1, "x*r": 0.2}, fixed=["x*r"], learning_rate=0.3)
    held = rule.with_fixed(["w"])
    assert held.fixed == (False, True, True) and rule.fixed == (False, False, True)
    np.testing.assert_array_equal(held.coeffs, rule.coeffs)
    pre, post, w, r = jax.random.normal(getkey(), (1, 4)), jax.random.normal(getkey(), (1, 3)), jax.random.normal(getkey(), (3, 4)), jnp.ones(1)
    g = eqx.filter_grad(lambda rl: jnp.sum(rl(pre, post, w, r) ** 2))(held).coeffs
    assert float(g[0]) != 0.0 and float(g[1]) == 0.0 and float(g[2]) == 0.0
    np.testing.assert_allclose(held(pre, post, w, r), rule(pre, post, w, r), rtol=1e-12)

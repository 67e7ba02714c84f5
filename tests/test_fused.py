"""TaylorRule(derivative="fused"): the compiled kernels against the XLA path, autodiff and finite differences."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plasticinfer as pi

pytest.importorskip("numba")  # an optional dependency of the package; the test extra installs it


def _case(n_pre=7, n_post=21, n_trials=40, terms=None, dtype=jnp.float64, lr=0.01, seed=0):
    """A random rule over x, y, w, r (powers ≤ 2) in a layer whose rows are not a multiple of the kernels' block of 16."""
    keys = jax.random.split(jax.random.key(seed), 5)
    full = pi.TaylorRule.full(("x", "y", "w", "r"), 2)
    terms = full.terms if terms is None else terms
    rule = pi.TaylorRule(terms, 0.05 * jax.random.normal(keys[0], (len(terms),), dtype), learning_rate=lr)
    trials = {"x": jax.random.normal(keys[1], (n_trials, n_pre), dtype),
              "reward": jax.random.bernoulli(keys[2], 0.5, (n_trials,)).astype(dtype)}
    w0 = {"w": 0.3 * jax.random.normal(keys[3], (n_post, n_pre), dtype)}
    y_obs = jax.random.normal(keys[4], (n_trials, n_post), dtype)
    return rule, pi.FeedForward(n_pre, n_post), w0, trials, y_obs


def _loss(rule, net, w0, trials, y_obs):
    run = pi.simulate(rule, net, w0, trials)
    # the final weights enter too, so their cotangent (the backward's starting adjoint) is checked
    return jnp.sum((run.outputs - y_obs) ** 2) + jnp.sum(run.final_weights["w"] ** 3)


@pytest.mark.parametrize("terms", [None, ("x*y", "y^2*w"), ("x*r", "w", "1", "x^2*w^2*r^2")])
def test_fused_run_equals_the_scan(terms):
    rule, net, w0, trials, _ = _case(terms=terms)
    ref = pi.simulate(rule, net, w0, trials)
    out = pi.simulate(rule.with_derivative("fused"), net, w0, trials)
    np.testing.assert_allclose(out.outputs, ref.outputs, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(out.final_weights["w"], ref.final_weights["w"], rtol=1e-12, atol=1e-13)


def test_fused_run_without_reward_reads_r_as_zero():
    rule, net, w0, trials, _ = _case(terms=("x*y", "w", "r*w"))
    del trials["reward"]
    ref = pi.simulate(rule, net, w0, trials)
    np.testing.assert_allclose(pi.simulate(rule.with_derivative("fused"), net, w0, trials).outputs, ref.outputs, rtol=1e-12, atol=1e-13)


def test_fused_gradient_equals_autodiff_and_finite_differences():
    rule, net, w0, trials, y_obs = _case()
    fused = rule.with_derivative("fused")
    g_ref = jax.grad(_loss, argnums=(0, 2))(rule, net, w0, trials, y_obs)
    g = jax.jit(jax.grad(_loss, argnums=(0, 2)), static_argnums=1)(fused, net, w0, trials, y_obs)
    np.testing.assert_allclose(g[0].coeffs, g_ref[0].coeffs, rtol=1e-10, atol=1e-10 * float(jnp.abs(g_ref[0].coeffs).max()))
    np.testing.assert_allclose(g[1]["w"], g_ref[1]["w"], rtol=1e-10, atol=1e-10 * float(jnp.abs(g_ref[1]["w"]).max()))
    # central differences on a few coefficients and weights, through the fused forward alone
    f = lambda c, w: float(_loss(pi.TaylorRule(fused.terms, c, learning_rate=fused.learning_rate, derivative="fused"), net, {"w": w}, trials, y_obs))  # noqa: E731
    h = 1e-6
    for k in (0, 13, 40, 80):
        e = jnp.zeros(81).at[k].set(h)
        fd = (f(fused.coeffs + e, w0["w"]) - f(fused.coeffs - e, w0["w"])) / (2 * h)
        assert abs(fd - float(g[0].coeffs[k])) <= 1e-5 * max(1.0, abs(fd)), (k, fd, float(g[0].coeffs[k]))
    for i, j in ((0, 0), (20, 6), (16, 3)):
        e = jnp.zeros_like(w0["w"]).at[i, j].set(h)
        fd = (f(fused.coeffs, w0["w"] + e) - f(fused.coeffs, w0["w"] - e)) / (2 * h)
        assert abs(fd - float(g[1]["w"][i, j])) <= 1e-5 * max(1.0, abs(fd)), ((i, j), fd, float(g[1]["w"][i, j]))


@pytest.mark.parametrize("n_trials", [1, 2, 40, 49])
def test_fused_gradient_over_several_checkpointed_segments_equals_autodiff(monkeypatch, n_trials):
    """Segments of ⌈√T⌉ trials (the cache-sized default fits these small runs in one): the last segment
    short (40 = 5·7 + 5), exact (49 = 7·7), a single trial; gradients and runs as the scan's."""
    from plasticinfer import _fused

    monkeypatch.setattr(_fused, "SEGMENT_BYTES", 0)
    K = _fused.segment_length(n_trials, 7, 8)
    assert K == int(np.ceil(np.sqrt(n_trials))) and (n_trials < 4 or -(-n_trials // K) > 1)
    rule, net, w0, trials, y_obs = _case(n_trials=n_trials)
    fused = rule.with_derivative("fused")
    g_ref = jax.grad(_loss, argnums=(0, 2))(rule, net, w0, trials, y_obs)
    g = jax.jit(jax.grad(_loss, argnums=(0, 2)), static_argnums=1)(fused, net, w0, trials, y_obs)
    np.testing.assert_allclose(g[0].coeffs, g_ref[0].coeffs, rtol=1e-10, atol=1e-10 * float(jnp.abs(g_ref[0].coeffs).max()))
    np.testing.assert_allclose(g[1]["w"], g_ref[1]["w"], rtol=1e-10, atol=1e-10 * float(jnp.abs(g_ref[1]["w"]).max()))


@pytest.mark.parametrize("n_pre, dtype", [(1, jnp.float64), (4, jnp.float64), (5, jnp.float64), (8, jnp.float32), (13, jnp.float32)])
def test_padded_inputs_change_no_output_and_no_gradient(n_pre, dtype):
    """Rows are padded to whole 32-byte vectors inside the kernels (none at 4 doubles or 8 floats); the padding
    columns copy column 0 for the rule and are zero for the outputs, so runs and gradients are the scan's."""
    from plasticinfer import _fused

    assert _fused.padded_width(n_pre, jnp.dtype(dtype).itemsize) == -(-n_pre // (32 // jnp.dtype(dtype).itemsize)) * (32 // jnp.dtype(dtype).itemsize)
    rule, net, w0, trials, y_obs = _case(n_pre=n_pre, dtype=dtype, n_trials=30)
    fused = rule.with_derivative("fused")
    tol = dict(rtol=1e-10) if dtype == jnp.float64 else dict(rtol=2e-4)
    run, ref = pi.simulate(fused, net, w0, trials), pi.simulate(rule, net, w0, trials)
    assert run.final_weights["w"].shape == (21, n_pre)
    np.testing.assert_allclose(run.outputs, ref.outputs, atol=1e-12 if dtype == jnp.float64 else 2e-5, **tol)
    np.testing.assert_allclose(run.final_weights["w"], ref.final_weights["w"], atol=1e-12 if dtype == jnp.float64 else 2e-5, **tol)
    g_ref = jax.grad(_loss, argnums=(0, 2))(rule, net, w0, trials, y_obs)
    g = jax.grad(_loss, argnums=(0, 2))(fused, net, w0, trials, y_obs)
    assert g[1]["w"].shape == (21, n_pre)
    for a, b in ((g[0].coeffs, g_ref[0].coeffs), (g[1]["w"], g_ref[1]["w"])):
        scale = float(jnp.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=tol["rtol"] if dtype == jnp.float64 else 2e-3, atol=(1e-10 if dtype == jnp.float64 else 2e-3) * scale)


def test_fused_under_vmap_and_in_float32():
    rule, net, w0, trials, y_obs = _case(dtype=jnp.float32, n_post=40)
    batch = jnp.stack([w0["w"], 0.5 * w0["w"], -w0["w"]])
    run = lambda r: jax.vmap(lambda w: pi.simulate(r, net, {"w": w}, trials).outputs)(batch)  # noqa: E731
    out = run(rule.with_derivative("fused"))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, run(rule), rtol=2e-4, atol=2e-5)
    grads = lambda r: jax.grad(lambda r: jax.vmap(lambda w: _loss(r, net, {"w": w}, trials, y_obs))(batch).sum())(r).coeffs  # noqa: E731
    g_ref = grads(rule)
    np.testing.assert_allclose(grads(rule.with_derivative("fused")), g_ref, rtol=2e-3, atol=2e-3 * float(jnp.abs(g_ref).max()))


def test_fused_results_do_not_depend_on_the_thread_count():
    import numba

    rule, net, w0, trials, y_obs = _case(n_post=70)
    fused = rule.with_derivative("fused")
    grad = jax.jit(jax.grad(_loss, argnums=(0, 2)), static_argnums=1)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = grad(fused, net, w0, trials, y_obs)
        numba.set_num_threads(before)
        many = jax.jit(jax.grad(_loss, argnums=(0, 2)), static_argnums=1)(fused, net, w0, trials, y_obs)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0].coeffs, many[0].coeffs)
    np.testing.assert_array_equal(one[1]["w"], many[1]["w"])


def test_a_fit_with_fused_kernels_finds_what_the_default_finds():
    k_in, k_data, k_model = jax.random.split(jax.random.key(3), 3)
    inputs = pi.GaussianInputs.with_spectrum(k_in, jnp.array([2.0, 1.0, 0.5, 0.2]))
    true = pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=0.02)
    syn = pi.make_activity_data(true, pi.FeedForward(4, 2), inputs, key=k_data, n_trajectories=2, n_trials=80, init_scale=0.3)
    rule = pi.TaylorRule(["x*y", "y^2*w", "w"], learning_rate=0.02)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=k_model, init_scale=0.1)
    ref = pi.fit(model, syn.data, steps=60, progress=False)
    fused = pi.fit(pi.PlasticityModel(rule.with_derivative("fused"), model.network, model.observation, model.initial_weights),
                   syn.data, steps=60, progress=False)
    np.testing.assert_allclose(fused.model.rule.coeffs, ref.model.rule.coeffs, rtol=1e-6, atol=1e-8)
    assert fused.model.rule.derivative == "fused"
    history = np.asarray(fused.loss_history).ravel()
    assert np.nanmin(history) < 0.5 * history[0]  # and it learned (same steps, same numbers as the default)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r, n, w, t: (r, pi.FeedForward(7, 21, activation=jnp.tanh), w, t, {}), "identity activation"),
        (lambda r, n, w, t: (pi.TaylorRule(["x^3*y"], [0.1], derivative="fused"), n, w, t, {}), r"powers of x, y, w and r up to 2 \(the rule has x\^3"),
        (lambda r, n, w, t: (r, n, w, {"x": t["x"][:, None, :]}, {}), r"one input sample per trial.*\(40, 1, 7\)"),
        (lambda r, n, w, t: (r, n, w, t, {"save_weights": True}), "save_weights=False"),
        (lambda r, n, w, t: (r, n, {"w": w["w"].astype(jnp.float16)}, t, {}), "float32 or float64 weights"),
    ],
)
def test_what_the_fused_kernels_cannot_run_is_refused_by_name(change, message):
    rule, net, w0, trials, _ = _case()
    rule, net, w0, trials, kw = change(rule.with_derivative("fused"), net, w0, trials)
    with pytest.raises(pi.ModelError, match=message):
        pi.simulate(rule, net, w0, trials, **kw)


def test_a_gradient_for_the_inputs_is_refused_not_zero():
    rule, net, w0, trials, _ = _case()
    with pytest.raises(pi.ModelError, match="not for the inputs x"):
        jax.grad(lambda x: pi.simulate(rule.with_derivative("fused"), net, w0, {"x": x, "reward": trials["reward"]}).outputs.sum())(trials["x"])


def test_the_fused_choice_round_trips_and_forward_mode_switches_it_off():
    rule, *_ = _case(terms=("x*y", "w"))
    fused = rule.with_derivative("fused")
    assert pi.TaylorRule(fused.terms, fused.coeffs, derivative="fused").derivative == "fused"
    assert pi.forward_mode(fused).derivative == "forward"
    with pytest.raises(pi.ModelError, match="'auto', 'reverse', 'forward' or 'fused'"):
        rule.with_derivative("fast")


def _small_activity_problem():
    """A 4 → 2 layer, 2 trajectories × 60 trials of a two-term rule: the rule to sample, its model, the data."""
    k_in, k_data, k_model = jax.random.split(jax.random.key(3), 3)
    inputs = pi.GaussianInputs.with_spectrum(k_in, jnp.array([2.0, 1.0, 0.5, 0.2]))
    true = pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=0.02)
    syn = pi.make_activity_data(true, pi.FeedForward(4, 2), inputs, key=k_data, n_trajectories=2, n_trials=60, init_scale=0.3)
    rule = pi.TaylorRule(["x*y", "y^2*w"], [1.0, -1.0], learning_rate=0.02)
    model = pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=k_model, init_scale=0.1)
    return rule, model, syn


def test_nuts_through_fused_kernels_follows_the_default_chain():
    """NUTS needs a Hessian for its starting mass matrix, which the fused kernels cannot give: the sampler takes
    it through the JVP of the same model, and the chain then matches the default derivative's."""
    rule, model, syn = _small_activity_problem()
    method = pi.bayes.NUTS(warmup=15, samples=10, chains=1, max_tree_depth=5)
    draws = {}
    for derivative in ("auto", "fused"):
        m = pi.PlasticityModel(rule.with_derivative(derivative), model.network, model.observation, model.initial_weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a 10-draw chain warns about its ESS; that is not under test
            draws[derivative] = pi.bayes.sample(m, syn.data, method=method, key=jax.random.key(0), progress=False).coefficients.values
    np.testing.assert_allclose(draws["fused"], draws["auto"], rtol=1e-6, atol=1e-6)




@pytest.mark.slow
@pytest.mark.parametrize("guide", ["AutoNormal", "AutoMultivariateNormal"])
def test_svi_start_and_check_through_fused_kernels_follow_the_default(guide):
    """SVI's Hessian start needs second derivatives (taken through the JVP of the same model, as NUTS's) and its
    optimum check first derivatives at 400 draws (through the kernels): the losses, the start and the check's
    readings must match the default derivative's."""
    import numpyro.infer.autoguide as autoguide

    rule, model, syn = _small_activity_problem()
    method = pi.bayes.SVI(guide=getattr(autoguide, guide), steps=40, draws=20)
    found = {}
    for derivative in ("auto", "fused"):
        m = pi.PlasticityModel(rule.with_derivative(derivative), model.network, model.observation, model.initial_weights)
        found[derivative] = pi.bayes.sample(m, syn.data, method=method, key=jax.random.key(0), progress=False, warn=False)
    auto, fused = found["auto"], found["fused"]
    np.testing.assert_allclose(fused.loss_history, auto.loss_history, rtol=1e-5)
    assert fused.svi_check()["initial_spread"] == auto.svi_check()["initial_spread"] != f"{guide}'s init_scale (0.1)"
    assert fused.svi_check()["scalars"] == auto.svi_check()["scalars"] > 0
    assert fused.svi_check()["spread"] and fused.svi_check()["nonfinite_particles"] == 0  # 40 steps: not converged
    for (name_f, r_f, _), (name_a, r_a, _) in zip(fused.svi_check()["spread"], auto.svi_check()["spread"], strict=True):
        assert name_f == name_a and r_f == pytest.approx(r_a, rel=1e-4)

def test_padding_lanes_cannot_poison_the_gradient():
    """A block's unused lanes (rows beyond n_post) ran the rule from zero weights; a rule that diverges from 0 but
    not from the real rows' weights gave a NaN gradient (0 · inf in the adjoint's sums). They copy a real row now."""
    rule = pi.TaylorRule(["1", "w", "w^2"], [-0.4, 0.6, -0.2])  # Δw = −0.2(w − 1)(w − 2): 1.5 → 2, but 0 → −inf
    net, trials, w0 = pi.FeedForward(2, 5), {"x": 0.1 * jnp.ones((60, 2))}, {"w": 1.5 * jnp.ones((5, 2))}
    loss = lambda r: jnp.sum(pi.simulate(r, net, w0, trials).outputs ** 2)  # noqa: E731
    expected = jax.grad(loss)(rule).coeffs
    got = jax.grad(loss)(rule.with_derivative("fused")).coeffs
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_mismatched_or_unsupported_calls_are_refused_like_the_default_path():
    rule, net, w0, trials, _ = _case()
    fused = rule.with_derivative("fused")
    with pytest.raises(pi.ModelError, match=r"cannot run on one trial's inputs.*x has 6 values, W has 7 columns"):
        pi.simulate(fused, net, w0, {"x": trials["x"][:, :6]})
    with pytest.raises(pi.ModelError, match="one rule for the weights 'w'"):
        pi.simulate({"ff": fused, "rec": fused}, pi.Recurrent(7, 4, activation=lambda v: v), {"ff": jnp.zeros((4, 7)), "rec": jnp.zeros((4, 4))}, trials)
    with pytest.raises(pi.ModelError, match="key= is for an environment"):
        pi.simulate(fused, net, w0, trials, key=jax.random.key(0))
    with pytest.raises(pi.ModelError, match="checkpoint must be"):
        pi.simulate(fused, net, w0, trials, checkpoint=-1)


def test_parallel_nuts_chains_are_refused_for_fused_kernels():
    """jax.pmap over chains deadlocks on the kernels' host callbacks: an explicit request is refused by name (the
    automatic choice takes vmapped chains instead)."""
    rule, net, w0, trials, y_obs = _case(terms=("x*y", "w"), n_post=3)
    data = pi.TrialData({k: v[None] for k, v in trials.items()}, y_obs[None, :, :3], jnp.ones((1, 40, 3), bool))
    model = pi.PlasticityModel.create(rule.with_derivative("fused"), pi.FeedForward(7, 3), pi.GaussianActivity(1.0), n_trajectories=1,
                                      key=jax.random.key(1))
    with pytest.raises(pi.ModelError, match='chain_method="parallel".*derivative="fused".*vectorized'):
        pi.bayes.sample(model, data, method=pi.bayes.NUTS(warmup=2, samples=2, chains=2, chain_method="parallel"),
                        key=jax.random.key(0), progress=False)


def test_without_numba_the_message_names_the_extra_to_install(monkeypatch):
    import sys

    import plasticinfer
    from plasticinfer import _fused

    monkeypatch.setitem(sys.modules, "numba", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "plasticinfer._fused_kernels", raising=False)
    monkeypatch.delattr(plasticinfer, "_fused_kernels", raising=False)
    _fused._kernels.cache_clear()
    rule, net, w0, trials, _ = _case(terms=("x*y", "w"))
    try:
        with pytest.raises(pi.ModelError, match=r'need numba.*pip install "plasticinfer\[fast\]"'):
            pi.simulate(rule.with_derivative("fused"), net, w0, trials)
    finally:
        _fused._kernels.cache_clear()


def test_a_gradient_beyond_the_memory_limit_is_refused_by_name_and_a_forward_runs(monkeypatch):
    from plasticinfer import _fused

    rule, net, w0, trials, _ = _case()
    need = _fused.memory(40, 7, 21, 8, 1)
    assert _fused.padded_width(7, 8) == 8  # the kernels' rows: 7 inputs padded to two 4-double vectors
    K = _fused.segment_length(40, 8, 8)
    checkpoints = 2 * -(-40 // K) * 16 * 8 * 8  # 2 blocks of 16 rows, one per segment
    sums = _fused.N_PARTS * 40 * 27 * 8  # the backward's per-part sums over (a, b, c) for every trial
    buffer = (K + 1) * 16 * 8 * 8  # one thread's segment of weights
    assert need >= checkpoints + sums + buffer
    assert _fused.memory(400_000, 1, 128, 8, 1) > _fused.N_PARTS * 400_000 * 27 * 8  # long runs: the sums dominate
    monkeypatch.setattr(_fused, "BUFFER_LIMIT", 100)
    fused = rule.with_derivative("fused")
    run, ref = pi.simulate(fused, net, w0, trials), pi.simulate(rule, net, w0, trials)  # a forward keeps no checkpoints
    np.testing.assert_allclose(run.outputs, ref.outputs, rtol=1e-12, atol=1e-13)
    loss = lambda r: jnp.sum(pi.simulate(r, net, w0, trials).outputs ** 2)  # noqa: E731
    with pytest.raises(pi.ModelError, match=r"gradient of this run \(40 trials, a 21 × 7 layer\) needs 0\.[1-9] MiB of "
                       r"checkpoints and buffers, over the limit of 0\.0 MiB; split the trials"):
        jax.grad(loss)(fused)


def test_a_run_without_trials_returns_the_weights_as_they_were():
    rule, net, w0, trials, _ = _case(n_trials=0)
    fused = rule.with_derivative("fused")
    run, ref = pi.simulate(fused, net, w0, trials), pi.simulate(rule, net, w0, trials)
    assert run.outputs.shape == ref.outputs.shape == (0, 21)
    np.testing.assert_array_equal(run.final_weights["w"], w0["w"])
    loss = lambda r, w: jnp.sum(pi.simulate(r, net, {"w": w}, trials).final_weights["w"] ** 2)  # noqa: E731
    np.testing.assert_allclose(jax.grad(loss, argnums=1)(fused, w0["w"]), jax.grad(loss, argnums=1)(rule, w0["w"]))


def test_the_segment_length_is_fixed_when_the_gradient_is_traced(monkeypatch):
    """The backward takes K from the forward it follows, not from the module setting at call time."""
    from plasticinfer import _fused

    rule, net, w0, trials, y_obs = _case()
    grad = jax.jit(jax.grad(_loss, argnums=(0, 2)), static_argnums=1)
    first = grad(rule.with_derivative("fused"), net, w0, trials, y_obs)
    monkeypatch.setattr(_fused, "SEGMENT_BYTES", 0)  # would give K = 7 instead of 40 to a backward that re-read it
    again = grad(rule.with_derivative("fused"), net, w0, trials, y_obs)
    np.testing.assert_array_equal(again[0].coeffs, first[0].coeffs)

"""Optimisers and families: CMA-ES and gradient descent on known minima, Oja rediscovery, families."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import plasticinfer as pi
from plasticinfer.discovery import (
    AbstractObjective,
    DiscoveryError,
    PC1Objective,
    SearchResult,
    TraceRule,
    cma_search,
    find_families,
    gradient_search,
    oja_comparison,
)
from plasticinfer.discovery._gradient import _prune_mask


class Quadratic(AbstractObjective):
    """loss = Σ s_k·(θ_k − c_k)² over a Taylor rule's coefficients; NaN where θ_0 > ``nan_above``."""

    centre: jax.Array
    weights: jax.Array
    nan_above: float = eqx.field(static=True, default=np.inf)

    def loss(self, rule, episode):
        d = rule.coeffs - self.centre
        value = jnp.sum(self.weights * d * d)
        return jnp.where(rule.coeffs[0] > self.nan_above, jnp.nan, value)

    def metrics(self, rule, episode):
        return {"loss": self.loss(rule, episode), "distance": jnp.sqrt(jnp.sum((rule.coeffs - self.centre) ** 2))}

    def default_rule(self):
        return pi.TaylorRule(["x", "y", "x*y", "w"], jnp.zeros(4))

    def success(self, metrics):
        return bool(metrics["distance"] < 1e-2)


CENTRE = jnp.array([0.7, -1.3, 0.4, 2.0])
WEIGHTS = jnp.array([1.0, 3.0, 0.3, 10.0])


def test_cma_es_finds_the_minimum_of_a_quadratic(key):
    res = cma_search(Quadratic(CENTRE, WEIGHTS), key=key, restarts=3, generations=150, sigma0=0.5, progress=False)
    assert isinstance(res, SearchResult) and res.method == "cma-es"
    assert res.success.all()
    np.testing.assert_allclose(np.asarray(res.best_rule.coeffs), np.asarray(CENTRE), atol=1e-3)
    assert res.settings["evaluations"] > 0 and res.settings["cma_version"]


def test_gradient_search_finds_the_minimum_of_a_quadratic(key):
    import optax

    res = gradient_search(Quadratic(CENTRE, WEIGHTS), key=key, restarts=3, steps=300, optimiser=optax.adam(5e-2), clip_norm=None, progress=False)
    assert res.method == "gradient" and res.loss_history.shape == (3, 300)
    np.testing.assert_allclose(np.asarray(res.rules.coeffs), np.broadcast_to(np.asarray(CENTRE), (3, 4)), atol=5e-3)
    assert res.success.all() and sum(res.settings["skipped_steps"]) == 0


def test_gradient_search_backs_out_of_non_finite_regions(key):
    import optax

    obj = Quadratic(CENTRE, WEIGHTS, nan_above=0.65)  # the minimum (θ₀ = 0.7) lies just inside the NaN region
    res = gradient_search(obj, key=key, restarts=4, steps=300, optimiser=optax.adam(5e-2), clip_norm=None, progress=False)
    c = np.asarray(res.rules.coeffs)
    assert np.all(c[:, 0] <= 0.65) and np.all(c[:, 0] > 0.4)  # ends in the finite region, near its edge
    assert np.all(np.isfinite(res.losses))
    assert min(res.settings["skipped_steps"]) > 0


def test_gradient_search_can_stop_at_the_first_non_finite_step_instead(key):
    """The shared guard's other policy: a restart that hits the NaN region stops there for good (as a fit
    does), so its loss history is NaN from that step on and its rule is the last finite point."""
    import optax

    obj = Quadratic(CENTRE, WEIGHTS, nan_above=0.65)
    kw = dict(key=key, restarts=4, steps=200, optimiser=optax.adam(5e-2), clip_norm=None, progress=False)
    stop = gradient_search(obj, divergence="stop", **kw)
    back = gradient_search(obj, **kw)
    assert stop.settings["divergence"] == "stop" and back.settings["divergence"] == "step_back"
    for h in stop.loss_history:
        first = int(np.argmax(np.isnan(h)))
        assert first > 0 and np.isnan(h[first:]).all()  # stopped for good
    assert all(np.isfinite(h[int(np.argmax(np.isnan(h))):]).any() for h in back.loss_history)  # stepped back, went on
    c = np.asarray(stop.rules.coeffs)
    assert np.all(c[:, 0] <= 0.65) and np.all(np.isfinite(stop.losses))


def test_a_second_gradient_search_compiles_nothing(getkey):
    """The chunk of steps, the episode sampler and the metrics are compiled once per objective type, settings
    and shapes, not once per call (they were closures, re-jitted on every search)."""
    from plasticinfer import _optimise as loop
    from plasticinfer.discovery import _optimise

    compiled = (loop.run_steps, _optimise.sample_episode, _optimise._metrics)
    first = gradient_search(Quadratic(CENTRE, WEIGHTS), key=getkey(), restarts=2, steps=30, l1=0.01, progress=False)
    sizes = [f._cached._cache_size() for f in compiled]
    # another key, another objective instance (same type and shapes), another penalty strength
    again = gradient_search(Quadratic(CENTRE + 0.1, WEIGHTS), key=getkey(), restarts=2, steps=30, l1=0.02, progress=False)
    assert [f._cached._cache_size() for f in compiled] == sizes
    assert not np.allclose(np.asarray(first.rules.coeffs), np.asarray(again.rules.coeffs))
    assert again.settings["l1"] == 0.02
    # a new optimiser, and 25 steps in chunks of 10: the last, 5-step chunk runs the 10-step program
    before = loop.run_steps._cached._cache_size()
    odd = gradient_search(Quadratic(CENTRE, WEIGHTS), key=getkey(), restarts=2, steps=25, refresh_every=10,
                          optimiser=optax.adam(0.05), progress=False)
    assert loop.run_steps._cached._cache_size() == before + 1
    assert odd.loss_history.shape == (2, 25) and np.isfinite(odd.loss_history).all()


def test_a_second_cma_search_compiles_nothing(getkey):
    """CMA-ES's population loss is compiled once per objective type, settings and shapes, not once per search."""
    from plasticinfer.discovery import _cma

    kw = dict(restarts=2, generations=5, popsize=6, progress=False)
    first = cma_search(Quadratic(CENTRE, WEIGHTS), key=getkey(), l1=0.01, **kw)
    size = _cma._population_loss._cached._cache_size()
    again = cma_search(Quadratic(CENTRE + 0.1, WEIGHTS), key=getkey(), l1=0.02, **kw)
    assert _cma._population_loss._cached._cache_size() == size
    assert not np.allclose(np.asarray(first.rules.coeffs), np.asarray(again.rules.coeffs))
    assert again.settings["l1"] == 0.02


def test_fixed_terms_stay_fixed(key):
    rule = pi.TaylorRule(["x", "y", "x*y", "w"], jnp.array([0.0, 0.0, 0.4, 0.0]), fixed=["x*y"])
    res = gradient_search(Quadratic(CENTRE, WEIGHTS), rule, key=key, restarts=2, steps=50, init_scale=0.3, progress=False)
    np.testing.assert_array_equal(np.asarray(res.rules.coeffs)[:, 2], 0.4)
    res_c = cma_search(Quadratic(CENTRE, WEIGHTS), rule, key=key, restarts=2, generations=20, progress=False)
    np.testing.assert_array_equal(np.asarray(res_c.rules.coeffs)[:, 2], 0.4)


def test_prune_mask_is_relative_per_rule():
    phi = {"a": pi.TaylorRule(["x", "y", "w"], jnp.zeros(3)), "b": pi.TaylorRule(["x", "y"], jnp.zeros(2))}
    phi = jax.tree_util.tree_map(lambda a: a, eqx.filter(phi, eqx.is_inexact_array))
    phi["a"] = eqx.tree_at(lambda r: r.coeffs, phi["a"], jnp.array([[1.0, 0.05, -0.5], [0.01, 0.02, 0.0]]))
    phi["b"] = eqx.tree_at(lambda r: r.coeffs, phi["b"], jnp.array([[1e-3, 2e-3], [3.0, 0.1]]))
    mask = jax.tree_util.tree_map(jnp.ones_like, eqx.filter({"a": pi.TaylorRule(["x", "y", "w"]), "b": pi.TaylorRule(["x", "y"])}, eqx.is_inexact_array))
    keep = _prune_mask(phi, mask, 0.1)
    np.testing.assert_array_equal(np.asarray(keep["a"].coeffs), [[1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(np.asarray(keep["b"].coeffs), [[1, 1], [1, 0]])


def _fake_result(coeffs, success):
    stack = TraceRule(*(jnp.asarray(c) for c in np.asarray(coeffs, dtype=float).T))
    n = len(success)
    return SearchResult(stack, np.zeros(n), {"loss": np.zeros(n)}, np.asarray(success), np.zeros((n, 1)), "test", 0.0)


def test_families_group_by_sign_pattern():
    coeffs = [
        [-0.2, 0.0, 1.0, 1.0],  # Vogels-like
        [-0.4, 0.0, 2.1, 1.9],  # same family, twice the rate
        [-0.1, 0.3, 0.0, 0.0],  # postsynaptic-only family
        [-0.2, 0.001, 1.0, 1.0],  # β below threshold: Vogels-like
        [0.5, 0.5, 0.5, 0.5],  # fails the objective
    ]
    fams = find_families(_fake_result(coeffs, [True, True, True, True, False]), reference="alpha")
    assert [f.count for f in fams] == [3, 1]
    assert fams[0].label == "−alpha +gamma +kappa"
    np.testing.assert_array_equal(sorted(fams[0].members), [0, 1, 3])
    assert fams[0].median["alpha"] == pytest.approx(-1.0)
    assert fams[0].median["gamma"] == pytest.approx(5.0)
    assert fams[0].spread["gamma"] > 0
    assert fams[1].label == "−alpha +beta"
    assert "x_post" in fams[0].equation
    everything = find_families(_fake_result(coeffs, [True] * 4 + [False]), include_failures=True)
    assert sum(f.count for f in everything) == 5


@pytest.mark.slow  # 20–33 s on 2 cores: the slow tier (still run by CI)
def test_oja_rediscovered_from_27_terms_at_3_inputs(key):
    """B1 with a full degree-2 Taylor rule over (x, y, w) and an L1 penalty: Oja up to its rate."""
    import optax

    obj = PC1Objective.create(None, 3, n_networks=6)
    steps = 300
    res = gradient_search(
        obj, key=key, restarts=2, steps=steps, l1=3e-4, prune=0.25, init_scale=0.01,
        optimiser=optax.adam(optax.cosine_decay_schedule(3e-2, steps, alpha=0.05)), progress=False,
    )  # fmt: skip
    assert res.success.all()
    for i in range(res.n_restarts):
        c = oja_comparison(res.rule(i))
        assert c["rate"] > 0
        assert abs(c["y2w_error_pct"]) < 10.0, c
        assert c["largest_other"] < 0.3, c
    fams = find_families(res, reference="x*y")
    assert fams[0].label.startswith("+x·y") and "−y²·w" in fams[0].label


@pytest.mark.slow
def test_oja_rediscovered_at_39_inputs(key):
    import optax

    obj = PC1Objective.create(None, 39, n_networks=4)
    steps = 250
    res = gradient_search(
        obj, key=key, restarts=2, steps=steps, l1=3e-4, prune=0.25, init_scale=0.01,
        optimiser=optax.adam(optax.cosine_decay_schedule(3e-2, steps, alpha=0.05)), progress=False,
    )  # fmt: skip
    ok = [abs(oja_comparison(res.rule(i))["y2w_error_pct"]) < 10.0 for i in range(res.n_restarts)]
    assert res.success.any() and any(ok)


def test_search_arguments_are_checked(key):
    obj = Quadratic(CENTRE, WEIGHTS)
    with pytest.raises(DiscoveryError, match="≥ 1"):
        gradient_search(obj, key=key, restarts=0)
    with pytest.raises(DiscoveryError, match="prune"):
        gradient_search(obj, key=key, steps=10, prune=1.5, progress=False)
    with pytest.raises(DiscoveryError, match="at least 2"):
        cma_search(obj, pi.TaylorRule(["x"]), key=key, progress=False)


def test_search_results_save_and_load_without_a_template(tmp_path, key):
    """Self-describing files: a Taylor search and a trace-rule result come back equal, rules rebuilt by class."""
    import optax

    res = gradient_search(Quadratic(CENTRE, WEIGHTS), key=key, restarts=2, steps=20, optimiser=optax.adam(5e-2),
                          clip_norm=None, progress=False)
    back = SearchResult.load(res.save(tmp_path / "search.nc"))
    np.testing.assert_array_equal(back.rules.coeffs, res.rules.coeffs)
    assert back.rules.names == res.rules.names and back.rules.learning_rate == res.rules.learning_rate
    np.testing.assert_array_equal(back.losses, res.losses)
    np.testing.assert_array_equal(back.loss_history, res.loss_history)
    np.testing.assert_array_equal(back.success, res.success)
    np.testing.assert_array_equal(back.converged, res.converged)
    assert back.convergence_messages == res.convergence_messages and back.method == "gradient"
    assert back.settings["restarts"] == 2 and back.equation() == res.equation()
    assert set(back.metrics) == set(res.metrics)

    trace = _fake_result([[-0.2, 0.0, 1.0, 1.0], [-0.1, 0.3, 0.0, 0.5]], [True, False])
    again = SearchResult.load(trace.save(tmp_path / "trace.nc"))
    assert isinstance(again.rules, TraceRule) and again.rules.tau_pre == trace.rules.tau_pre
    np.testing.assert_array_equal(again.rules.kappa, trace.rules.kappa)
    assert again.equation(1) == trace.equation(1)

    import xarray as xr

    other = pi.data.write_netcdf(xr.Dataset({"x": ("t", np.arange(3.0))}), tmp_path / "other.nc")
    with pytest.raises(pi.DataError, match="not a plasticinfer search result"):
        SearchResult.load(other)

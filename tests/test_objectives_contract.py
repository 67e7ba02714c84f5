"""Contract tests over every discovery objective in tests/helpers.py::OBJECTIVES (a new objective is one line there).

What every search relies on: an episode is a function of its key; the loss is a finite scalar and the
``"loss"`` of ``metrics`` (the held-out score of every search); ``success`` is a plain bool; restarts are
vmapped, so a batch of rules must score as each rule alone; and the gradient of differentiable objectives
matches finite differences.
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import OBJECTIVES


def _raw(leaf):
    leaf = jnp.asarray(leaf)
    return np.asarray(jax.random.key_data(leaf) if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf)


def _params(rule):
    params, static = eqx.partition(rule, eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return flat, lambda v: eqx.combine(unravel(v), static)


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_contract(name, getkey):
    case, _ = OBJECTIVES[name]
    obj, rule = case(getkey())
    k = getkey()
    ep, again = obj.sample(k), obj.sample(k)
    for a, b in zip(jax.tree_util.tree_leaves(ep), jax.tree_util.tree_leaves(again), strict=True):
        np.testing.assert_array_equal(_raw(a), _raw(b))
    loss = obj.loss(rule, ep)
    assert jnp.shape(loss) == () and np.isfinite(float(loss))
    metrics = obj.metrics(rule, ep)
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-12)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert type(obj.success({k: float(v) for k, v in metrics.items()})) is bool
    assert np.isfinite(float(obj.loss(obj.default_rule(), ep)))

    # restarts are vmapped: a batch of two rules scores as each alone (plain-loop oracle)
    flat, rebuild = _params(rule)
    batch = jnp.stack([flat, flat * 0.9])
    vmapped = jax.vmap(lambda v: obj.loss(rebuild(v), ep))(batch)
    np.testing.assert_allclose(vmapped, [float(obj.loss(rebuild(v), ep)) for v in batch], rtol=1e-10)


@pytest.mark.parametrize("name", sorted(n for n, (_, eps) in OBJECTIVES.items() if eps is not None))
def test_objective_gradient_matches_finite_differences(name, getkey):
    case, eps = OBJECTIVES[name]
    obj, rule = case(getkey())
    ep = obj.sample(getkey())
    flat, rebuild = _params(rule)
    loss = jax.jit(lambda v: obj.loss(rebuild(v), ep))
    g = np.asarray(jax.jit(jax.grad(loss))(flat))
    fd = np.array([(loss(flat.at[i].add(eps)) - loss(flat.at[i].add(-eps))) / (2 * eps) for i in range(flat.shape[0])])
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-7 * np.max(np.abs(fd)))
    assert np.max(np.abs(fd)) > 0  # the check is not vacuous

"""Shared pieces of function-driven discovery: the objective contract, errors, guards.

An objective is a simulation setup plus a loss on the network *after* learning. It has
two halves, so optimisers can reuse one draw of random inputs for several steps::

    episode = objective.sample(key)        # inputs, initial weights, … (any pytree)
    objective.loss(rule, episode) -> scalar

``rule`` has the structure of ``objective.default_rule()``. Every restart / population
member of one step sees the same episode (common random numbers).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import DiscoveryError
from .._networks import AbstractNetwork
from .._rules import AbstractRule, TaylorRule


class AbstractObjective(eqx.Module):
    """A task a plastic network should acquire: a simulation setup and a loss after learning."""

    def sample(self, key: PRNGKeyArray) -> Any:
        """The random parts of one evaluation (inputs, initial weights, …). Default: the key itself."""
        return key

    @abc.abstractmethod
    def loss(self, rule, episode) -> Float[Array, ""]:
        """Task loss (0 = perfect) of the network after learning with ``rule`` on ``episode``."""

    @abc.abstractmethod
    def metrics(self, rule, episode) -> dict[str, Array]:
        """Interpretable scalars for reports (always including ``"loss"``): angles in degrees, rates in Hz, …"""

    @abc.abstractmethod
    def default_rule(self):
        """The search space: a rule (or dict of rules) whose floating-point leaves are searched."""

    def reference_rule(self):
        """A known solution (e.g. Oja's rule), or ``None``."""
        return None

    def success(self, metrics: Mapping[str, Any]) -> bool:
        """Whether a rule with these metrics meets the objective (selects a family)."""
        return bool(metrics["loss"] < 0.05)

    def parameter_scales(self, rule, key: PRNGKeyArray):
        """Typical size of the change each parameter's unit value makes, or ``None`` (all 1).

        Optimisers search φ = θ·s instead of θ (and put the L1 penalty on φ), so every term
        moves its typical contribution at the same pace: a Taylor term whose monomial is
        100× smaller than another's gets a 100× larger step in θ. Returns a pytree with the
        structure of ``eqx.filter(rule, eqx.is_inexact_array)``.
        """
        return None

    def evaluate(self, rule, key: PRNGKeyArray) -> dict[str, float]:
        """Metrics of one rule on a fresh episode drawn from ``key``, as host floats."""
        out = _metrics(self, rule, self.sample(key))
        return {k: float(v) for k, v in out.items()}


@eqx.filter_jit
def _metrics(objective, rule, episode):
    # module level, so repeated evaluate() calls reuse one compilation per objective/rule structure
    return objective.metrics(rule, episode)


def rule_penalty(rule) -> Array:
    """Sum of the L1 penalties of a rule or a dict of rules."""
    rules = rule.values() if isinstance(rule, Mapping) else [rule]
    return sum((r.penalty() for r in rules if isinstance(r, AbstractRule)), jnp.zeros(()))


def taylor_scales(rule: TaylorRule, x, y, w, r=None, *, batch_axis: int | None = None, floor: float = 1e-3) -> Array:
    """Typical size of every monomial of ``rule`` at a typical state, floored at ``floor`` × the largest.

    ``x`` (pre), ``y`` (post), ``w`` (weight) and ``r`` (reward) are arrays that broadcast
    against each other (e.g. x (batch, 1, pre), y (batch, post, 1), w (post, pre)). With
    ``batch_axis``, the monomial is first averaged over that axis (the batch-mean update),
    so a zero-mean term such as x counts by what it adds to Δw, not by its per-sample size.
    The result is the RMS of what remains. The floor keeps a monomial that vanishes at the
    state (a power of w at w = 0) finite.
    """
    r = jnp.zeros((), jnp.asarray(x).dtype) if r is None else r
    shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(y), jnp.shape(w), jnp.shape(r))

    def size(t):
        m = jnp.broadcast_to(t.evaluate(x, y, w, r), shape)
        if batch_axis is not None:
            m = jnp.mean(m, axis=batch_axis)
        return jnp.sqrt(jnp.mean(m**2))

    out = [size(t) for t in rule.terms]
    s = jnp.stack(out)
    return jax.lax.stop_gradient(jnp.maximum(s, floor * jnp.max(s)))


def relative_to_hebbian(rule: TaylorRule, scales: Array) -> Array:
    """Scales divided by the x·y term's (or the largest, without one): φ then reads in "Hebbian units"."""
    from .._rules import Monomial

    hebb = Monomial(x=1, y=1)
    ref = scales[rule.terms.index(hebb)] if hebb in rule.terms else jnp.max(scales)
    return scales / ref


def scales_for(rule, coeff_scales: Mapping[str, Array] | Array):
    """Wrap per-rule coefficient scales into the float-leaf pytree ``parameter_scales`` returns."""
    params = eqx.filter(rule, eqx.is_inexact_array)
    ones = jax.tree_util.tree_map(jnp.ones_like, params)
    if isinstance(rule, Mapping):
        return {k: eqx.tree_at(lambda r: r.coeffs, ones[k], coeff_scales[k]) if k in coeff_scales else ones[k] for k in rule}
    return eqx.tree_at(lambda r: r.coeffs, ones, coeff_scales)


# --------------------------------------------------------------------------------------
# Divergence guard
# --------------------------------------------------------------------------------------


class GuardedNetwork(AbstractNetwork):
    """Wraps a network: a step whose new weights are non-finite or exceed ``bound`` in size is not taken.

    A diverging rule then ends with large but finite weights, so the loss stays finite and its
    gradient still points away from the divergence (the pre-freeze trajectory carries it).
    In float64 with |w| ≤ 100 and degree ≤ 6 monomials no intermediate overflows, so the
    rejected branch cannot poison the backward pass with ``inf · 0``.
    """

    network: AbstractNetwork
    bound: float = eqx.field(static=True, default=100.0)

    def weight_shapes(self):
        return self.network.weight_shapes()

    def initial_state(self, weights):
        return self.network.initial_state(weights)

    def step(self, rule, weights, state, trial):
        new_w, new_s, out = self.network.step(rule, weights, state, trial)
        leaves = jax.tree_util.tree_leaves(new_w)
        ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a) & (jnp.abs(a) <= self.bound)) for a in leaves]))
        new_w = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new_w, weights)
        return new_w, new_s, out


def as_rule_dict(rule) -> dict[str, Any]:
    """``{"rule": r}`` for a single rule, the dict itself otherwise (for reports)."""
    return dict(rule) if isinstance(rule, Mapping) else {"rule": rule}


__all__ = [
    "AbstractObjective",
    "DiscoveryError",
    "GuardedNetwork",
    "rule_penalty",
]


def check_search(objective, key, *, l1: float, init_scale: float, who: str) -> None:
    """What :func:`gradient_search` and :func:`cma_search` share: an objective, a PRNG key, l1 ≥ 0 and init_scale ≥ 0."""
    from .._fit import check_key, check_l1, check_real

    if not isinstance(objective, AbstractObjective):
        raise DiscoveryError(
            f"{who} needs an objective such as PC1Objective.create(None, 3) as its first argument; got {objective!r}"
        )
    if key is None:
        raise DiscoveryError(f"{who} needs key=jax.random.key(0) (or another seed): restarts start from random draws")
    check_key(key, who, error=DiscoveryError)
    check_l1(l1, error=DiscoveryError)
    check_real(init_scale, f"{who}: init_scale", minimum=0, error=DiscoveryError)

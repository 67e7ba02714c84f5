"""Held-out probes of discovered rules: generalisation to new input statistics, and familiarity detection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._simulate import simulate
from ._common import AbstractObjective, DiscoveryError
from ._homeostasis import HomeostasisObjective
from ._optimise import sample_episode


def roc_auc(positive, negative) -> float:
    """P(a positive score > a negative score) + ½·P(tie): the area under the ROC curve."""
    pos = np.asarray(positive, dtype=float).ravel()
    neg = np.asarray(negative, dtype=float).ravel()
    if pos.size == 0 or neg.size == 0:
        raise DiscoveryError("roc_auc needs at least one positive and one negative score")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def generalisation(objectives: Mapping[str, AbstractObjective], rules, *, key: PRNGKeyArray) -> dict[str, dict[str, np.ndarray]]:
    """Metrics of a stack of rules (leading axis, e.g. ``result.rules``) on other versions of a task.

    ``objectives`` maps a name to a variant (e.g. ``{"ν_I = 20 Hz": obj.with_rates(nu_inh=20)}``
    or ``{"flatter spectrum": obj.with_spectrum(jnp.linspace(1.0, 0.6, obj.n_pre))}``). Every variant is scored on its own
    episode drawn from a fresh split of ``key``; returns name → metric → array (rule,).
    """
    from ._optimise import evaluate

    first = next(iter(objectives.values()), None)
    default = first.default_rule() if first is not None else None
    # one rule (no leading axis) of the objective's own kind: say so, not a shape error from deep in the network
    same_kind = type(default) is type(rules) and (not isinstance(rules, Mapping) or (
        set(rules) == set(default) and all(type(rules[k]) is type(default[k]) for k in rules)))
    if default is not None and same_kind:
        ref = [a for a in jax.tree_util.tree_leaves(default) if eqx.is_array(a)]
        got = [a for a in jax.tree_util.tree_leaves(rules) if eqx.is_array(a)]
        if ref and got and jnp.ndim(got[0]) <= jnp.ndim(ref[0]):
            raise DiscoveryError(
                "generalisation scores a stack of rules with a leading axis (e.g. result.rules); for one rule, "
                "stack it: jax.tree_util.tree_map(lambda a: a[None], rule)"
            )
    keys = jax.random.split(key, len(objectives))
    return {name: evaluate(obj, rules, k) for (name, obj), k in zip(objectives.items(), keys)}


@dataclass
class FamiliarityScore:
    """Result of :func:`familiarity_probe`.

    Attributes:
        auc: per rule, P(novel pattern's score > familiar pattern's score), where a pattern's
            score is how much familiarisation changed the distance of its response from the
            neuron's baseline rate. 0.5: no detection; above 0.5: familiar patterns evoke
            responses closer to baseline than novel ones (novelty = larger deviation).
        delta_familiar, delta_novel: the scores (Hz), (rule, network·pattern).
        auc_after: per rule, the AUC of the *after-familiarisation* responses alone, scored as
            |after − r₀| (distance from the neuron's background rate, which a downstream readout
            can know; no pattern's own pre-familiarisation response is used). This is the
            controlled score; ``auc`` uses each pattern's own "before" response, which no readout has.
        null_p95: per rule, the 95th percentile of ``auc_after`` with the familiar/novel labels
            shuffled across patterns (within each network): chance at this number of patterns.
        speed: per rule, mean |Δw| / mean w over familiarisation (the rate the task leaves free;
            compare rules at matched speed).
    """

    auc: np.ndarray
    delta_familiar: np.ndarray
    delta_novel: np.ndarray
    auc_after: np.ndarray | None = None
    null_p95: np.ndarray | None = None
    speed: np.ndarray | None = None

    def fraction_detecting(self, threshold: float = 0.6) -> float:
        """Fraction of rules whose AUC exceeds ``threshold``."""
        return float(np.mean(self.auc > threshold))

    def fraction_above_chance(self) -> float:
        """Fraction of rules whose after-only AUC exceeds their own shuffled-label 95th percentile."""
        return float(np.mean(self.auc_after > self.null_p95))


def familiarity_probe(
    objective: HomeostasisObjective,
    rules,
    *,
    key: PRNGKeyArray,
    n_patterns: int = 24,
    active_fraction: float = 0.25,
    contrast: float = 1.0,
    repeats: int = 10,
    present_steps: int = 4,
    n_shuffles: int = 200,
) -> FamiliarityScore:
    """Do rules found for homeostasis also tell repeated input patterns from novel ones?

    For each rule (a stack, leading axis, as in ``result.rules``), on every network of one
    episode of ``objective``:

    1. learn to steady state on the task's background inputs (the objective's own run);
    2. draw 2·``n_patterns`` patterns: each makes a random ``active_fraction`` of the
       excitatory and inhibitory inputs fire at ν·(1 + contrast·(1 − f)) and the rest at
       ν·(1 − contrast·f), keeping the mean rate;
    3. record the baseline rate r₀ (background inputs) and the response to every pattern
       with plasticity off ("before");
    4. present the first ``n_patterns`` (familiar) ``repeats`` times in turn, each for
       ``present_steps`` steps, with plasticity on;
    5. record the responses again ("after").

    A pattern's score is |after − r₀| − |before − r₀|: how much closer to (negative) or
    further from baseline its response became. A homeostatic, input-specific rule pulls the
    responses to the patterns it has seen towards its set point, so familiar patterns stop
    standing out while novel ones still do. The detection score is the ROC AUC of these
    scores separating novel from familiar patterns. Scoring the change removes each
    pattern's own drive: a rule that does not change the weights scores exactly 0.5.

    That change score uses each pattern's own "before" response, which no downstream readout
    has, and it grows with the rule's speed (which the homeostasis objective leaves free). The
    controlled figures are ``auc_after`` (after-familiarisation responses only) against
    ``null_p95`` (shuffled familiar/novel labels, ``n_shuffles`` times), read with ``speed``.
    """
    if not isinstance(objective, HomeostasisObjective):
        raise DiscoveryError("familiarity_probe runs on a HomeostasisObjective (rate model)")
    if not 0 < active_fraction < 1:
        raise DiscoveryError(f"active_fraction must be in (0, 1); got {active_fraction}")
    if not 0 <= contrast * active_fraction < 1:
        raise DiscoveryError("contrast·active_fraction must be < 1 so that inactive inputs keep a positive rate")
    net = objective.network
    n_exc, n_inh = net.n_exc, net.n_inh
    k_ep, k_pat = jax.random.split(key)
    episode = sample_episode(objective, k_ep)
    n_net = objective.n_networks
    n_all = 2 * n_patterns
    active = jax.random.uniform(k_pat, (n_net, n_all, n_exc + n_inh)) < active_fraction
    level = jnp.where(active, 1.0 + contrast * (1.0 - active_fraction), 1.0 - contrast * active_fraction)
    exc_p = objective.nu_exc * level[..., :n_exc]  # (net, pattern, n_exc)
    inh_p = objective.nu_inh * level[..., n_exc:]
    order = jnp.tile(jnp.repeat(jnp.arange(n_patterns), present_steps), repeats)

    params, static = eqx.partition(rules, eqx.is_inexact_array)

    def one_rule(params):
        rule = eqx.combine(params, static)
        w_ss, _ = objective.run(rule, episode)  # (net, n_inh)

        base_e = jnp.full((1, n_exc), objective.nu_exc, exc_p.dtype)
        base_i = jnp.full((1, n_inh), objective.nu_inh, inh_p.dtype)

        def per_network(w, e, i):
            r0 = net.rate(w[None], base_e, base_i)[0, 0]
            before = net.rate(w[None], e, i)[:, 0]
            trials = {"exc": e[order][:, None, :], "inh": i[order][:, None, :]}
            w_after = simulate(rule, net, {"inh": w[None]}, trials).final_weights["inh"]
            after = net.rate(w_after, e, i)[:, 0]
            speed = jnp.mean(jnp.abs(w_after[0] - w)) / jnp.maximum(jnp.mean(w), 1e-12)
            return jnp.abs(after - r0) - jnp.abs(before - r0), jnp.abs(after - r0), speed

        return jax.vmap(per_network)(w_ss, exc_p, inh_p)  # (net, pattern), (net, pattern), (net,)

    delta, after_score, speed = (np.asarray(a) for a in eqx.filter_jit(jax.vmap(one_rule))(params))
    fam = delta[:, :, :n_patterns].reshape(delta.shape[0], -1)
    nov = delta[:, :, n_patterns:].reshape(delta.shape[0], -1)
    auc = np.array([roc_auc(n, f) if np.all(np.isfinite(n)) and np.all(np.isfinite(f)) else np.nan for f, n in zip(fam, nov)])
    auc_after, null_p95 = _after_only(after_score, n_patterns, np.random.default_rng(int(jax.random.randint(k_pat, (), 0, 2**31 - 1))), n_shuffles)
    return FamiliarityScore(auc, fam, nov, auc_after, null_p95, speed.mean(axis=1))


def _after_only(score, n_familiar: int, rng: np.random.Generator, n_shuffles: int):
    """After-only AUC per rule (novel > familiar), and the 95th percentile of its shuffled-label null."""
    aucs, p95 = [], []
    for s in score:  # (network, pattern)
        if not np.all(np.isfinite(s)):
            aucs.append(np.nan)
            p95.append(np.nan)
            continue
        aucs.append(roc_auc(s[:, n_familiar:], s[:, :n_familiar]))
        null = []
        for _ in range(n_shuffles):
            perm = np.stack([rng.permutation(s.shape[1]) for _ in range(s.shape[0])])
            sp = np.take_along_axis(s, perm, axis=1)
            null.append(roc_auc(sp[:, n_familiar:], sp[:, :n_familiar]))
        p95.append(np.quantile(null, 0.95))
    return np.array(aucs), np.array(p95)


__all__ = ["roc_auc", "generalisation", "familiarity_probe", "FamiliarityScore"]

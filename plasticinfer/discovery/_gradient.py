"""Gradient descent through the learning trajectory (optax), restarts vmapped, with pruning."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .._optimise import _prepared_optimiser, describe_optimiser, check_divergence, run_steps, start_steps
from .._errors import PlasticInferWarning
from .._errors import warn as _warn
from .._fit import check_clip_norm, check_count
from ._common import AbstractObjective, DiscoveryError, check_search
from ._optimise import SearchResult, _finish, _scales, _space, _total_loss, sample_episode


def _prune_mask(phi_b, mask, threshold):
    """Per restart: 0 where a free |φ| < threshold × max free |φ| of its rule (top-level group), else 1."""

    def groups(tree):
        return list(tree.values()) if isinstance(tree, Mapping) else [tree]

    out = []
    for g_phi, g_mask in zip(groups(phi_b), groups(mask)):
        leaves = jax.tree_util.tree_leaves(g_phi)
        mleaves = jax.tree_util.tree_leaves(g_mask)
        n = leaves[0].shape[0]
        biggest = jnp.max(
            jnp.stack([jnp.max(jnp.abs(l * m).reshape(n, -1), axis=1) for l, m in zip(leaves, mleaves)]), axis=0
        )  # (restart,)
        kept = [
            jnp.where(
                (m > 0) & (jnp.abs(l) < threshold * biggest.reshape((n,) + (1,) * (l.ndim - 1))), 0.0, 1.0
            ).astype(l.dtype)
            for l, m in zip(leaves, mleaves)
        ]
        out.append(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(g_phi), kept))
    if isinstance(phi_b, Mapping):
        return dict(zip(phi_b.keys(), out))
    return out[0]


# --------------------------------------------------------------------------------------
# Gradient descent through the learning trajectory
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _default_optimiser(steps: int) -> optax.GradientTransformation:
    """Adam with a cosine-decayed step size; one object per ``steps``, so compiled chunks are reused."""
    return optax.adam(optax.cosine_decay_schedule(3e-2, steps, alpha=0.05))


def _search_loss(p, episode, _x, *, problem):
    return _total_loss(p, episode, *problem)


def _keep(p, keep):
    return jax.tree_util.tree_map(lambda a, k: a * k, p, keep)


def gradient_search(
    objective: AbstractObjective,
    rule=None,
    *,
    key: PRNGKeyArray,
    restarts: int = 8,
    steps: int = 500,
    optimiser: optax.GradientTransformation | None = None,
    l1: float = 0.0,
    clip_norm: float | None = 1.0,
    init_scale: float = 0.1,
    resample: bool = True,
    refresh_every: int = 10,
    precondition: bool = True,
    prune: float | None = None,
    prune_at: float = 0.6,
    divergence: str = "step_back",
    progress: bool = True,
) -> SearchResult:
    """Minimise ``objective.loss`` by gradient descent through the whole learning trajectory.

    Args:
        objective: the task (e.g. :class:`PC1Objective`).
        rule: template rule or dict of rules (default ``objective.default_rule()``); every
            restart starts at its free parameters plus ``init_scale``·N(0, 1) (in φ units).
        key: PRNG key, split into restart starts, training keys and the held-out key.
        restarts: independent starts, run as one vmapped computation.
        steps: optimiser steps.
        optimiser: an optax optimiser; default Adam with a cosine-decayed step size
            (3e-2 → 1.5e-3), which tolerates the noisy gradients of resampled inputs.
        l1: L1 penalty on the parameters, added to the loss (on φ = θ·s when preconditioned:
            each term is charged for its typical contribution, not its raw coefficient).
        clip_norm: clip each restart's gradient to this global norm (``None``: no clipping).
        resample: draw fresh episodes (inputs, initial weights) during training, so the
            rule cannot overfit one draw; ``False`` trains on one episode (deterministic).
        refresh_every: steps per episode when resampling (drawing inputs can cost more than
            a gradient step; reusing each episode a few steps amortises it). Also the
            number of steps per compiled chunk and progress-bar update.
        precondition: search φ = θ·s with the objective's ``parameter_scales`` s (if it
            has any), so terms of very different sizes move at comparable paces.
        prune: sequential thresholding (as in SINDy): after ``prune_at``·steps, every free
            parameter whose |φ| is below ``prune`` × the largest |φ| of its rule is set to
            zero and kept there, and the remaining steps re-fit the survivors. Gives exact
            zeros where L1 with stochastic gradients leaves small noisy coefficients.
        prune_at: fraction of the steps after which to prune.
        divergence: what a restart does when its loss or gradient turns non-finite (the policy that
            ``fit`` and ``meta_learn`` share, see ``plasticinfer._optimise.guarded_update``; every
            step runs in the loop they share, ``plasticinfer._optimise.run_steps``):
            ``"step_back"`` (default) or ``"stop"``.
        progress: show a progress bar (only on a terminal or in Jupyter; see ``plasticinfer._progress``).

    Where a restart's loss or gradient is non-finite, it does not update but (``"step_back"``) steps
    back halfway towards the last parameters whose loss was finite (a backtracking that ends
    inside the finite region) or (``"stop"``) stops there; these steps are counted in
    ``settings["skipped_steps"]``.
    """
    check_divergence(divergence)
    check_search(objective, key, l1=l1, init_scale=init_scale, who="gradient_search")
    restarts = check_count(restarts, "restarts", error=DiscoveryError)
    steps = check_count(steps, "steps", error=DiscoveryError)
    check_clip_norm(clip_norm, error=DiscoveryError)
    rule = objective.default_rule() if rule is None else rule
    params, static, mask = _space(rule)
    k_init, k_train, k_eval, k_scale = jax.random.split(key, 4)
    scales = _scales(objective, rule, params, k_scale, precondition)
    phi0 = jax.tree_util.tree_map(lambda a, b: a * b, params, scales)
    leaves, treedef = jax.tree_util.tree_flatten(phi0)
    mask_leaves = jax.tree_util.tree_leaves(mask)
    init_keys = jax.random.split(k_init, len(leaves))
    params_b = jax.tree_util.tree_unflatten(
        treedef,
        [
            l + init_scale * m * jax.random.normal(k, (restarts,) + l.shape, l.dtype)
            for l, m, k in zip(leaves, mask_leaves, init_keys)
        ],
    )
    described_as = describe_optimiser(optimiser, None, "Adam 0.03, cosine-decayed to 5 % over the steps (the default)")
    chosen = optimiser if optimiser is not None else _default_optimiser(steps)
    optimiser = _prepared_optimiser(chosen, clip_norm)
    problem = (objective, static, jnp.asarray(float(l1)), scales, mask)  # l1 traced (weakly typed): no re-jit per value
    from tqdm.auto import tqdm

    from .._progress import show_progress

    if refresh_every < 1:
        raise DiscoveryError(f"refresh_every must be ≥ 1; got {refresh_every}")
    if prune is not None and not (0 < prune < 1 and 0 < prune_at < 1):
        raise DiscoveryError(f"prune must be in (0, 1) and prune_at in (0, 1); got prune={prune}, prune_at={prune_at}")
    prune_step = None
    if prune is not None:
        prune_step = int(round(prune_at * steps))
        if not 1 <= prune_step < steps:
            _warn(
                f"not pruned: after {prune_at:g} of {steps} steps is step {prune_step}, at the random start or after the "
                "last step; run more steps to prune (or pass prune=None, on the command line --prune 0, to say so)",
                PlasticInferWarning,
            )
            prune_step = None
    keep = jax.tree_util.tree_map(jnp.ones_like, params_b)
    loss_fn = eqx.Partial(_search_loss, problem=problem)
    t_start = time.perf_counter()
    state = start_steps(params_b, optimiser, batched=True, track_last_ok=True)
    history = []
    episode = sample_episode(objective, k_train)
    with tqdm(total=steps, desc=f"gradient search ({restarts} restarts)", disable=not show_progress(progress), leave=False) as bar:
        while (done := int(state.step)) < steps:
            # chunks end at every refresh and at the pruning step
            n = min(refresh_every - done % refresh_every, steps - done)
            if prune_step is not None and done < prune_step:
                n = min(n, prune_step - done)
            if resample and done > 0 and done % refresh_every == 0:
                episode = sample_episode(objective, jax.random.fold_in(k_train, done))
            if prune_step is not None and done == prune_step:
                keep = _prune_mask(state.params, mask, prune)
                pruned = _keep(state.params, keep)
                state = state._replace(params=pruned, last_ok=pruned)
            state, losses = run_steps(
                loss_fn, state, episode, None, optimiser, divergence, min(refresh_every, steps), jnp.asarray(n),
                project=eqx.Partial(_keep, keep=keep),
            )
            losses = np.asarray(losses)[:n]
            history.append(losses)
            bar.update(n)
            last = losses[-1][np.isfinite(losses[-1])]
            bar.set_postfix(loss=f"{last.min():.4g}" if last.size else "nan")
    wall = time.perf_counter() - t_start
    history = np.concatenate(history, axis=0).T
    # the last parameters whose loss was finite (the final update itself is never evaluated)
    rules = eqx.combine(jax.tree_util.tree_map(lambda f, sc: f / sc, state.last_ok, scales), static)
    settings = dict(
        restarts=restarts,
        steps=steps,
        precondition=precondition,
        l1=l1,
        clip_norm=clip_norm,
        init_scale=init_scale,
        resample=resample,
        refresh_every=refresh_every,
        prune=prune,
        prune_step=prune_step,
        optimiser=described_as,
        divergence=divergence,
        skipped_steps=np.asarray(state.skipped).tolist(),
    )
    nan = "stopped" if divergence == "stop" else "skipped"
    return _finish(objective, rules, k_eval, history, "gradient", wall, settings, nan=nan)

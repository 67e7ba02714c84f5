"""CMA-ES (Hansen's `cma` package): every generation's populations evaluated in one vmapped call."""

from __future__ import annotations

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from .._fit import check_count
from ._common import AbstractObjective, DiscoveryError, check_search
from ._optimise import SearchResult, _finish, _scales, _space, _total_loss, sample_episode


# --------------------------------------------------------------------------------------
# CMA-ES (the `cma` package), population evaluated in one vmapped call per generation
# --------------------------------------------------------------------------------------


@eqx.filter_jit
def _population_loss(xs, episode, flat0, free, phi0, problem):
    """The loss of every candidate (a row of ``xs``: the free parameters, in φ units) on one episode.

    Module level, with the search's problem as arguments (like the gradient search's chunk), so it is
    compiled once per objective type, settings and shapes rather than once per search.
    """
    objective, static, l1, scales, mask = problem
    _, unravel = ravel_pytree(phi0)

    def one(v):
        return _total_loss(unravel(flat0.at[free].set(v.astype(flat0.dtype))), episode, objective, static, l1, scales, mask)

    return jax.vmap(one)(xs)


def cma_search(
    objective: AbstractObjective,
    rule=None,
    *,
    key: PRNGKeyArray,
    restarts: int = 4,
    generations: int = 100,
    popsize: int | None = None,
    sigma0: float = 0.5,
    init_scale: float = 0.5,
    l1: float = 0.0,
    resample: bool = True,
    tolfun: float = 1e-9,
    precondition: bool = True,
    progress: bool = True,
) -> SearchResult:
    """Minimise ``objective.loss`` with CMA-ES (Hansen's ``cma`` package), no gradients needed.

    Every generation, the populations of all ``restarts`` independent strategies are
    evaluated in **one** vmapped, jitted call (with a shared key: common random numbers).
    Non-finite losses are ranked last. Each restart returns the better (on the held-out key)
    of its best-seen point and its final distribution mean (judged on a separate selection episode).

    Args:
        objective, rule, key, l1, resample, precondition, progress: as in :func:`gradient_search`
            (the search runs in φ = θ·s units).
        restarts: independent CMA-ES runs, each from template + ``init_scale``·N(0, 1).
        generations: generations per run (a run that meets its stopping criteria idles).
        popsize: population size (default: CMA-ES's 4 + ⌊3 ln d⌋).
        sigma0: initial step size (search-space units; coefficients are O(1) here).
        tolfun: CMA-ES ``tolfun`` stopping threshold.
    """
    import cma

    check_search(objective, key, l1=l1, init_scale=init_scale, who="cma_search")
    restarts = check_count(restarts, "restarts", error=DiscoveryError)
    generations = check_count(generations, "generations", error=DiscoveryError)
    rule = objective.default_rule() if rule is None else rule
    params, static, mask = _space(rule)
    k_init, k_train, k_eval, k_select, k_scale = jax.random.split(key, 5)
    scales = _scales(objective, rule, params, k_scale, precondition)
    phi0 = jax.tree_util.tree_map(lambda a, b: a * b, params, scales)
    flat0, unravel = ravel_pytree(phi0)
    free = np.flatnonzero(np.asarray(ravel_pytree(mask)[0]) > 0.5)
    dim = len(free)
    if dim < 2:
        raise DiscoveryError("CMA-ES needs at least 2 free parameters; use a 1-D line search instead")
    if popsize is not None:  # CMA-ES weights need at least 2 candidates; 0 used to fall back to the default silently
        popsize = check_count(popsize, "popsize", error=DiscoveryError)
        if popsize < 2:
            raise DiscoveryError(f"popsize must be at least 2 (CMA-ES ranks candidates against each other); got {popsize}")
    popsize = int(popsize or 4 + int(3 * np.log(dim)))
    k_x0, k_seed = jax.random.split(k_init)
    x0 = np.asarray(flat0)[free][None, :] + init_scale * np.asarray(jax.random.normal(k_x0, (restarts, dim)))
    seeds = np.asarray(jax.random.randint(k_seed, (restarts,), 1, 2**31 - 1))
    strategies = [
        cma.CMAEvolutionStrategy(
            x0[r].tolist(), sigma0, {"popsize": popsize, "seed": int(seeds[r]), "verbose": -9, "tolfun": tolfun}
        )
        for r in range(restarts)
    ]
    flat0 = jnp.asarray(flat0)
    free_j = jnp.asarray(free)
    problem = (objective, static, jnp.asarray(float(l1)), scales, mask)  # l1 traced: no re-jit per value

    def batch_loss(xs, episode):
        return _population_loss(xs, episode, flat0, free_j, phi0, problem)

    def sample(k):
        return sample_episode(objective, k)

    episode = sample(k_train)

    from tqdm.auto import tqdm

    from .._progress import show_progress

    t_start = time.perf_counter()
    history = np.full((restarts, generations), np.nan)
    last_x = [np.tile(x0[r], (popsize, 1)) for r in range(restarts)]
    for g in tqdm(range(generations), desc=f"CMA-ES ({restarts}×{popsize})", disable=not show_progress(progress), leave=False):
        active = [not es.stop() for es in strategies]
        if not any(active):
            break
        xs = [np.asarray(es.ask()) if a else last_x[r] for r, (es, a) in enumerate(zip(strategies, active))]
        if resample and g > 0:
            episode = sample(jax.random.fold_in(k_train, g))
        f = np.asarray(batch_loss(jnp.asarray(np.concatenate(xs)), episode)).reshape(restarts, popsize)
        finite = np.isfinite(f)
        worst = np.max(f[finite]) if finite.any() else 1.0
        f = np.where(finite, f, abs(worst) * 10 + 1e6)
        for r, es in enumerate(strategies):
            if active[r]:
                es.tell(list(xs[r]), f[r].tolist())
                last_x[r] = xs[r]
                history[r, g] = f[r].min()
    wall = time.perf_counter() - t_start

    # choose per restart between best-seen and distribution mean on a selection episode (not the evaluation one)
    cands = []
    for es in strategies:
        res = es.result
        best = res.xbest if res.xbest is not None else res.xfavorite
        cands.append([np.asarray(best), np.asarray(res.xfavorite)])
    cand = jnp.asarray(np.asarray(cands).reshape(2 * restarts, dim))
    scores = np.asarray(batch_loss(cand, sample(k_select))).reshape(restarts, 2)
    scores = np.where(np.isfinite(scores), scores, np.inf)
    pick = np.asarray(cand).reshape(restarts, 2, dim)[np.arange(restarts), np.argmin(scores, axis=1)]
    flat_b = jnp.broadcast_to(flat0, (restarts, flat0.shape[0])).at[:, free_j].set(jnp.asarray(pick, flat0.dtype))
    phi_b = jax.vmap(unravel)(flat_b)
    rules = eqx.combine(jax.tree_util.tree_map(lambda f, sc: f / sc, phi_b, scales), static)
    settings = dict(
        restarts=restarts,
        generations=generations,
        popsize=popsize,
        sigma0=sigma0,
        init_scale=init_scale,
        l1=l1,
        resample=resample,
        precondition=precondition,
        evaluations=int(sum(es.countevals for es in strategies)),
        cma_version=cma.__version__,
    )
    # NaN from a generation on: that restart met CMA-ES's own termination criteria (tolfun, tolx, ...)
    return _finish(objective, rules, k_eval, history, "cma-es", wall, settings, nan="finished")

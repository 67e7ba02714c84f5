"""`sample`: the posterior of a PlasticityModel's parameters by NUTS (small models) or SVI (large ones)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from jaxtyping import PRNGKeyArray
from jax.flatten_util import ravel_pytree
from numpyro.infer import Predictive, Trace_ELBO
from numpyro.infer import SVI as _NumPyroSVI
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import unconstrain_fn

from .._errors import ModelError, PosteriorWarning, SamplingError
from .._fit import FitResult, _as_trial_data, _check_data
from ..distributed import unshard
from .._model import PlasticityModel
from .._trial_data import TrialData
from ._numpyro_model import Hierarchical, ModelSpec
from ._priors import Priors

#: ``NUTS(dense_mass=None)`` adapts a dense mass matrix up to this many unconstrained dimensions.
DENSE_MAX_DIMENSION = 20
#: NUTS is the default while the sampled block has at most this many scalars; SVI above.
NUTS_MAX_DIMENSION = 400


@dataclass(frozen=True)
class NUTS:
    """No-U-Turn sampling (NumPyro), the default for small rules.

    Attributes:
        warmup: adaptation steps per chain (discarded).
        samples: draws kept per chain.
        chains: independent chains (R-hat needs ≥ 2).
        target_accept: target acceptance probability; raise it (0.9–0.99) when there are divergences.
        max_tree_depth: at most 2^depth leapfrog steps per draw.
        dense_mass: adapt a dense mass matrix (helps correlated terms; costs O(d²)). ``None`` (default):
            dense up to ``DENSE_MAX_DIMENSION`` unconstrained dimensions (a shared rule), diagonal above
            (hierarchical fits, where dense adaptation needs far more warmup than it saves).
        chain_method: ``"parallel"`` (one chain per JAX device), ``"vectorized"`` (chains vmapped
            on one device) or ``"sequential"``. ``None`` picks ``"parallel"`` when
            ``jax.local_device_count() >= chains`` and ``"vectorized"`` otherwise. On a CPU,
            JAX has one device unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (or
            ``numpyro.set_host_device_count(N)``) runs *before* JAX starts; the ``plasticinfer``
            command line does that, a library cannot do it safely.
        init_jitter: standard deviation of the noise added (in unconstrained space) to the warm
            start of each chain, so chains start apart.

    Sampling runs as one compiled program per chain (warmup and draws in a single ``lax.scan``), so
    there is no progress bar to show.
    """

    warmup: int = 500
    samples: int = 500
    chains: int = 2
    target_accept: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool | None = None
    chain_method: str | None = None
    init_jitter: float = 0.02

    def resolved_chain_method(self) -> str:
        if self.chain_method is not None:
            if self.chain_method not in ("parallel", "vectorized", "sequential"):
                raise ModelError(f"NUTS.chain_method must be 'parallel', 'vectorized' or 'sequential'; got {self.chain_method!r}")
            return self.chain_method
        if self.chains == 1:
            return "sequential"
        return "parallel" if jax.local_device_count() >= self.chains else "vectorized"


@dataclass(frozen=True)
class SVI:
    """Stochastic variational inference (NumPyro), the default for large rules.

    Attributes:
        guide: an autoguide class, e.g. ``numpyro.infer.autoguide.AutoNormal`` (mean-field, the
            default) or ``AutoMultivariateNormal`` (full covariance: keeps posterior correlations
            between terms, O(d²)).
        steps: optimisation steps.
        learning_rate: Adam's initial step size; it decays (cosine) to ``learning_rate · final_fraction``
            so the variational parameters settle instead of jittering around the optimum.
        final_fraction: see ``learning_rate``.
        draws: draws taken from the fitted guide.
        particles: Monte Carlo samples per ELBO gradient.
        clip_norm: gradient clipping (global norm).
    """

    guide: type = AutoNormal
    steps: int = 3000
    learning_rate: float = 0.01
    final_fraction: float = 0.01
    draws: int = 1000
    particles: int = 1
    clip_norm: float = 10.0


def default_method(spec: ModelSpec):
    """NUTS for at most ``NUTS_MAX_DIMENSION`` sampled scalars, SVI (AutoNormal) above."""
    dim = sum(g.size * (spec.n_subjects if g.name in spec.pooled else 1) for g in spec.groups)
    return NUTS() if dim <= NUTS_MAX_DIMENSION else SVI()


# --------------------------------------------------------------------------------------
# NUTS
# --------------------------------------------------------------------------------------

#: Above this many unconstrained dimensions the warm start's mass matrix is the identity (no Hessian).
HESSIAN_MAX_DIMENSION = 600


def _initial_inverse_mass(potential_fn, z0: dict, dense: bool):
    """Inverse Hessian of the potential at the warm start: the posterior's covariance to second order.

    NUTS then starts with a mass matrix fitted to the posterior's scales (and, with ``dense``, its
    correlations) instead of the identity: with coefficients whose posterior sd differ by 100×
    (x·r vs w) the identity forces tiny steps and deep trees for the whole first adaptation window.
    Where the Hessian is not positive definite (a start away from the mode, a flat direction) the
    conditional variances 1/H_ii are used instead (1 where H_ii ≤ 0). Returns the diagonal, or with
    ``dense`` the full matrix.
    """
    flat, unravel = ravel_pytree(z0)
    n = flat.size
    if n > HESSIAN_MAX_DIMENSION:
        return jnp.eye(n, dtype=flat.dtype) if dense else jnp.ones_like(flat)
    potential = lambda f: potential_fn(unravel(f))  # noqa: E731
    try:
        h = jax.hessian(potential)(flat)  # forward over reverse
    except TypeError as err:  # a large layer's Taylor rule uses its VJP, which forward mode cannot enter
        if "forward-mode" not in str(err):
            raise
        h = jax.jacrev(jax.grad(potential))(flat)  # reverse over reverse
    h = jnp.where(jnp.isfinite(h), 0.5 * (h + h.T), 0.0)
    evals, evecs = jnp.linalg.eigh(h)
    positive = evals[0] > 1e-8 * jnp.maximum(evals[-1], 1e-300)
    cov = (evecs / jnp.where(positive, evals, 1.0)) @ evecs.T
    diag_h = jnp.diag(h)
    conditional = jnp.where(diag_h > 0, 1.0 / jnp.where(diag_h > 0, diag_h, 1.0), 1.0)
    var = jnp.clip(jnp.where(positive, jnp.diag(cov), conditional), 1e-10, 1e2)
    if not dense:
        return var
    scale = jnp.sqrt(var / jnp.clip(jnp.diag(cov), 1e-300, None))
    return jnp.where(positive, cov * scale[:, None] * scale[None, :], jnp.diag(var))


class NUTSRunner:
    """NUTS (NumPyro's sampler, through its functional interface) for one model structure.

    Compiled once per runner and reused for every dataset of the same shape (simulation-based
    calibration). Each chain starts at the warm start plus ``init_jitter`` noise in unconstrained
    space, with the mass matrix initialised from the Hessian there (``_initial_inverse_mass``);
    NumPyro's windowed adaptation then refines step size and mass matrix during warmup.
    """

    def __init__(self, spec: ModelSpec, config: NUTS):
        if config.chains < 1 or config.samples < 1 or config.warmup < 0:
            raise ModelError(f"NUTS needs chains ≥ 1, samples ≥ 1, warmup ≥ 0; got {config}")
        self.spec = spec
        self.config = config
        self.chain_method = config.resolved_chain_method()
        self._compiled = None
        self.warmup_stats: dict | None = None

    def _setup(self, data: TrialData, latent: dict, key: PRNGKeyArray):
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

        with jax.numpy_dtype_promotion("standard"):
            _, potential_gen, postprocess_gen, _ = initialize_model(
                key, self.spec.numpyro_model, model_args=(data,), dynamic_args=True, init_strategy=init_to_value(values=latent)
            )
            start = unconstrain_fn(self.spec.numpyro_model, (data,), {}, latent)
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
        config = self.config
        dim = int(ravel_pytree(start)[0].size)
        dense = config.dense_mass if config.dense_mass is not None else dim <= DENSE_MAX_DIMENSION
        self.dense_mass = dense

        def one_chain(data, k):
            """Warmup and sampling of one chain on one dataset."""
            k_jit, k_chain = jax.random.split(k)
            leaves, tree = jax.tree_util.tree_flatten(start)
            noise = jax.random.split(k_jit, len(leaves))
            z0 = jax.tree_util.tree_unflatten(
                tree,
                [v + config.init_jitter * jax.random.normal(kk, jnp.shape(v), jnp.result_type(v)) for v, kk in zip(leaves, noise)],
            )
            inv_mass = _initial_inverse_mass(potential_gen(data), z0, dense)
            state = init_kernel(
                z0,
                config.warmup,
                inverse_mass_matrix=inv_mass,
                target_accept_prob=config.target_accept,
                max_tree_depth=config.max_tree_depth,
                dense_mass=dense,
                model_args=(data,),
                rng_key=k_chain,
            )

            def body(st, _):
                st = sample_kernel(st, model_args=(data,))
                stats = (st.diverging, st.num_steps, st.accept_prob, st.potential_energy, st.energy, st.adapt_state.step_size)
                return st, (st.z, stats)

            _, (zs, stats) = jax.lax.scan(body, state, None, length=config.warmup + config.samples)
            zs = jax.tree_util.tree_map(lambda a: a[config.warmup :], zs)
            return jax.vmap(postprocess_gen(data))(zs), stats  # stats of warmup and sampling

        return one_chain

    def _function(self, data, latent, key):
        """The compiled sampler ``(data, keys) -> (draws, stats)``: chains vmapped, pmapped or looped."""
        if self._compiled is None:
            one_chain = self._setup(data, latent, key)
            if self.chain_method == "parallel":
                fn = jax.pmap(one_chain, in_axes=(None, 0))
            elif self.chain_method == "sequential":
                single = jax.jit(one_chain)

                def fn(d, keys):
                    outs = [single(d, keys[c]) for c in range(keys.shape[0])]
                    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *outs)

            else:
                fn = jax.jit(jax.vmap(one_chain, in_axes=(None, 0)))
            self._compiled = fn
        return self._compiled

    def run(self, data: TrialData, latent: dict, key: PRNGKeyArray, chains: Sequence[int] | None = None):
        """Sample one dataset; returns (draws by site with (chain, draw) axes, sample stats, seconds).

        ``chains`` selects which of the ``config.chains`` chains to run (default: all). Chain ``c``
        always uses the same key, so running a subset (one process's share of a distributed run)
        gives exactly the draws those chains have in a full run with the same chain method.
        """
        k_setup, k_run = jax.random.split(key)
        chain_keys = jax.random.split(k_run, self.config.chains)
        if chains is not None:
            chain_keys = chain_keys[np.asarray(chains, dtype=np.int64)]
        t0 = time.perf_counter()
        with jax.numpy_dtype_promotion("standard"):  # NumPyro's internals mix int and float under x64
            fn = self._function(data, latent, k_setup)
            draws, stats = fn(data, chain_keys)
            jax.block_until_ready(draws)
        seconds = time.perf_counter() - t0
        w = self.config.warmup
        self.warmup_stats = self._stats(tuple(np.asarray(a)[:, :w] for a in stats))
        return {k: np.asarray(v) for k, v in draws.items()}, self._stats(tuple(np.asarray(a)[:, w:] for a in stats)), seconds

    def _stats(self, stats) -> dict:
        diverging, n_steps, accept, potential, energy, step_size = (np.asarray(s) for s in stats)
        return {
            "diverging": diverging.astype(bool),
            "n_steps": n_steps,
            "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(np.int64) + 1,
            "reached_max_treedepth": n_steps >= 2**self.config.max_tree_depth - 1,
            "acceptance_rate": accept,
            "lp": -potential,
            "energy": energy,
            "step_size": step_size,
        }


# --------------------------------------------------------------------------------------
# SVI
# --------------------------------------------------------------------------------------


def _run_svi(spec: ModelSpec, config: SVI, data: TrialData, latent: dict, key: PRNGKeyArray):
    k_fit, k_draw, k_det = jax.random.split(key, 3)
    guide = config.guide(spec.numpyro_model, init_loc_fn=init_to_value(values=latent))
    optimiser = numpyro.optim.optax_to_numpyro(
        optax.chain(
            optax.clip_by_global_norm(config.clip_norm),
            optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=config.final_fraction)),
        )
    )
    svi = _NumPyroSVI(spec.numpyro_model, guide, optimiser, Trace_ELBO(num_particles=config.particles))
    t0 = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        result = svi.run(k_fit, config.steps, data, progress_bar=False)
        latent_draws = Predictive(guide, params=result.params, num_samples=config.draws)(k_draw, data)
        det_names = [n for n in _deterministic_sites(spec) if n not in latent_draws]
        if det_names:
            det = Predictive(spec.numpyro_model, posterior_samples=latent_draws, return_sites=det_names)(k_det, None)
            latent_draws = {**latent_draws, **det}
        jax.block_until_ready(latent_draws)
    seconds = time.perf_counter() - t0
    draws = {k: np.asarray(v)[None] for k, v in latent_draws.items()}  # one "chain"
    losses = np.asarray(result.losses)
    if not np.isfinite(losses[-1]):
        raise SamplingError(
            "SVI's loss became non-finite; lower SVI(learning_rate=...), tighten the priors, or start from a MAP fit (init=...)"
        )
    return draws, {}, seconds, losses


def _deterministic_sites(spec: ModelSpec) -> list[str]:
    with jax.numpy_dtype_promotion("standard"):
        tr = numpyro.handlers.trace(numpyro.handlers.seed(spec.numpyro_model, jax.random.key(0))).get_trace(None)
    return [name for name, site in tr.items() if site["type"] == "deterministic"]


# --------------------------------------------------------------------------------------
# Pointwise log-likelihood of every draw
# --------------------------------------------------------------------------------------


def pointwise_draws(spec: ModelSpec, draws: dict, data: TrialData, batch_size: int = 64) -> np.ndarray:
    """Log-likelihood of every (chain, draw, trajectory, trial), by the model's own function."""
    names = [g.name for g in spec.groups]
    lead = np.asarray(draws[names[0]]).shape[:2]
    flat = {n: jnp.asarray(np.asarray(draws[n]).reshape((-1,) + np.asarray(draws[n]).shape[2:])) for n in names}
    f = jax.jit(lambda v: jax.lax.map(lambda one: spec.pointwise(one, data), v, batch_size=batch_size))
    with jax.numpy_dtype_promotion("standard"):
        out = np.asarray(f(flat))
    return out.reshape(lead + out.shape[1:])


# --------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------


def sample(
    model: PlasticityModel,
    data: TrialData,
    *,
    key: PRNGKeyArray,
    priors: Priors | None = None,
    method: NUTS | SVI | None = None,
    hierarchical: Hierarchical | None = None,
    init: PlasticityModel | FitResult | None = None,
    warn: bool = True,
):
    """Sample the posterior of a model's parameters given data.

    The likelihood is ``model.log_likelihood(data)`` — the same simulation ``fit`` uses — with
    the priors of ``priors`` on the rule's free coefficients, the observation and network
    parameters and (optionally) the initial weights. Parameters not sampled stay at ``model``'s
    values; a rule's ``fixed`` terms stay fixed.

    Args:
        model: the model; its values are the warm start unless ``init`` is given. Pass the
            result of ``fit`` (``fit(...).model``) to start at the MAP estimate — then the
            initial weights it fitted are used as they are unless ``priors.initial_weights`` is set.
        data: the data (its mask selects the observations that enter the likelihood), or a
            validated dataset from the loaders (converted by ``TrialData.from_dataset``).
        key: PRNG key.
        priors: the priors (default: ``Priors()`` — Laplace(1) on coefficients, initial weights held).
        method: ``NUTS(...)`` or ``SVI(...)``; default NUTS up to ``NUTS_MAX_DIMENSION`` sampled
            scalars, else SVI with a mean-field normal guide.
        hierarchical: ``Hierarchical(...)`` for per-subject parameters drawn from a population.
        init: where to start: a model, a ``fit`` result, or a ``fit_independent`` result (whose
            per-subject fits initialise a hierarchical posterior's subjects, mean and spread).
        warn: emit :class:`PosteriorWarning` when R-hat > 1.01, divergences or low ESS occur.

    Returns:
        A :class:`Posterior` (``.idata`` is an ArviZ InferenceData).
    """
    spec, method, data, latent = prepare(model, data, priors=priors, method=method, hierarchical=hierarchical, init=init)
    k_run, _ = jax.random.split(key)
    svi_loss = None
    if isinstance(method, NUTS):
        draws, stats, seconds = NUTSRunner(spec, method).run(data, latent, k_run)
    else:
        draws, stats, seconds, svi_loss = _run_svi(spec, method, data, latent, k_run)
    return finish(spec, method, data, draws, stats, seconds, svi_loss=svi_loss, warn=warn)


def prepare(model, data, *, priors=None, method=None, hierarchical=None, init=None):
    """Check the inputs of :func:`sample` and build what a sampler needs: ``(spec, method, data, latent)``.

    Arrays are first gathered onto this process's default device (:func:`plasticinfer.distributed.unshard`):
    a model fitted with its restarts sharded across devices carries arrays laid out on that fit's
    mesh, which the sampler's own device layout (``pmap`` over chains) cannot mix with.
    """
    data = _as_trial_data(data, "data")
    model, data, init = unshard((model, data, init))
    _check_data(model, data, "data")
    if data.n_trajectories != model.n_trajectories:
        raise ModelError(
            f"data has {data.n_trajectories} trajectories but the model has initial weights for {model.n_trajectories}; "
            f"build the model with n_trajectories={data.n_trajectories}"
        )
    spec = ModelSpec(model, priors if priors is not None else Priors(), hierarchical)
    method = default_method(spec) if method is None else method
    if not isinstance(method, (NUTS, SVI)):
        raise ModelError(f"method must be NUTS(...) or SVI(...); got {method!r}")
    return spec, method, data, spec.latent_init(init)


def finish(spec, method, data, draws, stats, seconds, *, svi_loss=None, warn=True):
    """Turn a sampler's draws into a :class:`Posterior` (checks, pointwise log-likelihood, warnings)."""
    from ._posterior import Posterior

    if not all(np.isfinite(np.asarray(draws[g.name])).all() for g in spec.groups):
        raise SamplingError(
            "posterior draws contain non-finite values; tighten the priors, start from a MAP fit (init=...), "
            "or drop terms that make the rule unstable (w^2)"
        )
    ll = pointwise_draws(spec, draws, data)
    post = Posterior.build(spec, method, data, draws, stats, ll, seconds, svi_loss=svi_loss)
    if warn:
        for msg in post.diagnostics():
            warnings.warn(msg, PosteriorWarning, stacklevel=3)
    return post


__all__ = ["NUTS", "SVI", "sample", "NUTSRunner", "pointwise_draws", "default_method", "NUTS_MAX_DIMENSION"]

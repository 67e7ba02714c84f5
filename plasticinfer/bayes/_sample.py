"""`sample`: the posterior of a PlasticityModel's parameters by NUTS (small models) or SVI (large ones)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from jaxtyping import PRNGKeyArray
from numpyro.infer import SVI as _NumPyroSVI
from numpyro.infer import Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_value

from .._checkpoint import check_checkpoint_options
from .._errors import ModelError, PosteriorWarning, SamplingError
from .._errors import warn as _warn
from .._fit import FitResult, _as_trial_data, _check_data, check_count, check_key, check_model, check_real
from .._model import PlasticityModel, one_float_dtype
from .._trial_data import TrialData
from ..distributed import unshard
from ._numpyro_model import Hierarchical, ModelSpec
from ._nuts import NUTS, NUTSRunner, _initial_inverse_mass  # noqa: F401 - _initial_inverse_mass: tests import it from here
from ._priors import Priors

#: NUTS is the default while the sampled block has at most this many scalars; SVI above.
NUTS_MAX_DIMENSION = 400

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
        particles: Monte Carlo samples per ELBO gradient (vectorised). The default, 4, is what makes the
            spread right: with one particle the gradient noise left the fitted scale 14–22 % too wide on a
            one-coefficient problem whose exact posterior sd is known (docs/bayes.md, "SVI"); 2 particles
            gave −2 … +4 %, 4 gave −4 … +2 %. It costs about 2× the time of one particle on a 12-subject
            hierarchical choice model (up to 4× where the simulation alone fills the CPU cores).
        clip_norm: gradient clipping (global norm).
    """

    guide: type = AutoNormal
    steps: int = 3000
    learning_rate: float = 0.01
    final_fraction: float = 0.01
    draws: int = 1000
    particles: int = 4
    clip_norm: float = 10.0

    def __post_init__(self):
        if not callable(self.guide) or isinstance(self.guide, str):
            raise ModelError(
                f"SVI.guide must be an autoguide class such as numpyro.infer.autoguide.AutoNormal; got {self.guide!r}"
            )
        for name in ("steps", "draws", "particles"):
            object.__setattr__(self, name, check_count(getattr(self, name), f"SVI.{name}"))
        check_real(self.learning_rate, "SVI.learning_rate", minimum=0, open_low=True)
        check_real(self.clip_norm, "SVI.clip_norm", minimum=0, open_low=True, allow_inf=True)
        check_real(self.final_fraction, "SVI.final_fraction", minimum=0, maximum=1)


def default_method(spec: ModelSpec):
    """NUTS for at most ``NUTS_MAX_DIMENSION`` sampled scalars, SVI (AutoNormal) above."""
    dim = sum(g.size * (spec.n_subjects if g.name in spec.pooled else 1) for g in spec.groups)
    return NUTS() if dim <= NUTS_MAX_DIMENSION else SVI()


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
        # no bar: NumPyro's progress bar runs the steps one jitted call at a time, not as one scan,
        # which is slower and need not round the same way
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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = True,
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
        checkpoint: (NUTS) a file to which every chain's sampler state (position, step size and
            mass-matrix adaptation, RNG key) and the draws so far are written, atomically, every
            ``checkpoint_every`` iterations of warmup and sampling, so an interrupted run (Ctrl-C,
            a job's time limit, a crash) loses at most that many iterations.
        checkpoint_every: iterations per chain between checkpoints.
        resume: continue from ``checkpoint`` if it exists. A checkpoint of a different model,
            data, priors, starting point, key or ``NUTS`` settings is refused. The draws equal
            those of an uninterrupted run.
        progress: (NUTS) a progress bar over the iterations (warmup and draws, all chains at once),
            drawn only on a terminal or in Jupyter (as every ``progress=`` of the package). The draws
            do not depend on it. SVI runs as one compiled loop, without a bar.

    Returns:
        A :class:`Posterior` (``.idata`` is an ArviZ InferenceData).

    Raises:
        KeyboardInterrupt: on Ctrl-C, after an :class:`InterruptedWarning` that says where the
            state was saved (with ``checkpoint``): a half-sampled posterior is not returned.
    """
    check_key(key, "sample")
    if key is None:
        raise ModelError("sample needs key=, a JAX PRNG key such as jax.random.key(0)")
    spec, method, data, latent = prepare(model, data, priors=priors, method=method, hierarchical=hierarchical, init=init)
    _check_sampler_checkpoint(method, checkpoint, checkpoint_every, resume)
    k_run, _ = jax.random.split(key)
    draws, stats, seconds, svi_loss = run_sampler(spec, method, data, latent, k_run, checkpoint, checkpoint_every, resume, progress)
    return finish(spec, method, data, draws, stats, seconds, svi_loss=svi_loss, warn=warn)


def run_sampler(
    spec, method, data, latent, key, checkpoint=None, checkpoint_every: int = 50, resume: bool = False, progress: bool = False
):  # fmt: skip
    """Run ``method`` (all NUTS chains, or SVI): ``(draws, stats, seconds, svi_loss or None)``."""
    if isinstance(method, NUTS):
        run = NUTSRunner(spec, method).run(
            data, latent, key, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress
        )
        return (*run, None)
    return _run_svi(spec, method, data, latent, key)


def _check_sampler_checkpoint(method, checkpoint, checkpoint_every: int, resume: bool) -> None:
    check_checkpoint_options(checkpoint, checkpoint_every, resume)
    if checkpoint is not None and not isinstance(method, NUTS):
        raise ModelError(f"checkpoint= works with NUTS(...) only; {type(method).__name__} runs in one piece (pass checkpoint=None)")


def prepare(model, data, *, priors=None, method=None, hierarchical=None, init=None):
    """Check the inputs of :func:`sample` and build what a sampler needs: ``(spec, method, data, latent)``.

    Arrays are first gathered onto this process's default device (:func:`plasticinfer.distributed.unshard`):
    a model fitted with its restarts sharded across devices carries arrays laid out on that fit's
    mesh, which the sampler's own device layout (``pmap`` over chains) cannot mix with.
    """
    check_model(model, "sample")
    if priors is not None and not isinstance(priors, Priors):
        raise ModelError(
            f"priors must be pi.bayes.Priors(...), e.g. Priors(coefficients=Laplace(1.0)); got {type(priors).__name__}"
        )
    if hierarchical is not None and not isinstance(hierarchical, Hierarchical):
        raise ModelError(
            f"hierarchical must be pi.bayes.Hierarchical(...) (e.g. Hierarchical() pools the rule across subjects) or None; "
            f"got {hierarchical!r}"
        )
    if init is not None and not isinstance(init, (PlasticityModel, FitResult)):
        raise ModelError(f"init must be a PlasticityModel or the result of fit/fit_independent (init=fit(...)); got {init!r}")
    data = _as_trial_data(data, "data")
    model, data, init = unshard((model, data, init))
    # one float dtype for the template, the starting point and the data (a float32 fit loaded in a float64 session)
    start = init.model if isinstance(init, FitResult) else init
    model, start = one_float_dtype((model, start), like=data)
    if isinstance(init, FitResult):
        init = dataclasses.replace(init, model=start)
    else:
        init = start
    _check_data(model, data, "data")
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
            _warn(msg, PosteriorWarning)
    return post


__all__ = ["NUTS", "NUTS_MAX_DIMENSION", "SVI", "NUTSRunner", "default_method", "pointwise_draws", "sample"]

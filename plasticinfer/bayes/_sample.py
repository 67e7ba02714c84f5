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
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray
from numpyro.infer import SVI as _NumPyroSVI
from numpyro.infer import Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal
from numpyro.infer.initialization import init_to_value

from .._checkpoint import check_checkpoint_options
from .._errors import ModelError, PosteriorWarning, SamplingError
from .._errors import warn as _warn
from .._fit import FitResult, _as_trial_data, _check_data, check_count, check_key, check_model, check_real
from .._model import PlasticityModel, one_float_dtype
from .._trial_data import TrialData
from ..distributed import unshard
from ._numpyro_model import Hierarchical, ModelSpec
from ._nuts import NUTS, NUTSRunner, _initial_inverse_mass, conditional_sds, flat_hessian, unconstrained_potential  # noqa: F401 - _initial_inverse_mass: tests import it from here
from ._posterior import CHECK_MIN_Z, COUPLING_TOLERANCE, LOCATION_TOLERANCE, SPREAD_TOLERANCE
from ._priors import Priors

#: The guides whose start comes from the Hessian and whose fit is checked against its optimum (exactly these
#: classes: a subclass may parameterise its Gaussian otherwise).
GAUSSIAN_GUIDES = (AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal)

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
        particles: Monte Carlo samples per ELBO gradient (vectorised). With one particle the gradient noise
            left the fitted scale 14–22 % too wide on a one-coefficient problem whose exact posterior sd is
            known (docs/bayes.md, "SVI"); 4 particles gave −4 … +2 %. The bias comes from the clip (below):
            without it one particle gave −4 … +4 % on both problems of docs/bayes.md. 4 costs about 2× the
            time of one on a 12-subject hierarchical choice model (up to 4× where the simulation alone
            fills the CPU cores).
        clip_norm: clip each gradient to this global norm. The clip keeps a hierarchical fit converging
            (12 flies × 5 terms: without it, from AutoNormal's 0.1, SVI had not reached its optimum after
            3000 steps by its own check, and AutoMultivariateNormal from its own 0.1 ended 2.3× wider than
            NUTS; from the Hessian start its check flags it as unconverged) but biases the spreads of narrow posteriors: the gradient of a mean is about ε/σ (σ the
            posterior sd, ε the draw's noise), so nearly every gradient is clipped, by a factor that
            shrinks as the noise grows, and the scales settle where the clipped gradient averages zero —
            1.06–1.13× the exact sd of 0.0026 over three keys (1.09–1.19× on another machine: rounding moves
            it), 2.3–2.6× with one particle, against 0.97–1.01× with ``clip_norm=float("inf")``. For a narrow posterior without a hierarchy, pass ``clip_norm=inf``.

    The Gaussian guides start from the Hessian of the log posterior at the start (up to
    ``SVI_HESSIAN_MAX_DIMENSION`` unconstrained scalars; their 0.1 above): AutoNormal and AutoDiagonalNormal at
    the conditional sds ``1/sqrt(H_ii)``, AutoMultivariateNormal at ``H⁻¹``, no sd above 0.1. Their result is
    checked against their own optimum by potential gradients at 400 draws (``Posterior.svi_check``; a warning
    when a spread is more than 1.2× off or a mean more than 0.5 sd). Other guides keep their own start and a
    check of the loss's tail only.
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
    k_fit, k_start, k_check = jax.random.split(k_fit, 3)
    guide = config.guide(spec.numpyro_model, init_loc_fn=init_to_value(values=latent))
    optimiser = numpyro.optim.optax_to_numpyro(
        optax.chain(
            optax.clip_by_global_norm(config.clip_norm) if np.isfinite(config.clip_norm) else optax.identity(),
            optax.adam(optax.cosine_decay_schedule(config.learning_rate, config.steps, alpha=config.final_fraction)),
        )
    )
    svi = _NumPyroSVI(spec.numpyro_model, guide, optimiser, Trace_ELBO(num_particles=config.particles))
    t0 = time.perf_counter()
    with jax.numpy_dtype_promotion("standard"):
        start, described = _initial_spreads(spec, guide, data, latent, k_start) or (None, None)
        # no bar: NumPyro's progress bar runs the steps one jitted call at a time, not as one scan,
        # which is slower and need not round the same way
        result = svi.run(k_fit, config.steps, data, progress_bar=False, init_params=start)
        losses = np.asarray(result.losses)
        if not np.isfinite(losses[-1]):  # before drawing from a guide whose parameters are not finite
            raise SamplingError(
                "SVI's loss became non-finite; lower SVI(learning_rate=...), tighten the priors, or start from a MAP fit (init=...)"
            )
        latent_draws = Predictive(guide, params=result.params, num_samples=config.draws)(k_draw, data)
        det_names = [n for n in _deterministic_sites(spec) if n not in latent_draws]
        if det_names:
            det = Predictive(spec.numpyro_model, posterior_samples=latent_draws, return_sites=det_names)(k_det, None)
            latent_draws = {**latent_draws, **det}
        jax.block_until_ready(latent_draws)
    seconds = time.perf_counter() - t0
    draws = {k: np.asarray(v)[None] for k, v in latent_draws.items()}  # one "chain"
    with jax.numpy_dtype_promotion("standard"):
        check = _optimum_check(spec, guide, result.params, data, latent, k_check, config.particles)
    if check is not None:
        check["guide"] = type(guide).__name__
        check["initial_spread"] = described or f"{type(guide).__name__}'s init_scale ({guide._init_scale:g})"
    return draws, {}, seconds, {"loss": losses, "check": check}


def _initial_spreads(spec: ModelSpec, guide, data: TrialData, latent: dict, key: PRNGKeyArray) -> tuple[dict, str] | None:
    """A Gaussian guide's starting spreads (and their description) from the Hessian ``H`` of the log posterior at the start: the
    conditional sds ``1/sqrt(H_ii)`` for AutoNormal and AutoDiagonalNormal, the Cholesky factor of ``H⁻¹``
    for AutoMultivariateNormal (of the conditional sds where ``H`` is not positive definite). No spread
    starts wider than the guide's own ``init_scale`` (0.1 by default; a full one is scaled down by rows and
    columns, its correlations kept).

    These guides start every scale at 0.1 and Adam moves a log-scale by at most about the learning rate per
    step; a posterior sd of 0.0026 (one coefficient, 200 precise trials) was still 1.3× too wide after the
    default 3000 steps and 5× after 800. Started at ``1/sqrt(H_ii)`` — exactly the best mean-field spread
    for a Gaussian posterior, as ``H⁻¹`` is the best full covariance — the guide only refines it. Never wider
    than ``init_scale``: where the data say little at the start, ``H`` comes from the prior alone (a
    hierarchical spread τ at z = 0: its log-scale started at 3.5, and the first draws overflowed the
    simulation). ``None`` (the guide's own start) for other guides, above ``SVI_HESSIAN_MAX_DIMENSION``
    unconstrained scalars, or when the guide was given another ``init_scale``.
    """
    if type(guide) not in GAUSSIAN_GUIDES:
        return None
    init_scale = float(guide._init_scale)
    if init_scale != 0.1:  # the user chose the guide's start
        return None
    potential_gen, z0 = unconstrained_potential(spec, data, latent, key, second_order=True)
    potential_fn = potential_gen(data)
    if type(guide) is AutoNormal:  # one scale per site, by name
        flat, unpack = ravel_pytree(z0)
    else:  # one flat latent, in the guide's own order (its model trace's, not z0's sorted one): set the guide up
        numpyro.handlers.seed(guide, rng_seed=key)(data)
        flat = jnp.concatenate([jnp.ravel(z0[site]) for site in guide._init_locs])
        unpack = guide._unpack_latent
    h = flat_hessian(lambda f: potential_fn(unpack(f)), flat)
    if h is None:
        return None
    sd = conditional_sds(h)
    sd = jnp.where(jnp.isnan(sd), init_scale, jnp.clip(sd, 1e-8, init_scale))
    diagonal = "Hessian diagonal at the start"
    if type(guide) is AutoNormal:
        return {f"{site}_{guide.prefix}_scale": v for site, v in unpack(sd).items()}, diagonal
    if type(guide) is AutoDiagonalNormal:
        return {f"{guide.prefix}_scale": sd}, diagonal
    name = f"{guide.prefix}_scale_tril"
    h = (h + h.T) / 2
    cov = jnp.linalg.inv(h)
    marginal = jnp.sqrt(jnp.diagonal(cov))
    cov = cov * jnp.outer(*(2 * [jnp.minimum(1.0, init_scale / marginal)]))  # rows and columns scaled: sds ≤ init_scale
    tril = jnp.linalg.cholesky(cov)
    positive = bool(jnp.all(jnp.isfinite(tril)) & jnp.all(jnp.linalg.eigvalsh(h) > 0))
    if not positive:
        return {name: jnp.diag(sd)}, diagonal + " (the Hessian was not positive definite, or its inverse not finite)"
    return {name: tril}, "inverse Hessian at the start" + (" (scaled down to sds ≤ init_scale)" if bool(jnp.any(marginal > init_scale)) else "")


#: Draws from the fitted guide (in batches of ``SVI.particles``) whose potential gradients make the optimum check.
CHECK_PARTICLES = 400


def _guide_affine(guide, params: dict):
    """``(loc, scale, unpack)`` of a Gaussian guide over the flat unconstrained latent (``z = loc + scale ε``,
    ``scale`` a vector for a diagonal guide, the lower Cholesky factor for a full one; ``unpack`` maps a flat
    vector to the sites), or None for other guides (their optimum is not ``ΣHΣ = Σ``, or a subclass may
    parameterise them otherwise)."""
    if type(guide) not in GAUSSIAN_GUIDES:
        return None
    if type(guide) is AutoNormal:
        suffix = f"_{guide.prefix}_loc"
        sites = [name[: -len(suffix)] for name in params if name.endswith(suffix)]
        loc, unpack = ravel_pytree({site: params[f"{site}{suffix}"] for site in sites})
        scale = ravel_pytree({site: params[f"{site}_{guide.prefix}_scale"] for site in sites})[0]
        return loc, scale, unpack
    second = "scale" if type(guide) is AutoDiagonalNormal else "scale_tril"
    return params[f"{guide.prefix}_loc"], params[f"{guide.prefix}_{second}"], guide._unpack_latent


def gaussian_guide_check(potential, loc, scale, key: PRNGKeyArray, particles: int = CHECK_PARTICLES, batch: int = 4):
    """How far a Gaussian guide ``N(loc, Σ)`` (``Σ = diag(scale²)`` or ``scale scaleᵀ``) is from its own optimum,
    from ``particles`` gradients of ``potential`` (the negative log posterior over flat ``z``) at its draws.

    The ELBO's optimum over Gaussians (full or diagonal) has ``E[∇U] = 0`` and, by Stein's identity
    ``E[∇U (z − loc)ᵀ] = E[H] Σ``, ``(Σ E[H] Σ)_ii = Σ_ii`` — for the diagonal family too (where
    ``σ_i² H_ii = 1``). So per scalar ``a_i = (Σ∇U)_i (z − loc)_i / Σ_ii`` averages to ``(ΣHΣ)_ii / Σ_ii``,
    which is ``k²`` for a guide ``k`` times too wide (``(σ_i/σ*_i)²`` for a diagonal guide: the ELBO's
    gradient ``1 + ∂L/∂log σ_i``), and ``b_i = (Σ∇U)_i / sqrt(Σ_ii)`` averages to the offset of the mean
    in units of the spread (the Newton step ``Σ*E[∇U]`` at the fitted spread for a full guide; for a diagonal
    one the step of that scalar alone, which under-reads an offset along a strongly correlated direction).

    Those are n conditions; a full guide's optimum has n(n+1)/2: in its whitened coordinates ``ε``
    (``z = loc + Lε``) the curvature ``W = E[(Lᵀ∇U) εᵀ] = Lᵀ E[H] L`` is the identity there. A full guide stuck
    at the mean-field solution reads ratio 1 for every scalar while its marginals are too narrow; its ``W`` has
    the posterior's partial correlations off the diagonal. So a full guide also returns ``"coupling"`` (the
    symmetric part of ``W`` off its diagonal, 0 at the optimum; its pairs are labelled by the scalars whose
    Cholesky coordinates they are) and ``"coupling_z"``.

    Returns ``{"ratio", "ratio_z", "offset", "offset_z"}`` (arrays over the flat scalars: fitted spread / optimum,
    its distance from 1 in standard errors; the mean's offset in optimal spreads, in standard errors) and
    ``"finite"`` (how many draws gave a finite gradient: the others are left out). Fewer than 2 finite: no arrays.
    """
    loc = jnp.asarray(loc)
    full = jnp.ndim(scale) == 2
    var = jnp.sum(scale**2, axis=1) if full else scale**2
    grad = jax.grad(potential)

    def one(k):
        eps = jax.random.normal(k, loc.shape, loc.dtype)
        dz = scale @ eps if full else scale * eps
        g = grad(loc + dz)
        u = scale.T @ g if full else scale * g  # the gradient in whitened coordinates
        sg = scale @ u if full else var * g
        a, b = sg * dz / var, sg / jnp.sqrt(var)
        return a, b, u, eps, jnp.isfinite(a).all() & jnp.isfinite(b).all() & jnp.isfinite(u).all()

    keys = jax.random.split(key, particles)
    a, b, u, eps, ok = jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=min(batch, particles)))(keys)
    ok = np.asarray(ok)
    finite = int(ok.sum())
    if finite < 2:
        return {"finite": finite}
    a, b = np.asarray(a, dtype=np.float64)[ok], np.asarray(b, dtype=np.float64)[ok]
    m_a, se_a = a.mean(0), a.std(0, ddof=1) / np.sqrt(finite)
    m_b, se_b = b.mean(0), b.std(0, ddof=1) / np.sqrt(finite)
    ratio = np.sqrt(np.clip(m_a, 1e-4, None))  # 0.01: the Gaussian reading has broken down (mean a ≤ 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        found = {"finite": finite, "ratio": ratio, "ratio_z": np.abs(m_a - 1) / se_a, "offset": m_b / ratio,
                 "offset_z": np.abs(m_b) / se_b}  # fmt: skip
    if full:
        u, eps = np.asarray(u, dtype=np.float64)[ok], np.asarray(eps, dtype=np.float64)[ok]
        w = u.T @ eps / finite
        c = (w + w.T) / 2  # per draw (u_i ε_j + u_j ε_i)/2; its second moment from the two products below
        second = ((u**2).T @ eps**2 + (eps**2).T @ u**2 + 2 * (u * eps).T @ (u * eps)) / (4 * finite)
        se = np.sqrt(np.clip(second - c**2, 0, None) * finite / (finite - 1) / finite)
        np.fill_diagonal(c, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            found |= {"coupling": c, "coupling_z": np.where(se > 0, np.abs(c) / se, 0.0)}
    return found


def _optimum_check(spec: ModelSpec, guide, params: dict, data: TrialData, latent: dict, key: PRNGKeyArray, particles: int) -> dict | None:
    """How far a fitted Gaussian guide (AutoNormal, AutoDiagonalNormal, AutoMultivariateNormal) is from its own
    optimum (:func:`gaussian_guide_check`, ``CHECK_PARTICLES`` draws), or None for other guides.

    Unlike the loss's tail, this does not depend on the step-size schedule (a decayed step size flattens the loss
    whether or not the guide has converged). On one coefficient with a known posterior sd of 0.0026 it read 16.6×,
    4.48× and 1.31× for AutoNormal spreads that were 16.4×, 4.44× and 1.30× too wide. Returns a JSON-able record of the scalars
    beyond ``SPREAD_TOLERANCE`` / ``LOCATION_TOLERANCE`` (by at least ``CHECK_MIN_Z`` standard errors), a full
    guide's pairs coupled beyond ``COUPLING_TOLERANCE``, and the draws whose gradient was not finite.
    """
    affine = _guide_affine(guide, params)
    if affine is None:
        return None
    loc, scale, unpack = affine
    k_potential, k_check = jax.random.split(key)
    potential_fn = unconstrained_potential(spec, data, latent, k_potential, second_order=False)[0](data)
    found = gaussian_guide_check(lambda z: potential_fn(unpack(z)), loc, scale, k_check, CHECK_PARTICLES, particles)
    record = {"particles": CHECK_PARTICLES, "nonfinite_particles": CHECK_PARTICLES - found["finite"]}
    if "ratio" not in found:
        return {**record, "scalars": 0, "n_spread": 0, "n_wide": 0, "spread": [], "n_location": 0, "location": [],
                "n_pairs": 0, "pairs": []}  # fmt: skip
    # which site and index each flat scalar is
    where = unpack(jnp.arange(loc.size, dtype=loc.dtype))
    labels = [""] * int(loc.size)
    for site, flat_index in where.items():
        flat_index = np.rint(np.asarray(flat_index)).astype(int)
        for idx in np.ndindex(flat_index.shape):
            labels[flat_index[idx]] = _scalar_label(spec, site, tuple(int(i) for i in idx))
    ratio, offset = found["ratio"], found["offset"]
    spread = [[labels[i], float(ratio[i]), float(found["ratio_z"][i])]
              for i in np.flatnonzero((np.maximum(ratio, 1 / ratio) > SPREAD_TOLERANCE) & (found["ratio_z"] > CHECK_MIN_Z))]  # fmt: skip
    location = [[labels[i], float(offset[i]), float(found["offset_z"][i])]
                for i in np.flatnonzero((np.abs(offset) > LOCATION_TOLERANCE) & (found["offset_z"] > CHECK_MIN_Z))]  # fmt: skip
    pairs = []
    if "coupling" in found:
        c, z = found["coupling"], found["coupling_z"]
        pairs = [[labels[i], labels[j], float(c[i, j]), float(z[i, j])]
                 for i, j in zip(*np.nonzero(np.triu((np.abs(c) > COUPLING_TOLERANCE) & (z > CHECK_MIN_Z), 1)))]  # fmt: skip
    spread.sort(key=lambda r: -max(r[1], 1 / r[1]))
    location.sort(key=lambda r: -abs(r[1]))
    pairs.sort(key=lambda r: -abs(r[2]))
    return {**record, "scalars": int(loc.size), "n_spread": len(spread), "n_wide": sum(r[1] > 1 for r in spread),
            "spread": spread[:10], "n_location": len(location), "location": location[:10], "n_pairs": len(pairs),
            "pairs": pairs[:10]}  # fmt: skip


def _scalar_label(spec: ModelSpec, site: str, idx: tuple) -> str:
    """``theta[x*y]`` for a coefficient (its term's name), ``site[i, j]`` otherwise."""
    if not idx:
        return site
    dims, coords = spec.dims().get(site) or [], spec.coords()
    parts = [str(coords[dims[k]][i]) if k < len(dims) and dims[k] in coords else str(i) for k, i in enumerate(idx)]
    return f"{site}[{', '.join(parts)}]"


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
    draws, stats, seconds, svi = run_sampler(spec, method, data, latent, k_run, checkpoint, checkpoint_every, resume, progress)
    return finish(spec, method, data, draws, stats, seconds, svi=svi, warn=warn)


def run_sampler(
    spec, method, data, latent, key, checkpoint=None, checkpoint_every: int = 50, resume: bool = False, progress: bool = False
):  # fmt: skip
    """Run ``method`` (all NUTS chains, or SVI): ``(draws, stats, seconds, svi)``; ``svi`` is None for NUTS, else
    ``{"loss": the loss per step, "check": the optimum check of a Gaussian guide (``GAUSSIAN_GUIDES``) or None}``."""
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


def finish(spec, method, data, draws, stats, seconds, *, svi=None, warn=True):
    """Turn a sampler's draws into a :class:`Posterior` (checks, pointwise log-likelihood, warnings)."""
    from ._posterior import Posterior

    if not all(np.isfinite(np.asarray(draws[g.name])).all() for g in spec.groups):
        raise SamplingError(
            "posterior draws contain non-finite values; tighten the priors, start from a MAP fit (init=...), "
            "or drop terms that make the rule unstable (w^2)"
        )
    ll = pointwise_draws(spec, draws, data)
    post = Posterior.build(spec, method, data, draws, stats, ll, seconds, svi=svi)
    if warn:
        for msg in post.diagnostics():
            _warn(msg, PosteriorWarning)
    return post


__all__ = ["NUTS", "NUTS_MAX_DIMENSION", "SVI", "NUTSRunner", "default_method", "pointwise_draws", "sample"]

"""Priors over a model's parameters: Normal, Laplace (Bayesian L1), regularised horseshoe, half-normal scales.

A prior knows how to place its NumPyro sample sites for a named block of parameters and how
to set its latent sites so that the block takes a given value (the warm start from a MAP fit).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array

from .._errors import PriorError

Scalar = float | Mapping[str, float]


def _resolve(value: Scalar, labels: Sequence[str] | None, what: str, default: float) -> np.ndarray | float:
    """A float, or a per-term mapping turned into an array in ``labels`` order (missing terms get ``default``)."""
    if not isinstance(value, Mapping):
        return float(value)
    if labels is None:
        raise PriorError(f"{what} given per term ({dict(value)}) for parameters that have no term names; use one number")
    unknown = set(value) - {"default"} - set(labels)
    if unknown:
        raise PriorError(f"{what} names terms {sorted(unknown)} that are not sampled; sampled terms are {list(labels)}")
    fallback = float(value.get("default", default))
    return np.asarray([float(value.get(name, fallback)) for name in labels])


def _event(d: dist.Distribution, shape: tuple[int, ...]) -> dist.Distribution:
    return d.expand(shape).to_event(len(shape)) if shape else d


class AbstractPrior(abc.ABC):
    """A prior over a block of real parameters of a given shape."""

    @abc.abstractmethod
    def sample(self, name: str, shape: tuple[int, ...], labels: Sequence[str] | None = None) -> Array:
        """Inside a NumPyro model: place the prior's sites under ``name`` and return the block's value."""

    @abc.abstractmethod
    def latent_values(self, name: str, value: Array, labels: Sequence[str] | None = None) -> dict[str, Array]:
        """Values of this prior's latent sites that make the block equal ``value`` (for warm starts)."""

    @abc.abstractmethod
    def draw(self, rng: np.random.Generator, shape: tuple[int, ...], labels: Sequence[str] | None = None) -> np.ndarray:
        """Independent prior draws of the block (numpy, for prior-vs-posterior comparisons)."""

    def variance(self, shape: tuple[int, ...], labels: Sequence[str] | None = None) -> np.ndarray:
        """Prior variance of each entry (Monte Carlo where there is no closed form)."""
        draws = self.draw(np.random.default_rng(0), (4000,) + tuple(shape), labels)
        return np.var(draws, axis=0)


def _positive_scale(prior, labels):
    """``prior.scale`` resolved per label; a scale that is not a positive finite number is refused."""
    scale = _resolve(prior.scale, labels, "scale", 1.0)
    if np.any(~np.isfinite(np.asarray(scale, float))) or np.any(np.asarray(scale) <= 0):
        raise PriorError(f"{type(prior).__name__} prior scale must be positive; got {prior.scale}")
    return scale


class _LocScale(AbstractPrior):
    """A prior with a location and a positive scale, each a number or a per-term mapping."""

    scale: Scalar = 1.0
    loc: Scalar = 0.0

    def _params(self, labels):
        loc = _resolve(self.loc, labels, "loc", 0.0)
        return loc, _positive_scale(self, labels)

    def _distribution(self, loc, scale):
        raise NotImplementedError

    def sample(self, name, shape, labels=None):
        loc, scale = self._params(labels)
        return numpyro.sample(name, _event(self._distribution(jnp.asarray(loc), jnp.asarray(scale)), shape))

    def latent_values(self, name, value, labels=None):
        return {name: jnp.asarray(value)}


@dataclass(frozen=True)
class Normal(_LocScale):
    """θ ~ Normal(loc, scale). ``loc``/``scale`` may be per-term mappings (``{"w": 0.05, "default": 1.0}``)."""

    scale: Scalar = 1.0
    loc: Scalar = 0.0

    def _distribution(self, loc, scale):
        return dist.Normal(loc, scale)

    def draw(self, rng, shape, labels=None):
        loc, scale = self._params(labels)
        return loc + scale * rng.standard_normal(shape)

    def variance(self, shape, labels=None):
        return np.broadcast_to(np.asarray(self._params(labels)[1]) ** 2, shape)


@dataclass(frozen=True)
class Laplace(_LocScale):
    """θ ~ Laplace(loc, scale): the Bayesian counterpart of an L1 penalty.

    The MAP estimate under this prior minimises −log-lik + Σ|θ|/scale, i.e. ``fit(..., l1=1/(scale·n_obs))``
    (``fit`` divides the log-likelihood by the number of observations).
    """

    scale: Scalar = 1.0
    loc: Scalar = 0.0

    def _distribution(self, loc, scale):
        return dist.Laplace(loc, scale)

    def draw(self, rng, shape, labels=None):
        loc, scale = self._params(labels)
        return loc + scale * rng.laplace(size=shape)

    def variance(self, shape, labels=None):
        return np.broadcast_to(2.0 * np.asarray(self._params(labels)[1]) ** 2, shape)


@dataclass(frozen=True)
class HalfNormal(AbstractPrior):
    """τ ~ HalfNormal(scale), for positive scales (e.g. the population spread of a hierarchical fit)."""

    scale: Scalar = 1.0

    def sample(self, name, shape, labels=None):
        return numpyro.sample(name, _event(dist.HalfNormal(jnp.asarray(_positive_scale(self, labels))), shape))

    def latent_values(self, name, value, labels=None):
        return {name: jnp.maximum(jnp.asarray(value), 1e-6)}

    def draw(self, rng, shape, labels=None):
        return np.abs(_positive_scale(self, labels) * rng.standard_normal(shape))


@dataclass(frozen=True)
class RegularisedHorseshoe(AbstractPrior):
    """Regularised ("Finnish") horseshoe for sparse Taylor terms (Piironen & Vehtari 2017).

    θ_j = z_j · τ · λ̃_j with z_j ~ N(0, 1), λ_j ~ C⁺(0, 1), τ ~ C⁺(0, global_scale),
    c² ~ Inv-Gamma(ν/2, ν·s²/2) and λ̃_j² = c²λ_j² / (c² + τ²λ_j²): most terms are shrunk hard
    towards 0 while large ones escape, but no further than the slab of scale s = ``slab_scale``.
    A good ``global_scale`` is p₀/(D − p₀)/√n for p₀ expected non-zero terms out of D over n
    observations (times the noise scale for Gaussian data). Latent sites are ``{name}_z``,
    ``{name}_lambda``, ``{name}_tau``, ``{name}_c2``; the block itself is a deterministic site.
    """

    global_scale: float = 0.1
    slab_scale: float = 1.0
    slab_df: float = 4.0

    def __post_init__(self):
        if min(self.global_scale, self.slab_scale, self.slab_df) <= 0:
            raise PriorError(f"RegularisedHorseshoe parameters must be positive; got {self}")

    def _theta(self, z, lam, tau, c2):
        lam_t = jnp.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2))
        return z * tau * lam_t

    def sample(self, name, shape, labels=None):
        z = numpyro.sample(f"{name}_z", _event(dist.Normal(0.0, 1.0), shape))
        lam = numpyro.sample(f"{name}_lambda", _event(dist.HalfCauchy(1.0), shape))
        tau = numpyro.sample(f"{name}_tau", dist.HalfCauchy(self.global_scale))
        half = 0.5 * self.slab_df
        c2 = numpyro.sample(f"{name}_c2", dist.InverseGamma(half, half * self.slab_scale**2))
        return numpyro.deterministic(name, self._theta(z, lam, tau, c2))

    def latent_values(self, name, value, labels=None):
        value = jnp.asarray(value)
        tau = jnp.asarray(self.global_scale, value.dtype)
        c2 = jnp.asarray(self.slab_scale**2, value.dtype)
        # choose λ so that τ·λ̃ ≈ |θ| (then z ≈ ±1); τ·λ̃ < c, so cap the target below the slab
        target = jnp.clip(jnp.abs(value), 0.5 * self.global_scale, 0.9 * self.slab_scale)
        lam_t = target / tau
        lam = jnp.sqrt(lam_t**2 * c2 / (c2 - tau**2 * lam_t**2))
        z = value / (tau * jnp.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2)))
        return {f"{name}_z": z, f"{name}_lambda": lam, f"{name}_tau": tau, f"{name}_c2": c2}

    def draw(self, rng, shape, labels=None):
        n = shape[0] if shape else 1
        inner = shape[1:] if shape else ()
        z = rng.standard_normal(shape)
        lam = np.abs(rng.standard_cauchy(shape))
        tau = np.abs(self.global_scale * rng.standard_cauchy((n,) + (1,) * len(inner)))
        half = 0.5 * self.slab_df
        c2 = (half * self.slab_scale**2) / rng.gamma(half, 1.0, (n,) + (1,) * len(inner))
        return z * tau * np.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2))


@dataclass(frozen=True)
class Priors:
    """Which parameters are sampled, and their priors.

    Attributes:
        coefficients: prior of every free Taylor coefficient (terms listed in a rule's ``fixed``
            are held at their values). Per-term scales: ``Laplace({"x*r": 1.0, "w": 0.1})``.
            Non-Taylor rules (MLPs) get this prior on every parameter (it must be per-block).
        initial_weights: prior of every initial weight; ``None`` holds the initial weights at the
            model's values (e.g. fitted by ``fit`` and passed in as the starting model).
        observation: prior of the observation model's free parameters, on their unconstrained
            scale (log σ, log β, bias); ``None`` holds them at the model's values.
        network: prior of the network's free parameters (e.g. ``expectation_logit``); ``None`` holds them.
        population_scale: prior of the population spread τ in hierarchical fits.
    """

    coefficients: AbstractPrior = field(default_factory=lambda: Laplace(1.0))
    initial_weights: AbstractPrior | None = None
    observation: AbstractPrior | None = field(default_factory=lambda: Normal(3.0))
    network: AbstractPrior | None = field(default_factory=lambda: Normal(3.0))
    population_scale: AbstractPrior = field(default_factory=lambda: HalfNormal(0.5))

    def __post_init__(self):
        for name in ("coefficients", "population_scale"):
            if not isinstance(getattr(self, name), AbstractPrior):
                raise PriorError(f"Priors.{name} must be a prior such as Laplace(1.0); got {getattr(self, name)!r}")
        for name in ("initial_weights", "observation", "network"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, AbstractPrior):
                raise PriorError(f"Priors.{name} must be a prior or None; got {value!r}")


def laplace_scale_for_l1(l1: float, n_observations: int) -> float:
    """The Laplace scale whose MAP equals ``fit(..., l1=l1)`` on ``n_observations`` observations."""
    if l1 <= 0 or n_observations <= 0:
        raise PriorError("l1 and n_observations must be positive")
    return 1.0 / (l1 * n_observations)


__all__ = [
    "AbstractPrior",
    "Normal",
    "Laplace",
    "HalfNormal",
    "RegularisedHorseshoe",
    "Priors",
    "laplace_scale_for_l1",
]

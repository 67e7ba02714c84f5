"""Subjects as draws from a population: a rule whose free parameters vary between animals.

A shared fit gives every animal the same rule; a per-subject fit cannot say anything about an animal
it never saw. :class:`PopulationModel` sits between them: each subject's rule parameters are a draw
θ_s ~ N(μ, diag σ²) around the rule's own values μ, and a subject's data are scored by their
*marginal* likelihood

    p(y_s | μ, σ) = ∫ p(y_s | θ) N(θ; μ, σ²) dθ  ≈  (1/M) Σ_k p(y_s | μ + σ ⊙ ε_k),

a Monte Carlo average over M fixed standard-normal draws ε_k (the same draws at every step, so the
objective is smooth and L-BFGS can fit μ and log σ like any other parameters). Fitting maximises the
training animals' marginal likelihood (maximum marginal likelihood, "empirical Bayes"); an unseen
animal is predicted from the fitted population by the same integral. With σ → 0 it is the shared fit.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError
from ._model import PlasticityModel
from ._trial_data import TrialData


class PopulationModel(PlasticityModel):
    """A :class:`PlasticityModel` whose rule parameters vary between subjects as N(μ, diag σ²).

    ``rule`` holds the population mean μ; every free floating-point parameter of the rule varies,
    with its own standard deviation σ = exp(``log_scale``) (in the rule's own units: logits for
    rates, raw values for Taylor coefficients). The observation model and the network are shared.

    :meth:`log_likelihood` returns, per subject, the Monte Carlo marginal log-likelihood of the
    subject's whole sequence (``n_draws`` draws from ``key``, fixed) **in the first trial's column and
    zeros elsewhere**: a marginal likelihood does not factor over trials, but the sum over trials —
    what :func:`~plasticinfer.fit` and :func:`~plasticinfer.compare.compare` use — is the right one.
    The estimate is biased low by a term that shrinks as 1/``n_draws`` (Jensen); training and
    held-out scores share it.

    Attributes:
        log_scale: log σ, one entry per free rule parameter (flattened in the rule's leaf order).
        key: the PRNG key of the fixed draws.
        n_draws: number of draws M.
    """

    log_scale: Float[Array, " parameters"]
    key: PRNGKeyArray
    n_draws: int = eqx.field(static=True)

    @classmethod
    def from_model(
        cls, model: PlasticityModel, *, scale: float = 0.3, n_draws: int = 64, key: PRNGKeyArray | None = None
    ) -> "PopulationModel":
        """The population version of ``model``: its rule is the mean, every parameter starts with σ = ``scale``."""
        if isinstance(model, PopulationModel):
            return model
        if not scale > 0:
            raise ModelError(f"PopulationModel: scale (the starting σ) must be > 0; got {scale}")
        if n_draws < 2:
            raise ModelError(f"PopulationModel: n_draws must be ≥ 2; got {n_draws}")
        flat = _flat_rule(model.rule)[0]
        if flat.size == 0:
            raise ModelError("PopulationModel: the rule has no free parameters to vary between subjects")
        key = jax.random.key(0) if key is None else key
        log_scale = jnp.full(flat.shape, jnp.log(scale), flat.dtype)
        return cls(model.rule, model.network, model.observation, model.initial_weights, log_scale, key, int(n_draws))

    def with_finite_draws(self, data: TrialData, *, max_halvings: int = 20) -> "PopulationModel":
        """This model with σ halved until every draw's log-likelihood of ``data`` is finite.

        A wide starting σ can put draws where a rule's values blow up (a positive coefficient on
        an option's own value feeds back on itself); a fit cannot start from a non-finite loss. The
        mean is kept; σ moves toward the shared model, which must itself be finite.
        """
        shared = PlasticityModel(self.rule, self.network, self.observation, self.initial_weights)
        with jax.numpy_dtype_promotion("standard"):
            if not bool(jnp.isfinite(jnp.sum(shared.log_likelihood(data)))):
                raise ModelError("PopulationModel: the population mean's own likelihood is not finite on these data; start from another rule")
            model = self
            for _ in range(max_halvings + 1):
                draws = eqx.filter_vmap(lambda r: eqx.tree_at(lambda m: m.rule, shared, r).log_likelihood(data).sum())(model.subject_rules())
                if bool(jnp.all(jnp.isfinite(draws))):
                    return model
                model = eqx.tree_at(lambda m: m.log_scale, model, model.log_scale - jnp.log(2.0))
        raise ModelError(f"PopulationModel: some draws stay non-finite with σ scaled by 2^-{max_halvings}; start with a smaller scale")

    @property
    def scale(self) -> Array:
        """σ, one entry per free rule parameter."""
        return jnp.exp(self.log_scale)

    def subject_rules(self):
        """The rules of the ``n_draws`` fixed draws (a stacked rule, leading axis ``draw``): μ + σ·ε_k."""
        flat, unravel, static = _flat_rule(self.rule)
        if self.log_scale.shape != flat.shape:
            raise ModelError(f"PopulationModel: log_scale has shape {self.log_scale.shape}; the rule has {flat.size} free parameters")
        eps = jax.random.normal(self.key, (self.n_draws, flat.size), flat.dtype)
        return eqx.combine(jax.vmap(unravel)(flat + jnp.exp(self.log_scale) * eps), static)

    def log_likelihood(self, data: TrialData, *, checkpoint: bool | int = True) -> Float[Array, "trajectory trial"]:
        """Per subject, the marginal log-likelihood of its sequence (first column; zeros elsewhere; see the class)."""
        shared = PlasticityModel(self.rule, self.network, self.observation, self.initial_weights)

        def one(rule):
            return eqx.tree_at(lambda m: m.rule, shared, rule).log_likelihood(data, checkpoint=checkpoint).sum(-1)

        ll = eqx.filter_vmap(one)(self.subject_rules())  # (draw, subject)
        marginal = jax.nn.logsumexp(ll, axis=0) - jnp.log(float(self.n_draws))
        return jnp.zeros(data.observations.shape[:2], marginal.dtype).at[:, 0].set(marginal)


def _flat_rule(rule):
    params, static = eqx.partition(rule, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    return flat, unravel, static


__all__ = ["PopulationModel"]

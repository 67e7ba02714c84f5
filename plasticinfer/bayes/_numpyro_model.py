"""The NumPyro model: priors on a PlasticityModel's parameter groups, likelihood from ``model.log_likelihood``.

The likelihood is the *same* function ``fit`` maximises: sampled values are placed into the
model's leaves and :meth:`PlasticityModel.log_likelihood` (masked, pointwise, over the shared
``simulate``) is added with ``numpyro.factor``. In a hierarchical fit every subject has its own
copy of the model (as in ``fit_independent``) and the per-subject likelihood is vmapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array

from .._fit import FitResult
from .._model import PlasticityModel
from .._trial_data import TrialData
from .._errors import ModelError, PriorError
from ._groups import INITIAL_WEIGHTS, NETWORK, OBSERVATION, RULE, ParameterGroup, parameter_groups
from ._priors import AbstractPrior, Priors


@dataclass(frozen=True)
class Hierarchical:
    """Per-subject parameters drawn from a population distribution (non-centred).

    For each pooled block, θ_s = μ + τ ⊙ z_s with z_s ~ N(0, 1), μ ~ the block's prior and
    τ ~ ``Priors.population_scale``. The posterior then answers both "what do subjects do in
    general" (``{name}_mu``, ``{name}_tau``) and "how does subject s differ" (``{name}`` with a
    ``subject`` axis).

    Attributes:
        rule: pool the rule's coefficients (one rule per subject).
        observation: pool the observation parameters (e.g. a bias per subject).
        network: pool the network parameters.
        subject_index: the subject of each trajectory (default: every trajectory is a subject).
    """

    rule: bool = True
    observation: bool = True
    network: bool = False
    subject_index: Sequence[int] | None = None

    def pools(self, part: str) -> bool:
        return {RULE: self.rule, OBSERVATION: self.observation, NETWORK: self.network}.get(part, False)


LOG_LIKELIHOOD_FLOOR = 1e8


def _compress(ll: Array) -> Array:
    """The log-likelihood, unchanged above −10⁸; below, −10⁸·(1 + log(−ll/10⁸)) (continuous and smooth).

    Far from the data a learning rule can make the weights grow like (1 + θ)^trials and the
    log-likelihood reach −10²⁰⁰: its gradient then overflows the leapfrog integrator's momentum and
    a chain can get stuck there for good. Compressed, those regions stay ≥ 10⁸ nats worse than any
    plausible one (so NUTS never goes there), but gradients stay finite. A non-finite value
    (overflowed weights) becomes −∞, which NumPyro treats as a divergence.
    """
    t = LOG_LIKELIHOOD_FLOOR
    safe = jnp.minimum(ll, -t)
    compressed = jnp.where(ll < -t, -t * (1.0 + jnp.log(-safe / t)), ll)
    return jnp.where(jnp.isnan(ll), -jnp.inf, compressed)


class ModelSpec:
    """Priors + groups + likelihood for one model structure; builds the NumPyro model function."""

    def __init__(
        self, model: PlasticityModel, priors: Priors, hierarchical: Hierarchical | None = None, *, checkpoint: bool | int = False
    ):
        self.template = model
        self.checkpoint = checkpoint
        self.priors = priors
        self.hierarchical = hierarchical
        self.groups: tuple[ParameterGroup, ...] = parameter_groups(
            model,
            initial_weights=priors.initial_weights is not None,
            observation=priors.observation is not None,
            network=priors.network is not None,
        )
        if not self.groups:
            raise PriorError("nothing to sample: every parameter is held fixed (check Priors and the rule's fixed terms)")
        n_traj = model.n_trajectories
        if hierarchical is not None:
            idx = np.arange(n_traj) if hierarchical.subject_index is None else np.asarray(hierarchical.subject_index, int)
            if idx.shape != (n_traj,) or idx.min() < 0:
                raise PriorError(f"Hierarchical.subject_index must give a subject ≥ 0 for each of {n_traj} trajectories")
            self.subject_index = idx
            self.n_subjects = int(idx.max()) + 1
            if set(np.unique(idx)) != set(range(self.n_subjects)):
                raise PriorError("Hierarchical.subject_index must use every subject number 0 … n_subjects−1")
            if self.n_subjects < 2:
                raise PriorError("a hierarchical fit needs at least two subjects")
        else:
            self.subject_index = np.arange(n_traj)
            self.n_subjects = n_traj
        self.pooled = frozenset(g.name for g in self.groups if hierarchical is not None and hierarchical.pools(g.part))
        # validate per-term prior parameters now, not at trace time
        for g in self.groups:
            self.prior_for(g).draw(np.random.default_rng(0), g.shape, g.labels)
        if self.pooled:
            self.priors.population_scale.draw(np.random.default_rng(0), (1,))

    # ---- priors ------------------------------------------------------------------------

    def prior_fingerprint(self) -> str:
        """A digest of what the priors and the hierarchy mean for this model: draws of every group's prior with a
        fixed seed (and of the population spread), the pooled groups and each trajectory's subject. Equal for
        equivalent settings however they are written (per-term dicts in any order, 1 or 1.0), different otherwise."""
        import hashlib

        h = hashlib.sha256()
        for group in self.groups:
            draw = self.prior_for(group).draw(np.random.default_rng(0), group.shape, group.labels)
            h.update(group.name.encode() + np.ascontiguousarray(draw, float).tobytes())
        if self.pooled:
            h.update(np.ascontiguousarray(self.priors.population_scale.draw(np.random.default_rng(1), (8,)), float).tobytes())
        h.update(repr(sorted(self.pooled)).encode() + np.asarray(self.subject_index, np.int64).tobytes())
        return h.hexdigest()[:16]

    def prior_for(self, group: ParameterGroup) -> AbstractPrior:
        prior = {
            RULE: self.priors.coefficients,
            INITIAL_WEIGHTS: self.priors.initial_weights,
            OBSERVATION: self.priors.observation,
            NETWORK: self.priors.network,
        }[group.part]
        assert prior is not None
        return prior

    def sample_values(self) -> dict[str, Array]:
        """Place every prior site; return the value of every group (pooled groups: per subject)."""
        values = {}
        for g in self.groups:
            prior = self.prior_for(g)
            if g.name in self.pooled:
                mu = prior.sample(f"{g.name}_mu", g.shape, g.labels)
                tau = self.priors.population_scale.sample(f"{g.name}_tau", g.shape, g.labels)
                z = numpyro.sample(
                    f"{g.name}_z", dist.Normal(0.0, 1.0).expand((self.n_subjects,) + g.shape).to_event(1 + len(g.shape))
                )
                values[g.name] = numpyro.deterministic(g.name, mu + tau * z)
            else:
                values[g.name] = prior.sample(g.name, g.shape, g.labels)
        return values

    def numpyro_model(self, data: TrialData | None = None) -> None:
        """The NumPyro model. Without data it is the prior (for prior draws and calibration)."""
        values = self.sample_values()
        if data is not None:
            numpyro.factor("log_likelihood", _compress(jnp.sum(self.pointwise(values, data))))

    # ---- likelihood --------------------------------------------------------------------

    def place(self, values: dict[str, Array], model: PlasticityModel | None = None) -> PlasticityModel:
        """Put unpooled group values into a model (pooled groups are left as they are)."""
        model = self.template if model is None else model
        for g in self.groups:
            if g.name in values and g.name not in self.pooled:
                model = g.set(model, jnp.asarray(values[g.name], dtype=g.get(model).dtype))
        return model

    def subject_model(self, values: dict[str, Array], subject: int) -> PlasticityModel:
        """The model of one subject (its trajectories only), with pooled values of that subject."""
        n = self.n_subjects
        if isinstance(subject, bool) or not isinstance(subject, (int, np.integer)) or not -n <= subject < n:
            raise ModelError(f"subject must be an integer in 0 … {n - 1} (or −{n} … −1 from the end; this posterior has "
                             f"{n} subjects); got {subject!r}")
        subject = int(subject) % n
        traj = np.flatnonzero(self.subject_index == subject)
        model = self.place(values)
        w0 = {k: v[traj] for k, v in model.initial_weights.items()}
        model = PlasticityModel(model.rule, model.network, model.observation, w0)
        for g in self.groups:
            if g.name in self.pooled:
                model = g.set(model, jnp.asarray(values[g.name][subject], dtype=g.get(model).dtype))
        return model

    def pointwise(self, values: dict[str, Array], data: TrialData) -> Array:
        """Log-likelihood of every (trajectory, trial); masked-out trials contribute 0."""
        model = self.place(values)
        if not self.pooled:
            return model.log_likelihood(data, checkpoint=self.checkpoint)
        idx = jnp.asarray(self.subject_index)
        per_traj = {g.name: values[g.name][idx] for g in self.groups if g.name in self.pooled}
        pooled_groups = [g for g in self.groups if g.name in self.pooled]
        data_1 = jax.tree_util.tree_map(lambda a: a[:, None], data)

        def one(vals, w0, d):
            m = PlasticityModel(model.rule, model.network, model.observation, jax.tree_util.tree_map(lambda a: a[None], w0))
            for g in pooled_groups:
                m = g.set(m, jnp.asarray(vals[g.name], dtype=g.get(m).dtype))
            return m.log_likelihood(d, checkpoint=self.checkpoint)[0]

        return jax.vmap(one)(per_traj, model.initial_weights, data_1)

    # ---- warm start ----------------------------------------------------------------------

    def latent_init(self, start: PlasticityModel | FitResult | None = None, *, spread: float = 0.1) -> dict[str, Array]:
        """Values of every latent site that reproduce ``start`` (default: the template).

        ``start`` may be a model (shared values; pooled blocks start with μ = the value, z = 0
        and τ = ``spread``) or a :func:`fit_independent` result (one model per subject: μ is the
        mean over subjects, τ their spread, z the standardised deviations).
        """
        per_subject = None
        if isinstance(start, FitResult):
            if start.independent:
                per_subject = start.model
                start = None
            else:
                start = start.model
        model = self.template if start is None else start
        out: dict[str, Array] = {}
        for g in self.groups:
            prior = self.prior_for(g)
            if per_subject is not None:
                v_s = eqx.filter_vmap(g.get)(per_subject)
                if g.part == INITIAL_WEIGHTS:
                    v = v_s.reshape(g.shape)
                elif g.name in self.pooled:
                    v = v_s
                    if v.shape[0] != self.n_subjects:  # one fit per trajectory: average within subjects
                        idx = jnp.asarray(self.subject_index)
                        counts = jnp.zeros(self.n_subjects, v.dtype).at[idx].add(1.0)
                        v = jnp.zeros((self.n_subjects,) + g.shape, v.dtype).at[idx].add(v)
                        v = v / counts.reshape((-1,) + (1,) * len(g.shape))
                else:
                    v = jnp.mean(v_s, axis=0)
            else:
                v = g.get(model)
                if g.name in self.pooled:
                    v = jnp.broadcast_to(v, (self.n_subjects,) + g.shape)
            if g.name in self.pooled:
                mu = jnp.mean(v, axis=0)
                tau = jnp.maximum(jnp.std(v, axis=0), spread)
                out.update(prior.latent_values(f"{g.name}_mu", mu, g.labels))
                out.update(self.priors.population_scale.latent_values(f"{g.name}_tau", tau, g.labels))
                out[f"{g.name}_z"] = (v - mu) / tau
            else:
                out.update(prior.latent_values(g.name, v, g.labels))
        return out

    # ---- naming ------------------------------------------------------------------------

    def reported_variables(self) -> list[str]:
        """Posterior variables worth a summary: the groups, and μ, τ of pooled groups."""
        names = []
        for g in self.groups:
            if g.name in self.pooled:
                names += [f"{g.name}_mu", f"{g.name}_tau", g.name]
            else:
                names.append(g.name)
        return names

    def dims(self) -> dict[str, list[str]]:
        out = {}
        for g in self.groups:
            if g.name in self.pooled:
                out[g.name] = ["subject", *g.dims]
                out[f"{g.name}_mu"] = list(g.dims)
                out[f"{g.name}_tau"] = list(g.dims)
                out[f"{g.name}_z"] = ["subject", *g.dims]
            else:
                out[g.name] = list(g.dims)
        return out

    def coords(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for g in self.groups:
            if g.labels is not None:
                out[g.dims[0]] = list(g.labels)
        return out


__all__ = ["Hierarchical", "ModelSpec"]

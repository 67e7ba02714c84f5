"""Pair-based spike-timing rules with learnable time constants, one per synapse type of an E/I network.

:class:`PairRule` is the 6-parameter rule of Confavreux et al. (NeurIPS 2023): every synapse
keeps a presynaptic trace x_pre and its postsynaptic neuron a trace x_post (+1 per spike,
decaying with τ_pre, τ_post), and

    at a presynaptic spike:   Δw = η·(α + κ·x_post)
    at a postsynaptic spike:  Δw = η·(β + γ·x_pre)

(traces are read before the current bin's spikes are added, so a spike never pairs with
itself). The naming follows :class:`~plasticinfer.discovery.TraceRule` (κ pairs with the
postsynaptic trace, γ with the presynaptic one); unlike it, τ_pre and τ_post are array
leaves here, so they can be searched, sampled and ``vmap``-ed over. Called on rates,
``rule(pre, post, w, r)`` returns the mean drift η·[α·ν_pre + β·ν_post + (κτ_post + γτ_pre)·ν_pre·ν_post].

:class:`EIRules` holds one rule per synapse type of a recurrent E/I network — ``ee`` (E→E),
``ei`` (E→I), ``ie`` (I→E), ``ii`` (I→I), named pre→post — each either a :class:`PairRule`
or ``None`` (that type is static). Its flat parameter vector (6 per plastic type, in the
order α, β, γ, κ, τ_pre, τ_post) is what simulation-based inference works on.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ._common import DiscoveryError
from ._homeostasis import AbstractPairRule, TraceRule

PARAMETERS: tuple[str, ...] = ("alpha", "beta", "gamma", "kappa", "tau_pre", "tau_post")
SYNAPSE_TYPES: tuple[str, ...] = ("ee", "ei", "ie", "ii")
_TYPE_LABEL = {"ee": "E→E", "ei": "E→I", "ie": "I→E", "ii": "I→I"}


class PairRule(AbstractPairRule):
    """Pair-based trace rule (α, β, γ, κ, τ_pre, τ_post) with learning rate η; see the module docstring."""

    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    gamma: Float[Array, ""]
    kappa: Float[Array, ""]
    tau_pre: Float[Array, ""]
    tau_post: Float[Array, ""]
    learning_rate: float = eqx.field(static=True, default=1.0)

    def __init__(self, alpha=0.0, beta=0.0, gamma=0.0, kappa=0.0, tau_pre=0.02, tau_post=0.02, *, learning_rate=1.0):
        dtype = jnp.result_type(float)
        self.alpha = jnp.asarray(alpha, dtype=dtype)
        self.beta = jnp.asarray(beta, dtype=dtype)
        self.gamma = jnp.asarray(gamma, dtype=dtype)
        self.kappa = jnp.asarray(kappa, dtype=dtype)
        self.tau_pre = jnp.asarray(tau_pre, dtype=dtype)
        self.tau_post = jnp.asarray(tau_post, dtype=dtype)
        for name, tau in (("tau_pre", tau_pre), ("tau_post", tau_post)):
            try:
                bad = float(tau) <= 0
            except (TypeError, ValueError):  # traced or batched: checked by the caller's prior
                bad = False
            if bad:
                raise DiscoveryError(f"PairRule {name} must be a positive time in seconds; got {tau}")
        self.learning_rate = float(learning_rate)

    @classmethod
    def from_vector(cls, theta, *, learning_rate: float = 1.0) -> "PairRule":
        """From (α, β, γ, κ, τ_pre, τ_post) along the last axis (leading axes become batch axes of the leaves)."""
        theta = jnp.asarray(theta)
        if theta.shape[-1] != 6:
            raise DiscoveryError(f"a PairRule has 6 parameters {PARAMETERS}; got a vector of length {theta.shape[-1]}")
        return cls(*(theta[..., k] for k in range(6)), learning_rate=learning_rate)

    def to_vector(self) -> Array:
        return jnp.stack([getattr(self, p) for p in PARAMETERS], axis=-1)

    @classmethod
    def vogels(cls, target: float, *, tau: float = 0.02, learning_rate: float = 1.0) -> "PairRule":
        """Vogels et al. 2011 inhibitory rule: κ = γ = 1, α = −2·target·τ (drives the postsynaptic rate to ``target``)."""
        return cls(-2.0 * target * tau, 0.0, 1.0, 1.0, tau, tau, learning_rate=learning_rate)

    def as_trace_rule(self) -> TraceRule:
        """The same rule with fixed time constants, for the single-neuron B3 tools (manifold, fixed point)."""
        return TraceRule(
            float(self.alpha), float(self.beta), float(self.gamma), float(self.kappa),
            tau_pre=float(self.tau_pre), tau_post=float(self.tau_post), learning_rate=self.learning_rate,
        )  # fmt: skip


class EIRules(eqx.Module):
    """Co-active rules of a recurrent E/I network: one :class:`PairRule` (or ``None`` = static) per synapse type."""

    ee: PairRule | None = None
    ei: PairRule | None = None
    ie: PairRule | None = None
    ii: PairRule | None = None

    @property
    def plastic(self) -> tuple[str, ...]:
        return tuple(t for t in SYNAPSE_TYPES if getattr(self, t) is not None)

    @classmethod
    def from_vector(cls, theta, *, plastic=SYNAPSE_TYPES, learning_rates=None) -> "EIRules":
        """From a flat vector, 6 parameters per type in ``plastic`` (in that order); ``learning_rates`` maps type → η."""
        theta = jnp.asarray(theta)
        plastic = tuple(plastic)
        unknown = [t for t in plastic if t not in SYNAPSE_TYPES]
        if unknown:
            raise DiscoveryError(f"unknown synapse types {unknown}; choose among {SYNAPSE_TYPES} (pre→post)")
        if theta.shape[-1] != 6 * len(plastic):
            raise DiscoveryError(f"{len(plastic)} plastic types need {6 * len(plastic)} parameters; got {theta.shape[-1]}")
        lr = dict.fromkeys(SYNAPSE_TYPES, 1.0) | dict(learning_rates or {})
        rules = {t: PairRule.from_vector(theta[..., 6 * k : 6 * k + 6], learning_rate=lr[t]) for k, t in enumerate(plastic)}
        return cls(**rules)

    def to_vector(self) -> Array:
        return jnp.concatenate([getattr(self, t).to_vector() for t in self.plastic], axis=-1)

    @staticmethod
    def parameter_names(plastic=SYNAPSE_TYPES) -> tuple[str, ...]:
        return tuple(f"{t}:{p}" for t in plastic for p in PARAMETERS)

    def __str__(self) -> str:
        return "\n".join(f"{_TYPE_LABEL[t]}: {getattr(self, t) if getattr(self, t) is not None else 'static'}" for t in SYNAPSE_TYPES)


__all__ = ["PairRule", "EIRules", "PARAMETERS", "SYNAPSE_TYPES"]

"""Identifiability: which terms the data pin down, which they cannot separate, and the spread along degeneracies.

Three views, each catching what the others miss:

- **posterior correlations** between terms (|r| near 1: the data constrain a combination, not each term);
- **Fisher information** of the data at the posterior mean, an exact check: a direction with zero
  information (e.g. the difference of x·r and x·r² when rewards are binary, or a term that moves
  both options' weights alike in a two-choice task) is not identified by *any* amount of such data;
- **contraction** 1 − posterior variance / prior variance per term (≈ 0: the prior speaks, not the data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .._errors import ModelError
from .._networks import ChoiceCircuit
from .._rules import Monomial, TaylorRule, forward_mode
from .._trial_data import TrialData

#: |posterior correlation| at or above this flags a pair of terms.
CORRELATION_THRESHOLD = 0.9
#: Fisher eigenvalues below this fraction of the largest count as "no information".
FISHER_RELATIVE_TOLERANCE = 1e-8


def _binary(values) -> bool:
    v = np.unique(np.asarray(values))
    return v.size > 0 and bool(np.all(np.isin(v, (0.0, 1.0))))


def binary_variables(data: TrialData, network=None) -> set[str]:
    """Rule variables that only take the values 0 and 1 in ``data`` (so v^k = v for them)."""
    out = set()
    if "reward" in data.inputs and _binary(data.inputs["reward"]):
        out.add("r")
    pre = data.inputs.get("cues") if isinstance(network, ChoiceCircuit) else data.inputs.get("x")
    if pre is not None and _binary(pre):
        out.add("x")
    return out


def aliased_terms(terms, binary: set[str]) -> list[list[str]]:
    """Groups of terms that are the same function when the variables in ``binary`` are 0/1."""
    groups: dict[tuple, list[str]] = {}
    for t in terms:
        mono = t if isinstance(t, Monomial) else Monomial.parse(t)
        key = tuple(min(p, 1) if v in binary else p for v, p in zip("xywr", mono.powers))
        groups.setdefault(key, []).append(mono.name)
    return [names for names in groups.values() if len(names) > 1]


def _direction_text(v: np.ndarray, names: list[str], cutoff: float = 0.05) -> str:
    order = np.argsort(-np.abs(v))
    parts = [f"{v[i]:+.2f}·{names[i]}" for i in order if abs(v[i]) >= cutoff]
    return " ".join(parts) if parts else "0"


@dataclass
class IdentifiabilityReport:
    """What the data can and cannot tell apart.

    Attributes:
        names: the terms (rule coefficients; population means in a hierarchical fit).
        correlation: posterior correlation matrix between terms.
        contraction: 1 − posterior variance / prior variance, per term.
        pairs: term pairs with |correlation| ≥ ``CORRELATION_THRESHOLD``.
        fisher: eigen-directions of the data's Fisher information about the terms at the posterior
            mean, weakest first: eigenvalue, relative eigenvalue, posterior and prior sd along the
            direction, and the direction in term names.
        aliases: groups of terms that are the same function of the data (binary variables).
        degeneracies: posterior vs prior sd along the named directions given by the user and along
            every zero-information direction.
    """

    names: list[str]
    correlation: pd.DataFrame
    contraction: pd.Series
    pairs: pd.DataFrame
    fisher: pd.DataFrame | None
    aliases: list[list[str]]
    degeneracies: pd.DataFrame
    _flat: pd.DataFrame = field(repr=False, default=None)

    def messages(self) -> list[str]:
        """One line per identifiability problem, with what to do."""
        out = []
        for group in self.aliases:
            out.append(
                f"terms {group} are the same function of these data (0/1-valued variables: v^k = v); the data cannot "
                "tell them apart. Keep one (rule.without([...]))."
            )
        if self.fisher is not None:
            for _, row in self.fisher[self.fisher["relative_eigenvalue"] < FISHER_RELATIVE_TOLERANCE].iterrows():
                out.append(
                    f"the data carry no information along {row['direction']} (zero Fisher information): that "
                    "combination is set by the prior alone. Remove a term or fix it (TaylorRule(..., fixed=[...]))."
                )
        for _, row in self.pairs.iterrows():
            out.append(
                f"{row['term_a']} and {row['term_b']} have posterior correlation {row['correlation']:+.2f}: the data "
                "constrain a combination of them more than each one. Report the combination, or constrain one."
            )
        for name, c in self.contraction.items():
            if c < 0.1:
                out.append(
                    f"{name}: posterior variance is {100 * (1 - c):.0f} % of the prior's — the data say little about it."
                )
        return out

    def summary(self) -> str:
        lines = ["posterior correlation:", self.correlation.round(2).to_string(), "", "contraction (1 − post var / prior var):"]
        lines.append(self.contraction.round(3).to_string())
        if self.fisher is not None:
            lines += ["", "Fisher information directions (weakest first):", self.fisher.round(4).to_string()]
        if len(self.degeneracies):
            lines += ["", "spread along degeneracies:", self.degeneracies.round(4).to_string()]
        msgs = self.messages()
        lines += ["", "problems:" if msgs else "no identifiability problems found"] + [f"- {m}" for m in msgs]
        return "\n".join(lines)

    def plot(self, *, truth: Mapping[str, float] | None = None, max_draws: int = 1000):
        """Pairwise posterior of the terms (matplotlib Figure)."""
        from ._plots import plot_pairs

        return plot_pairs(self._flat, truth=truth, max_draws=max_draws)


def _fisher(posterior, data: TrialData, group) -> np.ndarray:
    """Empirical Fisher information Σ_trials ∇ℓ_t ∇ℓ_tᵀ about one coefficient block at the posterior mean.

    In a hierarchical fit, every pooled block is set to its population mean μ.
    """
    spec = posterior.spec
    model = spec.template
    for g in spec.groups:
        name = f"{g.name}_mu" if g.name in spec.pooled else g.name
        model = g.set(model, jnp.asarray(posterior.draws(name).mean((0, 1)), dtype=g.get(model).dtype))
    theta0 = group.get(model)
    model = forward_mode(model)  # jacfwd: one forward-mode pass per coefficient
    with jax.numpy_dtype_promotion("standard"):
        jac = np.asarray(jax.jacfwd(lambda th: group.set(model, th).log_likelihood(data))(theta0))  # (traj, trial, k)
    valid = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape))
    valid = valid.reshape(valid.shape[:2] + (-1,)).any(-1)
    g = jac[valid]
    return g.T @ g


def identifiability(
    posterior,
    data: TrialData | None = None,
    *,
    directions: Mapping[str, Mapping[str, float]] | None = None,
    threshold: float = CORRELATION_THRESHOLD,
) -> IdentifiabilityReport:
    """Identifiability report for the Taylor coefficients of a posterior.

    Args:
        posterior: a :class:`Posterior`.
        data: the data it was sampled on (for the Fisher information and the 0/1-variable check);
            without it only posterior correlations and contraction are reported.
        directions: known degeneracies to measure, e.g. ``{"r vs r²": {"x*r": 1, "x*r^2": -1}}``;
            the report gives the posterior and prior sd along each (normalised) direction.
        threshold: |correlation| from which a pair of terms is flagged.
    """
    spec = posterior.spec
    group = posterior._rule_group()
    pooled = group.name in spec.pooled
    var = f"{group.name}_mu" if pooled else group.name
    names = list(group.labels)
    draws = posterior.draws(var).reshape(-1, len(names))
    flat = pd.DataFrame(draws, columns=names)
    corr = flat.corr() if len(names) > 1 else pd.DataFrame([[1.0]], index=names, columns=names)
    prior = spec.prior_for(group)
    prior_var = np.asarray(prior.variance(group.shape, group.labels), dtype=float)
    post_var = draws.var(axis=0)
    contraction = pd.Series(1.0 - post_var / prior_var, index=names, name="contraction")
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            r = float(corr.iloc[i, j])
            if abs(r) >= threshold:
                pairs.append({"term_a": names[i], "term_b": names[j], "correlation": r})
    pairs_df = pd.DataFrame(pairs, columns=["term_a", "term_b", "correlation"])

    fisher_df = None
    aliases: list[list[str]] = []
    dir_rows = []
    cov = np.atleast_2d(np.cov(draws, rowvar=False))

    def spread(v):
        v = v / np.linalg.norm(v)
        return float(np.sqrt(max(v @ cov @ v, 0.0))), float(np.sqrt(np.sum(v**2 * prior_var)))

    if data is not None:
        rule = spec.template.rule
        if isinstance(rule, TaylorRule):
            aliases = [[n for n in grp if n in names] for grp in aliased_terms(rule.terms, binary_variables(data, spec.template.network))]
            aliases = [a for a in aliases if len(a) > 1]
        info = _fisher(posterior, data, group)
        evals, evecs = np.linalg.eigh(0.5 * (info + info.T))
        evals = np.maximum(evals, 0.0)
        top = max(float(evals.max()), 1e-300)
        rows = []
        for k in range(len(evals)):
            v = evecs[:, k]
            v = v * np.sign(v[np.argmax(np.abs(v))])
            post_sd, prior_sd = spread(v)
            rows.append(
                {
                    "eigenvalue": float(evals[k]),
                    "relative_eigenvalue": float(evals[k] / top),
                    "posterior_sd": post_sd,
                    "prior_sd": prior_sd,
                    "direction": _direction_text(v, names),
                }
            )
            if evals[k] / top < FISHER_RELATIVE_TOLERANCE:
                dir_rows.append({"degeneracy": f"zero information: {_direction_text(v, names)}", "posterior_sd": post_sd, "prior_sd": prior_sd})
        fisher_df = pd.DataFrame(rows)
    for label, d in (directions or {}).items():
        unknown = set(d) - set(names)
        if unknown:
            raise ModelError(f"direction {label!r} names terms {sorted(unknown)} that are not sampled; terms are {names}")
        v = np.asarray([float(d.get(n, 0.0)) for n in names])
        if not np.any(v):
            raise ModelError(f"direction {label!r} is zero")
        post_sd, prior_sd = spread(v)
        dir_rows.append({"degeneracy": label, "posterior_sd": post_sd, "prior_sd": prior_sd})
    degeneracies = pd.DataFrame(dir_rows, columns=["degeneracy", "posterior_sd", "prior_sd"])
    if len(degeneracies):
        degeneracies["ratio"] = degeneracies["posterior_sd"] / degeneracies["prior_sd"]
    return IdentifiabilityReport(names, corr, contraction, pairs_df, fisher_df, aliases, degeneracies, flat)


__all__ = ["IdentifiabilityReport", "identifiability", "aliased_terms", "binary_variables"]

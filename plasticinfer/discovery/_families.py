"""Families of rules: group the solutions of many restarts into distinct rules, with their spread."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import equinox as eqx
import jax
import numpy as np

from .._rules import TaylorRule
from .._fit import check_real
from ._common import DiscoveryError
from ._homeostasis import TraceRule


def coefficient_table(rules) -> tuple[list[str], np.ndarray]:
    """Names and values (restart, parameter) of a stack of rules (or dict of rules) from a search.

    Taylor terms are named by monomial (``"x*y"``; ``"ff:x*y"`` inside a dict), trace rules
    by ``alpha``, ``beta``, ``gamma``, ``kappa``; any other rule by its flattened leaves.
    """
    items = rules.items() if isinstance(rules, Mapping) else [(None, rules)]
    names: list[str] = []
    cols: list[np.ndarray] = []
    for key, r in items:
        prefix = "" if key is None else f"{key}:"
        if isinstance(r, TaylorRule):
            c = np.asarray(r.coeffs)
            c = c[None] if c.ndim == 1 else c
            names += [prefix + n for n in r.names]
            cols.append(c)
        elif isinstance(r, TraceRule):
            names += [prefix + n for n in ("alpha", "beta", "gamma", "kappa")]
            cols.append(np.stack([np.atleast_1d(np.asarray(getattr(r, n))) for n in ("alpha", "beta", "gamma", "kappa")], axis=1))
        else:
            leaves = [np.asarray(l) for l in jax.tree_util.tree_leaves(eqx.filter(r, eqx.is_inexact_array))]
            if not leaves:
                continue
            n = leaves[0].shape[0] if leaves[0].ndim else 1
            flat = np.concatenate([l.reshape(n, -1) for l in leaves], axis=1)
            names += [f"{prefix}p{i}" for i in range(flat.shape[1])]
            cols.append(flat)
    if not cols:
        raise DiscoveryError("these rules have no parameters to tabulate")
    return names, np.concatenate(cols, axis=1)


@dataclass
class RuleFamily:
    """Solutions that share a sign pattern of their (normalised) coefficients.

    Attributes:
        label: the sign pattern as text, e.g. ``"+x·y −y²·w"``.
        members: restart indices in the family.
        median: median normalised coefficient per parameter name.
        spread: standard deviation of the normalised coefficients per parameter name.
        equation: the median rule as an equation (or equations, one per rule).
    """

    label: str
    members: np.ndarray
    median: dict[str, float]
    spread: dict[str, float]
    equation: str
    extra: dict = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(len(self.members))


def _pretty(name: str) -> str:
    from .._rules import Monomial

    prefix, _, body = name.rpartition(":")
    try:
        body = Monomial.parse(body).pretty()
    except Exception:  # noqa: BLE001 - not a monomial (alpha, p0, …)
        pass
    return f"{prefix}:{body}" if prefix else body


def _check_reference(names: list[str], reference: str | None) -> None:
    if reference is not None and reference not in {n.rpartition(":")[2] for n in names}:
        raise DiscoveryError(
            f"reference={reference!r} is not a parameter of these rules; use one of "
            f"{sorted({n.rpartition(':')[2] for n in names})}, or None to divide by the norm"
        )


def normalise(names: list[str], values: np.ndarray, reference: str | None = None) -> np.ndarray:
    """Divide each row by |its ``reference`` coefficient| (per rule prefix if the name has one), else by its L2 norm.

    With ``reference="x*y"`` and dict rules, every rule is divided by its own |θ(x·y)|.
    """
    values = np.asarray(values, dtype=float)
    out = values.copy()
    prefixes = sorted({n.rpartition(":")[0] for n in names})
    _check_reference(names, reference)
    for p in prefixes:
        idx = [i for i, n in enumerate(names) if n.rpartition(":")[0] == p]
        block = values[:, idx]
        ref_name = f"{p}:{reference}" if p else reference
        if reference is not None and ref_name in names:
            d = np.abs(values[:, names.index(ref_name)])[:, None]
        else:
            d = np.linalg.norm(block, axis=1, keepdims=True)
        out[:, idx] = block / np.where(d > 0, d, np.nan)
    return out


def find_families(
    result,
    *,
    reference: str | None = None,
    threshold: float = 0.1,
    include_failures: bool = False,
) -> list[RuleFamily]:
    """Group a search's solutions into families of distinct rules.

    Each solution's coefficients are normalised (by |θ(reference)|, e.g. ``"x*y"``, or else
    by their norm — the objectives fix a rule only up to its overall rate), then reduced
    to a sign pattern: a parameter counts as present when |value| ≥ ``threshold`` × the
    largest |value| of its rule. Solutions with the same pattern form a family, reported
    with its median coefficients, their spread and an equation. Families are sorted by size.

    Args:
        result: a :class:`SearchResult`.
        reference: parameter to normalise by (per rule), or ``None`` for the L2 norm.
        threshold: relative size below which a parameter counts as absent.
        include_failures: also group restarts that do not meet the objective.
    """
    names, values = coefficient_table(result.rules)
    keep = np.ones(len(values), bool) if include_failures else np.asarray(result.success, bool)
    keep &= np.all(np.isfinite(values), axis=1)
    idx = np.flatnonzero(keep)
    _check_reference(names, reference)  # refused even when no solution is kept
    check_real(threshold, "threshold (relative size below which a parameter counts as absent)", minimum=0, maximum=1,
               open_high=True, error=DiscoveryError)
    if idx.size == 0:
        return []
    u = normalise(names, values[idx], reference)
    prefixes = [n.rpartition(":")[0] for n in names]
    big = np.zeros_like(u)
    for p in set(prefixes):
        cols = [i for i, q in enumerate(prefixes) if q == p]
        big[:, cols] = np.nanmax(np.abs(u[:, cols]), axis=1, keepdims=True)
    signs = np.where(np.abs(u) >= threshold * big, np.sign(u), 0).astype(int)
    families: dict[tuple, list[int]] = {}
    for row, s in enumerate(signs):
        families.setdefault(tuple(s), []).append(row)
    out = []
    for pattern, rows in sorted(families.items(), key=lambda kv: -len(kv[1])):
        sub = u[rows]
        med = np.nanmedian(sub, axis=0)
        spread = np.nanstd(sub, axis=0)
        present = [i for i, s in enumerate(pattern) if s != 0]
        label = " ".join(f"{'+' if pattern[i] > 0 else '−'}{_pretty(names[i])}" for i in present) or "0"
        out.append(
            RuleFamily(
                label=label,
                members=idx[rows],
                median={names[i]: float(med[i]) for i in range(len(names))},
                spread={names[i]: float(spread[i]) for i in range(len(names))},
                equation=_equation(result, idx[rows[0]], names, med, pattern),
            )
        )
    return out


def _equation(result, member: int, names, med, pattern) -> str:
    """The family's median rule, written with the template rule's own equation()."""
    values = {n: (v if s != 0 else 0.0) for n, v, s in zip(names, med, pattern)}
    rule = result.rule(member)
    items = rule.items() if isinstance(rule, Mapping) else [(None, rule)]
    lines = []
    for key, r in items:
        prefix = "" if key is None else f"{key}:"
        if isinstance(r, TaylorRule):
            coeffs = [values.get(prefix + n, 0.0) for n in r.names]
            rr = TaylorRule(r.terms, np.asarray(coeffs), learning_rate=r.learning_rate)
            eq = rr.equation(precision=2)
        elif isinstance(r, TraceRule):
            rr = TraceRule(*(values.get(prefix + n, 0.0) for n in ("alpha", "beta", "gamma", "kappa")), tau_pre=r.tau_pre, tau_post=r.tau_post, learning_rate=r.learning_rate)
            eq = rr.equation(precision=2)
        else:
            eq = type(r).__name__
        lines.append(eq if key is None else f"{key}: {eq}")
    return "\n".join(lines)


__all__ = ["RuleFamily", "find_families", "coefficient_table", "normalise"]

"""What the optimisers share: the search space, preconditioning, the result type, evaluation.

Both optimisers (:mod:`._gradient`, :mod:`._cma`) search the floating-point leaves of a
template rule (a rule or a dict of rules, e.g. ``objective.default_rule()``), run many
independent starts as one vmapped computation, and score every final rule on a held-out
episode that no training step used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray

from .._errors import ConvergenceWarning
from .._errors import warn as _warn
from .._io import write_netcdf
from .._optimise import CONVERGENCE_TOL, diagnose
from .._rules import TaylorRule
from ._common import AbstractObjective, DiscoveryError, as_rule_dict


@dataclass
class SearchResult:
    """What a search returns.

    Attributes:
        rules: the final rule of every restart, stacked along a leading ``restart`` axis of
            every array leaf (see :meth:`rule`).
        losses: held-out objective of every final rule (evaluated on a key no training step used).
        metrics: held-out metrics per restart (``objective.metrics``), each an array (restart,).
        success: whether each final rule meets the objective (``objective.success``).
        loss_history: training objective (loss + L1 penalty) per restart and step / generation
            (for CMA-ES: the best of each generation); NaN where it was non-finite (the gradient search
            then steps back and goes on: ``settings["skipped_steps"]`` counts those steps per restart).
        method: ``"gradient"`` or ``"cma-es"``.
        wall_time: seconds spent optimising (compilation included), excluding the final evaluation; NaN for
            a loaded result (files hold no wall times: the same search saves the same bytes).
        settings: the arguments that shaped the search.
        converged: per restart, whether its loss history had settled (the diagnostics every fit uses,
            for a noisy objective: ``plasticinfer._optimise.diagnose``); a ``ConvergenceWarning`` when the
            best restart had not.
        convergence_messages: per restart, why not ("" where it had).
    """

    rules: Any
    losses: np.ndarray
    metrics: dict[str, np.ndarray]
    success: np.ndarray
    loss_history: np.ndarray
    method: str
    wall_time: float
    settings: dict = field(default_factory=dict)
    converged: np.ndarray | None = None
    convergence_messages: tuple[str, ...] = ()

    @property
    def n_restarts(self) -> int:
        return int(self.losses.shape[0])

    def rule(self, i: int):
        """The final rule (or dict of rules) of restart ``i``."""
        if not 0 <= i < self.n_restarts:
            raise DiscoveryError(f"restart index {i} out of range 0..{self.n_restarts - 1}")
        return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, self.rules)

    @property
    def best(self) -> int:
        """Index of the restart with the lowest held-out loss."""
        finite = np.where(np.isfinite(self.losses), self.losses, np.inf)
        return int(np.argmin(finite))

    @property
    def best_rule(self):
        return self.rule(self.best)

    def equation(self, i: int | None = None, *, threshold: float = 0.0, precision: int = 3) -> str:
        """Equation(s) of restart ``i`` (default: the best), one line per rule."""
        r = self.rule(self.best if i is None else i)
        lines = []
        for name, rr in as_rule_dict(r).items():
            eq = rr.equation(threshold=threshold, precision=precision)
            lines.append(eq if name == "rule" else f"{name}: {eq}")
        return "\n".join(lines)

    def to_dataset(self, annotations: xr.Dataset | None = None) -> xr.Dataset:
        """The content of the file :meth:`save` writes: every restart's rule by parameter name along a
        ``restart`` axis (``rules.<path>``), the rules' classes and settings (``rules_structure``), ``loss``,
        ``success``, ``loss_history``, ``metric.<name>``, ``converged``, and the search's attributes.
        ``annotations`` (a report's extra variables, see :func:`plasticinfer.discovery.to_dataset`) are merged in."""
        from .._results_io import pytree_variables, tagged, to_json

        variables, structure = pytree_variables(self.rules, "rules", lead=["restart"])
        ds = xr.Dataset(variables)
        ds["loss"] = xr.DataArray(np.asarray(self.losses, dtype=float), dims=["restart"])
        ds["success"] = xr.DataArray(np.asarray(self.success, dtype=np.int8), dims=["restart"])
        ds["loss_history"] = xr.DataArray(np.asarray(self.loss_history, dtype=float), dims=["restart", "step"])
        for k, v in self.metrics.items():
            ds[f"metric.{k}"] = xr.DataArray(np.asarray(v, dtype=float), dims=["restart"])
        if self.converged is not None:
            ds["converged"] = xr.DataArray(np.asarray(self.converged, dtype=np.int8), dims=["restart"])
        ds.attrs.update(
            method=self.method,
            settings=to_json(self.settings),
            convergence_messages=json.dumps(list(self.convergence_messages)),
            best_restart=int(self.best),
            best_equation=self.equation(threshold=1e-3),
            **structure,
        )
        return tagged(ds, "search", annotations)

    def save(self, path, annotations: xr.Dataset | None = None) -> Path:
        """Write the whole result to a self-describing netCDF file (atomically; see :meth:`to_dataset`), with a
        report's ``annotations`` if given. :meth:`load` reads it back without a template."""
        return write_netcdf(self.to_dataset(annotations), path)

    @classmethod
    def load(cls, path) -> "SearchResult":
        """Read a file written by :meth:`save` (or a discovery report's ``results*.nc``); refuses any other
        file with one :class:`~plasticinfer.DataError` naming the kind it holds."""
        from .._results_io import read_pytree, read_result, reading

        path = Path(path)
        ds = read_result(path, "search")
        with reading(path, "search result"):
            rules = read_pytree(ds, "rules", path)
            metrics = {k[len("metric."):]: ds[k].values for k in ds.data_vars if k.startswith("metric.")}
            return cls(
                rules, ds["loss"].values, metrics, ds["success"].values.astype(bool), ds["loss_history"].values,
                str(ds.attrs["method"]), float(ds.attrs.get("wall_time_s", np.nan)), json.loads(ds.attrs["settings"]),
                converged=ds["converged"].values.astype(bool) if "converged" in ds else None,
                convergence_messages=tuple(json.loads(ds.attrs.get("convergence_messages", "[]"))),
            )  # fmt: skip

    def summary(self) -> str:
        from .._results_io import duration

        ok = int(self.success.sum())
        return (
            f"{self.method}: {ok}/{self.n_restarts} restarts meet the objective; best held-out loss "
            f"{np.nanmin(self.losses):.3g} (restart {self.best}); {duration(self.wall_time)}\n{self.equation(threshold=1e-3)}"
        )


# --------------------------------------------------------------------------------------
# Search space helpers
# --------------------------------------------------------------------------------------


def _free_mask(rule):
    """Pytree like ``rule`` with 1.0 where a float may change and 0.0 where it is fixed."""

    def one(r):
        m = jax.tree_util.tree_map(lambda a: jnp.ones_like(a) if eqx.is_inexact_array(a) else a, r)
        if isinstance(r, TaylorRule) and any(r.fixed):
            m = eqx.tree_at(lambda t: t.coeffs, m, jnp.asarray(~np.asarray(r.fixed), dtype=r.coeffs.dtype))
        return m

    if isinstance(rule, Mapping):
        return {k: one(v) for k, v in rule.items()}
    return one(rule)


def _space(rule):
    params, static = eqx.partition(rule, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(params):
        raise DiscoveryError("the template rule has no floating-point parameters to search")
    mask, _ = eqx.partition(_free_mask(rule), eqx.is_inexact_array)
    return params, static, mask


@eqx.filter_jit
def sample_episode(objective: AbstractObjective, key: PRNGKeyArray):
    """``objective.sample(key)``, compiled once per objective type and shapes (not once per call)."""
    return objective.sample(key)


@eqx.filter_jit
def _metrics(objective, params, static, episode):
    return jax.vmap(lambda p: objective.metrics(eqx.combine(p, static), episode))(params)


def evaluate(objective: AbstractObjective, rules, key: PRNGKeyArray) -> dict[str, np.ndarray]:
    """``objective.metrics`` of a stack of rules (leading axis), all on one episode drawn from ``key``."""
    params, static = eqx.partition(rules, eqx.is_inexact_array)
    episode = sample_episode(objective, key)
    return {k: np.asarray(v) for k, v in _metrics(objective, params, static, episode).items()}


def _diagnose_search(h, nan: str) -> str:
    """Convergence of one restart's loss history; what a NaN means depends on the search (``nan``):
    ``"stopped"`` the restart stopped at a non-finite loss, ``"skipped"`` the guard stepped back from that
    step and went on, ``"finished"`` the optimiser had met its own termination criteria (CMA-ES)."""
    h = np.asarray(h, dtype=float)
    finite = np.isfinite(h)
    if nan == "finished" and h.size and not finite[-1]:
        return ""
    if nan in ("skipped", "finished"):
        h = h[finite]
    return diagnose(h, tol=CONVERGENCE_TOL, noisy=True)


def _finish(objective, rules, key, history, method, wall, settings, *, nan: str = "stopped") -> SearchResult:
    metrics = evaluate(objective, rules, key)
    losses = metrics["loss"]
    success = np.array(
        [np.isfinite(losses[i]) and objective.success({k: v[i] for k, v in metrics.items()}) for i in range(len(losses))]
    )
    messages = tuple(_diagnose_search(h, nan) for h in np.asarray(history))
    result = SearchResult(
        rules, losses, metrics, success, history, method, wall, settings,
        converged=np.array([not m for m in messages]), convergence_messages=messages,
    )  # fmt: skip
    if messages and messages[result.best]:
        n_bad = sum(bool(m) for m in messages)
        _warn(
            f"{method} search: the best restart ({result.best}) has not converged: {messages[result.best]} "
            f"({n_bad} of {len(messages)} restarts not converged)",
            ConvergenceWarning,
        )
    return result


def _scales(objective, rule, params, key, precondition):
    """Per-parameter scales s (pytree like ``params``): the search runs in φ = θ·s."""
    ones = jax.tree_util.tree_map(jnp.ones_like, params)
    if not precondition:
        return ones
    s = objective.parameter_scales(rule, key)
    if s is None:
        return ones
    s = jax.tree_util.tree_map(lambda a, b: jnp.broadcast_to(jnp.asarray(a, b.dtype), b.shape), s, params)
    if not all(bool(jnp.all(jnp.isfinite(a) & (a > 0))) for a in jax.tree_util.tree_leaves(s)):
        raise DiscoveryError(
            f"{type(objective).__name__}.parameter_scales returned non-positive or non-finite scales; "
            "fix it or search with precondition=False"
        )
    return s


def _total_loss(phi, episode, objective, static, l1, scales, mask):
    """Loss of φ-parameters: the objective at θ = φ/s plus ``l1``·Σ|φ| over free entries."""
    theta = jax.tree_util.tree_map(lambda f, s: f / s, phi, scales)
    pen = sum(jnp.sum(jnp.abs(f) * m) for f, m in zip(jax.tree_util.tree_leaves(phi), jax.tree_util.tree_leaves(mask)))
    return objective.loss(eqx.combine(theta, static), episode) + l1 * pen


__all__ = ["SearchResult", "evaluate", "sample_episode"]

"""Analysis of B3 searches: the manifold check, agreement between optimisers, and the held-out probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from ._common import DiscoveryError
from ._optimise import evaluate
from ._homeostasis import HomeostasisObjective, TraceRule
from ._memory import speed_matched
from ._probes import FamiliarityScore, familiarity_probe, generalisation
from ._report import _table, manifold_table, plot_manifold


@dataclass
class HomeostasisAnalysis:
    """What :func:`analyse_homeostasis` returns.

    Attributes:
        nu_pre, target: the task's inhibitory input rate and target rate (Hz).
        tables: per method, :func:`manifold_table` (α … κ, ν*, simulated rate, residuals, position).
        successes: per method, which restarts meet the objective.
        familiarity: per method, the familiarity probe of every restart (or ``None``).
        generalisation: per method, variant name → |rate − target| (Hz) per restart.
        auc_threshold: kept for files and calls of earlier versions; the summary no longer counts
            change-score AUCs above it (that score reads each pattern's own "before" response).
        familiarity_controls: the same probe (same episode and patterns) on the controls: no
            plasticity and Vogels' rule at ``CONTROL_SPEEDS`` times its strength (or ``None``).
    """

    nu_pre: float
    target: float
    tables: dict[str, dict[str, np.ndarray]]
    successes: dict[str, np.ndarray]
    familiarity: dict[str, FamiliarityScore] | None = None
    generalisation: dict[str, dict[str, np.ndarray]] | None = None
    auc_threshold: float = 0.6
    wall_times: dict[str, float] = field(default_factory=dict)
    familiarity_controls: FamiliarityScore | None = None

    def summary(self) -> dict[str, dict[str, float]]:
        """Per method: solutions, manifold residuals, spread along the manifold, familiarity fraction."""
        out = {}
        for m, t in self.tables.items():
            ok = self.successes[m]
            row = {"solutions": int(ok.sum()), "restarts": int(ok.size), "wall_time_s": self.wall_times.get(m, float("nan"))}
            if ok.any():
                rel = np.abs(t["target_error"][ok]) / self.target
                row.update(
                    target_error_median_pct=float(100 * np.median(rel)),
                    target_error_max_pct=float(100 * np.max(rel)),
                    sim_residual_median_hz=float(np.median(np.abs(t["residual"][ok]))),
                    sim_residual_max_hz=float(np.max(np.abs(t["residual"][ok]))),
                    **_residual_z_summary(t, ok),
                    position_min=float(np.min(t["position"][ok])),
                    position_max=float(np.max(t["position"][ok])),
                )
                if self.familiarity is not None:
                    row.update(self._familiarity_row(self.familiarity[m], ok))
                if self.generalisation is not None:
                    for name, err in self.generalisation[m].items():
                        row[f"generalises_{name}"] = float(np.mean(err[ok] < 0.1 * self.target))
            out[m] = row
        return out

    def _familiarity_row(self, score: FamiliarityScore, ok: np.ndarray) -> dict[str, float]:
        """The controlled familiarity figures of the solutions: after-only AUC against its null, speed, and
        the difference from the Vogels control nearest in speed (the AUC grows with speed, which B3 leaves free)."""
        auc, p95, speed = score.auc_after[ok], score.null_p95[ok], score.speed[ok]
        row = {
            "familiarity_auc_after_median": float(np.nanmedian(auc)),
            "familiarity_above_chance": float(np.mean(auc > p95)),
            "familiarity_speed_median": float(np.median(speed)),
        }
        c = self.familiarity_controls
        if c is not None:
            nearest = 1 + speed_matched(speed, c.speed[1:])  # row 0 of the controls is no plasticity
            row["familiarity_minus_speed_matched_vogels_median"] = float(np.nanmedian(auc - c.auc_after[nearest]))
            row["familiarity_minus_no_plasticity_median"] = float(np.nanmedian(auc - c.auc_after[0]))
        return row

    def controls_table(self) -> str:
        """The controls' after-only AUC, its shuffled-label 95th percentile, and speed (Markdown)."""
        c = self.familiarity_controls
        rows = [[name, _fmt(c.auc_after[i]), _fmt(c.null_p95[i]), _fmt(float(c.speed[i]))] for i, name in enumerate(control_names())]
        return _table(rows, ["control", "AUC (after only)", "chance 95th pct", "speed"])

    def agreement(self) -> dict[str, float]:
        """How CMA-ES and gradient descent compare (needs both): medians of ν*/target − 1 and of the position."""
        if not {"gradient", "cma-es"} <= set(self.tables):
            raise DiscoveryError("agreement needs results of both 'gradient' and 'cma-es'")
        out = {}
        for m in ("gradient", "cma-es"):
            ok = self.successes[m]
            t = self.tables[m]
            out[f"{m}_nu_star_median_hz"] = float(np.median(t["nu_star"][ok])) if ok.any() else float("nan")
            out[f"{m}_position_median"] = float(np.median(t["position"][ok])) if ok.any() else float("nan")
        out["nu_star_difference_hz"] = abs(out["gradient_nu_star_median_hz"] - out["cma-es_nu_star_median_hz"])
        return out

    def markdown(self) -> str:
        s = self.summary()
        keys = sorted({k for row in s.values() for k in row})
        rows = [[k] + [_fmt(s[m].get(k, float("nan"))) for m in s] for k in keys]
        text = [
            "Analytic manifold: ν* = −α·ν_pre / (β + (κτ_post + γτ_pre)·ν_pre) "
            f"with ν_pre = {self.nu_pre:g} Hz, target {self.target:g} Hz. `target_error` = |ν*(rule) − target| / target; "
            "`sim_residual` = |simulated rate − ν*(rule)| (the rate averaged over `manifold_runs` independent runs; "
            "`sim_residual_z_max` = the largest |residual| / standard error, `off_manifold_3se` = solutions more than "
            f"three standard errors and {OFF_MANIFOLD_MIN_RELATIVE:.0%} of ν* off); `position` = β/(β + (κτ_post + γτ_pre)·ν_pre) "
            "(0: Vogels-like pure pairing, 1: purely postsynaptic).",
            "",
            _table(rows, ["quantity"] + list(s)),
        ]
        if self.familiarity is not None:
            text += [
                "",
                "Familiarity (`familiarity_probe`): the AUC with which the after-familiarisation responses alone "
                "(distance from the baseline rate) tell novel from familiar patterns; `familiarity_above_chance` = "
                "the fraction of solutions above their own shuffled-label 95th percentile. The AUC grows with the "
                "rule's speed, which the homeostasis task leaves free, so each solution is also compared with the "
                "Vogels rule nearest to it in speed (`familiarity_minus_speed_matched_vogels_median`) and with no "
                "plasticity. A solution detects familiarity only where it beats its null and these controls.",
            ]
            if self.familiarity_controls is not None:
                text += ["", self.controls_table()]
        if len(self.tables) == 2 and {"gradient", "cma-es"} <= set(self.tables):
            a = self.agreement()
            text += ["", "Agreement between the optimisers: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in a.items())]
        return "\n".join(text)

    def figure(self):
        return plot_manifold(self.tables, self.nu_pre, self.target, self.successes)


#: A solution counts as off the manifold when its simulated rate is more than 3 standard errors *and* this
#: fraction of ν* from it: the rate model's runs from different initial weights all settle on one rate, so its
#: standard error is tiny and a residual of 0.009 Hz (0.2 % of 5 Hz, a solution still settling) read 3 SE.
OFF_MANIFOLD_MIN_RELATIVE = 0.01


def _residual_z_summary(t, ok) -> dict[str, float]:
    """With resampled rates: the largest |residual| / SE and how many solutions sit off the manifold (more than 3 SE
    and ``OFF_MANIFOLD_MIN_RELATIVE`` of ν* from it)."""
    if "residual_z" not in t:
        return {}
    z = np.abs(t["residual_z"][ok])
    if not np.isfinite(z).any():  # a deterministic model: no sampling error to compare with
        return {}
    material = np.abs(t["residual"][ok]) > OFF_MANIFOLD_MIN_RELATIVE * np.abs(t["nu_star"][ok])
    return {
        "sim_residual_z_max": float(np.nanmax(z)),
        "off_manifold_3se": int(np.sum((z > 3) & material)),
        "rate_se_median_hz": float(np.median(t["rate_se"][ok])),
        "manifold_runs": int(t["runs"][0]),
    }


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.3g}" if np.isfinite(v) else "–"


#: Relative spread of a rate over runs below which it is rounding, not sampling noise.
RATE_RESOLUTION = 1e-5


def resample_manifold(objective, rules, keys, nu_star) -> dict[str, np.ndarray]:
    """Every rule's simulated rate over independent episodes (one per key), against its fixed point ν*.

    Returns per restart ``rate`` (the mean over runs; replaces the single held-out run's rate),
    ``rate_se`` (standard error over runs; 0 for a deterministic model), ``residual`` = rate − ν*,
    ``residual_z`` = residual / rate_se (NaN where rate_se is at rounding level, below ``RATE_RESOLUTION``
    of the rate: a deterministic model) and ``runs``. With a spiking neuron a
    residual is a finding only where |residual_z| is large: one run's rate carries the Poisson counting
    noise of its spikes.
    """
    if len(keys) < 2:
        raise DiscoveryError(f"resampling the manifold needs at least 2 runs; got {len(keys)}")
    rates = np.stack([evaluate(objective, rules, k)["rate_hz"] for k in keys]).astype(float)  # (runs, restarts)
    mean = rates.mean(axis=0)
    se = rates.std(axis=0, ddof=1) / np.sqrt(rates.shape[0])
    residual = mean - np.asarray(nu_star, dtype=float)
    # a spread at the level of floating-point rounding is no sampling noise: a deterministic model's
    # residuals are read as they are (z = NaN), not as many "standard errors" of its rounding
    noisy = se > RATE_RESOLUTION * np.maximum(np.abs(mean), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(noisy, residual / se, np.nan)
    return {"rate": mean, "rate_se": se, "residual": residual, "residual_z": z, "runs": np.full(mean.shape, rates.shape[0])}


def analyse_homeostasis(
    results: Mapping[str, object],
    objective,
    *,
    key: PRNGKeyArray,
    familiarity: bool = True,
    generalise_to: Sequence[float] = (5.0, 20.0),
    auc_threshold: float = 0.6,
    manifold_runs: int = 8,
) -> HomeostasisAnalysis:
    """Check B3 searches (``{"gradient": result, "cma-es": result}``) against the manifold and probe them.

    ``familiarity`` runs :func:`familiarity_probe` (rate model only); ``generalise_to``
    re-runs every rule with other inhibitory input rates (Hz) and records |rate − target|.
    ``manifold_runs`` independent episodes re-measure every rule's rate (:func:`resample_manifold`), so
    a residual from the manifold is read against its standard error, not one noisy run.
    """
    nu_pre, target = objective.nu_inh, objective.target
    if manifold_runs < 0:
        raise DiscoveryError(f"manifold_runs must be ≥ 0; got {manifold_runs}")
    tables = {m: manifold_table(r, nu_pre, target) for m, r in results.items()}
    if manifold_runs:
        keys = jax.random.split(jax.random.fold_in(key, 1), manifold_runs)
        for m, r in results.items():
            tables[m].update(resample_manifold(objective, r.rules, keys, tables[m]["nu_star"]))
    successes = {m: np.asarray(r.success, bool) for m, r in results.items()}
    rate_model = isinstance(objective, HomeostasisObjective)
    k_fam, k_gen = jax.random.split(key)
    fam = controls = None
    if familiarity and rate_model:
        fam = {m: familiarity_probe(objective, r.rules, key=k_fam) for m, r in results.items()}
        controls = familiarity_probe(objective, control_rules(objective), key=k_fam)  # same episode and patterns
    gen = None
    if generalise_to and rate_model:
        variants = {f"nu_inh_{v:g}Hz": objective.with_rates(nu_inh=v) for v in generalise_to}
        gen = {}
        for m, r in results.items():
            g = generalisation(variants, r.rules, key=k_gen)
            gen[m] = {name: np.abs(met["rate_hz"] - target) for name, met in g.items()}
    return HomeostasisAnalysis(
        nu_pre, target, tables, successes, fam, gen, auc_threshold, {m: float(r.wall_time) for m, r in results.items()}, controls
    )


#: Speeds of the Vogels control in the familiarity probe (multiples of its coefficients).
CONTROL_SPEEDS = (0.25, 1.0, 4.0, 16.0)


def control_names() -> list[str]:
    return ["no plasticity"] + [f"Vogels ×{s:g}" for s in CONTROL_SPEEDS]


def control_rules(objective: HomeostasisObjective) -> TraceRule:
    """A stack of rules: no plasticity, then Vogels' rule for the task's target with its coefficients × ``CONTROL_SPEEDS``."""
    v = TraceRule.vogels(objective.target, tau=objective.tau_pre, learning_rate=objective.learning_rate)
    scale = np.concatenate([[0.0], CONTROL_SPEEDS])
    return TraceRule(
        scale * float(v.alpha), scale * float(v.beta), scale * float(v.gamma), scale * float(v.kappa),
        tau_pre=v.tau_pre, tau_post=v.tau_post, learning_rate=v.learning_rate,
    )  # fmt: skip


__all__ = ["HomeostasisAnalysis", "analyse_homeostasis", "resample_manifold"]

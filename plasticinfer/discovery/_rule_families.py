"""One call for the whole study: family posterior by NPE, its checks, and the memory probe with controls.

Used by ``plasticinfer discover families``, ``benchmarks/bench_families.py`` and tutorial 08.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._fit import check_count
from ._common import DiscoveryError
from ._memory import (
    FamiliarityProtocol,
    MemoryGroup,
    MemoryReport,
    hand_written_rules,
    make_patterns,
    memory_report,
    null_group_means,
    score_rules,
    speed_matched,
)
from ._plausibility import FamilyTask, PlausibilityConstraints, PredictiveCheck, predictive_check
from ._sbi import NPEResult, SBCResult, run_npe, sbc


@dataclass
class FamiliesResult:
    task: FamilyTask
    constraints: PlausibilityConstraints
    npe: NPEResult
    posterior_samples: np.ndarray  # (sample, parameter) at the constraints' target
    check: PredictiveCheck
    sbc: SBCResult | None
    memory: MemoryReport | None
    memory_names: dict[str, list[str]]

    @property
    def simulated_seconds_per_wall_second(self) -> float:
        secs = self.task.n_segments * self.task.segment_steps * self.task.network.dt
        return len(self.npe.theta) * secs / max(self.npe.simulation_seconds, 1e-9)

    def to_dataset(self):
        """The content of the file :meth:`save` writes (format ``plasticinfer-families/1``).

        For reading by eye: ``posterior`` (sample, parameter), ``theta`` (simulation, parameter), ``summaries``
        (simulation, summary), ``accepted`` (simulation) and attributes ``n_neurons``, ``plastic``,
        ``posterior_fraction_plausible``, ``prior_fraction_plausible`` (no wall times: the same study saves the same bytes). For
        :meth:`load`: the NPE result under ``npe.`` (as ``NPEResult.save`` writes it), the SBC result under
        ``sbc.`` (if any), and the task, constraints, predictive check, memory report and names as a record
        (``record.<path>`` arrays, ``record_structure``).
        """
        import xarray as xr

        from .._results_io import nest, record_dataset, tagged

        names = list(self.task.parameter_names)
        ds = xr.Dataset(
            {
                "posterior": (("sample", "parameter"), self.posterior_samples),
                "theta": (("simulation", "parameter"), self.npe.theta),
                "summaries": (("simulation", "summary"), self.npe.x),
                "accepted": (("simulation",), self.constraints.accept(self.npe.x, self.task.plastic).astype(np.int8)),
            },
            coords={"parameter": names, "summary": list(self.task.summary_names)},
            attrs={
                "n_neurons": self.task.network.n,
                "plastic": ",".join(self.task.plastic),
                "posterior_fraction_plausible": self.check.posterior_fraction,
                "prior_fraction_plausible": self.check.prior_fraction,
            },
        )
        record = {"task": self.task, "constraints": self.constraints, "check": self.check, "memory": self.memory, "memory_names": self.memory_names}
        parts = [ds, record_dataset(record, "record"), nest(self.npe.to_dataset(), "npe")]
        if self.sbc is not None:
            parts.append(nest(self.sbc.to_dataset(), "sbc"))
        return tagged(xr.merge(parts, combine_attrs="no_conflicts"), "families")

    def save(self, path):
        """Write the whole study to one self-describing netCDF file, atomically (see :meth:`to_dataset`)."""
        from .._io import write_netcdf

        return write_netcdf(self.to_dataset(), path)

    @classmethod
    def load(cls, path) -> "FamiliesResult":
        """Read a file written by :meth:`save` (or ``families.nc`` of ``plasticinfer discover families``); any other
        file is refused with one :class:`~plasticinfer.DataError` naming the kind it holds."""
        from .._results_io import check_kind, read_pytree, read_result, reading, unnest

        ds = read_result(path, "families")
        with reading(path, "rule-families result"):
            record = read_pytree(ds, "record", path)
            npe = NPEResult.from_dataset(check_kind(unnest(ds, "npe"), path, "npe"), path)
            sbc_ds = unnest(ds, "sbc")
            sbc_res = SBCResult.from_dataset(check_kind(sbc_ds, path, "sbc"), path) if sbc_ds.attrs else None
            return cls(
                record["task"], record["constraints"], npe, ds["posterior"].values, record["check"], sbc_res,
                record["memory"], record["memory_names"],
            )  # fmt: skip

    def markdown(self) -> str:
        t, c = self.task, self.constraints
        secs = t.n_segments * t.segment_steps * t.network.dt
        lines = [
            "# Families of co-active plasticity rules in a recurrent E/I network",
            "",
            f"Network: {t.network.n_exc} E / {t.network.n - t.network.n_exc} I LIF neurons, dt = {t.network.dt * 1e3:g} ms; "
            f"plastic types: {', '.join(t.plastic)} (6 parameters each); {secs:g} s per simulation.",
            f"Constraints: E rate {c.rate_e} Hz, I rate {c.rate_i} Hz, CV ISI {c.cv_isi}, weight ratio {c.w_ratio}, no runaway steps.",
            "",
            "## Simulation-based inference",
            "",
            f"{len(self.npe.theta)} simulations ({self.npe.dropped} non-finite dropped) " + (
                f"at {self.npe.simulations_per_minute:.1f} per minute ({self.simulated_seconds_per_wall_second:.2f} simulated s per "
                f"wall s, batched); NPE training {self.npe.training_seconds:.1f} s."
                if np.isfinite(self.npe.simulation_seconds) else "(speeds not saved in results files)."
            ),
            "",
            "### Posterior predictive check (fraction meeting every constraint)",
            "",
            self.check.markdown(),
            "",
        ]
        post = self.posterior_samples
        lines += ["### Posterior (median, 5–95 %)", "", "| parameter | median | 5 % | 95 % |", "|---|---|---|---|"]
        for k, name in enumerate(t.parameter_names):
            q = np.quantile(post[:, k], [0.5, 0.05, 0.95])
            lines.append(f"| {name} | {q[0]:.3g} | {q[1]:.3g} | {q[2]:.3g} |")
        if self.sbc is not None:
            lines += ["", f"### SBC on the network simulator ({len(self.sbc.ranks)} draws)", "", "| parameter | 90 % coverage | 50 % coverage |", "|---|---|---|"]
            for k, name in enumerate(self.sbc.names):
                lines.append(f"| {name} | {self.sbc.coverage[0.9][k]:.2f} | {self.sbc.coverage[0.5][k]:.2f} |")
        if self.memory is not None:
            lines += ["", "## Familiarity memory (readout on after-familiarisation responses)", "", self.memory.markdown()]
        return "\n".join(lines) + "\n"


def memory_study(
    key: PRNGKeyArray, task: FamilyTask, check: PredictiveCheck, protocol: FamiliarityProtocol | None = None, *,
    n_memory: int = 8, n_shuffles: int = 50,
) -> tuple[MemoryReport, dict]:
    """The familiarity probe with its controls for the rules a predictive check found plausible.

    Groups: up to ``n_memory`` posterior draws that met every constraint in ``check`` (the
    stability-selected rules; all posterior draws if none did), as many prior draws, no plasticity
    (each run its own input noise), and the hand-written rules at four speeds, each scored by a
    readout of after-familiarisation responses against its shuffled-label null; the candidate is
    also compared with speed-matched hand-written rules. Returns the report and the hand-written
    rules' names. Run it again with another ``protocol`` (e.g. a longer ``delay``) on the same
    check to ask how long the memory lasts.
    """
    return _memory_study(*jax.random.split(key, 4), task, check, protocol or FamiliarityProtocol(), n_memory, n_shuffles)


def _memory_study(k_mem, k_pat, k_none, k_prior, task, check, protocol, n_memory, n_shuffles):
    rng = np.random.default_rng(int(jax.random.randint(k_mem, (), 0, 2**31 - 1)))
    mb = max(n_memory, 2)  # one compiled protocol batch for every group
    pats = make_patterns(k_pat, task, protocol)
    dtype = task.network.weights.dtype
    plausible = check.posterior_theta[check.posterior_accepted]
    cand = plausible[:n_memory] if len(plausible) else check.posterior_theta[:n_memory]
    groups_theta = {
        "posterior (plausible)" if len(plausible) else "posterior (none plausible)": cand,
        "prior": np.asarray(task.prior().sample(k_prior, n_memory)),
    }
    hand, hand_names = hand_written_rules(task)
    groups = {}
    for gname, th in groups_theta.items():
        auc, sp, nl = score_rules(task, protocol, jnp.asarray(th, dtype), pats, k_mem, rng=rng, n_shuffles=n_shuffles, batch_size=mb)
        groups[gname] = MemoryGroup(gname, auc, sp, null_group_means(nl, rng))
    zero = np.tile(np.array([0, 0, 0, 0, 0.02, 0.02]), len(task.plastic))
    zeros = np.tile(zero, (max(2, n_memory // 2), 1))
    n_auc, n_sp, n_nl = score_rules(task, protocol, jnp.asarray(zeros, dtype), pats, jax.random.split(k_none, len(zeros)), rng=rng, n_shuffles=n_shuffles, batch_size=mb)
    groups["no plasticity"] = MemoryGroup("no plasticity", n_auc, n_sp, null_group_means(n_nl, rng))  # own input noise per run
    h_auc, h_sp, h_nl = score_rules(task, protocol, jnp.asarray(hand, dtype), pats, k_mem, rng=rng, n_shuffles=n_shuffles, batch_size=mb)
    groups["hand-written"] = MemoryGroup("hand-written", h_auc, h_sp, null_group_means(h_nl, rng))
    cname = next(iter(groups_theta))
    matched = h_auc[speed_matched(groups[cname].speed, h_sp)]
    return memory_report(groups, cname, matched, rng=rng), {"hand-written": hand_names}


def run_families(
    key: PRNGKeyArray,
    task: FamilyTask,
    constraints: PlausibilityConstraints | None = None,
    *,
    n_simulations: int = 256,
    n_posterior: int = 1000,
    n_predictive: int = 64,
    n_sbc: int = 0,
    memory: bool = True,
    n_memory: int = 8,
    protocol: FamiliarityProtocol | None = None,
    batch_size: int = 32,
    n_shuffles: int = 50,
    **npe_kwargs,
) -> FamiliesResult:
    """NPE family posterior for ``task``; predictive check; optional SBC on the network; optional memory probe with controls."""
    batch_size = check_count(batch_size, "batch_size", error=DiscoveryError)
    n_predictive = check_count(n_predictive, "n_predictive", error=DiscoveryError)
    constraints = constraints or PlausibilityConstraints()
    protocol = protocol or FamiliarityProtocol()
    k_npe, k_post, k_chk, k_sbc, *k_memory = jax.random.split(key, 8)
    prior = task.prior()
    npe = run_npe(k_npe, task.simulator, prior, n_simulations=n_simulations, batch_size=batch_size, **npe_kwargs)
    x_obs = jnp.asarray(constraints.target_summaries(task.plastic))
    samples = np.asarray(npe.posterior.sample(k_post, x_obs, n_posterior))
    check = predictive_check(k_chk, npe.posterior, task, constraints, n=n_predictive, batch_size=batch_size)
    sbc_res = sbc(k_sbc, npe.posterior, task.simulator, n_tests=n_sbc, n_samples=100, batch_size=batch_size) if n_sbc else None
    mem, names = _memory_study(*k_memory, task, check, protocol, n_memory, n_shuffles) if memory else (None, {})
    return FamiliesResult(task, constraints, npe, samples, check, sbc_res, mem, names)


__all__ = ["FamiliesResult", "memory_study", "run_families"]

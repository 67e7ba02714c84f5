"""Simulation-based calibration (SBC): does the posterior put the truth where it should, dataset after dataset?

For each of many datasets: draw parameters from the prior, simulate data with them, sample the
posterior, and record the rank of the true value among (thinned) posterior draws. If inference is
calibrated the ranks are uniform and a central 90 % interval covers the truth in 90 % of datasets
(Talts et al. 2018).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pandas as pd
from jaxtyping import PRNGKeyArray
from numpyro.infer import Predictive

from .._errors import ModelError
from .._fit import fit
from .._interrupt import finished
from .._progress import show_progress
from .._results_io import duration
from .._model import PlasticityModel
from .._trial_data import TrialData
from ._arviz import check_interval
from ._numpyro_model import ModelSpec
from ._priors import Priors
from ._sample import NUTS, NUTSRunner


def rank_bins(n_rank_draws: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins of the rank values 0 … n_rank_draws for the uniformity test and the rank plot.

    Bin k holds the integer values ``edges[k]`` … ``edges[k+1] − 1``: runs of consecutive values as equal as
    integers allow, none empty (fewer bins than asked if there are fewer values). ``share[k]`` is the
    fraction of datasets uniform ranks put in bin k (its number of values over n_rank_draws + 1).
    """
    if int(bins) < 1:
        raise ModelError(f"bins={bins}: the rank histogram needs at least one bin")
    n_values = int(n_rank_draws) + 1
    edges = np.unique(np.round(np.linspace(0, n_values, min(int(bins), n_values) + 1)).astype(np.int64))
    return edges, np.diff(edges) / n_values


def rank_counts(ranks: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of the integer ``ranks`` fall in each bin of :func:`rank_bins`."""
    n_bins = len(edges) - 1
    return np.bincount(np.searchsorted(edges, np.asarray(ranks, dtype=np.int64), side="right") - 1, minlength=n_bins)[:n_bins]


@dataclass
class CalibrationResult:
    """Ranks and coverage from simulation-based calibration.

    Attributes:
        names: one label per scalar parameter (``theta[x*r]``, ``bias``, …).
        truth: true values, (dataset, parameter).
        ranks: rank of the truth among ``n_rank_draws`` thinned posterior draws, in 0 … n_rank_draws.
        n_rank_draws: thinned draws per dataset.
        covered: whether the central ``interval`` of the posterior covered the truth.
        interval: the interval probability (0.9).
        posterior_mean, posterior_sd: per dataset and parameter.
        divergences: divergent transitions per dataset.
        max_rhat: largest R-hat per dataset.
        seconds: total wall time; NaN for a loaded result (files hold no wall times: the same run saves the
            same bytes).
    """

    names: list[str]
    truth: np.ndarray
    ranks: np.ndarray
    n_rank_draws: int
    covered: np.ndarray
    interval: float
    posterior_mean: np.ndarray
    posterior_sd: np.ndarray
    divergences: np.ndarray
    max_rhat: np.ndarray
    seconds: float

    @property
    def n_datasets(self) -> int:
        return int(self.ranks.shape[0])

    @property
    def coverage(self) -> pd.Series:
        """Fraction of datasets whose interval covered the truth, per parameter."""
        return pd.Series(self.covered.mean(0), index=self.names, name=f"coverage_{int(100 * self.interval)}")

    @property
    def overall_coverage(self) -> float:
        return float(self.covered.mean())

    def uniformity(self, bins: int = 10) -> pd.DataFrame:
        """χ² test of rank uniformity per parameter (``bins`` bins) and a KS test, with p-values.

        A rank takes one of the ``n_rank_draws + 1`` integer values 0 … n_rank_draws. The χ² test groups
        them into ``bins`` runs of consecutive values (fewer bins if there are fewer values) and expects each
        bin to hold a share of the datasets proportional to the number of rank values in it, so bins of
        unequal width (101 values in 10 bins) are tested against what uniform ranks give them. The KS test
        is run on randomised ranks ``(rank + U) / (n_rank_draws + 1)``, U ~ Uniform(0, 1), which are exactly
        Uniform(0, 1) when the ranks are uniform (a KS test of the discrete ranks themselves would reject
        perfectly uniform ranks); U comes from a fixed seed (per parameter), so the same ranks give the same
        p-value every time.

        The last row, ``all``, pools every parameter's χ² (df = the sum of the parameters' df).
        """
        from scipy import stats  # here, not at import: scipy.stats costs every `import plasticinfer` ~0.5 s

        n_values = int(self.n_rank_draws) + 1
        edges, share = rank_bins(self.n_rank_draws, bins)
        rows = []
        total_chi2, total_df = 0.0, 0
        for j, name in enumerate(self.names):
            ranks = np.asarray(self.ranks[:, j], dtype=np.int64)
            counts = rank_counts(ranks, edges)
            chi2, p_chi2 = stats.chisquare(counts, f_exp=share * counts.sum())
            u = (ranks + np.random.default_rng([20180, j]).random(ranks.shape)) / n_values
            ks = stats.kstest(u, "uniform")
            df = len(share) - 1
            rows.append({"parameter": name, "chi2": chi2, "df": df, "p_chi2": p_chi2, "ks": ks.statistic, "p_ks": ks.pvalue})
            total_chi2 += chi2
            total_df += df
        rows.append({"parameter": "all", "chi2": total_chi2, "df": total_df, "p_chi2": stats.chi2.sf(total_chi2, total_df), "ks": np.nan, "p_ks": np.nan})
        return pd.DataFrame(rows).set_index("parameter")

    def summary(self) -> str:
        u = self.uniformity()
        cov = self.coverage
        lines = [
            f"simulation-based calibration: {self.n_datasets} datasets, ranks among {self.n_rank_draws} draws, "
            f"{duration(self.seconds, '.0f')}",
            f"{int(100 * self.interval)} % interval coverage: overall {100 * self.overall_coverage:.1f} %",
        ]
        for name in self.names:
            lines.append(
                f"  {name:<20} coverage {100 * cov[name]:5.1f} %   rank χ² p = {u.loc[name, 'p_chi2']:.3f}   KS p = {u.loc[name, 'p_ks']:.3f}"
            )
        lines.append(f"  all parameters: rank χ² p = {u.loc['all', 'p_chi2']:.3f}")
        rhat = self.max_rhat[np.isfinite(self.max_rhat)]
        lines.append(
            f"  datasets with R-hat > 1.01: {int((rhat > 1.01).sum())} of {self.n_datasets} (worst {np.max(rhat) if rhat.size else np.nan:.3f}); "
            f"with divergent transitions: {int((self.divergences > 0).sum())} ({int(self.divergences.sum())} in total)"
        )
        return "\n".join(lines)

    def plot(self, bins: int = 10):
        from ._plots import plot_ranks

        return plot_ranks(self.ranks, self.n_rank_draws, self.names, dict(self.coverage), bins=bins)

    def to_dataset(self):
        """The content of the file :meth:`save` writes (format ``plasticinfer-calibration/1``): ``truth``,
        ``rank``, ``covered``, ``posterior_mean``, ``posterior_sd`` over (dataset, parameter), ``divergences`` and
        ``max_rhat`` per dataset; attributes ``n_rank_draws``, ``interval`` (no wall time)."""
        import xarray as xr

        from .._results_io import tagged

        dp = ("dataset", "parameter")
        ds = xr.Dataset(
            {
                "truth": (dp, np.asarray(self.truth)),
                "rank": (dp, np.asarray(self.ranks)),
                "covered": (dp, np.asarray(self.covered, dtype=np.int8)),
                "posterior_mean": (dp, np.asarray(self.posterior_mean)),
                "posterior_sd": (dp, np.asarray(self.posterior_sd)),
                "divergences": ("dataset", np.asarray(self.divergences)),
                "max_rhat": ("dataset", np.asarray(self.max_rhat)),
            },
            coords={"parameter": list(self.names)},
            attrs={"n_rank_draws": int(self.n_rank_draws), "interval": float(self.interval)},
        )
        return tagged(ds, "calibration")

    def save(self, path) -> Path:
        """Write the result to one self-describing netCDF file, atomically (see :meth:`to_dataset`)."""
        from .._io import write_netcdf

        return write_netcdf(self.to_dataset(), path)

    @classmethod
    def load(cls, path) -> "CalibrationResult":
        """Read a file written by :meth:`save`; any other file is refused with one
        :class:`~plasticinfer.DataError` naming the kind it holds."""
        from .._results_io import read_result, reading

        ds = read_result(path, "calibration")
        with reading(path, "calibration result"):
            return cls(
                names=[str(n) for n in ds["parameter"].values],
                truth=ds["truth"].values,
                ranks=ds["rank"].values,
                n_rank_draws=int(ds.attrs["n_rank_draws"]),
                covered=ds["covered"].values.astype(bool),
                interval=float(ds.attrs["interval"]),
                posterior_mean=ds["posterior_mean"].values,
                posterior_sd=ds["posterior_sd"].values,
                divergences=ds["divergences"].values,
                max_rhat=ds["max_rhat"].values,
                seconds=float(ds.attrs.get("seconds", np.nan)),
            )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per (dataset, parameter): truth, rank, covered, posterior mean and sd."""
        d, k = self.ranks.shape
        return pd.DataFrame(
            {
                "dataset": np.repeat(np.arange(d), k),
                "parameter": np.tile(self.names, d),
                "truth": self.truth.ravel(),
                "rank": self.ranks.ravel(),
                "covered": self.covered.ravel(),
                "posterior_mean": self.posterior_mean.ravel(),
                "posterior_sd": self.posterior_sd.ravel(),
            }
        )


def _rhat(x: np.ndarray) -> float:
    """Split-R-hat of one scalar's draws (chain, draw)."""
    c, n = x.shape
    if c * (n // 2) < 4 or n < 4:
        return float("nan")
    half = n // 2
    s = np.concatenate([x[:, :half], x[:, half : 2 * half]], axis=0)
    m = s.shape[1]
    w = s.var(axis=1, ddof=1).mean()
    b = m * s.mean(axis=1).var(ddof=1)
    var = (m - 1) / m * w + b / m
    return float(np.sqrt(var / w)) if w > 0 else float("nan")


def simulation_based_calibration(
    model: PlasticityModel,
    simulate: Callable[[PRNGKeyArray, PlasticityModel], TrialData],
    *,
    key: PRNGKeyArray,
    n_datasets: int = 50,
    priors: Priors | None = None,
    method: NUTS | None = None,
    n_rank_draws: int = 99,
    interval: float = 0.9,
    warm_start: int = 0,
    progress: bool | Callable[[int, int], None] = True,
) -> CalibrationResult:
    """Run simulation-based calibration of :func:`sample` for a model and a data simulator.

    Args:
        model: the model; parameters that are not sampled keep its values, and its values are
            where every posterior starts (independent of the truth).
        simulate: ``(key, true_model) -> TrialData``: new data from a model with the true values
            (e.g. ``lambda k, m: simulate_choices(m, cues, p_reward, key=k)[0]``).
        key: PRNG key (split into prior, data and sampler keys).
        n_datasets: number of simulated datasets (≥ 50 for the reported figure).
        priors: the priors — simulation draws its truth from exactly these.
        method: NUTS settings (compiled once and reused for every dataset; datasets run one after another —
            vmapping NUTS across datasets is slower on a CPU, every step waits for the deepest tree).
        n_rank_draws: thinned posterior draws the truth is ranked among.
        interval: central posterior interval whose coverage is reported.
        warm_start: L-BFGS steps of a MAP fit on each dataset before sampling (0: every posterior
            starts at ``model``'s values). The start then depends on the data only, never on the
            truth, so the calibration stays valid; it is how ``sample`` is meant to be used.
        progress: ``True`` (default): a progress bar over the datasets, drawn only on a terminal or in
            Jupyter (as every ``progress=`` of the package); ``False``: none; or a callback
            ``(done, total)`` called after each dataset (e.g. to log progress from a batch job).
    """
    from tqdm.auto import tqdm

    priors = priors if priors is not None else Priors()
    from .._fit import check_count

    method = method if method is not None else NUTS(warmup=300, samples=300)
    if not isinstance(method, NUTS):
        raise ModelError(
            f"simulation_based_calibration runs NUTS (method=NUTS(...)); got {method!r}. SVI's draws are an "
            "approximation whose calibration this check would not measure."
        )
    check_count(n_datasets, "n_datasets")
    check_count(n_rank_draws, "n_rank_draws")
    check_interval(interval)
    total = method.chains * method.samples
    if n_rank_draws > total:
        raise ModelError(f"n_rank_draws={n_rank_draws} exceeds the {total} posterior draws per dataset; draw more samples")
    spec = ModelSpec(model, priors)
    k_prior, k_data, k_run = jax.random.split(key, 3)
    with jax.numpy_dtype_promotion("standard"):
        prior = Predictive(spec.numpyro_model, num_samples=n_datasets)(k_prior, None)
    prior = {k: np.asarray(v) for k, v in prior.items()}
    names = [n for g in spec.groups for n in g.scalar_names()]
    k = len(names)
    start = spec.latent_init(model)
    data_keys = jax.random.split(k_data, n_datasets)
    t0 = time.perf_counter()
    truth = np.concatenate([prior[g.name].reshape(n_datasets, -1) for g in spec.groups], axis=1)
    runner = NUTSRunner(spec, method)
    simulate_jit = eqx.filter_jit(simulate)
    run_keys = jax.random.split(k_run, n_datasets)
    by_chain_parts, div_parts = [], []
    callback = progress if callable(progress) else None
    quiet = callback is not None or not show_progress(bool(progress))
    with tqdm(total=n_datasets, desc="simulation-based calibration", unit="dataset", leave=False, disable=quiet) as bar:
        for i in range(n_datasets):
            true_model = spec.place({g.name: prior[g.name][i] for g in spec.groups})
            data = simulate_jit(data_keys[i], true_model)
            if warm_start > 0:
                fitted = finished(fit(
                    model, data, steps=warm_start, fit_initial_weights=priors.initial_weights is not None, progress=False,
                    devices=jax.devices()[:1],
                ))
                start_i = spec.latent_init(fitted.model)
            else:
                start_i = start
            draws, sample_stats, _ = runner.run(data, start_i, run_keys[i])
            by_chain_parts.append(
                np.concatenate([draws[g.name].reshape(method.chains, method.samples, -1) for g in spec.groups], axis=-1)
            )
            div_parts.append(int(sample_stats["diverging"].sum()))
            bar.update(1)
            if callback is not None:
                callback(i + 1, n_datasets)
    by_chain = np.stack(by_chain_parts)  # (dataset, chain, draw, parameter)
    divergences = np.asarray(div_parts, dtype=np.int64)
    flat = by_chain.reshape(n_datasets, -1, k)
    step = total // n_rank_draws
    thinned = by_chain[:, :, ::step].reshape(n_datasets, -1, k)[:, :n_rank_draws]
    ranks = (thinned < truth[:, None, :]).sum(1)
    lo, hi = 0.5 * (1 - interval), 0.5 * (1 + interval)
    q = np.quantile(flat, [lo, hi], axis=1)
    covered = (q[0] <= truth) & (truth <= q[1])
    mean, sd = flat.mean(1), flat.std(1)
    if method.chains > 1:
        max_rhat = np.array([np.nanmax([_rhat(by_chain[i, ..., j]) for j in range(k)]) for i in range(n_datasets)])
    else:
        max_rhat = np.full(n_datasets, np.nan)
    return CalibrationResult(
        names, truth, ranks, n_rank_draws, covered, interval, mean, sd, divergences, max_rhat, time.perf_counter() - t0
    )


__all__ = ["CalibrationResult", "simulation_based_calibration"]

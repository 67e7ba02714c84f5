"""The one module that talks to ArviZ: draws → InferenceData, netCDF, summaries, diagnostics, PSIS-LOO.

ArviZ 0.23 (``InferenceData``) is the version that installs on Python 3.11; ArviZ 1.x builds on
``xarray.DataTree``. Everything ArviZ-specific lives here, so moving to 1.x touches this file only.
An InferenceData saved to netCDF (groups ``posterior``, ``sample_stats``, ``log_likelihood``,
``observed_data``, ``constant_data``) is what the rest of the package calls the posterior file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import atomic_netcdf


class _LazyArviZ:
    """ArviZ, imported on first use: it brings matplotlib.pyplot along (over a second of every
    `import plasticinfer`, the command line's start-up included) and is needed only for posteriors."""

    def __getattr__(self, name):
        with warnings.catch_warnings():  # ArviZ 0.23 announces its 1.x refactor on import
            warnings.simplefilter("ignore", FutureWarning)
            import arviz

        return getattr(arviz, name)


az = _LazyArviZ()


def to_inference_data(
    posterior: Mapping[str, np.ndarray],
    *,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, np.ndarray] | None = None,
    observed_data: Mapping[str, np.ndarray] | None = None,
    constant_data: Mapping[str, np.ndarray] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    coords: Mapping[str, Sequence] | None = None,
    attrs: Mapping[str, object] | None = None,
) -> az.InferenceData:
    """Build an InferenceData from arrays with leading (chain, draw) axes (posterior, stats, log-lik)."""
    idata = az.from_dict(
        posterior={k: np.asarray(v) for k, v in posterior.items()},
        sample_stats={k: np.asarray(v) for k, v in (sample_stats or {}).items()} or None,
        log_likelihood={k: np.asarray(v) for k, v in (log_likelihood or {}).items()} or None,
        observed_data={k: np.asarray(v) for k, v in (observed_data or {}).items()} or None,
        constant_data={k: np.asarray(v) for k, v in (constant_data or {}).items()} or None,
        dims={k: list(v) for k, v in (dims or {}).items()},
        coords={k: list(v) for k, v in (coords or {}).items()},
        attrs=dict(attrs or {}),
    )
    idata.posterior.attrs.update(dict(attrs or {}))  # InferenceData-level attrs are not written to netCDF
    return idata


#: Attributes that differ between identical runs (ArviZ stamps every group with its creation time): not written.
UNSTABLE_ATTRS = ("created_at", "seconds")


def save(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write to netCDF (h5netcdf) atomically: a temporary file, then a rename.

    Deterministic: no group's attributes include a creation or wall time (:data:`UNSTABLE_ATTRS`), so the
    same draws save the same bytes.
    """
    groups = {}
    for name in idata.groups():
        ds = getattr(idata, name)
        groups[name] = ds.copy()  # shallow: the arrays are shared
        groups[name].attrs = {k: v for k, v in ds.attrs.items() if k not in UNSTABLE_ATTRS}
    stable = az.InferenceData(**groups)
    return atomic_netcdf(path, lambda tmp: stable.to_netcdf(str(tmp), engine="h5netcdf"))


def load(path: str | os.PathLike) -> az.InferenceData:
    return az.from_netcdf(str(path), engine="h5netcdf")


def group(idata: az.InferenceData, name: str):
    """A group as an xarray Dataset, or ``None`` if absent."""
    return getattr(idata, name) if name in idata.groups() else None


def diagnostics(idata: az.InferenceData, var_names: Sequence[str]) -> pd.DataFrame:
    """ESS (bulk, tail), MCSE and R-hat per scalar, indexed like ``theta[x*r]``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one chain: R-hat is undefined (NaN)
        warnings.simplefilter("ignore", UserWarning)
        return az.summary(idata, var_names=list(var_names), kind="diagnostics", round_to="none")


def scalar_labels(idata: az.InferenceData, var_names: Sequence[str]) -> list[str]:
    """Scalar labels in the order ``diagnostics`` uses (so tables can be joined)."""
    return list(diagnostics(idata, var_names).index)


def psis_loo(idata: az.InferenceData, var_name: str, valid: np.ndarray):
    """PSIS-LOO over the observations where ``valid`` (subject, trial) is True.

    Returns ArviZ's ``ELPDData`` (elpd_loo, p_loo, pointwise Pareto k).
    """
    ll = idata.log_likelihood[var_name]
    values = ll.values  # (chain, draw, subject, trial)
    flat = values[..., np.asarray(valid, bool)]
    tmp = az.from_dict(posterior={"_": np.zeros(values.shape[:2])}, log_likelihood={var_name: flat}, dims={var_name: ["observation"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return az.loo(tmp, pointwise=True, var_name=var_name)


__all__ = ["to_inference_data", "save", "load", "diagnostics", "psis_loo", "group", "scalar_labels"]


def check_interval(interval) -> float:
    """A central interval's mass: a fraction in (0, 1) (0.9, not 90)."""
    from .._fit import check_real

    return check_real(interval, "interval (a fraction, e.g. 0.9 for the central 90 % interval)", minimum=0, maximum=1,
                      open_low=True, open_high=True)


def summary_table(idata: az.InferenceData, var_names: Sequence[str], interval: float = 0.9) -> pd.DataFrame:
    """Mean, sd, equal-tailed ``interval``, MCSE, ESS (bulk, tail) and R-hat per scalar."""
    check_interval(interval)
    lo, hi = 50 * (1 - interval), 50 * (1 + interval)
    funcs = {
        f"q{lo:g}%": lambda x: np.quantile(x, lo / 100),
        f"q{hi:g}%": lambda x: np.quantile(x, hi / 100),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        table = az.summary(idata, var_names=list(var_names), stat_funcs=funcs, extend=True, round_to="none", hdi_prob=interval)
    hdi = [c for c in table.columns if c.startswith("hdi_")]
    return table.drop(columns=hdi)

"""FitResult ↔ xarray/netCDF."""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ._errors import DataError
from ._io import write_netcdf


def read_netcdf(path) -> xr.Dataset:
    """Load a netCDF file into memory, with one-line errors naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        return xr.load_dataset(path, engine="h5netcdf")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot read as netCDF ({type(e).__name__}: {e})") from None


def _array_leaves(model):
    return [l for l in jax.tree_util.tree_leaves(model) if eqx.is_array(l)]


def _leaf_vars(model, prefix: str) -> dict[str, xr.DataArray]:
    out = {}
    for i, leaf in enumerate(_array_leaves(model)):
        a = np.asarray(leaf)
        out[f"{prefix}{i:03d}"] = xr.DataArray(a, dims=[f"{prefix}{i:03d}_d{k}" for k in range(a.ndim)])
    return out


def fit_to_dataset(result) -> xr.Dataset:
    """Coefficients by name, loss histories and every model parameter, as one Dataset."""
    from ._fit import _coefficient_rows

    ds = xr.Dataset()
    rows = _coefficient_rows(result.model, result.independent)
    if rows:
        names = list(rows[0])
        values = np.array([[r[n] for n in names] for r in rows])
        if result.independent:
            ds["coefficient"] = xr.DataArray(values, dims=["subject", "term"], coords={"term": names})
        else:
            ds["coefficient"] = xr.DataArray(values[0], dims=["term"], coords={"term": names})
    lead = ["subject", "restart"] if result.independent else ["restart"]
    ds["loss"] = xr.DataArray(result.loss_history, dims=lead + ["step"])
    if result.validation_history is not None:
        ds["validation_loss"] = xr.DataArray(result.validation_history, dims=lead + ["evaluation"])
        ds = ds.assign_coords(evaluation_step=("evaluation", np.asarray(result.validation_steps)))
    ds["diverged_at"] = xr.DataArray(np.asarray(result.diverged_at), dims=lead)
    ds["best_restart"] = xr.DataArray(np.asarray(result.best_restart), dims=lead[:-1])
    ds = ds.assign(_leaf_vars(result.model, "param_"))
    ds = ds.assign(_leaf_vars(result.restarts, "restart_param_"))
    ds.attrs.update(
        {
            "equation": result.equation() if not result.independent else "per subject: see coefficient",
            "independent": int(result.independent),
            "stopped_early": int(result.stopped_early),
            "steps_run": int(result.steps_run),
            "settings": json.dumps(result.settings, default=str),
            "created_by": "plasticinfer",
        }
    )
    return ds


def save_fit(result, path) -> None:
    write_netcdf(fit_to_dataset(result), path)


def _fill(like, ds: xr.Dataset, prefix: str, path):
    """Rebuild a model of ``like``'s structure from stored leaves (shapes come from the file)."""
    leaves, treedef = jax.tree_util.tree_flatten(like)
    n_arrays = sum(eqx.is_array(leaf) for leaf in leaves)
    stored = sorted(v for v in ds.data_vars if v.startswith(prefix) and v[len(prefix) :].isdigit())
    if len(stored) != n_arrays:
        raise DataError(
            f"{path}: holds {len(stored)} {prefix}* arrays but the template model has {n_arrays}; "
            "pass like= a model built exactly as the one that was fitted"
        )
    values = iter(stored)
    out = [jnp.asarray(ds[next(values)].values, dtype=leaf.dtype) if eqx.is_array(leaf) else leaf for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, out)


def load_fit(path, like):
    from ._fit import FitResult

    path = Path(path)
    ds = read_netcdf(path)
    if ds.attrs.get("created_by") != "plasticinfer" or "loss" not in ds:
        raise DataError(f"{path}: not a plasticinfer fit result (no 'loss' variable / created_by attribute)")
    model = _fill(like, ds, "param_", path)
    restarts = _fill(like, ds, "restart_param_", path)
    return FitResult(
        model=model,
        restarts=restarts,
        loss_history=ds["loss"].values,
        validation_history=ds["validation_loss"].values if "validation_loss" in ds else None,
        validation_steps=ds["evaluation_step"].values if "evaluation_step" in ds else np.zeros(0, int),
        best_restart=ds["best_restart"].values,
        diverged_at=ds["diverged_at"].values,
        stopped_early=bool(ds.attrs["stopped_early"]),
        steps_run=int(ds.attrs["steps_run"]),
        independent=bool(ds.attrs["independent"]),
        settings=json.loads(ds.attrs.get("settings", "{}")),
    )

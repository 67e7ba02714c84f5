"""Concatenate datasets along ``subject``, re-padding the trial (and presentation) axes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._errors import SchemaError
from ._schema import fill_value
from ._validate import validate


def _pad_dim(ds: xr.Dataset, dim: str, size: int) -> xr.Dataset:
    """Pad every variable along ``dim`` to ``size`` with its fill value (padding goes last)."""
    n = ds.sizes.get(dim, 0)
    if dim not in ds.dims or n == size:
        return ds
    coords, data = {}, {}
    for name, var in ds.variables.items():
        if dim not in var.dims or name == dim:
            continue
        widths = [(0, size - n) if d == dim else (0, 0) for d in var.dims]
        padded = xr.Variable(var.dims, np.pad(var.values, widths, constant_values=fill_value(str(name), var.dtype)),
                             var.attrs)
        (coords if name in ds.coords else data)[name] = padded
    if dim in ds.coords:
        coords[dim] = xr.Variable(dim, np.arange(size, dtype=ds[dim].dtype))
    return ds.drop_dims(dim).assign_coords(coords).assign(data)


def concat_subjects(datasets: Sequence[xr.Dataset], attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Stack datasets of the same kind along ``subject``; shorter subjects are padded at the end.

    Args:
        datasets: valid datasets with the same variables and distinct subject ids.
        attrs: attributes of the result (default: those shared by every input).

    Returns:
        A validated dataset holding every subject of every input, in order.
    """
    if len(datasets) == 0:
        raise SchemaError("concat_subjects needs at least one dataset.")
    for ds in datasets:
        validate(ds)
    kinds = {ds.attrs["kind"] for ds in datasets}
    if len(kinds) > 1:
        raise SchemaError(f"cannot concatenate datasets of different kinds {sorted(kinds)}.")
    names = [set(map(str, ds.variables)) for ds in datasets]
    for i, n in enumerate(names[1:], start=1):
        if n != names[0]:
            raise SchemaError(
                f"dataset {i} has variables {sorted(n ^ names[0])} that dataset 0 does not share (or lacks them); "
                "every dataset needs the same variables and coordinates."
            )
    padded = list(datasets)
    for dim in ("trial", "presentation"):
        size = max(ds.sizes.get(dim, 0) for ds in padded)
        padded = [_pad_dim(ds, dim, size) for ds in padded]
    try:
        out = xr.concat(padded, dim="subject", data_vars="minimal", coords="minimal", compat="equals",
                        join="exact", combine_attrs="drop_conflicts")
    except (ValueError, KeyError) as e:
        raise SchemaError(
            f"datasets cannot be concatenated along subject: {e}. Shared variables without a subject "
            "dimension (such as cue) must be equal in every dataset."
        ) from e
    if attrs:
        out.attrs.update(attrs)
    out.attrs["kind"] = kinds.pop()
    return validate(out)

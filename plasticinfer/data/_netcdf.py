"""netCDF round trip of the schema itself: validate, then the one atomic writer in ``plasticinfer._io``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from .._errors import SchemaError
from .._io import read_netcdf, write_netcdf
from ._schema import FILL, names_its_file
from ._validate import validate

_INTEGER = tuple(k for k, v in FILL.items() if type(v) is int)  # choice, block, trial_number, presented
_BOOLEAN = ("recorded", *(k for k, v in FILL.items() if v is False))  # recorded is never padded, so has no fill
_SPACED = "coordinates_with_spaces"  # metadata coordinates whose names hold a space (JSON list)


def save_netcdf(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Validate ``ds`` and write it to a netCDF-4 file, atomically (temp file + rename).

    Args:
        ds: a dataset that passes `validate`.
        path: target file, conventionally ``*.nc``; replaced if it exists.

    Returns:
        The path written.

    Raises:
        SchemaError: ``ds`` is not valid or holds attributes netCDF cannot store; nothing is written.
        FileFormatError: the file could not be written; nothing is left behind.
    """
    validate(ds)
    spaced = [str(c) for c in ds.coords if " " in str(c) and c not in ds.dims]
    if spaced:  # netCDF lists coordinates separated by spaces: these would come back as data variables
        ds = ds.reset_coords(spaced).assign_attrs({_SPACED: json.dumps(spaced)})
    return write_netcdf(ds, path)


@names_its_file
def load_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a dataset written by `save_netcdf` (or any netCDF file following the schema) and validate it.

    The file is read into memory and closed, so it can be replaced or deleted afterwards.
    """
    ds = read_netcdf(path)
    for name in _BOOLEAN:  # netCDF-3 and MATLAB's netCDF writer have no boolean type: 0/1 integers stand in
        if name in ds.variables and ds[name].dtype.kind in "iu" and np.isin(ds[name].values, (0, 1)).all():
            ds[name] = ds[name].astype(bool)
    for name in _INTEGER:  # an integer variable with a _FillValue comes back as float with NaN where it was filled
        if name in ds.variables and ds[name].dtype.kind == "f" and "_FillValue" in ds[name].encoding:
            v = ds[name].values
            real = ~np.isnan(v)
            if np.array_equal(v[real], np.round(v[real])):
                ds[name] = ds[name].fillna(FILL[name]).astype(np.int64)
    if _SPACED in ds.attrs:
        ds = ds.set_coords([c for c in json.loads(ds.attrs[_SPACED]) if c in ds.data_vars])
        ds.attrs = {k: v for k, v in ds.attrs.items() if k != _SPACED}
    if ds.attrs.get("kind") is None:  # a results file (a posterior has no root attributes at all): say which
        from .._results_io import what_file_holds

        holds = what_file_holds(ds, path)
        if holds.startswith(("a plasticinfer", "an ArviZ posterior")):
            raise SchemaError(
                f"file {str(path)!r} holds {holds}, not a dataset: give the data the result was computed from"
            )
    try:
        return validate(ds)
    except SchemaError as e:
        raise SchemaError(f"file {str(path)!r}: {e}") from e


__all__ = ["save_netcdf", "load_netcdf", "read_netcdf"]

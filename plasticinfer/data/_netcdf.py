"""netCDF round trip of the schema itself (h5netcdf engine), written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._errors import FileFormatError, SchemaError
from ._validate import validate

_ATTR_TYPES = (str, int, float, np.integer, np.floating, np.ndarray, bytes)


def atomic_write(path: Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it into place.

    Either the complete new file ends up at ``path`` or nothing changes: on any error the
    temporary file is removed and ``path`` (if it existed) is untouched.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileFormatError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist. Create it.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_attrs(where: str, attrs: dict[Any, Any]) -> None:
    for key, value in attrs.items():
        ok = isinstance(value, _ATTR_TYPES) and not isinstance(value, (bool, np.bool_))
        if isinstance(value, (list, tuple)):
            ok = all(isinstance(v, _ATTR_TYPES) and not isinstance(v, bool) for v in value)
        if not ok:
            raise SchemaError(
                f"{where} attribute {key!r} holds a {type(value).__name__}, which netCDF cannot store. "
                "Convert it to a string, a number or an array of numbers before saving."
            )


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
    _check_attrs("dataset", dict(ds.attrs))
    for name, var in ds.variables.items():
        _check_attrs(f"variable {name!r}", dict(var.attrs))

    def write(tmp: Path) -> None:
        try:
            ds.to_netcdf(tmp, engine="h5netcdf")
        except Exception as e:  # xarray/h5netcdf raise several types
            raise FileFormatError(f"could not write {str(path)!r} as netCDF: {type(e).__name__}: {e}") from e

    return atomic_write(Path(path), write)


def read_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a netCDF file into memory (and close it) without validating it; see `load_netcdf`."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as opened:
            ds = opened.load()
    except Exception as e:
        raise FileFormatError(
            f"file {str(path)!r} could not be read as netCDF-4: {type(e).__name__}: {e}. "
            "Is it a complete .nc file written by plasticinfer.save_netcdf?"
        ) from e
    return _restore_strings(ds)


def load_netcdf(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a dataset written by `save_netcdf` (or any netCDF file following the schema) and validate it.

    The file is read into memory and closed, so it can be replaced or deleted afterwards.
    """
    ds = read_netcdf(path)
    try:
        return validate(ds)
    except SchemaError as e:
        raise SchemaError(f"file {str(path)!r}: {e}") from e


def _restore_strings(ds: xr.Dataset) -> xr.Dataset:
    """netCDF returns text as object arrays of str or bytes; make every entry a str."""
    updates = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "OS":
            values = np.array(
                [v.decode() if isinstance(v, bytes) else str(v) for v in var.values.ravel().tolist()], dtype=object
            ).reshape(var.shape)
            updates[name] = (var.dims, values, var.attrs)
    return ds.assign_coords({k: v for k, v in updates.items() if k in ds.coords}).assign(
        {k: v for k, v in updates.items() if k not in ds.coords}
    )

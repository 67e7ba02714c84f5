"""`load`: pick the loader from the file type."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from .._errors import FileFormatError
from ._hdf5 import load_hdf5
from ._matlab import load_mat
from ._netcdf import load_netcdf
from ._nwb import load_nwb
from ._tables import TABLE_SUFFIXES, load_table

LOADERS: dict[str, Callable[..., xr.Dataset]] = {
    **{suffix: load_table for suffix in TABLE_SUFFIXES},
    ".mat": load_mat,
    ".nwb": load_nwb,
    ".nc": load_netcdf,
    ".nc4": load_netcdf,
    ".netcdf": load_netcdf,
    ".h5": load_hdf5,
    ".hdf5": load_hdf5,
    ".hdf": load_hdf5,
}


def loader_for(path: str | os.PathLike[str]) -> Callable[..., xr.Dataset]:
    """The loader `load` would use for ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        if suffix in LOADERS and LOADERS[suffix] is not load_mat:
            raise FileFormatError(
                f"{str(path)!r} is a folder, not a {suffix} file; a folder is read as MATLAB sessions. Give the file inside it."
            )
        return load_mat
    if suffix in LOADERS:
        return LOADERS[suffix]
    known = ", ".join(sorted(LOADERS))
    raise FileFormatError(
        f"cannot tell the format of {str(path)!r} from its suffix {suffix or '(none)'!r}. Known suffixes: "
        f"{known}, or a folder of MATLAB sessions. Rename the file, or call a loader directly "
        "(load_table, load_mat, load_nwb, load_hdf5, load_netcdf)."
    )


def load(path: str | os.PathLike[str], **kwargs: Any) -> xr.Dataset:
    """Load a file (or a folder of MATLAB sessions) into the plasticinfer schema.

    The loader follows from the suffix: ``.csv``/``.tsv``/``.txt``/``.parquet`` -> `load_table`,
    ``.mat`` or a folder -> `load_mat`, ``.nwb`` -> `load_nwb`, ``.h5``/``.hdf5`` -> `load_hdf5`
    (needs ``mapping=``), ``.nc`` -> `load_netcdf`. Keyword arguments go to that loader.

    Raises:
        FileFormatError: the path does not exist or its type is unknown.
        DataError: whatever the chosen loader finds wrong.
    """
    path = Path(path)
    if not path.exists():
        raise FileFormatError(f"{str(path)!r} does not exist. Check the path (relative to {os.getcwd()!r}).")
    loader = loader_for(path)
    if loader is load_hdf5 and "mapping" not in kwargs:
        raise FileFormatError(
            f"{str(path)!r} is an HDF5 file: say where the data lie with load(path, mapping={{'choice': "
            "'/path/to/choice', 'reward': '/path/to/reward'}}) (or input/activity for neural data)."
        )
    try:
        return loader(path, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise FileFormatError(f"{loader.__name__} does not take that argument: {e}.") from e
        raise

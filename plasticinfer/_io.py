"""Atomic file writing: a result is either completely written or not there at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ._errors import PlasticInferError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    If ``write`` fails, the temporary file is removed and any existing ``path`` is untouched.
    """
    path = Path(path)
    if not path.parent.exists():
        raise PlasticInferError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_netcdf(ds, path: str | os.PathLike) -> Path:
    """Write an xarray Dataset to netCDF-4 (h5netcdf engine) atomically."""
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))

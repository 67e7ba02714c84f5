"""File output and input: a result is either completely written or not there at all.

One :func:`atomic_write` (temporary file beside the target, then a rename), one
:func:`write_netcdf` and one :func:`read_netcdf`; every module that writes or reads a file
goes through them.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ._errors import FileFormatError

_ATTR_TYPES = (str, int, float, np.integer, np.floating, np.ndarray, bytes)

# inside `write_together()`: the (temporary file, target) pairs waiting to be moved into place; one batch per
# thread (and per asyncio task), so another thread's writes neither join nor lose a batch
_pending: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("plasticinfer_pending_writes", default=None)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    Either the complete new file ends up at ``path`` or nothing changes: if ``write`` fails
    (or is interrupted) the temporary file is removed and any existing ``path`` is untouched.
    The file gets the permissions a plainly created file would (``0o666`` less the umask).

    Raises:
        FileFormatError: the folder does not exist, or the file could not be written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileFormatError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist. Create it.")
    pending = _pending.get()
    if pending is not None and path.is_dir():  # would only fail when the batch is moved into place
        raise FileFormatError(f"cannot write {str(path)!r}: Is a directory")
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    waiting = False
    try:
        write(tmp)
        if not tmp.exists():
            raise FileFormatError(f"cannot write {str(path)!r}: the writer produced no file")
        os.chmod(tmp, 0o666 & ~_umask())
        if pending is not None:
            pending.append((tmp, path))
            waiting = True
        else:
            os.replace(tmp, path)
    except OSError as e:
        raise FileFormatError(f"cannot write {str(path)!r}: {e.strerror or e}") from e
    finally:
        if not waiting:
            tmp.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def write_together() -> Iterator[None]:
    """All the files written (through :func:`atomic_write`) inside this block, or none of them.

    Each file is written to its temporary name and waits there; when the block ends without an error they are
    all moved into place, and when it raises (or is interrupted) they are all removed, so a set of output files
    is never left half-written. A block inside another joins the outer one.

    Raises:
        FileFormatError: a file could not be moved into place (its target became a folder); none is moved.
    """
    if _pending.get() is not None:
        yield
        return
    batch: list[tuple[Path, Path]] = []
    token = _pending.set(batch)
    try:
        yield
        for tmp, path in batch:  # the only failure a rename within one folder can meet: a folder in the way
            if path.is_dir():
                raise FileFormatError(f"cannot write {str(path)!r}: Is a directory")
        for tmp, path in batch:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise FileFormatError(f"cannot write {str(path)!r}: {e.strerror or e}") from e
    finally:
        _pending.reset(token)
        for tmp, _ in batch:
            tmp.unlink(missing_ok=True)  # those not moved into place


def check_attrs(where: str, attrs: dict[Any, Any]) -> None:
    """Refuse attributes netCDF cannot store (bool, dict, None, objects), naming the attribute."""
    for key, value in attrs.items():
        ok = isinstance(value, _ATTR_TYPES) and not isinstance(value, (bool, np.bool_))
        if isinstance(value, (list, tuple)):
            ok = all(isinstance(v, _ATTR_TYPES) and not isinstance(v, bool) for v in value)
        if not ok:
            from ._errors import SchemaError

            raise SchemaError(
                f"{where} attribute {key!r} holds a {type(value).__name__}, which netCDF cannot store. "
                "Convert it to a string, a number or an array of numbers before saving."
            )


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write an xarray Dataset to a netCDF-4 file (h5netcdf engine), atomically, without validating it.

    The same dataset written twice gives byte-identical files. For a dataset that must follow the
    schema, :func:`plasticinfer.save_netcdf` validates first, then writes through this function.

    Raises:
        SchemaError: an attribute netCDF cannot store; nothing is written.
        FileFormatError: the file could not be written; nothing is left behind.
    """
    check_attrs("dataset", dict(ds.attrs))
    for name, var in ds.variables.items():
        check_attrs(f"variable {name!r}", dict(var.attrs))

    return atomic_netcdf(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def atomic_netcdf(path: str | os.PathLike, to_netcdf) -> Path:
    """:func:`atomic_write` of a netCDF writer ``to_netcdf(tmp)`` (xarray's, ArviZ's), its failures one FileFormatError."""

    def write(tmp: Path) -> None:
        try:
            to_netcdf(tmp)
        except Exception as e:  # xarray/h5netcdf/ArviZ raise several types
            raise FileFormatError(f"could not write {str(path)!r} as netCDF: {type(e).__name__}: {e}") from e

    return atomic_write(path, write)


def read_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Read a netCDF file into memory (and close it), text as ``str``; no validation.

    Raises:
        FileFormatError: the file is missing or is not readable netCDF-4, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    with open(path, "rb") as f:
        classic = f.read(3) == b"CDF"  # netCDF-3 (classic / 64-bit offset): read by SciPy, not HDF5
    kind = "netCDF-3" if classic else "netCDF-4"
    try:
        with xr.open_dataset(path, engine="scipy" if classic else "h5netcdf") as opened:
            ds = opened.load()
    except Exception as e:
        raise FileFormatError(
            f"file {str(path)!r} could not be read as {kind}: {type(e).__name__}: {e}. "
            "Is it a complete .nc file written by plasticinfer?"
        ) from e
    return _restore_strings(ds)


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


def write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))


def remove_earlier_outputs(out: Path, written, manifest: str) -> None:
    """After a command wrote its outputs into folder ``out``: delete what the earlier run there wrote (listed in
    ``out/manifest``) and this one did not, so nothing stale is read as current; then list what this one wrote.
    Files the manifest does not list (the user's own, or a run's from before manifests) are never touched."""
    import json

    out = Path(out)
    listing = out / manifest
    written = {Path(p).resolve().relative_to(out.resolve()).as_posix() for p in written}
    try:
        earlier = json.loads(listing.read_text()) if listing.is_file() else []
    except (OSError, ValueError):
        earlier = []
    root = out.resolve()
    for name in earlier if isinstance(earlier, list) else []:
        path = out / str(name)
        inside = not Path(str(name)).is_absolute() and ".." not in Path(str(name)).parts and path.resolve().is_relative_to(root)
        if str(name) in written or not inside or not path.is_file():  # an edited manifest cannot reach outside ``out``
            continue
        path.unlink()
        if path.parent != out and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
    write_text(json.dumps(sorted(written), indent=1) + "\n", listing)

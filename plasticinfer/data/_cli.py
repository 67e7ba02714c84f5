"""Command-line front end of the data layer: ``plasticinfer datasets list|info NAME`` and
``plasticinfer inspect FILE``. Registered in ``plasticinfer/cli.py``."""

from __future__ import annotations

import re

import textwrap
from pathlib import Path
from typing import Optional

import numpy as np
import typer
import xarray as xr

from . import _datasets
from .._errors import DatasetError, FileFormatError, SchemaError
from ._load import loader_for
from ._netcdf import load_netcdf, read_netcdf
from ._validate import schema_notes, validate
from .._cli_common import CHOICE_CODES_HELP, MAP_HELP, load_file, path_value

datasets_app = typer.Typer(help="Named datasets: list them, show their licence, citation and files.",
                           no_args_is_help=True)


@datasets_app.command("list")
def datasets_list() -> None:
    """List the named datasets and whether their files are found on this machine."""
    from .._cli_common import check_data_dir_env

    check_data_dir_env()
    for name in _datasets.names():
        meta = _datasets.info(name)
        try:
            where = str(_datasets.locate(name))
        except DatasetError:
            where = f"not found locally (get it: plasticinfer datasets download {name})"
        typer.echo(f"{name:<18} {meta.kind:<10} {meta.license:<14} {meta.title}")
        typer.echo(f"{'':<18} {where}")


@datasets_app.command("info")
def datasets_info(name: str = typer.Argument(..., help="dataset name, see `plasticinfer datasets list`")) -> None:
    """Show a dataset's description, licence, citation, provenance and files."""
    from .._cli_common import check_data_dir_env

    meta = _datasets.info(name)
    check_data_dir_env()
    try:
        where = str(_datasets.locate(name))
    except DatasetError as e:
        where = f"not found ({e})"
    n_sub = meta.extra.get("n_subjects")
    n_all = meta.extra.get("n_subjects_all")
    lines = [
        f"{meta.name}: {meta.title}",
        f"kind: {meta.kind}    subjects: {n_sub}" + (f" (all: {n_all})" if n_all and n_all != n_sub else ""),
        f"location: {where}",
        f"source: {meta.source_repository} @ {meta.source_commit}",
        f"files: {len(meta.files)} ({sum(f.required for f in meta.files)} required), SHA-256 checked on load",
        "",
        "description:", _indent(meta.description),
        "citation:", _indent(meta.citation),
        "provenance:", _indent(meta.provenance),
        f"license: {meta.license}", _indent(meta.license_text),
    ]
    typer.echo("\n".join(lines))


@datasets_app.command("download")
def datasets_download(
    name: str = typer.Argument(..., help="dataset name, see `plasticinfer datasets list`"),
    to: Optional[Path] = typer.Option(  # noqa: UP007 - typer needs Optional here
        None, "--to", parser=path_value, help="folder to put the dataset folder in (default: $PLASTICINFER_DATA_DIR, else the cache folder)"
    ),
) -> None:
    """Download a named dataset from its public source, checking every file's SHA-256."""
    _datasets.info(name)  # unknown names fail before any network access
    from .._cli_common import check_data_dir_env, output_folder

    if to is not None:
        output_folder(to, "--to")
    else:
        check_data_dir_env(may_create=True)
    typer.echo(f"downloading {name} …", err=True)
    folder = _datasets.download(name, to)
    typer.echo(f"{name}: files in {folder}")


def _indent(text: str) -> str:
    return textwrap.indent(text.strip(), "  ")


def summarize(ds: xr.Dataset) -> str:
    """A few lines describing a dataset: dims, subjects, trials, masks, variables, provenance."""
    mask = ds["trial_mask"].values
    per = mask.sum(axis=1)
    ids = [str(s) for s in ds["subject"].values]
    shown = ", ".join(ids[:5]) + (f", ... ({len(ids) - 5} more)" if len(ids) > 5 else "")
    lines = [
        f"kind: {ds.attrs.get('kind')}",
        "dims: " + ", ".join(f"{k}={v}" for k, v in ds.sizes.items()),
        f"subjects: {len(ids)} ({shown})",
        f"trials per subject: min {per.min()}, median {int(np.median(per))}, max {per.max()}; "
        f"{int(per.sum())} real trials, {int((~mask).sum())} padded",
    ]
    if "recorded" in ds:
        rec = ds["recorded"].values
        lines.append(f"recorded neurons: {int(rec.sum())} of {rec.size} (subject x post)")
    if "presentation" in ds.dims:
        lines.append(f"presentations: {int(ds['presentation_mask'].values.sum())} real, "
                     f"up to {ds.sizes['presentation']} per trial")
    if "block" in ds.coords:
        blocks = np.unique(ds["block"].values[mask])
        lines.append(f"blocks: {blocks.tolist()}")
    lines.append("variables: " + ", ".join(f"{k}{tuple(v.dims)}" for k, v in ds.data_vars.items()))
    lines.append("coords: " + ", ".join(str(k) for k in ds.coords))
    for key in ("source", "license", "citation"):
        value = str(ds.attrs.get(key, "")).strip().splitlines()
        lines.append(f"{key}: {value[0] if value else ''}" + (" ..." if len(value) > 1 else ""))
    return "\n".join(lines)


def _describe_result(file: Path, ds) -> bool:
    """Print what a plasticinfer results file holds (not a dataset, so not validated); False if it is none."""
    from .._results_io import what_file_holds

    holds = what_file_holds(ds, file)
    if not holds.startswith(("a plasticinfer", "an ArviZ posterior")):
        return False
    typer.echo(f"holds: {holds}")
    for key in ("equation", "steps_run", "converged", "convergence_message", "method"):
        value = ds.attrs.get(key)
        if value not in (None, ""):
            typer.echo(f"{key}: {('yes' if int(value) else 'no') if key == 'converged' else value}")
    saved_by = re.search(r"written by ([\w.]+)\.save", holds)
    how = ("read it in Python as the line above says" if "read it with" in holds or not saved_by
           else f"read it in Python with {saved_by.group(1)}.load(path)")
    typer.echo(f"a results file, not a dataset: {how}; give the commands the data it was computed from")
    return True


def inspect_command(
    file: Path = typer.Argument(..., help="a data file (csv, parquet, mat, nwb, h5, nc) or a folder of sessions", parser=path_value),
    map_: Optional[list[str]] = typer.Option(  # noqa: UP007 - typer needs Optional here
        None, "--map", help=MAP_HELP
    ),
    choice_codes: Optional[list[str]] = typer.Option(  # noqa: UP007
        None, "--choice-codes", help=CHOICE_CODES_HELP
    ),
) -> None:
    """Load FILE, print its dims, subjects, trials and masks, and what the validator thinks."""
    if not file.exists() and str(file) in _datasets.names():
        raise DatasetError(f"{file} is a named dataset; inspect reads files. See `plasticinfer datasets info {file}`.")
    if file.is_dir() and (file / "comparison.json").is_file():  # a comparison's folder, not a folder of sessions
        from ..compare import ComparisonResult

        ComparisonResult.load(file)  # a damaged folder is refused here as it would be when read (exit 2)
        typer.echo(f"folder: {file}\nholds: a plasticinfer model comparison (written by ComparisonResult.save, plasticinfer "
                   "compare or fly; the ranking is in comparison.md)\nnot data: read it in Python with "
                   "pi.compare.ComparisonResult.load(path); give the commands the data it was computed from")
        return
    loader = loader_for(file)
    if loader is load_netcdf and not (map_ or choice_codes):
        if not file.exists():
            raise FileFormatError(f"{str(file)!r} does not exist. Check the path.")
        ds = read_netcdf(file)  # unvalidated, so an invalid file can still be described
    else:
        ds = load_file(file, mapping=map_, choice_codes=choice_codes)
    typer.echo(f"file: {file}")
    result_file = str(ds.attrs.get("format", "")).startswith("plasticinfer-")  # a result may carry a "kind" of its own
    if (ds.attrs.get("kind") is None or result_file) and _describe_result(file, ds):
        return
    try:
        typer.echo(summarize(ds))
    except Exception:  # an invalid netCDF may lack the variables the summary reads
        typer.echo(f"dims: {dict(ds.sizes)}\nvariables: {list(ds.data_vars)}")
    try:
        validate(ds)
    except SchemaError as e:
        raise SchemaError(f"validator: INVALID: {e}") from e
    typer.echo("validator: OK")
    for note in schema_notes(ds):
        typer.echo(f"  note: {note}")

"""What every `plasticinfer` command shares: option validators, output-path checks made before any
computation, the one data loader behind every command that reads data, and progress settings.

Validators run while the command line is parsed, so a bad value is refused (exit code 2, one line
naming the option) before anything is imported or computed.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import typer

from ._errors import CLIError as CLIError, PlasticInferError


# --- option validators (typer callbacks) -----------------------------------------------------------


def _number_check(test: Callable[[float], bool], what: str) -> Callable[[typer.Context, typer.CallbackParam, Any], Any]:
    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"must be a finite number {what}; got {value}")
        if not test(value):
            raise typer.BadParameter(f"must be {what}; got {value}")
        return value

    return callback


def at_least(n: int) -> Callable[[typer.Context, typer.CallbackParam, Any], Any]:
    return _number_check(lambda v: v >= n, f"at least {n}")


at_least_one = at_least(1)
non_negative = _number_check(lambda v: v >= 0, "at least 0")
positive = _number_check(lambda v: v > 0, "greater than 0")
fraction = _number_check(lambda v: 0 <= v < 1, "in [0, 1)")
unit_interval = _number_check(lambda v: 0 < v <= 1, "in (0, 1]")
open_unit_interval = _number_check(lambda v: 0 < v < 1, "in (0, 1)")
SEED_MAX = 2**63 - 2  # JAX keys take a signed 64-bit seed, and `fly` uses seed + 1; NumPy's take no negative one
seed_range = _number_check(lambda v: 0 <= v <= SEED_MAX, f"between 0 and {SEED_MAX} (2**63 - 2)")


def path_value(value: Any) -> Path:
    """Typer parser of a path option or argument: an empty one ("", an unset shell variable) is refused, not read
    as the current folder."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise typer.BadParameter("is empty; give a path (is a shell variable unset?)")
    return Path(value)


def Size(help: str, **kw: Any) -> Any:  # noqa: N802 - reads like a type in signatures
    """A count (neurons, trials, trajectories, subjects, steps): an integer ≥ 1."""
    return typer.Option(help=help, callback=at_least_one, **kw)


def Rate(help: str, **kw: Any) -> Any:  # noqa: N802
    """A learning rate or step size: a finite number > 0."""
    return typer.Option(help=help, callback=positive, **kw)


def NonNegative(help: str, **kw: Any) -> Any:  # noqa: N802
    """A penalty, noise level or spread: a finite number ≥ 0."""
    return typer.Option(help=help, callback=non_negative, **kw)


def Fraction(help: str, **kw: Any) -> Any:  # noqa: N802
    """A held-out fraction: a number in [0, 1)."""
    return typer.Option(help=help, callback=fraction, **kw)


def Seed(help: str, **kw: Any) -> Any:  # noqa: N802
    """A random seed: an integer in [0, SEED_MAX]."""
    return typer.Option(help=help, callback=seed_range, **kw)


def PathOption(help: str, *names: str, **kw: Any) -> Any:  # noqa: N802
    """A file or folder option (--out, --data-dir): an empty value is refused."""
    return typer.Option(*names, help=help, parser=path_value, **kw)


def refuse_unused(ctx: typer.Context, unused: dict[str, str]) -> None:
    """Refuse an option given on the command line that the chosen settings do not use (it would be ignored without
    a word). ``unused``: parameter name → the message, for those not used under these settings."""
    for name, message in unused.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            raise CLIError(message)


RESTARTS_HELP = "Starts per fit (the model's starting values and jittered copies); the best training loss wins."
MAP_HELP = (
    "SCHEMA=SOURCE: read schema variable SCHEMA from your column / variable / HDF5 path SOURCE "
    "(repeat, e.g. --map choice=response --map reward=rewarded; NWB neural data: --map activity=dff --map input=stim)."
)
CHOICE_CODES_HELP = "CODE=INDEX: your choice code → 0-based option (repeat or comma-separate, e.g. --choice-codes L=0,R=1)."
DATA_DIR_HELP = "Folder holding the named datasets (default: $PLASTICINFER_DATA_DIR, ../shared/data, then the download cache)."


# --- output paths ------------------------------------------------------------------------------------

_created: list[Path] = []


def _mkdirs(folder: Path, option: str) -> None:
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option} {folder}: {p} is a file, not a folder; choose another location.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"{option} {folder}: cannot create the folder ({e.strerror or e}); choose a writable location.") from None
    _created.extend(reversed(missing))


def _probe(folder: Path, option: str, target: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(prefix=".plasticinfer-probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise CLIError(f"{option} {target}: cannot write in {folder} ({e.strerror or e}); choose a writable location.") from None


def _no_folder_in_the_way(files: Any, option: str, given: Path) -> None:
    for file in files:
        if Path(file).is_dir():
            raise CLIError(
                f"{option} {given}: {file} is an existing folder, and the command writes a file there; "
                f"remove or rename that folder, or choose another {option}."
            )


def output_folder(path: Path, option: str = "--out", files: Any = ()) -> Path:
    """Check (and create) an output folder before any work: refuse an existing file or an unwritable place,
    and an existing folder in the place of any of the ``files`` (names inside it) the command will write."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CLIError(f"{option} {path} is an existing file; {option} names a folder. Choose a new or existing folder.")
    _mkdirs(path, option)
    _probe(path, option, path)
    _no_folder_in_the_way([path / name for name in files], option, path)
    return path


def echo_written(out: Path, paths: dict, *, own: Any = ()) -> None:
    """Print what a run wrote into the folder ``out`` (name, path), then the first 8 other entries there (``own``:
    names this run used without writing them, e.g. its checkpoint): an earlier run's files, perhaps of another
    command, or the user's own, they are not this run's results, and a reader of the folder should not take them
    for them."""
    out = Path(out)
    typer.echo(f"\nwrote to {out}/:")
    width = max((len(str(name)) for name in paths), default=0) + 1
    for name, p in paths.items():
        typer.echo(f"  {str(name):<{width}} {p}")
    def resolved(p: Path) -> Path | None:
        try:
            return p.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return None

    written = [w for w in (resolved(Path(p)) for p in paths.values()) if w is not None]
    try:
        entries = sorted(out.iterdir())
    except OSError:
        return
    others = []
    for e in entries:
        r = resolved(e)
        if e.name.startswith(".") or e.name in set(own) or (r is not None and any(w == r or r in w.parents for w in written)):
            continue
        others.append(e.name + ("/" if r is not None and r.is_dir() else ""))
    if others:
        shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
        typer.echo(f"also in {out}/, not written by this run (not its results): {shown}")


def output_file(path: Path, option: str = "OUT", also: Any = ()) -> Path:
    """Check an output file's location before any work: refuse a folder or an unwritable place, for ``path`` and
    for the files ``also`` written beside it."""
    path = Path(path)
    if path.is_dir():
        raise CLIError(f"{option} {path} is an existing folder; give a file name, e.g. {path / 'data.nc'}.")
    if path.suffix.lower() not in (".nc", ".nc4", ".netcdf"):
        raise CLIError(f"{option} {path}: the output is netCDF; give a file name ending in .nc.")
    _mkdirs(path.parent if str(path.parent) else Path("."), option)
    _probe(path.parent, option, path)
    _no_folder_in_the_way(also, option, path)
    return path


def check_data_dir_env(*, may_create: bool = False) -> None:
    """Refuse a ``PLASTICINFER_DATA_DIR`` that is not a folder: a mistyped one would silently fall back to the other
    places (``may_create``: a folder not there yet is fine, a download creates it; a file in its place is not)."""
    env = os.environ.get("PLASTICINFER_DATA_DIR")
    if env and not Path(env).is_dir() and not (may_create and not Path(env).exists()):
        raise CLIError(
            f"PLASTICINFER_DATA_DIR={env} is not a folder. Point it at the folder holding the datasets, or unset it "
            "(or pass --data-dir DIR)."
        )


def remove_created_folders() -> None:
    """After a failure: remove the output folders this run created, if they are still empty."""
    for folder in reversed(_created):
        try:
            folder.rmdir()
        except OSError:
            pass
    _created.clear()


# --- data sources --------------------------------------------------------------------------------------


def parse_map(items: list[str] | None, option: str = "--map") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CLIError(f"{option} takes SCHEMA=SOURCE (e.g. {option} choice=animal_response); got {item!r}.")
        if key.strip() in out:
            raise CLIError(f"{option} gives {key.strip()!r} twice ({key.strip()}={out[key.strip()]} and {item.strip()}); give each schema name once.")
        out[key.strip()] = value.strip()
    return out


def _code(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_choice_codes(items: list[str] | None) -> dict[Any, int] | None:
    if not items:
        return None
    out: dict[Any, int] = {}
    for item in (part for it in items for part in it.split(",") if part.strip()):
        code, sep, index = item.partition("=")
        if sep and code.strip() and _code(code.strip()) in out:
            raise CLIError(f"--choice-codes gives the code {code.strip()!r} twice; give each code once.")
        try:
            out[_code(code.strip())] = int(index)
        except ValueError:
            sep = ""
        if not sep or not code.strip():
            raise CLIError(f"--choice-codes takes CODE=INDEX with a 0-based integer INDEX (e.g. --choice-codes L=0,R=1); got {item!r}.")
    return out


NETCDF = (".nc", ".nc4", ".netcdf")


def load_data(source: str, *, mapping: list[str] | None = None, choice_codes: list[str] | None = None, data_dir: Path | None = None):
    """A named dataset or any supported file, validated, as an xarray Dataset in the plasticinfer schema."""
    from . import datasets as named
    from .data import validate

    if not source.strip():
        raise CLIError("DATA is empty; give a data file or a named dataset (is a shell variable unset?).")
    if source in named.names():
        if mapping or choice_codes:
            raise CLIError(f"{source} is a named dataset, already in the schema: --map and --choice-codes apply to your own files.")
        if data_dir is None:
            check_data_dir_env()
        try:
            return named.load(source, path=data_dir)
        except PlasticInferError as e:
            if "not found" in str(e):
                raise CLIError(where_to_get(source, data_dir)) from None
            raise
    path = Path(source)
    if not path.exists():
        raise CLIError(
            f"{source} does not exist and is not a named dataset ({', '.join(named.names())}). Check the path "
            f"(relative to {os.getcwd()})."
        )
    return validate(load_file(path, mapping=mapping, choice_codes=choice_codes))


def load_file(path: Path, *, mapping: list[str] | None = None, choice_codes: list[str] | None = None):
    """Any supported file through the data layer's loaders, with the command line's --map / --choice-codes."""
    from .data import load, loader_for
    from .data._hdf5 import load_hdf5
    from .data._nwb import load_nwb

    path = Path(path)
    columns = parse_map(mapping)
    codes = parse_choice_codes(choice_codes)
    loader = loader_for(path)
    kwargs: dict[str, Any] = {}
    if path.suffix.lower() in NETCDF:
        if columns or codes:
            raise CLIError(f"{path} is netCDF in the plasticinfer schema; --map and --choice-codes apply to tables, MAT, NWB and HDF5 files.")
    elif loader is load_hdf5:
        if not columns:
            raise CLIError(f"{path} is HDF5: say where the data lie with --map choice=/path/choice --map reward=/path/reward (or input=…, activity=… for neural data).")
        kwargs["mapping"] = columns
    elif loader is load_nwb:
        for series in ("activity", "input"):
            if series in columns:
                kwargs[series] = columns.pop(series)
        if columns:
            kwargs["columns"] = columns
    elif columns:
        kwargs["columns"] = columns
    if codes is not None:
        kwargs["choice_codes"] = codes
        kwargs["n_options"] = max(2, max(codes.values()) + 1)  # the options are 0 … the largest INDEX
    ds = load(path, **kwargs)  # its errors read in command-line terms where the CLI prints them (in_command_line_terms)
    ds.attrs.setdefault("source_file", str(path))
    return ds


_PYTHON_TO_CLI = [
    # the loaders speak Python (their messages serve both); on the command line the same advice reads as options
    (re.compile(r"columns=\{\s*'([\w]+)'\s*:\s*'([^']*)'(?:,\s*'([\w]+)'\s*:\s*'([^']*)')?\s*\}"),
     lambda m: f"--map {m.group(1)}={m.group(2)}" + (f" --map {m.group(3)}={m.group(4)}" if m.group(3) else "")),
    (re.compile(r"columns=\.\.\.|the columns= mapping"), lambda m: "--map" if "..." in m.group(0) else "the --map options"),
    (re.compile(r"pass n_options=\d+, or choice_codes=\{([^}]*)\}"),
     lambda m: "pass --choice-codes " + ",".join(kv.replace(": ", "=") for kv in m.group(1).split(", "))),
    (re.compile(r"pass choice_codes=\{((?:\d+: \d+(?:, )?)+)\}"),
     lambda m: "pass --choice-codes " + ",".join(kv.replace(": ", "=") for kv in m.group(1).split(", "))),
    (re.compile(r"choice_codes=\{[^}]*\}|choice_codes=\.\.\."), lambda m: "--choice-codes CODE=INDEX (e.g. --choice-codes L=0,R=1)"),
    (re.compile(r"load\(path, mapping=\{[^}]*\}\)?"), lambda m: "--map choice=/path/choice --map reward=/path/reward"),
    (re.compile(r"choice_codes (gives|maps)"), lambda m: f"--choice-codes {m.group(1)}"),
    (re.compile(r"\(e\.g\. \{'L': 0, 'R': 1\}\)"), lambda m: "(e.g. --choice-codes L=0,R=1)"),
    (re.compile(r"; use 0-based option indices, or pass n_options"),
     lambda m: "; use 0-based option indices (the options are 0 … the largest INDEX given)"),
    (re.compile(r"pass resume=False to overwrite it"), lambda m: "run without --resume to start afresh (it overwrites the file)"),
    (re.compile(r"resume=True continues it"), lambda m: "--resume continues it"),
    (re.compile(r"the same call with --resume"), lambda m: "the same command with --resume"),
    (re.compile(r"Use another checkpoint path"), lambda m: "Use another --out"),
    (re.compile(r"SubjectKFold needs 2 ≤ k ≤ number of subjects \((\d+)\); got k=(\d+)"),
     lambda m: f"--split kfold needs 2 ≤ --folds ≤ the number of subjects ({m.group(1)}); got --folds {m.group(2)}"),
    (re.compile(r"Point load_mat at a file, or at a folder of sessions\."), lambda m: "Give a .mat file, or a folder of sessions."),
    (re.compile(r"Rename the file, or call a loader directly \([^)]*\)\."), lambda m: "Rename the file to one of these suffixes."),
    # the sampler's and the fit's advice (a hierarchical fly fit, `plasticinfer fit`)
    (re.compile(r"Raise NUTS\(target_accept=([\d.]+)\)"), lambda m: f"Raise --target-accept to {m.group(1)}"),
    (re.compile(r"Run longer \(NUTS\(warmup=(\d+), samples=(\d+)\)\), start from a MAP fit \(init=fit\(\.\.\.\)\),"),
     lambda m: f"Run longer (--warmup {m.group(1)} --draws {m.group(2)}),"),  # the command line starts at MAP fits already
    (re.compile(r"Run identifiability\(\) and remove or constrain terms the data cannot separate"),
     lambda m: "Remove or constrain terms the data cannot separate (in Python, Posterior.identifiability() finds them)"),
    (re.compile(r"check identifiability\(\)"), lambda m: "check identifiability (in Python: Posterior.identifiability())"),
    (re.compile(r"or use NUTS\(target_accept=([\d.]+), dense_mass=True, max_tree_depth=12\)"),  # the command line's sampler is dense already
     lambda m: f"or (in Python) hierarchical_fit(..., method=NUTS(chains=2, target_accept={m.group(1)}, dense_mass=True, max_tree_depth=12))"),
    (re.compile(r"start from a MAP fit \(init=\.\.\.\), "), lambda m: ""),  # the command line's NUTS starts at MAP fits
    (re.compile(r"pass checkpoint=PATH to make a long run resumable"), lambda m: "--checkpoint-every N makes a long run resumable"),
    (re.compile(r"Pass drop_incomplete=True to drop them\."),
     lambda m: "Remove them from the file (in Python, load_mat(..., drop_incomplete=True) drops them)."),
    (re.compile(r"\(or pass verify=False at your own risk\)"), lambda m: "(or, in Python, load it with verify=False at your own risk)"),
    (re.compile(r"\(Priors\(population_scale=HalfNormal\(\.\.\.\)\) with a smaller scale\)"),
     lambda m: "(in Python: hierarchical_fit(..., priors=Priors(population_scale=HalfNormal(...))) with a smaller scale)"),
    (re.compile(r"; to fit only the other parts, pass fit_rule=False"), lambda m: ""),  # the command line always fits the rule
    (re.compile(r"\bn_patterns must be"), lambda m: "--patterns must be"),
    (re.compile(r"add the coordinate: ds = ds\.assign_coords\((\w+)=\('subject', labels\)\)"),
     lambda m: f"add a column {m.group(1)!r} to your table (the subject's label, as above, on each of its rows)"),
]


def in_command_line_terms(message: str) -> str:
    """A data-layer message with its Python advice (``columns={'reward': …}``) rewritten as the options that do it."""
    for pattern, replace in _PYTHON_TO_CLI:
        message = pattern.sub(replace, message)
    return message


def where_to_get(name: str, data_dir: Path | None = None) -> str:
    """One line for a command-line user: where the named dataset was looked for and how to get it."""
    from .data._datasets import ENV_VAR, candidate_dirs, info

    folder = info(name).folder
    looked = ", ".join(str(d) for d in candidate_dirs(data_dir))
    return (
        f"dataset {name!r} not found (looked for {folder}/ in: {looked}). Get it with "
        f"`plasticinfer datasets download {name}`, or point to a folder holding {folder}/ with --data-dir DIR "
        f"or {ENV_VAR}=DIR."
    )


# --- progress -------------------------------------------------------------------------------------------


def show_bars(quiet: bool) -> bool:
    """Progress bars only on a terminal: redirected to a file, they would glue onto result lines."""
    return not quiet and sys.stderr.isatty()


def note(message: str, quiet: bool = False) -> None:
    """A progress line on stderr, newline-terminated (safe in logs)."""
    if not quiet:
        typer.echo(message, err=True)

"""MATLAB files: v5 (scipy.io.loadmat) and v7.3 (HDF5, via h5py).

Three layouts are recognised from the variable names:

- ``Fly{N}.mat`` (earlier plasticity studies): ``X`` (presentation, odour) one-hot cue of each
  presentation, ``Y`` (presentation,) 1 = accepted / 0 = rejected, ``R`` (trial,) reward of each
  accepted presentation. A trial is a run of rejections ended by one acceptance.
- ``choice_order.mat`` + ``reward_order.mat`` (Turner-lab Y-arena, Rajagopalan et al. 2023):
  ``(trials_per_block, n_blocks)`` codes, 1/2 = odour chosen (or rewarded), 0 = no trial.
- anything else: per-trial vectors (or ``(subject, trial)`` matrices) named as in a tidy table,
  renamed with ``columns={"choice": "resp", ...}``.

A folder is loaded as one subject per session file found in it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ._combine import concat_subjects
from .._errors import FileFormatError, SchemaError
from ._schema import behaviour_dataset, names_its_file, one_source_each
from ._hdf5 import NEURAL_KEYS
from ._matrices import from_matrices
from .._errors import AmbiguousCodingWarning, PlasticInferWarning
from .._errors import warn as _warn
from ._tables import AMBIGUOUS_CODING, NO_SUBJECT_SESSIONS, check_choice_codes, from_dataframe, id_text

_MAT73_HINT = "MATLAB 7.3"


def is_mat73(path: Path) -> bool:
    """True if ``path`` is a MATLAB v7.3 file (an HDF5 file with a MATLAB header)."""
    import h5py

    try:
        return bool(h5py.is_hdf5(path))
    except (OSError, ValueError):
        return False


def read_mat(path: str | os.PathLike[str], *, mat_version: float | None = None) -> dict[str, np.ndarray]:
    """Read the variables of a MAT file into numpy arrays (MATLAB orientation in both versions).

    Args:
        path: the ``.mat`` file.
        mat_version: 5 to insist on the v5 reader (scipy.io.loadmat), 7.3 for the HDF5 reader;
            default: detect from the file.

    Raises:
        FileFormatError: missing, empty, truncated or wrong-version file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    if path.stat().st_size == 0:
        raise FileFormatError(f"file {str(path)!r} is empty (0 bytes). Save the MAT file again.")
    hdf5 = is_mat73(path)
    if mat_version is None:
        mat_version = 7.3 if hdf5 else 5
    if mat_version not in (5, 7.3):
        raise FileFormatError(f"mat_version must be 5 or 7.3 (or None to detect); got {mat_version!r}.")
    if mat_version == 5 and hdf5:
        raise FileFormatError(
            f"file {str(path)!r} is a MATLAB v7.3 (HDF5-based) file, which the v5 reader "
            "(scipy.io.loadmat) cannot read. Call load_mat without mat_version (it detects the version) "
            "or with mat_version=7.3."
        )
    if mat_version == 7.3 and not hdf5:
        raise FileFormatError(
            f"file {str(path)!r} is not a MATLAB v7.3 (HDF5) file. Call load_mat without mat_version, "
            "or with mat_version=5."
        )
    return _read_v73(path) if hdf5 else _read_v5(path)


def _read_v5(path: Path) -> dict[str, np.ndarray]:
    import scipy.io

    try:
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except NotImplementedError as e:  # scipy's own message for v7.3 files
        raise FileFormatError(
            f"file {str(path)!r} cannot be read by scipy.io.loadmat ({e}); if it is a v7.3 file, "
            "load it with mat_version=7.3."
        ) from e
    except Exception as e:  # scipy raises many types on corrupt input
        raise FileFormatError(
            f"file {str(path)!r} could not be read as a MATLAB v5 file: {type(e).__name__}: {e}. "
            "Check that it is a complete .mat file."
        ) from e
    return {k: np.asarray(v) for k, v in raw.items() if not k.startswith("__")}


class _Variables(dict):
    """A MAT file's variables, with those the reader had to skip (name → what it is) in ``skipped``."""

    def __init__(self):
        super().__init__()
        self.skipped: dict[str, str] = {}


def _read_v73(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out = _Variables()
    try:
        with h5py.File(path, "r") as f:
            for name, obj in f.items():
                if name.startswith("#"):
                    continue
                if not isinstance(obj, h5py.Dataset):  # a struct is a group
                    out.skipped[name] = "a struct"
                    continue
                if obj.dtype.kind not in "iufb":  # cells are object references
                    out.skipped[name] = "a cell array"
                    continue
                value = np.asarray(obj[()]).T  # HDF5 stores MATLAB's column-major arrays transposed
                cls = obj.attrs.get("MATLAB_class", b"")
                if (cls.decode() if isinstance(cls, bytes) else str(cls)) == "char":  # one string per row, as v5 reads it
                    rows = value.reshape(-1, value.shape[-1]) if value.ndim >= 2 else value.reshape(1, -1)
                    value = np.array(["".join(map(chr, row)) for row in rows])
                out[name] = value
    except Exception as e:  # h5py raises OSError, KeyError, ... on damaged files
        raise FileFormatError(
            f"file {str(path)!r} could not be read as a MATLAB v7.3 (HDF5) file: {type(e).__name__}: {e}. "
            "The file may be truncated; save it again."
        ) from e
    return out


#: The schema names a MAT file's variables can be mapped to (behaviour data)
MAT_COLUMNS = ("choice", "reward", "subject", "session", "trial", "block")


@names_its_file
def load_mat(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    mat_version: float | None = None,
    drop_incomplete: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load a MAT file (v5 or v7.3), or a folder of per-session MAT files, into a behaviour dataset.

    Args:
        path: a ``.mat`` file, or a folder holding ``choice_order.mat`` session folders or
            ``Fly*.mat`` files (one subject each).
        columns: for the generic layout: schema name -> MAT variable name.
        choice_codes: code -> 0-based option index (default ``{1: 0, 2: 1}`` for ``choice_order``;
            0/1 or 1/2 detected otherwise).
        n_options: number of options (generic layout).
        mat_version: 5 or 7.3 to force a reader; default: detect.
        drop_incomplete: ``Fly{N}.mat`` layout: drop rejections after the last acceptance
            (an unfinished trial) instead of raising.
        attrs: dataset attributes (``license``, ``citation``, ...).

    Returns:
        A validated behaviour dataset.
    """
    path = Path(path)
    unknown = sorted(set(columns or {}) - set(MAT_COLUMNS))
    if unknown:  # a misspelt name was ignored, and neural names led to advice about choice and reward
        neural = [k for k in unknown if k in NEURAL_KEYS]
        raise SchemaError(
            f"file {str(path)!r}: " + (
                f"{neural} name neural-data variables; the MAT loader reads behaviour (choice and reward) only. Save "
                "the recordings to HDF5 or NWB (docs/data-format.md), or build the dataset with pi.data.neural_dataset"
                if neural else f"unknown schema name(s) {unknown} in columns=...; the MAT loader maps {list(MAT_COLUMNS)}"
            )
        )
    kwargs = dict(columns=columns, choice_codes=choice_codes, n_options=n_options, mat_version=mat_version,
                  drop_incomplete=drop_incomplete, attrs=attrs)
    if path.is_dir():
        return _load_folder(path, kwargs)
    variables = read_mat(path, mat_version=mat_version)
    all_attrs = {"source": str(path)}
    all_attrs.update(attrs or {})
    where = f"file {str(path)!r}"
    if {"X", "Y", "R"} <= variables.keys():
        return fly_presentations(variables["X"], variables["Y"], variables["R"], subject=path.stem,
                                 drop_incomplete=drop_incomplete, attrs=all_attrs, where=where)
    if "choice_order" in variables or "reward_order" in variables:
        choice_order, reward_order = _order_pair(path, variables, mat_version)
        return choice_order_session(choice_order, reward_order, subject=path.parent.name or path.stem,
                                    choice_codes=choice_codes, attrs=all_attrs, where=where)
    return _generic(variables, columns or {}, choice_codes, n_options, all_attrs, where, path.stem)


def _load_folder(path: Path, kwargs: dict[str, Any]) -> xr.Dataset:
    files = sorted(path.rglob("choice_order.mat"))
    if not files:
        files = sorted(path.glob("Fly*.mat"), key=lambda p: (len(p.stem), p.stem)) or sorted(path.glob("*.mat"))
    if not files:
        raise FileFormatError(
            f"folder {str(path)!r} holds no choice_order.mat session folders and no .mat files. "
            "Point load_mat at a file, or at a folder of sessions."
        )
    with warnings.catch_warnings(record=True) as caught:  # a file that reads both ways is read as its siblings are;
        warnings.simplefilter("always", PlasticInferWarning)  # said once below if all do
        parts = [load_mat(f, **kwargs) for f in files]
        parts = _one_coding(files, parts, kwargs)  # may read files again
    many = [w for w in caught if issubclass(w.category, PlasticInferWarning) and NO_SUBJECT_SESSIONS in str(w.message)]
    seen = set()
    for w in caught:  # the rest as they were, where they were raised
        if issubclass(w.category, AmbiguousCodingWarning) or w in many or (str(w.message), w.category) in seen:
            continue
        seen.add((str(w.message), w.category))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if many:  # once for the folder, not once per file (files read twice are counted once)
        many = list({str(w.message): w for w in many}.values())
        _warn(
            f"folder {str(path)!r}: {len(many)} of {len(files)} files have several sessions and no subject variable; "
            "each such file is read as one subject (named by its file) learning through its sessions in order, e.g. "
            f"{str(many[0].message).split(': ', 1)[0]}. If each session is a different animal, load those files one "
            "at a time with columns={'subject': 'session'}.",
            PlasticInferWarning,
        )
    if not all(p.attrs.get("choice_coding") == AMBIGUOUS_CODING for p in parts):
        for p in parts:  # read as 0-based with siblings whose codes say so
            if p.attrs.get("choice_coding") == AMBIGUOUS_CODING:
                p.attrs["choice_coding"] = "0-based"
    else:
        one = ", ".join(f"{k}: {k - 1}" for k in range(1, int(kwargs.get("n_options") or 2) + 1))
        _warn(
            f"folder {str(path)!r}: no file has a choice code that tells 0-based from 1-based coding (a 0, or the "
            f"number of options); read as 0-based. If the first option is coded 1, pass choice_codes={{{one}}}",
            AmbiguousCodingWarning,
        )
    first: dict[str, Path] = {}
    for f, p in zip(files, parts):  # name the two files, not two positions in a list
        for s in map(str, p["subject"].values):
            if s in first:
                raise SchemaError(
                    f"folder {str(path)!r}: subject {s!r} is in both {str(first[s])!r} and {str(f)!r}; each subject "
                    "must come from one file. Rename one of them (or its subject variable), or load them one at a time."
                )
            first[s] = f
    attrs = {"source": str(path)}
    attrs.update(kwargs.get("attrs") or {})
    return concat_subjects(parts, attrs=attrs)


def _one_coding(files: list[Path], parts: list[xr.Dataset], kwargs: dict[str, Any]) -> list[xr.Dataset]:
    """One choice coding for a whole folder: a file whose codes fit both readings (only 1s) is read as its
    1-based siblings are, and a folder whose files need different codings is refused."""
    codings = ["0-based" if p.attrs.get("choice_coding") == AMBIGUOUS_CODING else p.attrs.get("choice_coding") for p in parts]
    if kwargs.get("choice_codes") is not None or set(codings) != {"0-based", "1-based"}:
        return parts
    has_zero = [c == "0-based" and bool((p["choice"].values[p["trial_mask"].values] == 0).any()) for c, p in zip(codings, parts)]
    if any(has_zero):
        zero = files[has_zero.index(True)]
        one = files[codings.index("1-based")]
        raise SchemaError(
            f"folder {str(files[0].parent)!r}: the choice codes are 0-based in {zero.name!r} (a code 0) but 1-based in "
            f"{one.name!r} (codes 1 … {len(parts[0]['option'])}); give every file the same coding, or pass "
            "choice_codes={code: option_index} for the whole folder."
        )
    one_based = {k: k - 1 for k in range(1, int(kwargs.get("n_options") or 2) + 1)}
    parts = [load_mat(f, **{**kwargs, "choice_codes": one_based}) if c == "0-based" else p
             for f, c, p in zip(files, codings, parts)]
    for p in parts:  # read as their siblings are: the folder's coding, kept when the files are put together
        p.attrs["choice_coding"] = "1-based"
    return parts


def _order_pair(path: Path, variables: dict[str, np.ndarray], mat_version: float | None) -> tuple[Any, Any]:
    """Find ``choice_order`` and ``reward_order``: in this file, or in the sibling file."""
    found = dict(variables)
    for other in ("choice_order", "reward_order"):
        if other not in found:
            sibling = path.with_name(f"{other}.mat")
            if not sibling.is_file():
                raise FileFormatError(
                    f"file {str(path)!r} holds {sorted(variables)} but not {other!r}, and {str(sibling)!r} "
                    "does not exist. The choice_order/reward_order layout needs both, side by side."
                )
            sib = read_mat(sibling, mat_version=mat_version)
            if other not in sib:
                raise FileFormatError(f"file {str(sibling)!r} holds {sorted(sib)} but not {other!r}.")
            found[other] = sib[other]
    return found["choice_order"], found["reward_order"]


def _codes_matrix(value: Any, name: str, where: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "iufb" or a.ndim != 2:
        raise FileFormatError(
            f"{where}: {name} must be a numeric (trials_per_block, n_blocks) matrix; "
            f"found dtype {a.dtype}, shape {a.shape}."
        )
    a = a.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(a) | (a != np.round(a)) | (a < 0) | (a > 2**53)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise FileFormatError(
            f"{where}: {name}[{r}, {c}] (trial {r + 1} of block {c + 1}) is {a[r, c]!r}; expected a "
            "non-negative integer code (0 = no trial)."
        )
    return a.astype(np.int64)


def choice_order_session(
    choice_order: Any,
    reward_order: Any,
    *,
    subject: str,
    choice_codes: Mapping[Any, int] | None = None,
    attrs: Mapping[str, Any] | None = None,
    where: str = "session",
) -> xr.Dataset:
    """One session of the ``choice_order`` / ``reward_order`` layout as a one-subject dataset.

    Columns are blocks (1-based in the result), rows trials within a block; trials are taken
    block by block. Code 0 means "no trial" and may only end the session.
    """
    co = _codes_matrix(choice_order, "choice_order", where)
    ro = _codes_matrix(reward_order, "reward_order", where)
    if co.shape != ro.shape:
        raise FileFormatError(
            f"{where}: choice_order has shape {co.shape} but reward_order has {ro.shape}; they must match."
        )
    if co.shape[1] > 1 and co.shape[1] > co.shape[0]:  # (block, trial) read as (trial, block): trials interleaved
        _warn(
            f"{where}: choice_order is {co.shape[0]} × {co.shape[1]}, read as {co.shape[1]} blocks of {co.shape[0]} "
            f"trial{'s' if co.shape[0] != 1 else ''} (rows are trials within a block, columns are blocks). If it is stored "
            "(block, trial), transpose choice_order and reward_order before loading: read as they are, the trials are "
            "interleaved across blocks",
            PlasticInferWarning,
        )
    codes = {1: 0, 2: 1} if choice_codes is None else {int(k): int(v) for k, v in choice_codes.items()}
    check_choice_codes(codes, 2, where)
    c = co.T.ravel()
    r = ro.T.ravel()
    block = np.repeat(np.arange(1, co.shape[1] + 1), co.shape[0])
    in_block = np.tile(np.arange(1, co.shape[0] + 1), co.shape[1])
    real = c != 0
    n = int(real.sum())
    checks = [
        (real & ~np.isin(c, list(codes)), f"choice_order holds an unknown code (known: {sorted(codes)}, 0 = no trial)",
         "Pass choice_codes={code: option_index}."),
        (real & (np.cumsum(~real) > 0), "a trial follows a 'no trial' (0) entry",
         "Zeros may only end a session; remove the gap in the source."),
        (~real & (r != 0), "reward_order has a reward on a 'no trial' entry", "Fix the source file."),
        (real & (r != 0) & (r != c), "reward_order is neither 0 nor the chosen code",
         "reward_order must be 0 or equal the choice_order code."),
    ]
    for bad, problem, todo in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise FileFormatError(
                f"{where}: {problem} at trial {in_block[i]} of block {block[i]} "
                f"(choice {c[i]}, reward {r[i]}). {todo}"
            )
    if n == 0:
        raise FileFormatError(f"{where}: choice_order holds no trial (all 0).")
    labels = [str(k) for k, _ in sorted(codes.items(), key=lambda kv: kv[1])]
    all_attrs = {"choice_coding": f"codes {labels} -> options 0..{len(labels) - 1}"}
    all_attrs.update(attrs or {})
    return behaviour_dataset(
        [np.array([codes[int(x)] for x in c[:n]])],
        [(r[:n] != 0).astype(np.float64)],
        subjects=[subject],
        block=[block[:n]],
        n_options=len(codes),
        option_labels=[f"code {k}" for k in labels],
        trial_coords={"trial_in_block": [in_block[:n]]},
        attrs=all_attrs,
    )


def fly_presentations(
    X: Any,
    Y: Any,
    R: Any,
    *,
    subject: str,
    drop_incomplete: bool = False,
    attrs: Mapping[str, Any] | None = None,
    where: str = "Fly file",
) -> xr.Dataset:
    """The ``Fly{N}.mat`` layout (X one-hot cue per presentation, Y accept/reject, R reward per trial)."""
    x = np.asarray(X)
    y = np.asarray(Y)
    rr = np.asarray(R)
    for name, a in (("X", x), ("Y", y), ("R", rr)):
        if a.dtype.kind not in "iufb":
            raise FileFormatError(f"{where}: {name} must be numeric; found dtype {a.dtype}.")
    y = y.astype(np.float64).ravel()
    rr = rr.astype(np.float64).ravel()
    x = x.astype(np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise FileFormatError(
            f"{where}: X must be (presentation, odour) with one row per entry of Y; found X {x.shape}, "
            f"Y {y.shape}. Check the file: X, Y hold one entry per odour presentation."
        )
    if x.shape[1] < 2:
        raise FileFormatError(f"{where}: X has {x.shape[1]} columns; expected one per odour (at least 2).")
    one_hot = np.isin(x, (0.0, 1.0)).all(axis=1) & (x.sum(axis=1) == 1)
    if not one_hot.all():
        i = int(np.flatnonzero(~one_hot)[0])
        raise FileFormatError(f"{where}: X row {i} is {x[i].tolist()}; expected a one-hot odour code.")
    if not np.isin(y, (0.0, 1.0)).all():
        i = int(np.flatnonzero(~np.isin(y, (0.0, 1.0)))[0])
        raise FileFormatError(f"{where}: Y[{i}] is {float(y[i])!r}; expected 1 (accepted) or 0 (rejected).")
    if not np.isfinite(rr).all():
        i = int(np.flatnonzero(~np.isfinite(rr))[0])
        raise FileFormatError(f"{where}: R[{i}] is {float(rr[i])!r}; every accepted trial needs a finite reward.")
    n_trials = int(y.sum())
    if n_trials != rr.shape[0]:
        raise FileFormatError(
            f"{where}: Y accepts {n_trials} presentations but R holds {rr.shape[0]} rewards; "
            "R needs one reward per accepted presentation."
        )
    if n_trials == 0:
        raise FileFormatError(f"{where}: Y accepts no presentation, so there is no trial.")
    last = int(np.flatnonzero(y)[-1])
    if last < y.shape[0] - 1:
        if not drop_incomplete:
            raise FileFormatError(
                f"{where}: {y.shape[0] - 1 - last} rejections follow the last acceptance (an unfinished "
                "trial). Pass drop_incomplete=True to drop them."
            )
        x, y = x[: last + 1], y[: last + 1]
    odour = x.argmax(axis=1)
    ends = np.flatnonzero(y) + 1
    starts = np.concatenate([[0], ends[:-1]])
    presented = [odour[a:b] for a, b in zip(starts, ends)]
    all_attrs = {"choice_coding": "odour column of X (0-based)"}
    all_attrs.update(attrs or {})
    return behaviour_dataset(
        [odour[ends - 1]],
        [rr],
        subjects=[subject],
        n_options=x.shape[1],
        presented=[presented],
        attrs=all_attrs,
    )


def _generic(
    variables: dict[str, np.ndarray],
    columns: Mapping[str, str],
    choice_codes: Mapping[Any, int] | None,
    n_options: int,
    attrs: dict[str, Any],
    where: str,
    default_subject: str,
) -> xr.Dataset:
    names = {k: columns.get(k, k) for k in MAT_COLUMNS}
    one_source_each({k: v for k, v in names.items() if k in columns or v in variables}, where, "variable",
                    "Fix the columns= mapping (a variable read by its own name, e.g. 'reward', counts too).")
    missing = [f"{k!r}" + (f" (mapped to {names[k]!r})" if names[k] != k else "")
               for k in ("choice", "reward") if names[k] not in variables]
    skipped = getattr(variables, "skipped", {})
    unreadable = [f"{names[k]!r} is {skipped[names[k]]}" for k in ("choice", "reward") if names[k] in skipped]
    if unreadable:
        raise FileFormatError(
            f"{where}: {'; '.join(unreadable)}, which cannot be read from a MATLAB v7.3 file. Save it as a numeric "
            "vector or matrix (e.g. choice = double(choice); text codes as numbers), or save the file with -v7."
        )
    if missing and not variables and not skipped:  # a MAT header with nothing readable after it
        raise FileFormatError(
            f"{where}: no variable could be read from this MAT file (is it truncated, e.g. an interrupted copy or "
            "download?). Copy or export it again; MATLAB can check it with load('<file>')."
        )
    if missing:
        nested = {k: "a struct" if np.asarray(v).dtype.names else "a cell array" for k, v in variables.items()
                  if np.asarray(v).dtype.names or np.asarray(v).dtype == object}
        held = ", ".join(repr(k) + (f" ({nested[k]}: its fields cannot be mapped; save each field as a variable of its own)"
                                    if k in nested else "") for k in sorted(variables))
        raise FileFormatError(
            f"{where}: variables {', '.join(missing)} not found; the file holds [{held}]"
            + (f" (and {', '.join(f'{k!r} ({v})' for k, v in skipped.items())}, skipped: v7.3 cells and structs cannot be read)"
               if skipped else "") + ". "
            "Pass columns={'choice': '<variable>', 'reward': '<variable>'}, or use the Fly{N}.mat (X, Y, R) "
            "or choice_order/reward_order layouts."
        )
    variables = {k: _uncell(v) for k, v in variables.items()}
    choice = np.asarray(variables[names["choice"]])
    if choice.ndim == 2 and min(choice.shape) > 1:
        block = variables.get(names["block"])
        subjects = None
        if names["subject"] in variables:
            subjects = [id_text(v) for v in np.asarray(variables[names["subject"]]).ravel()]
            if len(subjects) != choice.shape[0]:
                raise SchemaError(
                    f"{where}: variable {names['subject']!r} holds {len(subjects)} subject ids, but the choice matrix "
                    f"has {choice.shape[0]} rows (subjects); give one id per row."
                )
        return from_matrices(choice, variables[names["reward"]], block=block, subjects=subjects,
                             choice_codes=choice_codes, n_options=n_options, attrs=attrs, where=where)
    table = {}
    for key, name in names.items():
        if name in variables:
            a = np.asarray(variables[name])
            if a.ndim > 2 or (a.ndim == 2 and min(a.shape) > 1):
                raise FileFormatError(f"{where}: variable {name!r} has shape {a.shape}; expected a vector.")
            table[key] = a.ravel()
    n_trials = len(table["choice"])
    for key in ("subject", "session"):  # one id for the whole file: every trial's
        if key in table and len(table[key]) == 1 and n_trials > 1:
            table[key] = np.repeat(table[key], n_trials)
    lengths = {k: len(v) for k, v in table.items()}
    if len(set(lengths.values())) > 1:
        raise SchemaError(
            f"{where}: per-trial variables differ in length {lengths}; each needs one entry per trial."
        )
    return from_dataframe(pd.DataFrame(table), choice_codes=choice_codes, n_options=n_options, attrs=attrs,
                          default_subject=default_subject, where=where)


def _uncell(value: Any) -> np.ndarray:
    """A MATLAB cell array (an object array of 1-element arrays, as scipy reads it) as an array of its values."""
    a = np.asarray(value)
    if a.dtype != object:
        return a
    out = np.empty(a.shape, dtype=object)
    for i, v in np.ndenumerate(a):
        v = np.asarray(v)
        if v.dtype.kind in "US" and v.size <= 1:
            out[i] = str(v.item()) if v.size else ""
        elif v.size == 1:
            out[i] = v.item()
        else:
            out[i] = v  # left as it is: the loader names the variable when it refuses it
    return out

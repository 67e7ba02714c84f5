"""Tidy trial tables (CSV, TSV, Parquet, or a pandas DataFrame): one row per trial.

Schema columns (rename yours with ``columns={"choice": "animal_response", ...}``):

- ``choice`` (required): the chosen option, as 0-based indices, 1-based indices, or any codes
  mapped with ``choice_codes={"left": 0, "right": 1}``.
- ``reward`` (required): reward received on the trial.
- ``subject``: subject id, read as written (``001`` and ``1`` are two subjects; default: one subject
  named after the file).
- ``trial``: trial number, used for ordering within a subject (default: file order).
- ``session``: session id; trials of a subject are ordered by session, then trial. Sessions that are
  all numbers are ordered by number, all ISO dates (``2023-05-01``) by date, others by first appearance.
- ``block``: 1-based block number (default 1).
- ``p_reward_0``, ``p_reward_1``, ...: reward probability of each option (NaN = unknown).

Every other column becomes metadata: a per-subject coordinate when it is constant within each
subject, else a per-trial coordinate.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._errors import AmbiguousCodingWarning, FileFormatError, PlasticInferWarning, SchemaError
from .._errors import warn as _warn
from ._schema import behaviour_dataset, names_its_file, one_source_each
from ._validate import validate

CORE_COLUMNS = ("subject", "session", "trial", "block", "choice", "reward")
RESERVED = {"trial_mask", "cue", "option", "option_label", "feature", "presentation", "presented", "accepted",
            "presentation_mask", "p_reward", "trial_number", "kind"}
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": None, ".parquet": "parquet", ".pq": "parquet"}


@names_its_file
def load_table(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load a tidy trial table (CSV/TSV/Parquet, one row per trial) into a behaviour dataset.

    Args:
        path: ``.csv``, ``.tsv``, ``.txt`` (delimiter sniffed) or ``.parquet`` file.
        columns: schema name -> your column name, e.g. ``{"choice": "animal_response"}``.
        choice_codes: your choice code -> 0-based option index, e.g. ``{1: 0, 2: 1}``. Without
            it, codes 0..n-1 are taken as 0-based and codes 1..n (with n present) as 1-based.
        n_options: number of options (default 2).
        attrs: dataset attributes to set (``license``, ``citation``, ...).

    Returns:
        A validated behaviour dataset.

    Raises:
        FileFormatError: the file is missing, empty or not a readable table.
        SchemaError: a column is missing or holds a value the schema does not allow.
    """
    path = Path(path)
    names = dict(columns or {})
    df = read_table(path, text_columns=[names.get(k, k) for k in ("subject", "session")])
    all_attrs = {"source": str(path)}
    all_attrs.update(attrs or {})
    return from_dataframe(
        df, columns=columns, choice_codes=choice_codes, n_options=n_options, attrs=all_attrs,
        default_subject=path.stem or "0", where=f"file {str(path)!r}",
    )


def read_table(path: Path, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a table file with pandas, turning every failure into a `FileFormatError`.

    ``text_columns`` (ids: subject, session) are read as written (``001`` and ``1`` stay apart).
    Column names are stripped of surrounding spaces. Rows with one field more than the header are read
    as R writes them (unique row names first, dropped) or with a trailing delimiter (every extra field
    empty), and refused otherwise.
    """
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise FileFormatError(
            f"file {str(path)!r}: unknown table suffix {suffix!r}; expected one of {sorted(TABLE_SUFFIXES)}."
        )
    if path.stat().st_size == 0:
        raise FileFormatError(f"file {str(path)!r} is empty (0 bytes). Export the table again.")
    sep = TABLE_SUFFIXES[suffix]
    try:
        if sep == "parquet":
            df = pd.read_parquet(path)
        else:
            df = _read_delimited(path, sep, text_columns)
    except (FileFormatError, SchemaError):
        raise
    except UnicodeDecodeError as e:
        raise FileFormatError(
            f"file {str(path)!r} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at position {e.start}); it "
            "may be Latin-1, Windows-1252 or UTF-16. Save it as UTF-8 (e.g. Excel: 'CSV UTF-8'; pandas: "
            "df.to_csv(path, encoding='utf-8'))."
        ) from e
    except Exception as e:  # third-party parsers raise many types; report them as ours
        raise FileFormatError(
            f"file {str(path)!r} could not be read as a {suffix} table: {type(e).__name__}: {e}. "
            "Check that it is a valid, complete file of that type."
        ) from e
    if df.shape[0] == 0:
        raise FileFormatError(f"file {str(path)!r} has a header but no rows: there are no trials to load.")
    if sep in (",", "\t") and df.shape[1] == 1:
        _refuse_other_delimiter(path, str(df.columns[0]), sep)
    return df


_DELIMITER_NAMES = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}


def _refuse_other_delimiter(path: Path, header: str, sep: str) -> None:
    """A .csv/.tsv read as one column whose header holds another delimiter: say so, not that columns are missing."""
    other = [d for d in _DELIMITER_NAMES if d != sep and d in header]
    if other:
        d = max(other, key=header.count)
        raise FileFormatError(
            f"file {str(path)!r}: the header {header!r} is one column holding {_DELIMITER_NAMES[d]}, so the file looks "
            f"{_DELIMITER_NAMES[d]}-separated, but a {path.suffix} file is read as {_DELIMITER_NAMES[sep]}-separated. "
            f"Export it with {_DELIMITER_NAMES[sep]} as the delimiter, or rename it to .txt (the delimiter of a .txt table "
            "is detected)."
        )


# the delimiters a .txt table may use, in the order csv.Sniffer prefers them on a tie
_TXT_DELIMITERS = ",\t;| :"


def _sniff_delimiter(path: Path) -> str:
    """The delimiter of a ``.txt`` table: one of , tab ; | : or runs of spaces; a comma when the header has none.

    csv.Sniffer left free picks any character that occurs equally often on every line, so a
    one-column file (``choice``) was split at a letter; here the choice is limited to real delimiters.
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        sample = f.read(65536)
    lines = [line for line in sample.splitlines() if line.strip()]
    if len(sample) == 65536 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    if not lines or not any(d in lines[0] for d in _TXT_DELIMITERS):
        return ","  # one column: no delimiter in the header
    try:
        sep = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_TXT_DELIMITERS).delimiter
    except csv.Error:
        # no delimiter occurs equally often on every line: take the one the header uses most
        sep = max(_TXT_DELIMITERS, key=lines[0].count)
    return r"\s+" if sep == " " else sep


def _read_delimited(path: Path, sep: str | None, text_columns: Sequence[str]) -> pd.DataFrame:
    if sep is None:
        sep = _sniff_delimiter(path)
    kw = dict(sep=sep, engine="c", encoding="utf-8")
    if sep != r"\s+":
        kw["skipinitialspace"] = True
    header = pd.read_csv(path, nrows=0, **kw).columns
    # pandas renames a repeated name ("choice", "choice.1") and an empty one ("Unnamed: 0"): read the header line as written
    first_line = pd.read_csv(path, header=None, nrows=1, dtype=str, **kw).iloc[0].tolist()
    written = [str(v).strip() for v in first_line if isinstance(v, str)]
    repeated = sorted({c for c in written if written.count(c) > 1})
    if repeated and not all(_NUMBER.match(c) for c in written):  # a header of numbers: no header (said further on)
        raise SchemaError(
            f"file {str(path)!r}: the header names {', '.join(map(repr, repeated[:5]))} more than once; give each column a "
            f"unique name (read as it is, the second would become {repeated[0] + '.1'!r} and be ignored)."
        )
    stripped = {c: c.strip() for c in header if isinstance(c, str)}
    text = {c: str for c, name in stripped.items() if name in set(text_columns)} or None
    df = pd.read_csv(path, dtype=text, **kw)
    if len(df) == 0:
        return df.rename(columns=stripped)
    first_rows = pd.read_csv(path, header=None, skiprows=1, nrows=5, dtype=str, **kw)
    if first_rows.shape[1] > len(header):
        # the rows have one field more than the header, and pandas took the first field as the row label: right for
        # R's write.table (unique row names, no header of their own), wrong when the extra field is data
        extra = df.iloc[:, -1]
        if extra.isna().all():  # a trailing delimiter on every row
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", pd.errors.ParserWarning)  # "loss of data": only the empty last field
                return pd.read_csv(path, dtype=text, index_col=False, **kw).rename(columns=stripped)
        if not df.index.is_unique:
            i = int(np.flatnonzero(df.index.duplicated())[0])
            raise FileFormatError(
                f"file {str(path)!r}: the rows have {len(header) + 1} fields but the header names {len(header)} columns. "
                f"Read as row names (as R writes them) the first field repeats ({df.index[i]!r}, row {i}), so they are "
                "not row names and every column would be shifted by one. Name the extra column in the header, or remove it."
            )
        df = df.reset_index(drop=True)
    elif df.shape[1] > 1 and not (isinstance(first_line[0], str) and first_line[0].strip()) and df.iloc[:, 0].is_unique:
        df = df.iloc[:, 1:]  # a first column with an empty name and a unique value per row: R's write.csv row names
    return df.rename(columns=stripped)


def from_dataframe(
    df: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    attrs: Mapping[str, Any] | None = None,
    default_subject: str = "0",
    where: str = "table",
) -> xr.Dataset:
    """Convert a tidy trial table (one row per trial) into a behaviour dataset.

    Args:
        df: the table.
        columns: schema name -> column name in ``df``.
        choice_codes: choice code -> 0-based option index.
        n_options: number of options.
        attrs: dataset attributes.
        default_subject: subject id when there is no subject column.
        where: how errors name the table (e.g. the file).

    Returns:
        A validated behaviour dataset.
    """
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"{where}: expected a pandas DataFrame; found {type(df).__name__}.")
    if df.shape[0] == 0:
        raise SchemaError(f"{where}: the table has no rows: there are no trials to load.")
    df = _index_as_columns(df, columns or {}, where)
    df = _rename(df, columns or {}, n_options, where)
    df = df.reset_index(drop=True)

    subject = _subject_column(df, default_subject, where)
    trial = _integer_column(df, "trial", where, minimum=0) if "trial" in df else None
    block = _integer_column(df, "block", where, minimum=1) if "block" in df else np.ones(len(df), np.int64)
    choice, coding = _choice_column(df, choice_codes, n_options, where)
    reward = _reward_column(df, where)
    p_cols = [f"p_reward_{k}" for k in range(n_options)]
    p_reward = None
    if any(c in df for c in p_cols):
        p_reward = np.stack([_float_column(df, c, where) if c in df else np.full(len(df), np.nan) for c in p_cols], 1)

    order = _order(df, subject, trial, where)
    codes, subjects = pd.factorize(subject)
    if "subject" not in df and "session" in df and (n_sessions := len({id_text(v) for v in df["session"].dropna()})) > 1:
        _warn(
            f"{where}: {NO_SUBJECT_SESSIONS}, so its {n_sessions} sessions are read as one subject "
            f"({default_subject!r}) learning through them in order; if each session is a different animal, map the "
            "subject to the session column (columns={'subject': 'session'})",
            PlasticInferWarning,
        )
    groups = [order[codes[order] == k] for k in range(len(subjects))]

    meta = [c for c in df.columns if c not in CORE_COLUMNS and c not in p_cols]
    if "session" in df:
        meta.insert(0, "session")
    subject_coords, trial_coords = _metadata(df, meta, groups)
    if trial is not None:
        trial_coords["trial_number"] = [trial[g] for g in groups]

    all_attrs = {"source": where, "choice_coding": coding}
    all_attrs.update(attrs or {})
    ds = behaviour_dataset(
        [choice[g] for g in groups],
        [reward[g] for g in groups],
        subjects=list(subjects),
        block=[block[g] for g in groups],
        p_reward=None if p_reward is None else [p_reward[g] for g in groups],
        n_options=n_options,
        subject_coords=subject_coords,
        trial_coords=trial_coords,
        attrs=all_attrs,
    )
    return ds


def _index_as_columns(df: pd.DataFrame, columns: Mapping[str, str], where: str) -> pd.DataFrame:
    """Index levels named as a column the loader reads (``df.set_index(["subject", "trial"])``) become columns
    again; other index levels are row labels, and dropped."""
    wanted = set(CORE_COLUMNS) | set(columns.values())
    named = [n for n in df.index.names if n is not None and (n in wanted or str(n).startswith("p_reward_"))]
    same = [n for n in named if n in df.columns and pd.Index(df.index.get_level_values(n)).equals(pd.Index(df[n]))]
    named = [n for n in named if n not in same]  # set_index(..., drop=False): the column is already there
    clash = [n for n in named if n in df.columns]
    if clash:
        raise SchemaError(
            f"{where}: {clash[0]!r} is both an index level and a column, with different values; drop one of them "
            "(df.reset_index(drop=True) keeps the column)."
        )
    return df.reset_index(level=named) if named else df


def to_dataframe(ds: xr.Dataset) -> pd.DataFrame:
    """Write a behaviour dataset as a tidy table (one row per real trial); inverse of `from_dataframe`.

    Columns: ``subject``, ``trial`` (the source trial number if known, else 1-based position),
    ``block``, ``choice`` (0-based), ``reward``, ``p_reward_<k>`` when known, then metadata.
    Presentations (if any) are not written.
    """
    validate(ds)
    if ds.attrs["kind"] != "behaviour":
        raise SchemaError("to_dataframe writes behaviour datasets only; this one is neural.")
    mask = ds["trial_mask"].values
    s_idx, t_idx = np.nonzero(mask)
    out: dict[str, Any] = {"subject": ds["subject"].values[s_idx].astype(str)}
    if "trial_number" in ds.coords:
        out["trial"] = ds["trial_number"].values[s_idx, t_idx]
    else:
        out["trial"] = t_idx + 1
    out["block"] = ds["block"].values[s_idx, t_idx]
    out["choice"] = ds["choice"].values[s_idx, t_idx]
    out["reward"] = ds["reward"].values[s_idx, t_idx]
    if "p_reward" in ds.coords:
        for k in range(ds.sizes["option"]):
            out[f"p_reward_{k}"] = ds["p_reward"].values[s_idx, t_idx, k]
    skip = {"subject", "trial", "option", "block", "p_reward", "trial_number", "option_label"}
    for name, coord in ds.coords.items():
        if name in skip:
            continue
        if coord.dims == ("subject",):
            out[str(name)] = coord.values[s_idx]
        elif coord.dims == ("subject", "trial"):
            out[str(name)] = coord.values[s_idx, t_idx]
    return pd.DataFrame(out)


# --- helpers -----------------------------------------------------------------------------------


def _rename(df: pd.DataFrame, columns: Mapping[str, str], n_options: int, where: str) -> pd.DataFrame:
    df = df.rename(columns={c: str(c) for c in df.columns})
    if len(set(df.columns)) != len(df.columns):
        dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
        raise SchemaError(f"{where}: column names {dup} appear more than once; give each column a unique name.")
    known = set(CORE_COLUMNS) | {f"p_reward_{k}" for k in range(n_options)}
    one_source_each(columns, where, "column", "Fix the columns= mapping.")
    for schema_name, user_name in columns.items():
        if schema_name not in known:
            raise SchemaError(
                f"{where}: unknown schema name {schema_name!r} in columns=...; known names are {sorted(known)}."
            )
        if user_name not in df.columns:
            raise SchemaError(
                f"{where}: column {user_name!r} (mapped to {schema_name!r}) not found; "
                f"the table has columns {_column_list(df)}. Fix the columns= mapping."
            )
    clash = [s for s, u in columns.items() if s in df.columns and s != u and s not in columns.values()]
    df = df.drop(columns=clash).rename(columns={u: s for s, u in columns.items()})
    for name in ("choice", "reward"):
        if name not in df.columns:
            raise SchemaError(
                f"{where}: required column {name!r} is missing; the table has columns {_column_list(df)}. "
                f"Name your column {name!r} or pass columns={{{name!r}: '<your column>'}}."
            )
    reserved = sorted(RESERVED & set(df.columns))
    if reserved:
        raise SchemaError(f"{where}: columns {reserved} clash with schema names; rename them in the table.")
    return df


_SHOWN_COLUMNS = 8
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\.\d+)?\s*$")  # pandas adds .1, .2 to repeated names


def _column_list(df: pd.DataFrame) -> str:
    """The table's columns for a message: all of a few, the first ones and the count of many; and a note when the
    header row is numbers (a file with no header, such as a subject × trial matrix)."""
    names = [str(c) for c in df.columns]
    if len(names) <= _SHOWN_COLUMNS:
        text = str(names)
    else:
        text = str(names[: _SHOWN_COLUMNS - 2])[:-1] + f", … ({len(names)} columns in all)]"
    if names and all(_NUMBER.match(n) for n in names):
        text += (
            " (the header row is numbers: the file seems to have no header, e.g. a subject × trial matrix; a table needs "
            "a header row naming its columns and one row per trial, see docs/data-format.md)"
        )
    return text


def _bad_row(where: str, column: str, i: int, value: Any, expected: str, todo: str) -> SchemaError:
    value = value.item() if isinstance(value, np.generic) else value
    return SchemaError(
        f"{where}, column {column!r}, row {i} (0-based, header excluded): expected {expected}; "
        f"found {value!r}. {todo}"
    )


def _numeric(df: pd.DataFrame, column: str, where: str, expected: str) -> np.ndarray:
    raw = df[column]
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & raw.notna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_row(where, column, i, raw.iloc[i], expected, "Fix that value or drop the row.")
    return values


def _float_column(df: pd.DataFrame, column: str, where: str) -> np.ndarray:
    return _numeric(df, column, where, "a number (or empty when unknown)")


def _integer_column(df: pd.DataFrame, column: str, where: str, minimum: int) -> np.ndarray:
    values = _numeric(df, column, where, f"an integer >= {minimum}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < minimum) | (values > 2**53)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_row(where, column, i, df[column].iloc[i], f"an integer >= {minimum}",
                       f"{column.capitalize()} numbers must be whole numbers starting at {minimum} or above.")
    return values.astype(np.int64)


def _reward_column(df: pd.DataFrame, where: str) -> np.ndarray:
    values = _numeric(df, "reward", where, "a finite number")
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _bad_row(where, "reward", i, df["reward"].iloc[i], "a finite number",
                       "Every trial needs a reward value (0 when unrewarded); fix or drop the row.")
    return values


def _normalise_code(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if np.isfinite(value) and float(value).is_integer() else float(value)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in ("true", "false"):  # pandas reads a TRUE/FALSE column as booleans: the same codes
            return int(stripped.lower() == "true")
        try:
            return _normalise_code(float(stripped))
        except ValueError:
            return stripped
    return value


def check_choice_codes(lookup: Mapping[Any, int], n_options: int, where: str) -> None:
    """Refuse a user's code → option mapping that leaves an option without a code or names an option that is not there.

    Several codes may share an option (``{"L": 0, "left": 0, "R": 1}``: synonyms); an option no code reaches
    means every choice lands on the others (``{"L": 0, "R": 0}``), which is refused.
    """
    by_option: dict[int, list[str]] = {}
    for k, v in lookup.items():
        by_option.setdefault(int(v), []).append(str(k))
    out_of_range = {k: v for k, v in lookup.items() if not 0 <= int(v) < n_options}
    if out_of_range:
        k, v = next(iter(out_of_range.items()))
        raise SchemaError(
            f"{where}: choice_codes maps {k} to option {v}, but options are 0 … {n_options - 1} (n_options="
            f"{n_options}); use 0-based option indices, or pass n_options"
        )
    uncovered = [o for o in range(n_options) if o not in by_option]
    if uncovered:
        shared = next(((o, ks) for o, ks in by_option.items() if len(ks) > 1), None)
        hint = f" ({' and '.join(shared[1])} all go to option {shared[0]})" if shared else ""
        raise SchemaError(
            f"{where}: choice_codes gives no code for option(s) {uncovered} of 0 … {n_options - 1}{hint}, so no choice "
            "could land there; give each option its code (e.g. {'L': 0, 'R': 1})"
        )


#: The start of the warning about a table of several sessions without a subject column.
NO_SUBJECT_SESSIONS = "there is no subject column"
#: the choice coding recorded when every code reads both ways (e.g. only 1s with two options): read as 0-based
AMBIGUOUS_CODING = "0-based (every code also reads as 1-based)"


def _choice_column(
    df: pd.DataFrame, choice_codes: Mapping[Any, int] | None, n_options: int, where: str
) -> tuple[np.ndarray, str]:
    raw = df["choice"]
    missing = raw.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise _bad_row(where, "choice", i, raw.iloc[i], "a choice code", "Drop trials without a choice.")
    codes = [_normalise_code(v) for v in raw.tolist()]
    unhashable = [i for i, c in enumerate(codes) if isinstance(c, (list, tuple, dict, set, np.ndarray))]
    if unhashable:
        i = unhashable[0]
        raise _bad_row(
            where, "choice", i, raw.iloc[i], "one choice code per row",
            "A table needs one row per trial; expand a column of per-session lists into rows first (pandas: "
            "df.explode(['choice', 'reward'])).",
        )
    if choice_codes is not None:
        lookup = {_normalise_code(k): int(v) for k, v in choice_codes.items()}
        coding = "mapped by choice_codes"
        check_choice_codes(lookup, n_options, where)
    else:
        present = set(codes)
        zero_based = set(range(n_options))
        one_based = set(range(1, n_options + 1))
        if present <= zero_based:
            lookup, coding = {k: k for k in zero_based}, "0-based"
            if present <= one_based:  # no 0 and no n_options: both readings fit
                coding = AMBIGUOUS_CODING
                shown = ", ".join(map(str, sorted(present)))
                _warn(
                    f"{where}: every choice is coded {shown}, which reads as 0-based coding (0 = the first option) and as "
                    f"1-based (1 = the first); read as 0-based, so {sorted(present)[0]} is option {sorted(present)[0]} of "
                    f"0 … {n_options - 1}. If the first option is coded 1, pass choice_codes="
                    f"{{{', '.join(f'{k}: {k - 1}' for k in sorted(one_based))}}}",
                    AmbiguousCodingWarning,
                )
        elif present <= one_based:
            lookup, coding = {k: k - 1 for k in one_based}, "1-based"
        elif sum(c in one_based for c in codes) > sum(c in zero_based for c in codes):
            # neither coding reads every code: the one that reads the most rows, so that the row named below is the odd
            # one out (a 2 in 1/2 coding is no bad row; the -1 further down is)
            lookup, coding = {k: k - 1 for k in one_based}, "1-based"
        else:
            lookup, coding = {k: k for k in zero_based}, "0-based"
    for i, c in enumerate(codes):
        if c not in lookup:
            known = sorted(map(str, lookup))
            todo = f"Pass choice_codes={{code: option_index}} (0-based, {n_options} options) or drop the row."
            if choice_codes is None and any(k in lookup for k in codes):
                todo += f" The other codes look like {coding} coding ({', '.join(known)})."
            present = sorted(set(codes), key=str)
            if choice_codes is None and all(isinstance(k, int) for k in present):
                # codes 0 … m−1 or 1 … m: more options than n_options, not bad rows
                m = len(present)
                offset = {tuple(range(m)): 0, tuple(range(1, m + 1)): 1}.get(tuple(sorted(present)))
                if offset is not None:
                    mapping = ", ".join(f"{k}: {k - offset}" for k in sorted(present))
                    todo = (f"The codes {', '.join(map(str, sorted(present)))} look like {m} options: pass n_options={m}, "
                            f"or choice_codes={{{mapping}}}.")
            raise _bad_row(where, "choice", i, raw.iloc[i], f"a known choice code ({', '.join(known)})", todo)
    return np.array([lookup[c] for c in codes], dtype=np.int64), coding


def _subject_column(df: pd.DataFrame, default: str, where: str) -> np.ndarray:
    if "subject" not in df:
        return np.full(len(df), default, dtype=object)
    raw = df["subject"]
    missing = raw.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise _bad_row(where, "subject", i, raw.iloc[i], "a subject id", "Fill in the subject of every row.")
    ids = np.array([id_text(v) for v in raw.tolist()], dtype=object)
    empty = ids == ""
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise _bad_row(where, "subject", i, raw.iloc[i], "a non-empty subject id", "Fill in the subject id.")
    return ids


def id_text(value: Any) -> str:
    """A subject or session id as text: text as written (``"001"`` stays ``"001"``), whole numbers without ``.0``."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return value.strip()
    return str(_normalise_code(value))


def _session_rank(sessions: np.ndarray, raw: pd.Series) -> np.ndarray:
    """Sessions in order: by number when every session is a distinct number (``1.1`` and ``1.10`` are not),
    by date when every one is an ISO date or date-time, else in the order they first appear in the table."""
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(float)
    distinct = len(pd.unique(sessions))
    if not np.isnan(numbers).any() and len(pd.unique(numbers)) == distinct:
        return pd.factorize(numbers, sort=True)[0]
    if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?", s) for s in sessions):
        return pd.factorize(sessions, sort=True)[0]  # zero-padded ISO text sorts as time does
    return pd.factorize(sessions)[0]


def _order(df: pd.DataFrame, subject: np.ndarray, trial: np.ndarray | None, where: str) -> np.ndarray:
    """Row order: by subject (first appearance), then session (see :func:`_session_rank`), then trial."""
    subj_rank = pd.factorize(subject)[0]
    if "session" in df:
        sess = np.array([id_text(v) for v in df["session"].tolist()], dtype=object)
        blank = df["session"].isna().to_numpy() | (sess == "")
        if blank.any():  # a blank session has no place in the order of the others
            i = int(np.flatnonzero(blank)[0])
            raise _bad_row(
                where, "session", i, df["session"].iloc[i], "a session id",
                "Fill in the session of every row (or drop the session column if the table holds one session per subject).",
            )
        sess_rank = _session_rank(sess, df["session"])
    else:
        sess, sess_rank = np.zeros(len(df), dtype=object), np.zeros(len(df), np.int64)
    tr = np.arange(len(df)) if trial is None else trial
    order = np.lexsort((np.arange(len(df)), tr, sess_rank, subj_rank))
    if trial is not None:
        key = pd.DataFrame({"s": subject, "e": sess, "t": trial})
        dup = key.duplicated(keep="first").to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise _bad_row(
                where, "trial", i, df["trial"].iloc[i], "a trial number unique within its subject (and session)",
                f"Subject {subject[i]!r} has two rows with this trial number; remove the duplicate.",
            )
    return order


def _metadata(
    df: pd.DataFrame, names: list[str], groups: list[np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, list[np.ndarray]]]:
    subject_coords: dict[str, np.ndarray] = {}
    trial_coords: dict[str, list[np.ndarray]] = {}
    for name in names:
        values = _metadata_values(df[name])
        constant = all(len(g) == 0 or _all_equal(values[g]) for g in groups)
        if constant:
            subject_coords[name] = np.array([values[g[0]] for g in groups], dtype=values.dtype)
        else:
            trial_coords[name] = [values[g] for g in groups]
    return subject_coords, trial_coords


def _metadata_values(col: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype) and not col.isna().any():
        return col.to_numpy(dtype=bool)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.array(["" if pd.api.types.is_scalar(v) and pd.isna(v) else str(v) for v in col.tolist()], dtype=object)


def _all_equal(a: np.ndarray) -> bool:
    if a.dtype.kind == "f":
        return bool(np.all(a == a[0]) or np.all(np.isnan(a)))
    return bool(np.all(a == a[0]))

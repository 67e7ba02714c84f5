"""``(subject, trial)`` matrices (MAT files, HDF5, CSV matrices) into a behaviour dataset."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._errors import PlasticInferWarning, SchemaError
from ._schema import warn_if_transposed
from ._tables import from_dataframe


def from_matrices(
    choice: Any,
    reward: Any,
    *,
    block: Any = None,
    subjects: Any = None,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    attrs: Mapping[str, Any] | None = None,
    where: str = "arrays",
) -> xr.Dataset:
    """Build a behaviour dataset from ``(subject, trial)`` matrices (or 1-D arrays for one subject).

    NaN in ``choice`` marks a padded trial and may only appear at the end of a row.

    Args:
        choice: choice codes, ``(subject, trial)``.
        reward: rewards, same shape.
        block: optional 1-based block numbers, same shape.
        subjects: subject ids (default ``"0"``, ``"1"``, ...).
        choice_codes: choice code -> 0-based option index (see `load_table`).
        n_options: number of options.
        attrs: dataset attributes.
        where: how errors name the source.
    """
    arrays = {"choice": choice, "reward": reward} | ({} if block is None else {"block": block})
    mats = {}
    text_codes = None  # text choice codes (HDF5 b'L'/b'R', MATLAB char arrays), mapped by choice_codes like a table's
    for name, value in arrays.items():
        raw = np.asarray(value)
        if name == "choice" and raw.dtype.kind == "O" and raw.size and all(isinstance(v, (str, bytes)) for v in raw.flat):
            # variable-length strings (how h5py stores Python str): the text codes of a fixed-length array
            raw = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in raw.flat]).reshape(raw.shape)
        if name == "choice" and raw.dtype.kind in "SU":
            text_codes = np.char.strip(np.char.decode(raw, "utf-8", "replace") if raw.dtype.kind == "S" else raw).astype(object)
            text_codes = text_codes[None, :] if text_codes.ndim == 1 else text_codes
            a = np.where(text_codes == "", np.nan, 0.0)  # an empty code marks padding, as NaN does in numbers
        else:
            try:
                a = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise SchemaError(f"{where}: {name} must be numeric; found {raw.dtype}.") from None
        a = a[None, :] if a.ndim == 1 else a
        if a.ndim != 2:
            raise SchemaError(f"{where}: {name} must be (subject, trial) or (trial,); found shape {a.shape}.")
        mats[name] = a
    shapes = {k: v.shape for k, v in mats.items()}
    if len(set(shapes.values())) > 1:
        raise SchemaError(
            f"{where}: per-trial arrays disagree in shape {shapes}; choice, reward (and block) need one "
            "value per (subject, trial)."
        )
    c, r = mats["choice"], mats["reward"]
    if c.size == 0:
        raise SchemaError(f"{where}: no trials (choice is empty).")
    if subjects is None and np.ndim(choice) == 2:  # a (trial, subject) matrix loads as many very short subjects
        warn_if_transposed(where, c.shape[0], c.shape[1], "transpose the matrices (or store them as (subject, trial)) before loading")
    pad = np.isnan(c)
    ids = [str(i) for i in range(c.shape[0])] if subjects is None else [str(s) for s in subjects]
    if len(ids) != c.shape[0]:
        raise SchemaError(f"{where}: {len(ids)} subject ids for {c.shape[0]} rows of choice.")
    for name, bad, todo in (
        ("choice", ~pad & (np.cumsum(pad, axis=1) > 0), "NaN marks padding and may only end a row."),
        ("reward", ~pad & ~np.isfinite(r), "Every real trial needs a finite reward."),
    ):
        if bad.any():
            s, t = (int(i) for i in np.argwhere(bad)[0])
            found = mats[name][s, t] if name == "reward" else "a trial after a NaN (padded) one"
            raise SchemaError(f"{where}: {name}, subject {ids[s]!r}, trial {t}: found {found!r}. {todo}")
    if pad.all(axis=1).any():
        s = int(np.flatnonzero(pad.all(axis=1))[0])
        raise SchemaError(f"{where}: subject {ids[s]!r} has no trial (choice all NaN); drop that row.")
    s_idx, t_idx = np.nonzero(~pad)
    table = pd.DataFrame({
        "subject": np.asarray(ids, dtype=object)[s_idx],
        "trial": t_idx + 1,
        "choice": (c if text_codes is None else text_codes)[s_idx, t_idx],
        "reward": r[s_idx, t_idx],
    })
    if "block" in mats:
        table["block"] = mats["block"][s_idx, t_idx]
    try:
        with warnings.catch_warnings():  # the layout was judged above, on the matrices the user gave
            warnings.filterwarnings("ignore", message=r".*read as \d+ subjects of", category=PlasticInferWarning)
            ds = from_dataframe(table, choice_codes=choice_codes, n_options=n_options, attrs=attrs, where=where)
    except SchemaError as e:
        # the table is internal: name the entry of the user's (subject, trial) matrix instead of its row
        m = re.search(r", column '(\w+)', row (\d+) \(0-based, header excluded\)", str(e))
        if m is None:
            raise
        i = int(m.group(2))
        text = str(e).replace(m.group(0), f": {m.group(1)}[{s_idx[i]}, {t_idx[i]}] (subject {ids[s_idx[i]]!r}, trial {t_idx[i]}, 0-based)")
        value = table["choice"].iloc[i]
        if m.group(1) == "choice" and isinstance(value, (int, float, np.number)) and value < 0:
            text += " If negative codes mark padding in your file, store NaN there instead (NaN may only end a row)."
        elif m.group(1) == "choice" and isinstance(value, (int, float, np.number)) and value == 0 and _zeros_end_rows(c):
            text += (" Every 0 ends its row: if 0 marks trials that did not happen (padding), store NaN there instead (NaN "
                     "may only end a row); n_options or choice_codes would read the 0s as choices.")
        raise SchemaError(text) from None
    return ds.drop_vars("trial_number")


def _zeros_end_rows(c: np.ndarray) -> bool:
    """Whether the choice matrix's 0s (there is one) all lie in a run that ends their row: padding, not a code."""
    zero = c == 0
    return bool(zero.any()) and not bool((~zero & ~np.isnan(c) & (np.cumsum(zero, axis=1) > 0)).any())

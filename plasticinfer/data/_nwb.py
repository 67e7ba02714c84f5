"""NWB files (pynwb): the trials table for behaviour, TimeSeries for neural activity.

Behaviour: ``nwbfile.trials`` (``start_time``, ``stop_time`` plus choice and reward columns,
renamed with ``columns=``) becomes one subject, trials ordered by ``start_time``; the subject id is
``nwbfile.subject.subject_id`` (else the file's identifier).

Neural: name a TimeSeries for ``activity`` and one for ``input`` (looked up in
``nwbfile.acquisition``, then in every processing module). With a trials table, each trial's value
is the mean of the samples in ``[start_time, stop_time)``; without one, every sample is a step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .._errors import FileFormatError, SchemaError
from ._schema import neural_dataset, names_its_file
from ._tables import from_dataframe


@names_its_file
def load_nwb(
    path: str | os.PathLike[str],
    *,
    columns: Mapping[str, str] | None = None,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    activity: str | None = None,
    input: str | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load an NWB file: behaviour from its trials table, or neural data from two TimeSeries.

    Args:
        path: the ``.nwb`` file.
        columns: schema name -> trials-table column, e.g. ``{"choice": "response"}``.
        choice_codes: choice code -> 0-based option index (see `load_table`).
        n_options: number of options.
        activity: name of the TimeSeries of recorded activity; giving it loads a neural dataset.
        input: name of the TimeSeries of presynaptic input (required with ``activity``).
        attrs: dataset attributes.

    Returns:
        A validated behaviour dataset, or a neural one when ``activity`` is given.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    if path.stat().st_size == 0:
        raise FileFormatError(f"file {str(path)!r} is empty (0 bytes). Write the NWB file again.")
    import pynwb

    where = f"file {str(path)!r}"
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
    except Exception as e:  # h5py / hdmf raise many types on damaged files
        raise FileFormatError(f"{where} could not be opened as NWB: {type(e).__name__}: {e}") from e
    try:
        try:
            nwb = io.read()
        except Exception as e:
            raise FileFormatError(f"{where} could not be read as NWB: {type(e).__name__}: {e}") from e
        base = {"source": str(path), "description": str(nwb.session_description or "")}
        base.update(attrs or {})
        if activity is None:
            return _behaviour(nwb, columns, choice_codes, n_options, base, where)
        return _neural(nwb, activity, input, base, where)
    finally:
        io.close()


def _subject_id(nwb: Any) -> str:
    subject = getattr(nwb, "subject", None)
    sid = getattr(subject, "subject_id", None) if subject is not None else None
    return str(sid or nwb.identifier)


def _trials_frame(nwb: Any, where: str):  # -> pd.DataFrame | None
    trials = nwb.trials
    if trials is None:
        return None
    try:
        df = trials.to_dataframe()
    except Exception as e:
        raise FileFormatError(f"{where}: the trials table could not be read: {type(e).__name__}: {e}") from e
    start = pd.to_numeric(df["start_time"], errors="coerce").to_numpy(float) if "start_time" in df else None
    if start is not None and not np.isfinite(start).all():
        i = int(np.flatnonzero(~np.isfinite(start))[0])
        raise SchemaError(
            f"{where}: trial {i} of the trials table (0-based, in file order) has start_time {start[i]}; "
            "trials are ordered by start_time, so every trial needs a finite one. Fix or drop that trial."
        )
    return df.sort_values("start_time", kind="stable").reset_index(drop=True)


def _behaviour(nwb: Any, columns, choice_codes, n_options, attrs, where) -> xr.Dataset:
    df = _trials_frame(nwb, where)
    if df is None:
        raise FileFormatError(
            f"{where} has no trials table (nwbfile.trials is None), so there are no choices to load. "
            "Add one with nwbfile.add_trial_column(...) / add_trial(...), or load activity with "
            "load_nwb(path, activity=..., input=...)."
        )
    if len(df) == 0:
        raise FileFormatError(f"{where}: the trials table has no rows.")
    df = df.copy()
    if "subject" not in df.columns:
        df.insert(0, "subject", _subject_id(nwb))
    if "session" not in df.columns and nwb.session_id:
        df.insert(1, "session", str(nwb.session_id))
    return from_dataframe(df, columns=columns, choice_codes=choice_codes, n_options=n_options, attrs=attrs,
                          where=where)


def _find_series(nwb: Any, name: str, where: str) -> Any:
    if name in nwb.acquisition:
        return nwb.acquisition[name]
    for module in nwb.processing.values():
        if name in module.data_interfaces:
            return module.data_interfaces[name]
    found = list(nwb.acquisition) + [f"{m}/{k}" for m, mod in nwb.processing.items() for k in mod.data_interfaces]
    raise FileFormatError(f"{where}: no TimeSeries named {name!r}; the file holds {found}.")


def _series(nwb: Any, name: str, where: str) -> tuple[np.ndarray, np.ndarray, str]:
    ts = _find_series(nwb, name, where)
    if not hasattr(ts, "data") or not hasattr(ts, "get_timestamps"):
        raise FileFormatError(f"{where}: {name!r} is a {type(ts).__name__}, not a TimeSeries.")
    try:
        data = np.asarray(ts.data[()], dtype=np.float64)
        times = np.asarray(ts.get_timestamps(), dtype=np.float64)
    except Exception as e:
        raise FileFormatError(f"{where}: TimeSeries {name!r} could not be read: {type(e).__name__}: {e}") from e
    data = data[:, None] if data.ndim == 1 else data
    if data.ndim != 2 or data.shape[0] != times.shape[0]:
        raise FileFormatError(
            f"{where}: TimeSeries {name!r} must be (time, neurons) with one timestamp per row; found data "
            f"{data.shape} and {times.shape[0]} timestamps."
        )
    return data, times, str(getattr(ts, "unit", "unknown"))


def _bin_trials(data: np.ndarray, times: np.ndarray, df: Any, name: str, where: str) -> np.ndarray:
    out = np.empty((len(df), data.shape[1]))
    for i, (start, stop) in enumerate(zip(df["start_time"], df["stop_time"])):
        inside = (times >= start) & (times < stop)
        if not inside.any():
            raise FileFormatError(
                f"{where}: trial {i} [{start}, {stop}) holds no sample of TimeSeries {name!r}; "
                "every trial needs at least one sample."
            )
        out[i] = data[inside].mean(axis=0)
    return out


def _neural(nwb: Any, activity: str, input: str | None, attrs: dict[str, Any], where: str) -> xr.Dataset:
    if input is None:
        raise FileFormatError(
            f"{where}: the activity {activity!r} also needs the input it is predicted from: the name of its TimeSeries "
            "(load_nwb(..., input='<TimeSeries name>'); on the command line --map input=<TimeSeries name>)."
        )
    y, y_t, unit = _series(nwb, activity, where)
    x, x_t, x_unit = _series(nwb, input, where)
    df = _trials_frame(nwb, where)
    if df is not None and len(df):
        y, x = _bin_trials(y, y_t, df, activity, where), _bin_trials(x, x_t, df, input, where)
    elif y.shape[0] != x.shape[0] or not np.allclose(y_t, x_t):
        raise FileFormatError(
            f"{where}: without a trials table, {activity!r} and {input!r} must share their timestamps "
            + (f"(found {y.shape[0]} and {x.shape[0]} samples)." if y.shape[0] != x.shape[0] else
               f"(both have {y.shape[0]} samples, at different times: {activity!r} from {y_t[0]:g} s to {y_t[-1]:g} s, "
               f"{input!r} from {x_t[0]:g} s to {x_t[-1]:g} s).")
        )
    all_attrs = {"units_activity": unit, "units_input": x_unit}
    all_attrs.update(attrs)
    return neural_dataset([x], [y], subjects=[_subject_id(nwb)], attrs=all_attrs)

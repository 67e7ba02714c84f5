"""HDF5 recordings with a user mapping of dataset paths to schema names.

Behaviour: ``mapping={"choice": "/behav/choice", "reward": "/behav/reward"}`` (optional
``block``, ``subject``) with ``(trial,)`` vectors or ``(subject, trial)`` matrices; NaN in choice
pads the end of a row.

Neural: ``mapping={"input": "/stim", "activity": "/rates"}`` (optional ``recorded``,
``trial_mask``, ``subject``). Arrays are ``(trial, neuron)`` for one subject, ``(subject, trial,
neuron)``, or ``(subject, trial, sample, neuron)``. Without ``recorded``, a neuron whose activity
is NaN on every real trial of a subject counts as not recorded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._errors import FileFormatError, PlasticInferWarning, SchemaError
from .._errors import warn as _warn
from ._schema import names_its_file, neural_dataset, one_source_each
from ._matrices import from_matrices
from ._tables import id_text

BEHAVIOUR_KEYS = ("choice", "reward", "block", "subject")
NEURAL_KEYS = ("input", "activity", "recorded", "trial_mask", "subject")


@names_its_file
def load_hdf5(
    path: str | os.PathLike[str],
    mapping: Mapping[str, str],
    *,
    choice_codes: Mapping[Any, int] | None = None,
    n_options: int = 2,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Load an HDF5 file, reading each schema variable from the dataset path the mapping names.

    Args:
        path: the HDF5 file.
        mapping: schema name -> dataset path in the file. ``choice``/``reward`` load behaviour;
            ``input``/``activity`` load neural data.
        choice_codes: behaviour: code -> 0-based option index.
        n_options: behaviour: number of options.
        attrs: dataset attributes. ``units_activity`` defaults to the activity dataset's
            ``units`` (or ``unit``) attribute.
    """
    path = Path(path)
    where = f"file {str(path)!r}"
    if not isinstance(mapping, Mapping) or not mapping:
        raise SchemaError(
            f"{where}: load_hdf5 needs mapping={{schema name: dataset path}}, e.g. "
            "{'choice': '/behaviour/choice', 'reward': '/behaviour/reward'}."
        )
    neural = "activity" in mapping or "input" in mapping
    allowed = NEURAL_KEYS if neural else BEHAVIOUR_KEYS
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        raise SchemaError(f"{where}: unknown schema names {unknown} in mapping; allowed: {list(allowed)}.")
    required = ("input", "activity") if neural else ("choice", "reward")
    missing = [k for k in required if k not in mapping]
    if missing:
        raise SchemaError(f"{where}: mapping lacks {missing}; it needs dataset paths for {list(required)}.")
    one_source_each(mapping, where, "dataset path", "Fix the mapping.")
    arrays, units = _read(path, mapping, where)
    base = {"source": str(path)}
    if neural:
        base["units_activity"] = units or "unknown"
    base.update(attrs or {})
    subjects = None if "subject" not in arrays else [str(s) for s in np.atleast_1d(arrays["subject"]).tolist()]
    if not neural:
        return from_matrices(arrays["choice"], arrays["reward"], block=arrays.get("block"), subjects=subjects,
                             choice_codes=choice_codes, n_options=n_options, attrs=base, where=where)
    return _neural(arrays, subjects, base, where)


def _read(path: Path, mapping: Mapping[str, str], where: str) -> tuple[dict[str, np.ndarray], str | None]:
    import h5py

    if not path.is_file():
        raise FileFormatError(f"file {str(path)!r} not found (or not a file). Check the path.")
    out: dict[str, np.ndarray] = {}
    units = None
    try:
        with h5py.File(path, "r") as f:
            for key, dpath in mapping.items():
                obj = f.get(dpath)
                if not isinstance(obj, h5py.Dataset):
                    names: list[str] = []
                    f.visititems(lambda n, o: names.append("/" + n) if isinstance(o, h5py.Dataset) else None)
                    raise FileFormatError(
                        f"{where}: dataset {dpath!r} (mapped to {key!r}) not found; datasets in the file: "
                        f"{names[:20]}. Fix the mapping."
                    )
                value = obj[()]
                if key == "subject":  # ids as text, from a vector or a (n, 1) / (1, n) column of them
                    flat = np.asarray(value).ravel() if np.ndim(value) <= 1 or min(np.shape(value)) == 1 else value
                    value = np.array([id_text(v)
                                      for v in np.atleast_1d(flat).tolist()], dtype=object)
                out[key] = np.asarray(value)
                if key == "activity":
                    u = obj.attrs.get("units", obj.attrs.get("unit"))
                    units = u.decode() if isinstance(u, bytes) else (None if u is None else str(u))
    except FileFormatError:
        raise
    except Exception as e:  # h5py raises OSError on truncated or non-HDF5 files, and more
        raise FileFormatError(
            f"{where} could not be read as HDF5: {type(e).__name__}: {e}. The file may be truncated or not "
            "HDF5; write it again."
        ) from e
    return out, units


def _neural(arrays: dict[str, np.ndarray], subjects: list[str] | None, attrs: dict[str, Any], where: str) -> xr.Dataset:
    x, y = arrays["input"], arrays["activity"]
    for name, a in (("input", x), ("activity", y)):
        if a.dtype.kind not in "iufb" or a.ndim not in (2, 3, 4):
            raise FileFormatError(
                f"{where}: {name} must be numeric (trial, neuron), (subject, trial, neuron) or (subject, trial, "
                f"sample, neuron); found dtype {a.dtype}, shape {a.shape}."
            )
    flat = x.ndim == 2 and y.ndim == 2  # one subject's (trial, neuron): suite2p and others store (neuron, time)
    layout = (" Two-dimensional arrays are read as (trial, neuron); if yours are stored (neuron, time), write them "
              "transposed." if flat else "")
    if flat and x.shape[0] == y.shape[0] and x.shape[0] < x.shape[1] and y.shape[0] < y.shape[1]:
        _warn(
            f"{where}: input is {x.shape[0]} × {x.shape[1]} and activity {y.shape[0]} × {y.shape[1]}, read as "
            f"{x.shape[0]} trials of {x.shape[1]} inputs and {y.shape[1]} neurons (rows are trials).{layout}",
            PlasticInferWarning,
        )
    x = x[None] if x.ndim == 2 else x
    y = y[None] if y.ndim == 2 else y
    x, y = x.astype(np.float64), y.astype(np.float64)
    if x.shape[:2] != y.shape[:2]:
        raise SchemaError(
            f"{where}: input has (subject, trial) = {x.shape[:2]} but activity has {y.shape[:2]}; they must match."
            + layout
        )
    n_subj, n_trials = x.shape[:2]
    if "trial_mask" in arrays:
        mask = _shaped(arrays["trial_mask"], (n_subj, n_trials), "trial_mask", where)
    else:
        mask = np.ones((n_subj, n_trials), dtype=bool)
    lengths = mask.sum(axis=1)
    if not (mask == (np.arange(n_trials)[None] < lengths[:, None])).all():
        raise SchemaError(f"{where}: trial_mask must be True for a prefix of each subject's trials (padding last).")
    if "recorded" in arrays:
        recorded = _shaped(arrays["recorded"], (n_subj, y.shape[-1]), "recorded", where)
    else:
        flat = y.reshape(n_subj, n_trials, -1, y.shape[-1])
        real = mask[:, :, None, None]
        recorded = ~np.all(np.isnan(flat) | ~real, axis=(1, 2))
    return neural_dataset(
        [x[i, : lengths[i]] for i in range(n_subj)],
        [y[i, : lengths[i]] for i in range(n_subj)],
        recorded=recorded,
        subjects=subjects,
        attrs=attrs,
    )


def _shaped(value: np.ndarray, shape: tuple[int, int], name: str, where: str) -> np.ndarray:
    """A (subject, n) boolean array: exactly that shape, or a vector or column when there is one subject; 0/1 or booleans."""
    a = np.asarray(value)
    if a.dtype.kind not in "iufb" or not (a.shape == shape or (shape[0] == 1 and a.shape in (shape[1:], shape[::-1]))):
        hint = " (it looks transposed)" if a.shape == shape[::-1] else ""
        raise SchemaError(
            f"{where}: {name} has shape {a.shape} and dtype {a.dtype}; expected {shape} booleans{hint}. Store it as "
            "(subject, neuron) for recorded, (subject, trial) for trial_mask."
        )
    if a.dtype.kind != "b":
        bad = ~np.isin(a, (0, 1))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            raise SchemaError(f"{where}: {name}{list(i)} is {a[i].item()!r}; expected 0/1 or booleans.")
    return a.astype(bool).reshape(shape)

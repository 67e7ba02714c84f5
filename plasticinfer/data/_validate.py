"""`validate`: the one check every loader and every model entry point runs on a dataset.

Errors name the variable, the dimension or the (subject, trial), say what was expected and what
was found, and say what to do. See ``docs/data-format.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .._errors import SchemaError

KINDS = ("behaviour", "neural")
RECOMMENDED_ATTRS = ("source", "license", "citation", "description")
_HOWTO = "Build datasets with plasticinfer.behaviour_dataset / neural_dataset, or see docs/data-format.md."
_HINTS = {
    "cue": "For one-hot options add ds['cue'] = (('option', 'feature'), np.eye(n_options)).",
    "block": "Without blocks add ds = ds.assign_coords(block=xr.where(ds.trial_mask, 1, -1)).",
    "trial_mask": "When every trial is real add ds['trial_mask'] = xr.ones_like(ds.choice, dtype=bool).",
    "recorded": "When every neuron is recorded add ds['recorded'] = (('subject', 'post'), np.ones((S, P), bool)).",
}


def validate(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the plasticinfer schema and return it unchanged.

    Args:
        ds: a behaviour dataset (``attrs["kind"] == "behaviour"``) or a neural dataset
            (``attrs["kind"] == "neural"``).

    Returns:
        ``ds`` itself.

    Raises:
        SchemaError: the first problem found, naming the variable, dimension or (subject, trial).
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"expected an xarray.Dataset; found {type(ds).__name__}. {_HOWTO}")
    kind = ds.attrs.get("kind")
    if kind not in KINDS and ds.attrs.get("created_by") == "plasticinfer" and "format" in ds.attrs:
        raise SchemaError(
            f"this is a plasticinfer result ({ds.attrs['format']}), not a dataset: give the data the result was "
            "computed from (results load with FitResult.load, Posterior.load, …; `plasticinfer inspect FILE` says which)."
        )
    if kind not in KINDS:
        raise SchemaError(
            f"attrs['kind'] must be 'behaviour' or 'neural'; found {kind!r}. "
            "Set ds.attrs['kind'] to say which schema the dataset follows."
        )
    _check_attrs(ds)
    mask = _check_subjects_and_mask(ds)
    if kind == "behaviour":
        _validate_behaviour(ds, mask)
    else:
        _validate_neural(ds, mask)
    _check_other_variables(ds, mask)
    return ds


def schema_notes(ds: xr.Dataset) -> list[str]:
    """Non-fatal remarks about a valid dataset (missing provenance, unknown probabilities, ...)."""
    notes = []
    for name in RECOMMENDED_ATTRS + (("units_reward",) if ds.attrs.get("kind") == "behaviour" else ("units_activity",)):
        value = ds.attrs.get(name)
        if value in (None, "", "unknown"):
            notes.append(f"attrs[{name!r}] is {value!r}: record it so results can be traced and credited.")
    if ds.attrs.get("kind") == "behaviour":
        if "p_reward" not in ds.coords:
            notes.append("no p_reward coordinate: reward probabilities are unknown (fine for fitting choices).")
        elif bool(np.isnan(ds["p_reward"].values[ds["trial_mask"].values]).any()):
            notes.append("p_reward holds NaN on some real trials: those probabilities are unknown.")
    if "session" in ds.coords and "trial" in ds["session"].dims:
        sessions = ds["session"].where(ds["trial_mask"]) if "trial_mask" in ds else ds["session"]
        per_subject = [len({str(v) for v in np.asarray(row) if str(v) not in ("", "nan")}) for row in sessions.transpose("subject", "trial").values]
        if max(per_subject, default=0) > 1:
            notes.append(
                f"subjects hold several sessions each (up to {max(per_subject)}), concatenated in order as one learning "
                "sequence; if each session is a different animal, map the subject to the session column "
                "(--map subject=session, or columns={'subject': 'session'})."
            )
    if ds.attrs.get("kind") == "neural":
        frac = float(ds["recorded"].values.mean())
        if frac < 1.0:
            notes.append(f"{frac:.0%} of (subject, post) neurons are recorded; the rest are masked out.")
    return notes


# --- shared checks -------------------------------------------------------------------------


def _subject_label(ds: xr.Dataset, i: int) -> str:
    return f"subject {str(ds['subject'].values[i])!r} (index {i})"


def _require(ds: xr.Dataset, name: str) -> xr.DataArray:
    if name not in ds.variables:
        have = sorted(str(v) for v in ds.variables)
        raise SchemaError(f"variable {name!r} is missing (found {have}). {_HINTS.get(name, _HOWTO)}")
    return ds[name]


def _check_dims(ds: xr.Dataset, name: str, allowed: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    dims = tuple(str(d) for d in _require(ds, name).dims)
    if dims not in [tuple(a) for a in allowed]:
        options = " or ".join(str(a) for a in allowed)
        raise SchemaError(
            f"variable {name!r} has dims {dims}; expected {options}. "
            f"Transpose it (ds[{name!r}].transpose(...)) or rebuild the dataset. {_HOWTO}"
        )
    return dims


def _check_dtype(ds: xr.Dataset, name: str, kinds: str, what: str) -> None:
    dtype = ds[name].dtype
    if dtype.kind not in kinds:
        raise SchemaError(
            f"variable {name!r} must be {what}; found dtype {dtype}. Convert it, e.g. ds[{name!r}].astype(...)."
        )


def _first_bad(ds: xr.Dataset, name: str, bad: np.ndarray, problem: str, todo: str) -> None:
    """Raise naming the first (subject, trial, ...) where ``bad`` is True."""
    if not bad.any():
        return
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    parts = [_subject_label(ds, i) if d == "subject" else f"{d} {i}" for d, i in zip(ds[name].dims, idx)]
    value = ds[name].values[idx]
    value = value.item() if isinstance(value, np.generic) else value
    raise SchemaError(
        f"variable {name!r}, {', '.join(parts)}: {problem} (found {value!r}; "
        f"{int(bad.sum())} such entries in all). {todo}"
    )


def _check_attrs(ds: xr.Dataset) -> None:
    for name in RECOMMENDED_ATTRS + ("units_reward", "units_activity"):
        if name in ds.attrs and not isinstance(ds.attrs[name], str):
            raise SchemaError(
                f"attrs[{name!r}] must be a string; found {type(ds.attrs[name]).__name__}. Store it as text."
            )


def _check_subjects_and_mask(ds: xr.Dataset) -> np.ndarray:
    for dim in ("subject", "trial"):
        if dim not in ds.dims:
            raise SchemaError(f"dimension {dim!r} is missing (dims are {dict(ds.sizes)}). {_HOWTO}")
        if ds.sizes[dim] == 0:
            raise SchemaError(f"dimension {dim!r} has length 0: a dataset needs at least one subject and one trial.")
    if "subject" not in ds.coords:
        raise SchemaError("coordinate 'subject' (subject ids) is missing. Assign one: ds.assign_coords(subject=[...]).")
    ids = ds["subject"].values
    if not all(isinstance(s, str) and s != "" for s in ids.tolist()):
        raise SchemaError(
            f"coordinate 'subject' must hold non-empty strings; found {ids[:5].tolist()}... "
            "Convert ids with ds.assign_coords(subject=ds.subject.astype(str))."
        )
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise SchemaError(f"subject ids must be unique; {uniq[counts > 1].tolist()} appear more than once.")

    _check_dims(ds, "trial_mask", [("subject", "trial")])
    _check_dtype(ds, "trial_mask", "b", "boolean (True = real trial)")
    mask = ds["trial_mask"].values
    # Padded trials come last: a real trial must not follow a padded one.
    bad = mask & (np.cumsum(~mask, axis=1) > 0)
    _first_bad(
        ds, "trial_mask", bad, "a real trial follows a padded one",
        "Padded trials must come last in each subject; reorder the trials or drop the gap.",
    )
    empty = ~mask.any(axis=1)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise SchemaError(f"{_subject_label(ds, i)} has no real trial (trial_mask all False). Drop that subject.")
    return mask


def _check_finite(ds: xr.Dataset, name: str, where: np.ndarray) -> None:
    values = ds[name].values
    where = np.broadcast_to(where, values.shape)
    _first_bad(
        ds, name, where & ~np.isfinite(values), "non-finite value on a real entry",
        "Every real (unpadded, recorded) value must be finite: fix or drop that trial in the source data.",
    )


def _check_fill(ds: xr.Dataset, name: str, padded: np.ndarray, fill: object) -> None:
    values = ds[name].values
    padded = np.broadcast_to(padded, values.shape)
    _first_bad(
        ds, name, padded & (values != fill), f"a padded entry must hold {fill!r}",
        "Set padded entries to the fill value (the dataset constructors do this) so nothing reads them as data.",
    )


def _expand(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def _check_other_variables(ds: xr.Dataset, mask: np.ndarray) -> None:
    """Float data variables over (subject, trial, ...) beyond the schema's must be finite on real trials."""
    known = {"choice", "reward", "trial_mask", "cue", "input", "activity", "recorded", "presented", "accepted",
             "presentation_mask"}
    for name, var in ds.data_vars.items():
        if name in known or var.dtype.kind != "f" or var.dims[:2] != ("subject", "trial"):
            continue
        _check_finite(ds, str(name), _expand(mask, var.ndim))


# --- behaviour -------------------------------------------------------------------------------


def _validate_behaviour(ds: xr.Dataset, mask: np.ndarray) -> None:
    if "option" not in ds.dims:
        raise SchemaError(f"dimension 'option' is missing (dims are {dict(ds.sizes)}). {_HOWTO}")
    n_opt = ds.sizes["option"]
    if n_opt < 2:
        raise SchemaError(f"dimension 'option' has {n_opt} entries; a choice needs at least 2 options.")
    for name, kinds, what in (("choice", "iu", "integer"), ("reward", "f", "float")):
        _check_dims(ds, name, [("subject", "trial")])
        _check_dtype(ds, name, kinds, what)
    choice = ds["choice"].values
    _first_bad(
        ds, "choice", mask & ((choice < 0) | (choice >= n_opt)),
        f"expected a 0-based option index in 0..{n_opt - 1} on a real trial",
        "Map the source's choice codes to option indices (loaders take choice_codes={code: index}).",
    )
    _check_fill(ds, "choice", ~mask, -1)
    _check_finite(ds, "reward", mask)
    _check_fill(ds, "reward", ~mask, 0.0)

    cue_dims = _check_dims(ds, "cue", [("option", "feature"), ("subject", "trial", "option", "feature")])
    _check_dtype(ds, "cue", "f", "float")
    _check_finite(ds, "cue", _expand(mask, 4) if len(cue_dims) == 4 else np.ones((1, 1), bool))

    _check_dims(ds, "block", [("subject", "trial")])
    _check_dtype(ds, "block", "iu", "integer (1-based block numbers)")
    block = ds["block"].values
    _first_bad(ds, "block", mask & (block < 1), "block numbers are 1-based (>= 1) on real trials",
               "Number blocks from 1 (add 1 to 0-based block numbers).")
    _check_fill(ds, "block", ~mask, -1)

    if "p_reward" in ds.variables:
        _check_dims(ds, "p_reward", [("subject", "trial", "option")])
        _check_dtype(ds, "p_reward", "f", "float (NaN where unknown)")
        p = ds["p_reward"].values
        _first_bad(
            ds, "p_reward", _expand(mask, 3) & ~np.isnan(p) & ((p < 0) | (p > 1)),
            "a reward probability must lie in [0, 1] (or be NaN when unknown)", "Fix the probability column.",
        )
    if "presentation" in ds.dims:
        _validate_presentations(ds, mask)


def _validate_presentations(ds: xr.Dataset, mask: np.ndarray) -> None:
    dims = [("subject", "trial", "presentation")]
    for name, kinds, what in (("presented", "iu", "integer option indices"), ("accepted", "b", "boolean"),
                              ("presentation_mask", "b", "boolean")):
        _check_dims(ds, name, dims)
        _check_dtype(ds, name, kinds, what)
    pmask = ds["presentation_mask"].values
    pres = ds["presented"].values
    acc = ds["accepted"].values
    n_opt = ds.sizes["option"]
    _first_bad(ds, "presentation_mask", pmask & ~mask[..., None], "a padded trial has a presentation",
               "Padded trials have no presentations.")
    _first_bad(ds, "presentation_mask", mask & ~pmask.any(-1), "a real trial has no presentation",
               "Every trial has at least the presentation that was accepted.")
    _first_bad(ds, "presented", pmask & ((pres < 0) | (pres >= n_opt)),
               f"expected an option index in 0..{n_opt - 1}", "Map presented cues to option indices.")
    _check_fill(ds, "presented", ~pmask, -1)
    _check_fill(ds, "accepted", ~pmask, False)
    n_real = pmask.sum(-1)
    last = np.zeros_like(pmask)
    s, t = np.nonzero(n_real > 0)
    last[s, t, n_real[s, t] - 1] = True
    _first_bad(ds, "accepted", pmask & (acc != last),
               "a trial ends with its one accepted presentation; earlier ones are rejections",
               "Split the presentations into trials at each acceptance.")
    chosen = np.where(n_real > 0, np.take_along_axis(pres, np.maximum(n_real - 1, 0)[..., None], -1)[..., 0], -1)
    _first_bad(ds, "choice", mask & (chosen != ds["choice"].values),
               "choice must equal the option of the accepted presentation", "Rebuild choice from the presentations.")


# --- neural ----------------------------------------------------------------------------------


def _validate_neural(ds: xr.Dataset, mask: np.ndarray) -> None:
    for dim in ("pre", "post"):
        if dim not in ds.dims:
            raise SchemaError(f"dimension {dim!r} is missing (dims are {dict(ds.sizes)}). {_HOWTO}")
    in_dims = _check_dims(ds, "input", [("subject", "trial", "pre"), ("subject", "trial", "sample", "pre")])
    out_dims = _check_dims(ds, "activity", [("subject", "trial", "post"), ("subject", "trial", "sample", "post")])
    if len(in_dims) != len(out_dims):
        has, lacks = ("input", "activity") if len(in_dims) == 4 else ("activity", "input")
        raise SchemaError(
            f"{has} has a 'sample' dimension (several samples per trial) but {lacks} has none: give both one "
            "(the same samples), or neither (one input and one response per trial)."
        )
    _check_dims(ds, "recorded", [("subject", "post")])
    _check_dtype(ds, "input", "f", "float")
    _check_dtype(ds, "activity", "f", "float")
    _check_dtype(ds, "recorded", "b", "boolean (True = recorded neuron)")
    rec = ds["recorded"].values
    none = ~rec.any(axis=1)
    if none.any():
        i = int(np.flatnonzero(none)[0])
        raise SchemaError(f"{_subject_label(ds, i)} has no recorded neuron (recorded all False). Drop that subject.")
    # Padded trials and unrecorded neurons may hold anything (NaN included): consumers mask them.
    _check_finite(ds, "input", _expand(mask, len(in_dims)))
    rec_b = rec[:, None, None, :] if len(out_dims) == 4 else rec[:, None, :]
    _check_finite(ds, "activity", _expand(mask, len(out_dims)) & rec_b)

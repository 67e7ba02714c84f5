"""The schema: names, fill values of padded entries, and constructors that pad ragged subjects.

Every loader ends by calling `behaviour_dataset` or `neural_dataset`, which pad subjects of
different lengths to a common ``trial`` axis (padded trials last, ``trial_mask`` False there)
and call `validate`. See ``docs/data-format.md`` for the schema itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from .._errors import DataError, PlasticInferWarning, SchemaError
from .._errors import warn as _warn
from ._validate import validate

BEHAVIOUR = "behaviour"
NEURAL = "neural"

#: Value held by padded (or unrecorded) entries of each schema variable.
FILL: dict[str, Any] = {
    "choice": -1,
    "reward": 0.0,
    "trial_mask": False,
    "block": -1,
    "trial_number": -1,
    "presented": -1,
    "accepted": False,
    "presentation_mask": False,
    "input": 0.0,
    "activity": 0.0,
    "cue": 0.0,
}

DEFAULT_ATTRS: dict[str, str] = {
    "source": "unknown",
    "license": "unknown",
    "citation": "",
    "description": "",
}


def fill_value(name: str, dtype: np.dtype) -> Any:
    """The value a padded entry of variable ``name`` with this dtype holds."""
    if name in FILL:
        return FILL[name]
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.nan
    if kind in "iu":
        return -1
    if kind == "b":
        return False
    return ""


def pad_ragged(arrays: Sequence[np.ndarray], fill: Any, length: int | None = None) -> np.ndarray:
    """Stack arrays whose first axis differs in length, padding at the end with ``fill``.

    Args:
        arrays: one array per subject; all trailing axes must agree.
        fill: value of padded entries.
        length: padded length (default: the longest array).

    Returns:
        Array of shape ``(len(arrays), length, *trailing)``.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = max((a.shape[0] for a in arrays), default=0) if length is None else length
    tails = {a.shape[1:] for a in arrays}
    if len(tails) > 1:
        raise SchemaError(
            f"per-subject arrays disagree in their trailing shape: {sorted(tails)}. "
            "Every subject needs the same number of options, features or neurons."
        )
    tail = tails.pop() if tails else ()
    dtype = np.result_type(*[a.dtype for a in arrays]) if arrays else np.float64
    if dtype.kind in "US":
        dtype = np.dtype(object)
    out = np.full((len(arrays), n) + tail, fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0]] = a
    return out


def _as_int_codes(values: ArrayLike, name: str, subject: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise SchemaError(f"{name} of subject {subject!r} must be 1-D (one value per trial); got shape {a.shape}.")
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    try:
        f = a.astype(np.float64)
    except (TypeError, ValueError):
        raise SchemaError(
            f"{name} of subject {subject!r} must hold integer option indices; got dtype {a.dtype}. "
            "Map your codes to 0-based option indices (loaders take choice_codes=...)."
        ) from None
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(f) | (f != np.round(f)) | (np.abs(f) > 2**53)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SchemaError(
            f"{name} of subject {subject!r}, trial {i}: expected an integer option index, found {a[i]!r}. "
            "Remove or mark that trial, or fix the source file."
        )
    return f.astype(np.int64)


def _as_float(values: ArrayLike, name: str, subject: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SchemaError(
            f"{name} of subject {subject!r} must be numeric; got {np.asarray(values).dtype}. "
            "Convert the column to numbers."
        ) from None


def _as_bool(values: ArrayLike, name: str) -> np.ndarray:
    """Booleans, or numbers that are all 0 or 1; text (``"False"`` would read as True) is refused."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iuf" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    if arr.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in arr.ravel().tolist()):
        return arr.astype(bool)  # Python bools, e.g. from a pandas column
    raise SchemaError(
        f"{name} must be True/False (or 0/1) values; got dtype {arr.dtype}"
        + (f" with values such as {arr.ravel()[0].item()!r}" if arr.size else "")
        + ". Convert it with e.g. np.asarray(values) == 'True' for text."
    )


def _subject_ids(subjects: Sequence[Any] | None, n: int) -> np.ndarray:
    if isinstance(subjects, (str, bytes)):  # a string is a sequence of characters, not of ids
        raise SchemaError(f"subjects must be a list of ids, one per subject; got the string {subjects!r} (for one subject: [{subjects!r}]).")
    ids = [str(i) for i in range(n)] if subjects is None else [str(s) for s in subjects]
    if len(ids) != n:
        raise SchemaError(f"got {len(ids)} subject ids for {n} subjects; give one id per subject.")
    return np.array(ids, dtype=object)


_Loader = TypeVar("_Loader", bound=Callable[..., Any])


def names_its_file(loader: _Loader) -> _Loader:
    """A file loader whose every `DataError` names the file: checks deep inside it (the validator) name the variable
    and the row, not the file they read. The same wrapping as `plasticinfer.data.load`, for a loader called directly."""

    @functools.wraps(loader)
    def load(path, *args, **kwargs):
        try:
            return loader(path, *args, **kwargs)
        except DataError as e:
            name = Path(path).name if isinstance(path, (str, Path)) else ""
            if name and name not in str(e):
                raise type(e)(f"file {str(path)!r}: {e}") from e
            raise

    return load  # type: ignore[return-value]


def one_source_each(sources: Mapping[str, str], where: str, what: str, fix: str) -> None:
    """Refuse a mapping (schema name → the user's column, variable or dataset path) that reads one source as two
    schema variables: e.g. ``choice`` mapped to the file's ``reward`` while ``reward`` is read by its own name."""
    by_source: dict[str, list[str]] = {}
    for schema_name, source in sources.items():
        by_source.setdefault(source, []).append(schema_name)
    twice = next(((u, names) for u, names in by_source.items() if len(names) > 1), None)
    if twice is not None:
        raise SchemaError(
            f"{where}: {what} {twice[0]!r} would be read as both {' and '.join(map(repr, twice[1]))}; one {what} can be "
            f"read as one schema variable only. {fix}"
        )


def warn_if_transposed(where: str, n_subjects: int, n_trials: int, hint: str) -> None:
    """Warn when there are more subjects than trials: a (trial, subject) layout read as (subject, trial).

    Such data load without complaint as many very short subjects, and a rule can learn nothing from a
    subject's single trial (each trial is predicted from the weights before it).
    """
    if n_subjects > 1 and n_subjects > n_trials:
        _warn(
            f"{where}: choice is {n_subjects} × {n_trials}, read as {n_subjects} subjects of {n_trials} "
            f"trial{'s' if n_trials != 1 else ''} each (rows are subjects). "
            f"If that is one subject's session or a (trial, subject) layout, {hint}.",
            PlasticInferWarning,
        )


def _check_lengths(
    name: str, values: Sequence[Any], lengths: list[int], ids: np.ndarray, reference: str = "choice"
) -> None:
    if len(values) != len(lengths):
        raise SchemaError(
            f"{name} has {len(values)} subjects but {reference} has {len(lengths)}; give one entry per subject."
        )
    for sid, v, n in zip(ids, values, lengths):
        if len(v) != n:
            raise SchemaError(
                f"subject {sid!r}: {name} has {len(v)} trials but {reference} has {n}. "
                "Every per-trial variable needs one value per trial; check for a missing or extra row."
            )


def _trial_mask(lengths: list[int], n_trials: int) -> np.ndarray:
    return np.arange(n_trials)[None, :] < np.asarray(lengths, dtype=np.int64)[:, None]


def _coords_for_subjects(
    ids: np.ndarray,
    lengths: list[int],
    subject_coords: Mapping[str, Sequence[Any]] | None,
    trial_coords: Mapping[str, Sequence[ArrayLike]] | None,
    reference: str = "choice",
) -> dict[str, Any]:
    coords: dict[str, Any] = {}
    for name, values in (subject_coords or {}).items():
        arr = np.asarray(values)
        if arr.shape[0] != len(ids):
            raise SchemaError(f"subject coordinate {name!r} has {arr.shape[0]} values for {len(ids)} subjects.")
        coords[name] = ("subject", arr.astype(object) if arr.dtype.kind in "US" else arr)
    for name, values in (trial_coords or {}).items():
        _check_lengths(f"trial coordinate {name!r}", values, lengths, ids, reference)
        arrays = [np.asarray(v) for v in values]
        dtype = np.result_type(*[a.dtype for a in arrays]) if arrays else np.float64
        coords[name] = (("subject", "trial"), pad_ragged(arrays, fill_value(name, dtype)))
    return coords


def _presentations(
    presented: Sequence[Sequence[ArrayLike]], ids: np.ndarray, lengths: list[int], n_trials: int
) -> dict[str, Any]:
    _check_lengths("presented", presented, lengths, ids)
    n_pres = max((len(p) for subj in presented for p in subj), default=1)
    pres = np.full((len(ids), n_trials, n_pres), -1, dtype=np.int64)
    for i, subj in enumerate(presented):
        for t, p in enumerate(subj):
            p = _as_int_codes(np.atleast_1d(p), "presented", str(ids[i]))
            pres[i, t, : len(p)] = p
    pmask = pres >= 0
    n_real = pmask.sum(-1)
    accepted = np.zeros_like(pmask)
    s_idx, t_idx = np.nonzero(n_real > 0)
    accepted[s_idx, t_idx, n_real[s_idx, t_idx] - 1] = True
    dims = ("subject", "trial", "presentation")
    return {"presented": (dims, pres), "accepted": (dims, accepted), "presentation_mask": (dims, pmask)}


def behaviour_dataset(
    choice: Sequence[ArrayLike],
    reward: Sequence[ArrayLike],
    *,
    subjects: Sequence[Any] | None = None,
    block: Sequence[ArrayLike] | None = None,
    p_reward: Sequence[ArrayLike] | None = None,
    cue: ArrayLike | Sequence[ArrayLike] | None = None,
    n_options: int = 2,
    option_labels: Sequence[str] | None = None,
    presented: Sequence[Sequence[ArrayLike]] | None = None,
    subject_coords: Mapping[str, Sequence[Any]] | None = None,
    trial_coords: Mapping[str, Sequence[ArrayLike]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build a validated behaviour dataset from per-subject arrays (ragged subjects allowed).

    Args:
        choice: one integer array per subject: 0-based index of the chosen option on each trial.
        reward: one float array per subject, same lengths as ``choice``.
        subjects: subject ids (default ``"0"``, ``"1"``, ...).
        block: one array of 1-based block numbers per subject (default: all 1).
        p_reward: one ``(n_trials, n_options)`` array of reward probabilities per subject;
            NaN where a probability is unknown.
        cue: stimulus pattern of each option, ``(option, feature)`` (default: identity), or one
            ``(n_trials, option, feature)`` array per subject when it varies by trial.
        n_options: number of options when ``cue`` is not given.
        option_labels: a name for each option (e.g. the odour codes of the source file).
        presented: per subject, per trial, the sequence of options presented before the choice
            (the last presentation is the accepted one); adds a ``presentation`` dimension.
        subject_coords: extra per-subject metadata, e.g. ``{"session": [...]}``.
        trial_coords: extra per-trial metadata, one array per subject.
        attrs: dataset attributes (``source``, ``license``, ``citation``, ``units_reward``,
            ``description``, ...). Missing ones get neutral defaults.

    Returns:
        A dataset that passes `validate`.

    Raises:
        SchemaError: lengths disagree, codes are not integers, values are non-finite, etc.
    """
    n = len(choice)
    if n and all(np.ndim(c) == 0 for c in choice):  # one subject's trials, not one array per subject
        raise SchemaError(
            f"choice is one array of {n} values; behaviour_dataset takes one array per subject. For one subject, "
            "wrap each in a list: behaviour_dataset([choice], [reward], ...)."
        )
    if n == 0:
        raise SchemaError("no subjects: choice is empty. A dataset needs at least one subject with one trial.")
    ids = _subject_ids(subjects, n)
    choices = [_as_int_codes(c, "choice", str(s)) for c, s in zip(choice, ids)]
    lengths = [len(c) for c in choices]
    _check_lengths("reward", reward, lengths, ids)
    rewards = [_as_float(r, "reward", str(s)) for r, s in zip(reward, ids)]
    n_trials = max(lengths)
    if getattr(choice, "ndim", None) == 2 or n_trials == 1:  # a matrix given directly, or nothing but single trials
        warn_if_transposed("behaviour_dataset", n, n_trials, "pass one array per subject: [choice] and [reward] for one subject, "
                           "or the (trial, subject) matrices transposed")
    mask = _trial_mask(lengths, n_trials)

    if cue is None:
        cue_arr: np.ndarray = np.eye(n_options, dtype=np.float64)
    elif isinstance(cue, np.ndarray) or np.ndim(cue[0]) < 2:  # type: ignore[index]
        cue_arr = np.asarray(cue, dtype=np.float64)
    else:
        _check_lengths("cue", cue, lengths, ids)  # type: ignore[arg-type]
        cue_arr = pad_ragged([np.asarray(c, dtype=np.float64) for c in cue], 0.0)  # type: ignore[union-attr]
    n_opt = cue_arr.shape[-2] if cue_arr.ndim >= 2 else n_options
    cue_dims = ("option", "feature") if cue_arr.ndim == 2 else ("subject", "trial", "option", "feature")

    if block is None:
        blocks = [np.ones(k, dtype=np.int64) for k in lengths]
    else:
        _check_lengths("block", block, lengths, ids)
        blocks = [_as_int_codes(b, "block", str(s)) for b, s in zip(block, ids)]

    coords: dict[str, Any] = {
        "subject": ("subject", ids),
        "trial": ("trial", np.arange(n_trials, dtype=np.int64)),
        "option": ("option", np.arange(n_opt, dtype=np.int64)),
        "block": (("subject", "trial"), pad_ragged(blocks, FILL["block"])),
    }
    if option_labels is not None:
        coords["option_label"] = ("option", np.array([str(x) for x in option_labels], dtype=object))
    if p_reward is not None:
        _check_lengths("p_reward", p_reward, lengths, ids)
        probs = [_as_float(p, "p_reward", str(sid)) for p, sid in zip(p_reward, ids)]
        for sid, p in zip(ids, probs):
            if p.ndim != 2 or p.shape[1] != n_opt:
                raise SchemaError(
                    f"subject {sid!r}: p_reward has shape {p.shape}; it needs one reward probability per trial and "
                    f"option, shape (n_trials, {n_opt}) (NaN where unknown)."
                )
        coords["p_reward"] = (("subject", "trial", "option"), pad_ragged(probs, np.nan))
    coords.update(_coords_for_subjects(ids, lengths, subject_coords, trial_coords))

    data_vars: dict[str, Any] = {
        "choice": (("subject", "trial"), pad_ragged(choices, FILL["choice"]).astype(np.int64)),
        "reward": (("subject", "trial"), pad_ragged(rewards, FILL["reward"]).astype(np.float64)),
        "trial_mask": (("subject", "trial"), mask),
        "cue": (cue_dims, cue_arr),
    }
    if presented is not None:
        data_vars.update(_presentations(presented, ids, lengths, n_trials))

    all_attrs = {"kind": BEHAVIOUR, **DEFAULT_ATTRS, "units_reward": "1 = rewarded, 0 = not rewarded"}
    all_attrs.update(attrs or {})
    all_attrs["kind"] = BEHAVIOUR
    return validate(xr.Dataset(data_vars, coords=coords, attrs=all_attrs))


def neural_dataset(
    input: Sequence[ArrayLike],
    activity: Sequence[ArrayLike],
    *,
    recorded: ArrayLike | None = None,
    subjects: Sequence[Any] | None = None,
    subject_coords: Mapping[str, Sequence[Any]] | None = None,
    trial_coords: Mapping[str, Sequence[ArrayLike]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build a validated neural dataset from per-subject arrays (ragged subjects allowed).

    Args:
        input: one array per subject, ``(n_trials, pre)`` or ``(n_trials, sample, pre)``.
        activity: one array per subject, ``(n_trials, post)`` or ``(n_trials, sample, post)``.
        recorded: ``(subject, post)`` booleans, True where a neuron was recorded (default: all).
            Activity of unrecorded neurons is replaced by 0 and never read.
        subjects: subject ids (default ``"0"``, ``"1"``, ...).
        subject_coords: extra per-subject metadata.
        trial_coords: extra per-trial metadata, one array per subject.
        attrs: dataset attributes (``units_activity``, ``source``, ``license``, ...).

    Returns:
        A dataset that passes `validate`.
    """
    for name, value in (("input", input), ("activity", activity)):
        if getattr(value, "ndim", None) == 2:
            raise SchemaError(
                f"{name} must hold one (n_trials, neurons) array per subject; got one array of shape {np.shape(value)}, "
                f"which would be read as {np.shape(value)[0]} subjects. For one subject, pass [input] and [activity]."
            )
    n = len(input)
    if n == 0:
        raise SchemaError("no subjects: input is empty. A dataset needs at least one subject with one trial.")
    ids = _subject_ids(subjects, n)
    inputs = [_as_float(x, "input", str(s)) for x, s in zip(input, ids)]
    lengths = [x.shape[0] if x.ndim else 0 for x in inputs]
    _check_lengths("activity", activity, lengths, ids, "input")
    acts = [_as_float(y, "activity", str(s)) for y, s in zip(activity, ids)]
    for name, arrays in (("input", inputs), ("activity", acts)):
        ndims = {a.ndim for a in arrays}
        if not ndims <= {2, 3} or len(ndims) != 1:
            raise SchemaError(
                f"{name} arrays must all be (n_trials, neurons) or all (n_trials, sample, neurons); "
                f"got numbers of dimensions {sorted(ndims)}"
                + (". Give one array per subject (for one subject: [input] and [activity])." if 1 in ndims else ".")
            )
    samples = {name: sorted({a.shape[1] for a in arrays}) for name, arrays in (("input", inputs), ("activity", acts))
               if arrays[0].ndim == 3}
    if len(samples) == 2 and samples["input"] != samples["activity"] or any(len(v) > 1 for v in samples.values()):
        raise SchemaError(
            f"input and activity must have the same number of samples per trial (axis 1 of a (n_trials, sample, "
            f"neurons) array) in every subject; found {', '.join(f'{k} {v}' for k, v in samples.items())}. Give both "
            "the same time bins."
        )
    x = pad_ragged(inputs, FILL["input"])
    y = pad_ragged(acts, FILL["activity"])
    n_trials = x.shape[1]
    mask = _trial_mask(lengths, n_trials)
    n_post = y.shape[-1]
    rec = np.ones((n, n_post), dtype=bool) if recorded is None else _as_bool(recorded, "recorded")
    if rec.shape != (n, n_post):
        raise SchemaError(f"recorded must have shape (subject, post) = {(n, n_post)}; got {rec.shape}.")
    rec_b = rec[:, None, None, :] if y.ndim == 4 else rec[:, None, :]
    y = np.where(rec_b, y, FILL["activity"])
    x_dims = ("subject", "trial", "sample", "pre") if x.ndim == 4 else ("subject", "trial", "pre")
    y_dims = ("subject", "trial", "sample", "post") if y.ndim == 4 else ("subject", "trial", "post")
    coords: dict[str, Any] = {
        "subject": ("subject", ids),
        "trial": ("trial", np.arange(n_trials, dtype=np.int64)),
    }
    coords.update(_coords_for_subjects(ids, lengths, subject_coords, trial_coords, "input"))
    data_vars = {
        "input": (x_dims, x.astype(np.float64)),
        "activity": (y_dims, y.astype(np.float64)),
        "recorded": (("subject", "post"), rec),
        "trial_mask": (("subject", "trial"), mask),
    }
    all_attrs = {"kind": NEURAL, **DEFAULT_ATTRS, "units_activity": "unknown"}
    all_attrs.update(attrs or {})
    all_attrs["kind"] = NEURAL
    return validate(xr.Dataset(data_vars, coords=coords, attrs=all_attrs))

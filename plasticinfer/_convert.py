"""Between the xarray Experiment schema (docs/data-format.md) and the arrays a model consumes."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ._errors import DataError
from ._trial_data import TrialData


def _need(ds: xr.Dataset, names, kind: str):
    missing = [n for n in names if n not in ds.variables]
    if missing:
        src = ds.attrs.get("source_file", "the dataset")
        raise DataError(
            f"{src}: a {kind} dataset needs variables {missing} (has {sorted(map(str, ds.data_vars))}); "
            "see docs/data-format.md"
        )


def activity_data(ds: xr.Dataset) -> TrialData:
    """A neural dataset (``input``, ``activity``, ``recorded``, ``trial_mask``) as :class:`TrialData`.

    Trial inputs are ``{"x": input}``; the mask is recorded-neuron × real-trial.
    """
    _need(ds, ["input", "activity", "recorded", "trial_mask"], "neural")
    has_sample = "sample" in ds["input"].dims
    order_in = ["subject", "trial"] + (["sample"] if has_sample else []) + ["pre"]
    order_out = ["subject", "trial"] + (["sample"] if has_sample else []) + ["post"]
    x = ds["input"].transpose(*order_in).values.astype(float)
    y = ds["activity"].transpose(*order_out).values.astype(float)
    rec = ds["recorded"].transpose("subject", "post").values.astype(bool)
    tm = ds["trial_mask"].transpose("subject", "trial").values.astype(bool)
    if has_sample:
        mask = rec[:, None, None, :] & tm[:, :, None, None]
    else:
        mask = rec[:, None, :] & tm[:, :, None]
    mask = np.broadcast_to(mask, y.shape)
    x = np.where(np.isfinite(x), x, 0.0)
    return TrialData({"x": jnp.asarray(x)}, jnp.asarray(y), jnp.asarray(mask))


def choice_data(ds: xr.Dataset) -> TrialData:
    """A behaviour dataset (``choice``, ``reward``, ``cue``, ``trial_mask``) as :class:`TrialData`.

    Trial inputs are ``{"cues", "choice", "reward"}`` for :class:`ChoiceCircuit`; padded
    trials (mask False, at the end) get choice 0 and reward 0 and never enter the likelihood.
    """
    _need(ds, ["choice", "reward", "trial_mask"], "behaviour")
    tm = ds["trial_mask"].transpose("subject", "trial").values.astype(bool)
    choice = ds["choice"].transpose("subject", "trial").values
    reward = ds["reward"].transpose("subject", "trial").values.astype(float)
    n_subj, n_trials = choice.shape
    if "cue" in ds:
        cue = ds["cue"]
        if "subject" in cue.dims:
            cues = cue.transpose("subject", "trial", "option", "feature").values.astype(float)
        else:
            cues = np.broadcast_to(cue.transpose("option", "feature").values.astype(float), (n_subj, n_trials) + cue.shape)
    else:
        cues = np.broadcast_to(np.eye(2), (n_subj, n_trials, 2, 2))
    cues = np.where(tm[:, :, None, None], cues, 0.0)  # padded trials: 0, never NaN (it would reach gradients)
    choice = np.where(tm, choice, 0).astype(np.int64)
    reward = np.where(tm, reward, 0.0)
    return TrialData(
        {"cues": jnp.asarray(cues), "choice": jnp.asarray(choice), "reward": jnp.asarray(reward)},
        jnp.asarray(choice),
        jnp.asarray(tm),
    )


def activity_dataset(syn, *, description: str = "synthetic recordings") -> xr.Dataset:
    """A :class:`SyntheticActivity` as a neural dataset, with the ground truth in attrs."""
    data = syn.data
    x = np.asarray(data.inputs["x"])
    y = np.asarray(data.observations)
    if x.ndim != 3:
        raise DataError("activity_dataset supports one input vector per trial (no 'sample' axis) for now")
    mask = np.asarray(data.mask)
    recorded = mask.any(axis=1)
    n_subj, n_trials, _ = x.shape
    ds = xr.Dataset(
        {
            "input": (("subject", "trial", "pre"), x),
            "activity": (("subject", "trial", "post"), y),
            "recorded": (("subject", "post"), recorded),
            "trial_mask": (("subject", "trial"), np.ones((n_subj, n_trials), bool)),
        },
        coords={"subject": [f"sim{i}" for i in range(n_subj)], "trial": np.arange(n_trials)},
        attrs={
            "kind": "neural",
            "description": description,
            "source": "plasticinfer synthetic",
            "license": "none: simulated data, free of any licence",
            "citation": "simulated with plasticinfer (no publication to cite)",
            "units_activity": "a.u.",
            "true_equation": syn.true_model.rule.equation(),
            # exact, where the equation rounds to 3 decimals: term → coefficient (in units of η), as JSON
            "true_coefficients": json.dumps(syn.true_model.rule.coefficients),
            "true_learning_rate": syn.true_model.rule.learning_rate,
            "true_noise_sigma": float(syn.true_model.observation.sigma),
        },
    )
    ds["true_initial_weights"] = (("subject", "post", "pre"), np.asarray(syn.true_model.initial_weights["w"]))
    return ds

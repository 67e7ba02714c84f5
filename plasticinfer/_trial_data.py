"""`TrialData`: the arrays a model consumes, with leading (trajectory, trial) axes."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool

from ._errors import DataError


class TrialData(eqx.Module):
    """Arrays for one or more learning trajectories, ready for a model.

    Every leaf has leading axes ``(trajectory, trial)``. A *trajectory* is one
    uninterrupted learning sequence (one animal's session, one simulated layer);
    trials within it are in time order.

    Attributes:
        inputs: what the network needs on each trial, e.g. ``{"x": ...}`` for a
            feed-forward layer or ``{"cues": ..., "choice": ..., "reward": ...}``
            for the two-alternative choice circuit.
        observations: what was measured on each trial (activity, choices).
        mask: boolean, broadcastable against ``observations``; ``False`` marks an
            observation that must not enter the likelihood (unrecorded neuron,
            padded trial, held-out trial). Padded trials must come last.
    """

    inputs: dict[str, Array]
    observations: Array
    mask: Bool[Array, "..."]

    def __check_init__(self):
        n = None
        for name, leaf in [("observations", self.observations), ("mask", self.mask)] + [
            (f"inputs[{k!r}]", v) for k, v in self.inputs.items()
        ]:
            if not hasattr(leaf, "shape") or len(leaf.shape) < 2:
                raise DataError(
                    f"TrialData.{name} must have leading (trajectory, trial) axes; got shape "
                    f"{getattr(leaf, 'shape', None)}. Add a trajectory axis of size 1 for a single sequence."
                )
            if n is None:
                n = leaf.shape[:2]
            elif tuple(leaf.shape[:2]) != tuple(n):
                raise DataError(
                    f"TrialData.{name} has (trajectory, trial) = {tuple(leaf.shape[:2])} but other "
                    f"arrays have {tuple(n)}; every input, the observations and the mask must agree."
                )
        mask_dtype = getattr(self.mask, "dtype", None)
        if mask_dtype is not None and mask_dtype != bool:
            raise DataError(
                f"TrialData.mask must be boolean (True where an observation counts); got dtype {mask_dtype}. "
                "Pass mask.astype(bool) (or mask == 1)."
            )
        obs_shape, mask_shape = tuple(self.observations.shape), tuple(self.mask.shape)
        if len(mask_shape) != len(obs_shape) or any(m not in (1, o) for m, o in zip(mask_shape[2:], obs_shape[2:])):
            raise DataError(
                f"TrialData.mask has shape {mask_shape}, which does not fit the observations' {obs_shape}: after "
                "(trajectory, trial) it needs each of the observations' axes, or size 1 there (a mask per trial: "
                "mask[..., None] of shape (trajectory, trial, 1))."
            )

    @classmethod
    def from_dataset(cls, ds, *, validate: bool = True) -> "TrialData":
        """The arrays of a dataset from the loaders (``docs/data-format.md``), ready for a model.

        A *neural* dataset (``input``, ``activity``, ``recorded``, ``trial_mask``) gives inputs
        ``{"x": input}``, observations = activity and a mask of recorded neurons × real
        trials. A *behaviour* dataset (``choice``, ``reward``, ``trial_mask``, optional
        ``cue``) gives inputs ``{"cues", "choice", "reward"}`` for :class:`ChoiceCircuit`,
        observations = choices and the trial mask. Subjects become trajectories, in order.

        Args:
            ds: an xarray Dataset following the schema (from ``pi.load``, ``pi.datasets.load``,
                ``pi.from_dataframe`` ...).
            validate: check the dataset against the schema first (a :class:`SchemaError` names
                what is wrong).
        """
        import xarray as xr

        from ._convert import activity_data, choice_data

        if not isinstance(ds, xr.Dataset):
            raise DataError(f"TrialData.from_dataset needs an xarray Dataset; got {type(ds).__name__}")
        if validate:
            from .data._validate import validate as check

            ds = check(ds)
        kind = ds.attrs.get("kind")
        if kind is None:
            kind = "behaviour" if "choice" in ds else "neural" if "activity" in ds else None
        if kind == "neural":
            return activity_data(ds)
        if kind == "behaviour":
            return choice_data(ds)
        src = ds.attrs.get("source_file", "the dataset")
        raise DataError(
            f"{src}: attribute kind={kind!r} is neither 'neural' nor 'behaviour', and it has neither an 'activity' "
            "nor a 'choice' variable; see docs/data-format.md"
        )

    @property
    def n_trajectories(self) -> int:
        return int(self.observations.shape[0])

    @property
    def n_trials(self) -> int:
        return int(self.observations.shape[1])

    @property
    def n_observed(self) -> int:
        """Number of observed scalar values that enter the likelihood."""
        return int(np.asarray(jnp.broadcast_to(self.mask, self.observations.shape)).sum())

    def with_mask(self, mask) -> "TrialData":
        """Same data, different likelihood mask (e.g. a train or held-out split)."""
        mask = jnp.asarray(mask, dtype=bool)
        try:
            jnp.broadcast_shapes(mask.shape, self.observations.shape)
        except ValueError:
            raise DataError(
                f"mask of shape {mask.shape} does not broadcast against observations "
                f"{self.observations.shape}"
            ) from None
        return TrialData(self.inputs, self.observations, mask)

    def trajectory(self, i: int | slice) -> "TrialData":
        """Select trajectories (keeps the trajectory axis)."""
        idx = slice(i, i + 1) if isinstance(i, int) else i
        return jax.tree_util.tree_map(lambda a: a[idx], self)

    def split_trials(self, heldout_fraction: float = 0.2, *, groups: Any = None) -> tuple["TrialData", "TrialData"]:
        """Split trials into (train, held-out) by time: the last part of each group is held out.

        Args:
            heldout_fraction: fraction of the trials of each group held out (0 < f < 1).
            groups: optional integer array ``(trajectory, trial)`` of group labels (e.g.
                blocks); the last ``heldout_fraction`` of each group's valid trials is held
                out. Without it, each trajectory is one group.

        Both parts keep every trial as input (the network must still learn from
        held-out trials' inputs to reach later ones); only the likelihood masks
        differ, and they are disjoint.
        """
        if not 0.0 < heldout_fraction < 1.0:
            raise DataError(f"heldout_fraction must be in (0, 1); got {heldout_fraction}.")
        obs_shape = self.observations.shape
        full = np.asarray(jnp.broadcast_to(self.mask, obs_shape))
        trial_valid = full.reshape(obs_shape[:2] + (-1,)).any(-1)
        n_traj, n_trials = obs_shape[:2]
        if groups is None:
            groups = np.zeros((n_traj, n_trials), dtype=int)
        groups = np.asarray(groups)
        if groups.shape != (n_traj, n_trials):
            raise DataError(f"groups must have shape {(n_traj, n_trials)}; got {groups.shape}.")
        held = np.zeros((n_traj, n_trials), dtype=bool)
        for i in range(n_traj):
            for g in np.unique(groups[i]):
                idx = np.flatnonzero((groups[i] == g) & trial_valid[i])
                n_held = int(round(heldout_fraction * len(idx)))
                if len(idx) >= 2:
                    n_held = min(max(n_held, 1), len(idx) - 1)
                    held[i, idx[len(idx) - n_held :]] = True
        held_b = held.reshape(held.shape + (1,) * (len(obs_shape) - 2))
        train = TrialData(self.inputs, self.observations, jnp.asarray(full & ~held_b))
        test = TrialData(self.inputs, self.observations, jnp.asarray(full & held_b))
        return train, test

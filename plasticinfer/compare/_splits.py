"""Held-out splits that respect time: last part of each block, leave-future-out, leave-one-subject-out.

Learning data are a sequence: trial t's choice and reward change the weights used on trial t+1.
A split therefore never shuffles trials. Every model still *runs* through all of a subject's
trials (it must learn from a held-out trial's inputs to reach the next one); only the likelihood
masks differ, and the training and held-out masks are disjoint. Plain pointwise LOO (and
PSIS-LOO) leaves a trial's likelihood out but keeps its influence on later weights — optimistic.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .._trial_data import TrialData
from .._errors import ComparisonError


def trial_valid(data: TrialData) -> np.ndarray:
    """(trajectory, trial) booleans: True where the trial has at least one observation in the mask."""
    full = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape))
    return full.reshape(full.shape[:2] + (-1,)).any(-1)


def restrict(data: TrialData, keep) -> TrialData:
    """Same data with the mask further limited to the (trajectory, trial) entries in ``keep``."""
    keep = np.asarray(keep, bool)
    full = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape))
    keep_b = keep.reshape(keep.shape + (1,) * (full.ndim - 2))
    return TrialData(data.inputs, data.observations, jnp.asarray(full & keep_b))


def subjects(data: TrialData, index) -> TrialData:
    """Select trajectories (subjects) by an index array, keeping the trajectory axis."""
    index = np.asarray(index, dtype=int)
    return jax.tree_util.tree_map(lambda a: a[index], data)


@dataclass(frozen=True)
class Fold:
    """One train/held-out split.

    Attributes:
        name: label (``"held-out trials"``, ``"subject 3"``, …).
        train: what the fit sees (its mask selects the training observations).
        test: what is scored.
        train_subjects: indices (into the full data) of ``train``'s trajectories.
        test_subjects: indices of ``test``'s trajectories.
        calibration: for held-out subjects, the subject's first trials on which its own initial
            weights are fitted with the rule held fixed (``None``: no calibration).
    """

    name: str
    train: TrialData
    test: TrialData
    train_subjects: np.ndarray
    test_subjects: np.ndarray
    calibration: TrialData | None = None

    @property
    def new_subjects(self) -> bool:
        """Whether the held-out subjects were absent from training."""
        return not set(self.test_subjects.tolist()) <= set(self.train_subjects.tolist())

    def check_no_leak(self) -> None:
        """Raise if any held-out observation is also a training observation."""
        if self.new_subjects:
            if set(self.test_subjects.tolist()) & set(self.train_subjects.tolist()):
                raise ComparisonError(f"fold {self.name!r}: held-out subjects also appear in training")
            return
        pos = {s: i for i, s in enumerate(self.train_subjects.tolist())}
        tr = np.asarray(jnp.broadcast_to(self.train.mask, self.train.observations.shape))
        te = np.asarray(jnp.broadcast_to(self.test.mask, self.test.observations.shape))
        for j, s in enumerate(self.test_subjects.tolist()):
            if (tr[pos[s]] & te[j]).any():
                raise ComparisonError(f"fold {self.name!r}: subject {s} has observations in both training and held-out masks")


class AbstractSplit(abc.ABC):
    """How to cut data into training and held-out parts."""

    @abc.abstractmethod
    def folds(self, data: TrialData, blocks=None) -> list[Fold]:
        """The folds; ``blocks`` is an optional (trajectory, trial) array of block labels."""

    def describe(self) -> str:
        return repr(self)


def _check_nonempty(fold: Fold) -> Fold:
    if not trial_valid(fold.test).any():
        raise ComparisonError(f"fold {fold.name!r} has no held-out trials; use a larger held-out fraction")
    if not trial_valid(fold.train).any():
        raise ComparisonError(f"fold {fold.name!r} has no training trials")
    fold.check_no_leak()
    return fold


@dataclass(frozen=True)
class HeldOutTrials(AbstractSplit):
    """Hold out the last ``fraction`` of each block's trials (of each session, without blocks).

    Attributes:
        fraction: fraction of each block held out.
        by_block: use the ``blocks`` labels given to :func:`compare` (the last part of *each*
            block is held out, so every reward schedule is represented in both parts).
    """

    fraction: float = 0.25
    by_block: bool = True

    def folds(self, data, blocks=None):
        groups = np.asarray(blocks) if (self.by_block and blocks is not None) else None
        train, test = data.split_trials(self.fraction, groups=groups)
        idx = np.arange(data.n_trajectories)
        return [_check_nonempty(Fold("held-out trials", train, test, idx, idx))]


@dataclass(frozen=True)
class LeaveFutureOut(AbstractSplit):
    """Train on each subject's trials before a cut, score the trials after it.

    Attributes:
        train_fraction: fraction of each subject's valid trials before the cut.
    """

    train_fraction: float = 0.75

    def folds(self, data, blocks=None):
        if not 0.0 < self.train_fraction < 1.0:
            raise ComparisonError(f"train_fraction must be in (0, 1); got {self.train_fraction}")
        valid = trial_valid(data)
        before = np.zeros_like(valid)
        for i in range(valid.shape[0]):
            n = int(valid[i].sum())
            cut = min(max(int(round(self.train_fraction * n)), 1), n - 1) if n >= 2 else n
            before[i, :cut] = True
        idx = np.arange(data.n_trajectories)
        fold = Fold("future trials", restrict(data, before & valid), restrict(data, ~before & valid), idx, idx)
        return [_check_nonempty(fold)]


@dataclass(frozen=True)
class LeaveOneSubjectOut(AbstractSplit):
    """Fit a shared rule on all other subjects; score the held-out subject.

    The held-out subject's initial weights are unknown to a shared fit. With
    ``calibration_fraction = 0`` (default) it starts from the mean of the training subjects'
    fitted initial weights and is scored on all its trials — a pure population prediction. With
    ``calibration_fraction = f > 0`` its own initial weights are fitted (rule, observation and
    network held fixed) on its first ``f`` of trials and it is scored on the rest. For choice
    data with unbiased starts (flies begin naive), 0 is the natural choice.
    """

    calibration_fraction: float = 0.0

    def folds(self, data, blocks=None):
        n = data.n_trajectories
        if n < 2:
            raise ComparisonError("leave-one-subject-out needs at least two subjects")
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise ComparisonError(f"calibration_fraction must be in [0, 1); got {self.calibration_fraction}")
        out = []
        for s in range(n):
            train_idx = np.asarray([i for i in range(n) if i != s])
            test_all = subjects(data, [s])
            calibration = None
            test = test_all
            if self.calibration_fraction > 0:
                valid = trial_valid(test_all)
                k = int(round(self.calibration_fraction * valid.sum()))
                first = np.zeros_like(valid)
                first[0, :k] = True
                calibration = restrict(test_all, first & valid)
                test = restrict(test_all, ~first & valid)
            out.append(_check_nonempty(Fold(f"subject {s}", subjects(data, train_idx), test, train_idx, np.asarray([s]), calibration)))
        return out


@dataclass(frozen=True)
class InSample(AbstractSplit):
    """Train and score on the same trials — only for comparability with published in-sample numbers and AIC/BIC."""

    def folds(self, data, blocks=None):
        idx = np.arange(data.n_trajectories)
        return [Fold("in-sample", data, data, idx, idx)]


__all__ = [
    "AbstractSplit",
    "Fold",
    "HeldOutTrials",
    "LeaveFutureOut",
    "LeaveOneSubjectOut",
    "InSample",
    "trial_valid",
    "restrict",
    "subjects",
]

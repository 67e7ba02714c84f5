"""Held-out splits that respect time (last part of each block, leave-future-out) and subject-level
protocols (leave-one-subject-out, k-fold over subjects, the dataset's own train/test subjects).

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

    def for_dataset(self, ds) -> "AbstractSplit":
        """This split, completed from an xarray dataset's coordinates (:func:`compare` calls it when given one)."""
        return self

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
        n = valid.sum(axis=1)
        cuts = [min(max(int(round(self.train_fraction * k)), 1), k - 1) if k >= 2 else k for k in n]
        before = first_valid(valid, cuts)
        idx = np.arange(data.n_trajectories)
        fold = Fold("future trials", restrict(data, before & valid), restrict(data, ~before & valid), idx, idx)
        return [_check_nonempty(fold)]


def first_valid(valid: np.ndarray, counts) -> np.ndarray:
    """The mask of each row's first ``counts[i]`` valid trials: counted among the valid ones (a mask may have gaps
    before or between them), not as positions."""
    out = np.zeros_like(valid, dtype=bool)
    for i, k in enumerate(counts):
        out[i, np.flatnonzero(valid[i])[: int(k)]] = True
    return out


def _check_calibration(fraction: float) -> None:
    if not 0.0 <= fraction < 1.0:
        raise ComparisonError(f"calibration_fraction must be in [0, 1); got {fraction}")


def subject_fold(data: TrialData, name: str, train_idx, test_idx, calibration_fraction: float = 0.0) -> Fold:
    """A population fold: the rule is fitted on the ``train_idx`` subjects, every trial of the
    ``test_idx`` subjects is scored (with ``calibration_fraction`` > 0, each held-out subject's first
    trials calibrate its initial weights and only the rest is scored)."""
    train_idx = np.asarray(train_idx, dtype=int)
    test_idx = np.asarray(test_idx, dtype=int)
    test = subjects(data, test_idx)
    calibration = None
    if calibration_fraction > 0:
        valid = trial_valid(test)
        # at least one trial left to score where there are 2 (3 trials at 0.9 calibrated on all 3, then refused with
        # advice to hold out more)
        first = first_valid(valid, [min(int(round(calibration_fraction * k)), max(int(k) - 1, 1)) for k in valid.sum(axis=1)])
        calibration = restrict(test, first & valid)
        test = restrict(test, ~first & valid)
    return _check_nonempty(Fold(name, subjects(data, train_idx), test, train_idx, test_idx, calibration))


@dataclass(frozen=True)
class LeaveOneSubjectOut(AbstractSplit):
    """Fit a shared rule on all other subjects; score the held-out subject.

    The held-out subject's initial weights are unknown to a shared fit. With
    ``calibration_fraction = 0`` (default) it is scored on all its trials from a naive start — the
    model's own initial weights (0 for choice models) when initial weights are not fitted, the mean of
    the training subjects' fitted initial weights when they are — a pure population prediction. With
    ``calibration_fraction = f > 0`` its own initial weights are fitted (rule, observation and
    network held fixed) on its first ``f`` of trials and it is scored on the rest. For choice
    data with unbiased starts (flies begin naive), 0 is the natural choice.
    """

    calibration_fraction: float = 0.0

    def folds(self, data, blocks=None):
        n = data.n_trajectories
        if n < 2:
            raise ComparisonError("leave-one-subject-out needs at least two subjects")
        _check_calibration(self.calibration_fraction)
        return [
            subject_fold(data, f"subject {s}", [i for i in range(n) if i != s], [s], self.calibration_fraction)
            for s in range(n)
        ]


@dataclass(frozen=True)
class SubjectKFold(AbstractSplit):
    """k folds of subjects: a shared rule fitted on k − 1 parts, every trial of the held-out part scored.

    Subjects are shuffled once (``seed``) and cut into ``k`` parts of near-equal size; each subject is
    held out exactly once. Held-out subjects start naive, as in :class:`LeaveOneSubjectOut` (whose
    machinery this is; ``k`` = number of subjects is leave-one-subject-out in a shuffled order).

    Attributes:
        k: number of folds (2 ≤ k ≤ subjects).
        seed: seed of the shuffle (a NumPy seed: the split is data bookkeeping, not a random model).
        calibration_fraction: as in :class:`LeaveOneSubjectOut`.
    """

    k: int = 5
    seed: int = 0
    calibration_fraction: float = 0.0

    def folds(self, data, blocks=None):
        n = data.n_trajectories
        if not 2 <= int(self.k) <= n:
            raise ComparisonError(f"SubjectKFold needs 2 ≤ k ≤ number of subjects ({n}); got k={self.k}")
        _check_calibration(self.calibration_fraction)
        order = np.random.default_rng(self.seed).permutation(n)
        out = []
        for i, part in enumerate(np.array_split(order, int(self.k))):
            test_idx = np.sort(part)
            train_idx = np.setdiff1d(np.arange(n), test_idx)
            out.append(subject_fold(data, f"subjects fold {i + 1}/{self.k}", train_idx, test_idx, self.calibration_fraction))
        return out


@dataclass(frozen=True)
class DatasetSplit(AbstractSplit):
    """The dataset's own split: a shared rule fitted on its training subjects, its test subjects scored.

    mohanta2022, for example, comes as 88 training and 44 test flies (coordinate ``split`` over
    ``subject``, values ``"training"``/``"test"``). Pass the xarray dataset to :func:`compare` and the
    labels are read from it; or give them here (one per subject, in the data's subject order).

    Attributes:
        labels: one label per subject (``None``: read from the dataset's ``coordinate``).
        train: the label of training subjects.
        test: the label of test subjects.
        coordinate: the dataset coordinate holding the labels.
        calibration_fraction: as in :class:`LeaveOneSubjectOut`.
    """

    labels: tuple[str, ...] | None = None
    train: str = "training"
    test: str = "test"
    coordinate: str = "split"
    calibration_fraction: float = 0.0

    def __repr__(self) -> str:
        n = "" if self.labels is None else f", {sum(x == self.train for x in self.labels)} train / {sum(x == self.test for x in self.labels)} test subjects"
        return f"DatasetSplit(coordinate={self.coordinate!r}, train={self.train!r}, test={self.test!r}{n})"

    def for_dataset(self, ds) -> "DatasetSplit":
        if self.labels is not None:
            return self
        if self.coordinate not in ds.coords and self.coordinate not in ds:
            title = ds.attrs.get("dataset", ds.attrs.get("title", "the dataset"))
            raise ComparisonError(
                f"DatasetSplit: {title} has no {self.coordinate!r} coordinate (one {self.train!r}/{self.test!r} label per "
                "subject), so it has no train/test split of its own; use SubjectKFold(k) or LeaveOneSubjectOut() (on the "
                "command line: --split kfold, or with compare also --split subject), or add "
                f"the coordinate: ds = ds.assign_coords({self.coordinate}=('subject', labels))"
            )
        values = ds[self.coordinate]
        if values.dims != ("subject",):
            raise ComparisonError(f"DatasetSplit: coordinate {self.coordinate!r} must be over 'subject'; it is over {values.dims}")
        return DatasetSplit(tuple(str(v) for v in values.values), self.train, self.test, self.coordinate, self.calibration_fraction)

    def folds(self, data, blocks=None):
        if self.labels is None:
            raise ComparisonError(
                "DatasetSplit needs each subject's train/test label: pass the xarray dataset to compare() (it reads the "
                f"{self.coordinate!r} coordinate) or DatasetSplit(labels=[...])"
            )
        labels = np.asarray(self.labels, dtype=object)
        if labels.shape != (data.n_trajectories,):
            raise ComparisonError(f"DatasetSplit: {labels.size} labels for {data.n_trajectories} subjects")
        unknown = sorted(set(labels.tolist()) - {self.train, self.test})
        if unknown:
            raise ComparisonError(
                f"DatasetSplit: labels {unknown} are neither train={self.train!r} nor test={self.test!r}; "
                "pass DatasetSplit(train=..., test=...) naming the dataset's labels"
            )
        train_idx, test_idx = np.flatnonzero(labels == self.train), np.flatnonzero(labels == self.test)
        if not len(train_idx) or not len(test_idx):
            raise ComparisonError(f"DatasetSplit: {len(train_idx)} training and {len(test_idx)} test subjects; both must be > 0")
        _check_calibration(self.calibration_fraction)
        return [subject_fold(data, "dataset test subjects", train_idx, test_idx, self.calibration_fraction)]


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
    "SubjectKFold",
    "DatasetSplit",
    "InSample",
    "subject_fold",
    "trial_valid",
    "restrict",
    "subjects",
]

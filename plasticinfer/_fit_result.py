"""`FitResult`: what a fit returns, and its self-describing netCDF file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from ._errors import ModelError
from ._model import PlasticityModel
from ._rules import rule_equation
from ._results_io import coefficient_rows, fit_to_dataset, load_fit_fields, save_fit


@dataclass
class FitResult:
    """What :func:`fit` and :func:`fit_independent` return.

    Attributes:
        model: the best parameters found (for :func:`fit_independent`: one model per
            subject, stacked along a leading axis of every array leaf — see :meth:`subject`).
        restarts: the best parameters of every restart, stacked along a leading axis
            (``(subject, restart)`` axes for independent fits).
        loss_history: training objective per restart and step, shape ``(restart, step)``
            (``(subject, restart, step)`` for independent fits); NaN from the step a restart
            diverged on, and the array ends at ``steps_run``.
        validation_history: held-out loss per restart at each evaluation, or ``None``.
        validation_steps: the steps at which the held-out loss was evaluated.
        best_restart: index of the restart chosen (per subject for independent fits).
        diverged_at: per restart, the step whose loss or gradient was first non-finite
            (the first NaN in ``loss_history``); −1: never.
        stopped_early: whether early stopping on the held-out loss ended the fit.
        steps_run: optimisation steps taken.
        independent: whether this is a :func:`fit_independent` result.
        settings: the fit's arguments (steps, l1, restarts, clip norm, optimiser).
        interrupted: the fit was stopped by Ctrl-C; these are the best parameters up to then.
        converged: whether the loss had settled (see ``convergence_message``).
        convergence_message: why the fit is not considered converged ("" when it is).
        subjects: the subjects' labels of an independent fit, in order (the ``subject``
            coordinate of the dataset it was fitted to, as text); ``None`` for a fit, or when
            the data were a :class:`TrialData`, which carries no labels (then 0, 1, …).
        subject_converged: for an independent fit, whether each subject's loss had settled
            (``converged`` is whether all had); ``None`` for a fit.
    """

    model: PlasticityModel
    restarts: PlasticityModel
    loss_history: np.ndarray
    validation_history: np.ndarray | None
    validation_steps: np.ndarray
    best_restart: np.ndarray
    diverged_at: np.ndarray
    stopped_early: bool
    steps_run: int
    independent: bool = False
    settings: dict = field(default_factory=dict)
    interrupted: bool = False
    converged: bool = True
    convergence_message: str = ""
    subjects: tuple[str, ...] | None = None
    subject_converged: np.ndarray | None = None

    @property
    def n_subjects(self) -> int:
        return int(self.loss_history.shape[0]) if self.independent else 1

    @property
    def subject_labels(self) -> list:
        """The subjects' labels (``subjects``), or 0, 1, … where the data carried none."""
        return list(self.subjects) if self.subjects is not None else list(range(self.n_subjects))

    def subject(self, i: int | str) -> PlasticityModel:
        """The fitted model of a subject of an independent fit: by position ``i``, or by its label (text)."""
        if not self.independent:
            raise ModelError("subject(i) is for results of fit_independent; use .model")
        if isinstance(i, str):
            if self.subjects is None or i not in self.subjects:
                known = ", ".join(map(str, self.subject_labels[:10])) + (" …" if self.n_subjects > 10 else "")
                raise ModelError(f"no subject labelled {i!r} in this result; its subjects are {known}")
            i = self.subjects.index(i)
        elif isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -self.n_subjects <= i < self.n_subjects:
            raise ModelError(
                f"subject {i!r} is out of range: this result holds {self.n_subjects} subjects (0…{self.n_subjects - 1}, or "
                "−1 … from the end; a label as text)"
            )
        return index_model(self.model, i)

    @property
    def coefficients(self):
        """Fitted Taylor coefficients as a pandas DataFrame (one row, or one row per subject, indexed by its label)."""
        import pandas as pd

        rows = coefficient_rows(self.model, self.independent)
        if not self.independent:
            return pd.DataFrame(rows)
        return pd.DataFrame(rows, index=pd.Index(self.subject_labels, name="subject"))

    def equation(self, subject: int | None = None) -> str:
        model = self.subject(subject) if subject is not None else self.model
        rpe = bool(getattr(model.network, "reward_expectation", False))  # the rule sees r − E[r]
        rules = {k: rule_equation(r, reward_expectation=rpe) for k, r in model.taylor_rules().items()}
        return "\n".join(f"{k}: {eq}" if k != "rule" else eq for k, eq in rules.items()) or str(model.rule)

    def to_dataset(self):
        """The result as an xarray Dataset (the content of the file :meth:`save` writes)."""
        return fit_to_dataset(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as netCDF, atomically (a temporary file, then a rename); returns the path.

        The file is self-describing: coefficients by ``term``, every parameter by its path in
        the model, the model configuration in the attributes (see ``docs/core.md``).
        """
        return save_fit(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, like: PlasticityModel | None = None) -> "FitResult":
        """Read a saved result.

        Args:
            path: a file written by :meth:`save`.
            like: the model that was fitted (or one built the same way). Its term names and
                every parameter's shape are checked against the file; a mismatch raises a
                :class:`DataError` listing each difference. Without ``like`` the model is
                rebuilt from the configuration stored in the file (this needs every class
                and activation function to be importable by name, not a lambda).
        """
        return cls(**load_fit_fields(path, like))


def index_model(model, i):
    """Select entry ``i`` along the leading axis of every array leaf."""
    return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, model)

"""Errors and warnings of posterior inference."""

from __future__ import annotations

from .._errors import ModelError, PlasticInferError


class SamplingError(PlasticInferError, RuntimeError):
    """Posterior inference could not run or produced no usable draws; the message says what to try."""


class PriorError(ModelError):
    """A prior was specified inconsistently with the model (unknown term names, bad scales)."""


class PosteriorWarning(UserWarning):
    """Convergence diagnostics failed (R-hat > 1.01, divergences, low ESS); the message says what to do."""


__all__ = ["SamplingError", "PriorError", "PosteriorWarning"]

"""Errors of model comparison."""

from __future__ import annotations

from .._errors import ModelError


class ComparisonError(ModelError):
    """A comparison was set up inconsistently (unknown hypothesis, split that leaks, no held-out trials)."""


__all__ = ["ComparisonError"]

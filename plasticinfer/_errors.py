"""Exception types. Every error the package raises on purpose is a `PlasticInferError`."""


class PlasticInferError(Exception):
    """Base class of every error plasticinfer raises on purpose."""


class DataError(PlasticInferError, ValueError):
    """Input data is malformed: the message names the file, variable or row and what to do."""


class ModelError(PlasticInferError, ValueError):
    """A model was configured inconsistently (shapes, missing inputs, unknown terms)."""


class FitDivergedError(PlasticInferError, RuntimeError):
    """Every restart of a fit produced a non-finite loss; no finite parameters to return."""

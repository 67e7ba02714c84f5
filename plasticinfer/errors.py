"""Every error and warning class plasticinfer raises or emits on purpose, public in one place.

Errors subclass :class:`PlasticInferError` (bad input also subclasses ``ValueError``, a computation
that could not finish ``RuntimeError``); warnings subclass :class:`PlasticInferWarning`, so one filter
covers them all::

    import warnings
    from plasticinfer.errors import ConvergenceWarning

    warnings.simplefilter("error", ConvergenceWarning)  # a fit that stops early is an error in this script

The five most common are also at the top level (``pi.PlasticInferError``, ``pi.DataError``,
``pi.ModelError``, ``pi.FitDivergedError``, ``pi.PlasticInferWarning``); the subpackages re-export the ones
they raise (``pi.bayes.PosteriorWarning``, ``pi.data.SchemaError``, ...), always the same classes.
"""

from ._errors import (
    AmbiguousCodingWarning as AmbiguousCodingWarning,
    CLIError as CLIError,
    ComparisonError as ComparisonError,
    ConvergenceWarning as ConvergenceWarning,
    DataError as DataError,
    DatasetError as DatasetError,
    DiscoveryError as DiscoveryError,
    DistributedError as DistributedError,
    DivergenceWarning as DivergenceWarning,
    FileFormatError as FileFormatError,
    FitDivergedError as FitDivergedError,
    InterruptedWarning as InterruptedWarning,
    ModelError as ModelError,
    PlasticInferError as PlasticInferError,
    PlasticInferWarning as PlasticInferWarning,
    PosteriorWarning as PosteriorWarning,
    PriorError as PriorError,
    SamplingError as SamplingError,
    SchemaError as SchemaError,
)

__all__ = [
    "AmbiguousCodingWarning",
    "CLIError",
    "ComparisonError",
    "ConvergenceWarning",
    "DataError",
    "DatasetError",
    "DiscoveryError",
    "DistributedError",
    "DivergenceWarning",
    "FileFormatError",
    "FitDivergedError",
    "InterruptedWarning",
    "ModelError",
    "PlasticInferError",
    "PlasticInferWarning",
    "PosteriorWarning",
    "PriorError",
    "SamplingError",
    "SchemaError",
]

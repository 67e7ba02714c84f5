"""Every exception and warning plasticinfer raises on purpose, in one place.

Errors subclass :class:`PlasticInferError`; those about bad input also subclass
``ValueError`` (so ``except ValueError`` keeps working), those about a computation that
could not finish subclass ``RuntimeError``. Warnings subclass :class:`PlasticInferWarning`.
"""


class PlasticInferError(Exception):
    """Base class of every error plasticinfer raises on purpose."""


class DataError(PlasticInferError, ValueError):
    """Input data is malformed: the message names the file, variable or row and what to do."""


class ModelError(PlasticInferError, ValueError):
    """A model was configured inconsistently (shapes, missing inputs, unknown terms)."""


class FitDivergedError(PlasticInferError, RuntimeError):
    """Every restart of a fit produced a non-finite loss; no finite parameters to return."""


# --- data layer ---------------------------------------------------------------------------------------------------


class SchemaError(DataError):
    """A dataset does not follow the plasticinfer schema (see ``docs/data-format.md``)."""


class FileFormatError(DataError):
    """A file could not be read or written, or its contents do not fit the layout its reader expects."""


class DatasetError(DataError):
    """A named dataset is unknown, cannot be found, or fails its checksum."""


# --- posterior inference, comparison, discovery --------------------------------------------------------------------


class SamplingError(PlasticInferError, RuntimeError):
    """Posterior inference could not run or produced no usable draws; the message says what to try."""


class PriorError(ModelError):
    """A prior was specified inconsistently with the model (unknown term names, bad scales)."""


class ComparisonError(ModelError):
    """A comparison was set up inconsistently (unknown hypothesis, split that leaks, no held-out trials)."""


class DiscoveryError(ModelError):
    """A discovery run was configured inconsistently or produced nothing usable."""


# --- warnings -----------------------------------------------------------------------------------------------------


class PlasticInferWarning(UserWarning):
    """Base class of every warning plasticinfer emits on purpose."""


class PosteriorWarning(PlasticInferWarning):
    """Convergence diagnostics failed (R-hat > 1.01, divergences, low ESS); the message says what to do."""


class ConvergenceWarning(PlasticInferWarning):
    """An optimisation stopped before converging (loss still falling at the step limit, or never moved)."""


class DivergenceWarning(PlasticInferWarning, RuntimeWarning):
    """Some restarts of a fit produced a non-finite loss or gradient; their last finite parameters were kept."""


class AmbiguousCodingWarning(PlasticInferWarning):
    """Every choice code of a file fits both 0-based and 1-based coding (e.g. only 1s); the loader read it as 0-based."""


class InterruptedWarning(PlasticInferWarning):
    """A fit was interrupted (Ctrl-C); the best parameters so far were returned."""


class CLIError(PlasticInferError, ValueError):
    """A command-line input the library cannot use (output path, option combination, data source)."""


class DistributedError(PlasticInferError, RuntimeError):
    """The distributed runtime could not start, or processes were given inconsistent work."""



def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` pointing at the first caller outside plasticinfer (the user's line, not the library's).

    A fixed ``stacklevel`` lands inside the library whenever the call chain is longer than its author counted,
    and a warning's location is what the warning filters deduplicate on.
    """
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1 if frame is not None else 2)

"""Posterior inference for plasticity models (NumPyro → ArviZ), identifiability and calibration."""

from ._calibration import CalibrationResult as CalibrationResult, simulation_based_calibration as simulation_based_calibration
from .._errors import PosteriorWarning as PosteriorWarning, PriorError as PriorError, SamplingError as SamplingError
from ._groups import (
    ParameterGroup as ParameterGroup,
    count_free_parameters as count_free_parameters,
    parameter_groups as parameter_groups,
    reachable_initial_weights as reachable_initial_weights,
)
from ._identifiability import (
    IdentifiabilityReport as IdentifiabilityReport,
    aliased_terms as aliased_terms,
    binary_variables as binary_variables,
    identifiability as identifiability,
)
from ._numpyro_model import Hierarchical as Hierarchical, ModelSpec as ModelSpec
from ._plots import plot_pairs as plot_pairs, plot_ranks as plot_ranks
from ._posterior import Posterior as Posterior
from ._priors import (
    AbstractPrior as AbstractPrior,
    HalfNormal as HalfNormal,
    Laplace as Laplace,
    Normal as Normal,
    Priors as Priors,
    RegularisedHorseshoe as RegularisedHorseshoe,
    laplace_scale_for_l1 as laplace_scale_for_l1,
)
from ._sample import NUTS as NUTS, SVI as SVI, sample as sample

__all__ = [
    "AbstractPrior",
    "CalibrationResult",
    "HalfNormal",
    "Hierarchical",
    "IdentifiabilityReport",
    "Laplace",
    "ModelSpec",
    "NUTS",
    "Normal",
    "ParameterGroup",
    "Posterior",
    "PosteriorWarning",
    "PriorError",
    "Priors",
    "RegularisedHorseshoe",
    "SVI",
    "SamplingError",
    "aliased_terms",
    "binary_variables",
    "count_free_parameters",
    "identifiability",
    "laplace_scale_for_l1",
    "parameter_groups",
    "plot_pairs",
    "plot_ranks",
    "reachable_initial_weights",
    "sample",
    "simulation_based_calibration",
]

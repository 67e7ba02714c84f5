"""plasticinfer: infer synaptic plasticity rules from data, and discover rules that give networks a function.

The top level holds the everyday path: load and validate data, build a rule, a network and an
observation model, simulate, fit. Specialist names live in their subpackages (NumPyro/Optax
style), each with its own ``__all__``:

- ``plasticinfer.data``: every loader, the schema helpers, file writers, synthetic-data building blocks;
- ``plasticinfer.datasets``: named, checksummed datasets (``pi.datasets.load("rajagopalan2023")``);
- ``plasticinfer.bayes``: priors, NUTS/SVI posteriors, identifiability, calibration;
- ``plasticinfer.compare``: held-out model comparison (``pi.compare.compare``), splits, baselines,
  statistics and rule-recovery metrics;
- ``plasticinfer.discovery``: function-driven rule discovery (objectives, searches, families, probes);
- ``plasticinfer.metalearn``: meta-learned local rules with feedback alignment;
- ``plasticinfer.fly``: two-odour choice learning (Drosophila) hypotheses and report;
- ``plasticinfer.distributed``: the same work split over processes and machines.

Every error and warning class is public in ``plasticinfer.errors``. Modules with a leading
underscore are private.
"""

# --- errors (the subpackages' own errors subclass these; see plasticinfer.data, .bayes, .compare, ...) ---
from ._errors import (
    DataError as DataError,
    FitDivergedError as FitDivergedError,
    ModelError as ModelError,
    PlasticInferError as PlasticInferError,
    PlasticInferWarning as PlasticInferWarning,
)

# --- data ---
from ._trial_data import TrialData as TrialData
from .data import (
    behaviour_dataset as behaviour_dataset,
    from_dataframe as from_dataframe,
    load as load,
    neural_dataset as neural_dataset,
    save_netcdf as save_netcdf,
    validate as validate,
)

# --- rules ---
from ._rules import (
    AbstractRule as AbstractRule,
    CovarianceRule as CovarianceRule,
    MLPRule as MLPRule,
    Monomial as Monomial,
    TaylorRule as TaylorRule,
    all_monomials as all_monomials,
    bcm as bcm,
    covariance as covariance,
    hebbian as hebbian,
    oja as oja,
    rescorla_wagner as rescorla_wagner,
    reward_modulated_hebbian as reward_modulated_hebbian,
    weight_decay as weight_decay,
)

# --- networks and observation models ---
from ._networks import (
    AbstractNetwork as AbstractNetwork,
    ChoiceCircuit as ChoiceCircuit,
    FeedForward as FeedForward,
    MultiLayer as MultiLayer,
    Recurrent as Recurrent,
    one_hot_cues as one_hot_cues,
    sparse_cues as sparse_cues,
)
from ._observation import (
    AbstractObservationModel as AbstractObservationModel,
    BernoulliChoice as BernoulliChoice,
    GaussianActivity as GaussianActivity,
    PoissonCounts as PoissonCounts,
)

# --- model, simulation, fitting ---
from ._model import PlasticityModel as PlasticityModel
from ._simulate import Trajectory as Trajectory, simulate as simulate
from ._fit import FitResult as FitResult, fit as fit, fit_independent as fit_independent
from ._laplace import laplace_intervals as laplace_intervals
from ._rules import forward_mode as forward_mode

# --- synthetic data ---
from ._synthetic import (
    GaussianInputs as GaussianInputs,
    make_activity_data as make_activity_data,
    make_choice_data as make_choice_data,
)

# --- subpackages ---
from . import bayes as bayes
from . import compare as compare  # the module; the function is pi.compare.compare
from . import datasets as datasets
from . import discovery as discovery
from . import distributed as distributed
from . import fly as fly
from . import metalearn as metalearn
from . import data as data

__version__ = "0.1.0"

__all__ = [
    # errors
    "DataError",
    "FitDivergedError",
    "ModelError",
    "PlasticInferError",
    "PlasticInferWarning",
    # data
    "TrialData",
    "behaviour_dataset",
    "from_dataframe",
    "load",
    "neural_dataset",
    "save_netcdf",
    "validate",
    # rules
    "AbstractRule",
    "CovarianceRule",
    "MLPRule",
    "Monomial",
    "TaylorRule",
    "all_monomials",
    "bcm",
    "covariance",
    "hebbian",
    "oja",
    "rescorla_wagner",
    "reward_modulated_hebbian",
    "weight_decay",
    # networks and observation models
    "AbstractNetwork",
    "ChoiceCircuit",
    "FeedForward",
    "MultiLayer",
    "Recurrent",
    "one_hot_cues",
    "sparse_cues",
    "AbstractObservationModel",
    "BernoulliChoice",
    "GaussianActivity",
    "PoissonCounts",
    # model, simulation, fitting
    "PlasticityModel",
    "Trajectory",
    "simulate",
    "FitResult",
    "fit",
    "fit_independent",
    "laplace_intervals",
    "forward_mode",
    # synthetic data
    "GaussianInputs",
    "make_activity_data",
    "make_choice_data",
    # subpackages
    "bayes",
    "compare",
    "data",
    "datasets",
    "discovery",
    "distributed",
    "fly",
    "metalearn",
]

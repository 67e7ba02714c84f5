"""plasticinfer: infer synaptic plasticity rules from data, and discover rules that give networks a function.

Everything public is importable from here; modules with a leading underscore are private.
"""

from ._errors import (
    DataError as DataError,
    FitDivergedError as FitDivergedError,
    ModelError as ModelError,
    PlasticInferError as PlasticInferError,
)
from ._trial_data import TrialData as TrialData
from . import fly as fly
from . import distributed as distributed

# --- core engine (rules, networks, simulation, fitting) ---
from ._fit import FitResult as FitResult, fit as fit, fit_independent as fit_independent, trainable_filter as trainable_filter
from ._io import write_netcdf as write_netcdf
from ._laplace import laplace_intervals as laplace_intervals
from ._metrics import (
    HeldOutScore as HeldOutScore,
    coefficient_error as coefficient_error,
    cosine_similarity as cosine_similarity,
    heldout_r2 as heldout_r2,
    r2_score as r2_score,
)
from ._model import PlasticityModel as PlasticityModel
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
from ._simulate import Trajectory as Trajectory, simulate as simulate
from ._synthetic import (
    GaussianInputs as GaussianInputs,
    SyntheticActivity as SyntheticActivity,
    SyntheticChoices as SyntheticChoices,
    block_schedule as block_schedule,
    make_activity_data as make_activity_data,
    make_choice_data as make_choice_data,
    simulate_choices as simulate_choices,
)

# --- data layer ---
from . import datasets as datasets
from .data import (
    DatasetError as DatasetError,
    FileFormatError as FileFormatError,
    SchemaError as SchemaError,
    behaviour_dataset as behaviour_dataset,
    concat_subjects as concat_subjects,
    from_dataframe as from_dataframe,
    from_matrices as from_matrices,
    load as load,
    load_hdf5 as load_hdf5,
    load_mat as load_mat,
    load_netcdf as load_netcdf,
    load_nwb as load_nwb,
    load_table as load_table,
    neural_dataset as neural_dataset,
    save_netcdf as save_netcdf,
    schema_notes as schema_notes,
    to_dataframe as to_dataframe,
    validate as validate,
)

# --- bayes and comparison ---
from . import bayes as bayes
from .bayes import (
    CalibrationResult as CalibrationResult,
    HalfNormal as HalfNormal,
    Hierarchical as Hierarchical,
    IdentifiabilityReport as IdentifiabilityReport,
    Laplace as Laplace,
    Normal as Normal,
    NUTS as NUTS,
    Posterior as Posterior,
    PosteriorWarning as PosteriorWarning,
    Priors as Priors,
    RegularisedHorseshoe as RegularisedHorseshoe,
    SamplingError as SamplingError,
    SVI as SVI,
    identifiability as identifiability,
    sample as sample,
    simulation_based_calibration as simulation_based_calibration,
)
from .compare import (  # the function `compare` shadows the subpackage name: import helpers from plasticinfer.compare
    ComparisonError as ComparisonError,
    ComparisonResult as ComparisonResult,
    HeldOutTrials as HeldOutTrials,
    InSample as InSample,
    LeaveFutureOut as LeaveFutureOut,
    LeaveOneSubjectOut as LeaveOneSubjectOut,
    compare as compare,
    deviance_explained as deviance_explained,
    wilcoxon_signed_rank as wilcoxon_signed_rank,
)

# --- discovery ---
from . import discovery as discovery
from .discovery import (
    AbstractObjective as AbstractObjective,
    DiscoveryError as DiscoveryError,
    HomeostasisObjective as HomeostasisObjective,
    LateralPCANetwork as LateralPCANetwork,
    LIFHomeostasisObjective as LIFHomeostasisObjective,
    PC1Objective as PC1Objective,
    PCANetworkObjective as PCANetworkObjective,
    SearchResult as SearchResult,
    TraceRule as TraceRule,
    cma_search as cma_search,
    familiarity_probe as familiarity_probe,
    find_families as find_families,
    gradient_search as gradient_search,
    principal_angles as principal_angles,
)

# --- meta-learning (feedback alignment) ---
from .metalearn import (
    AbstractFeedback as AbstractFeedback,
    DigitsEpisodes as DigitsEpisodes,
    FeedbackAlignmentReport as FeedbackAlignmentReport,
    FeedbackNetwork as FeedbackNetwork,
    LayerSignals as LayerSignals,
    LearnerEvaluation as LearnerEvaluation,
    LocalRule as LocalRule,
    LocalTerm as LocalTerm,
    MetaLearnResult as MetaLearnResult,
    RandomFeedback as RandomFeedback,
    SymmetricFeedback as SymmetricFeedback,
    digits_split as digits_split,
    evaluate_learners as evaluate_learners,
    feedback_alignment_experiment as feedback_alignment_experiment,
    meta_learn as meta_learn,
    tune_scale as tune_scale,
)

__version__ = "0.1.0"

"""Function-driven discovery of plasticity rules.

Objectives (a simulation setup plus a loss on the network after learning), two optimisers
(gradient descent through the learning trajectory, CMA-ES), families of solutions, and
held-out probes. See ``docs/discovery.md`` and ``tutorials/05_rule_discovery.py``.
"""

from ._common import (
    AbstractObjective as AbstractObjective,
    DiscoveryError as DiscoveryError,
    GuardedNetwork as GuardedNetwork,
    relative_to_hebbian as relative_to_hebbian,
    scales_for as scales_for,
    taylor_scales as taylor_scales,
)
from ._families import (
    RuleFamily as RuleFamily,
    coefficient_table as coefficient_table,
    find_families as find_families,
)
from ._homeostasis import (
    AbstractPairRule as AbstractPairRule,
    HomeostasisObjective as HomeostasisObjective,
    HomeostaticRateNeuron as HomeostaticRateNeuron,
    TraceRule as TraceRule,
    fixed_point as homeostatic_fixed_point,
)
from ._lif import LIFHomeostasisObjective as LIFHomeostasisObjective, LIFNeuron as LIFNeuron
from ._cma import cma_search as cma_search
from ._gradient import gradient_search as gradient_search
from ._optimise import SearchResult as SearchResult, evaluate as evaluate
from ._pca import (
    PC1Objective as PC1Objective,
    decaying_spectrum as decaying_spectrum,
    oja_comparison as oja_comparison,
    principal_angles as principal_angles,
)
from ._pca_network import (
    LateralPCANetwork as LateralPCANetwork,
    PCANetworkObjective as PCANetworkObjective,
    pca_spectrum as pca_spectrum,
)
from ._probes import (
    FamiliarityScore as FamiliarityScore,
    familiarity_probe as familiarity_probe,
    generalisation as generalisation,
    roc_auc as roc_auc,
)
from ._report import (
    manifold_table as manifold_table,
    plot_manifold as plot_manifold,
    plot_search as plot_search,
    report_annotations as report_annotations,
    save_report as save_report,
    summary_markdown as summary_markdown,
    to_dataset as to_dataset,
)
from ._homeostasis_report import (
    HomeostasisAnalysis as HomeostasisAnalysis,
    analyse_homeostasis as analyse_homeostasis,
    resample_manifold as resample_manifold,
)
from ._pair_rules import EIRules as EIRules, PairRule as PairRule
from ._spiking import (
    EINetwork as EINetwork,
    SpikingState as SpikingState,
    SpikingRun as SpikingRun,
    network_statistics as network_statistics,
    simulate_network as simulate_network,
)
from ._sbi import (
    AbstractSBIPrior as AbstractSBIPrior,
    BoxPrior as BoxPrior,
    GaussianPrior as GaussianPrior,
    NPEPosterior as NPEPosterior,
    NPEResult as NPEResult,
    SBCResult as SBCResult,
    run_npe as run_npe,
    sbc as sbc,
    simulate_batched as simulate_batched,
    train_npe as train_npe,
)
from ._plausibility import (
    FamilyTask as FamilyTask,
    PlausibilityConstraints as PlausibilityConstraints,
    PredictiveCheck as PredictiveCheck,
    predictive_check as predictive_check,
    wilson_interval as wilson_interval,
)
from ._memory import (
    FamiliarityProtocol as FamiliarityProtocol,
    MemoryGroup as MemoryGroup,
    MemoryReport as MemoryReport,
    familiarity_responses as familiarity_responses,
    hand_written_rules as hand_written_rules,
    make_patterns as make_patterns,
    memory_report as memory_report,
    null_group_means as null_group_means,
    readout_auc as readout_auc,
    score_rules as score_rules,
    shuffled_aucs as shuffled_aucs,
    speed_matched as speed_matched,
)
from ._rule_families import FamiliesResult as FamiliesResult, memory_study as memory_study, run_families as run_families

__all__ = [
    "AbstractObjective",
    "DiscoveryError",
    "GuardedNetwork",
    "relative_to_hebbian",
    "scales_for",
    "taylor_scales",
    "RuleFamily",
    "coefficient_table",
    "find_families",
    "AbstractPairRule",
    "HomeostasisObjective",
    "HomeostaticRateNeuron",
    "TraceRule",
    "homeostatic_fixed_point",
    "LIFHomeostasisObjective",
    "LIFNeuron",
    "cma_search",
    "gradient_search",
    "SearchResult",
    "evaluate",
    "PC1Objective",
    "decaying_spectrum",
    "oja_comparison",
    "principal_angles",
    "LateralPCANetwork",
    "PCANetworkObjective",
    "pca_spectrum",
    "FamiliarityScore",
    "familiarity_probe",
    "generalisation",
    "roc_auc",
    "manifold_table",
    "plot_manifold",
    "plot_search",
    "report_annotations",
    "save_report",
    "summary_markdown",
    "to_dataset",
    "HomeostasisAnalysis",
    "analyse_homeostasis",
    "resample_manifold",
    "EIRules",
    "PairRule",
    "EINetwork",
    "SpikingState",
    "SpikingRun",
    "network_statistics",
    "simulate_network",
    "AbstractSBIPrior",
    "BoxPrior",
    "GaussianPrior",
    "NPEPosterior",
    "NPEResult",
    "SBCResult",
    "run_npe",
    "sbc",
    "simulate_batched",
    "train_npe",
    "FamilyTask",
    "PlausibilityConstraints",
    "PredictiveCheck",
    "predictive_check",
    "wilson_interval",
    "FamiliarityProtocol",
    "MemoryGroup",
    "MemoryReport",
    "familiarity_responses",
    "hand_written_rules",
    "make_patterns",
    "memory_report",
    "null_group_means",
    "readout_auc",
    "score_rules",
    "shuffled_aucs",
    "speed_matched",
    "FamiliesResult",
    "memory_study",
    "run_families",
]

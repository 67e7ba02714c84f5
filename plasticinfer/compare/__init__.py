"""Model comparison: held-out likelihood with time-respecting and subject-level splits, fair baselines,
per-subject metrics, paired tests — the one comparison engine (the fly analysis is a layer over it).

The engine is the function :func:`compare` (``pi.compare.compare``, as ``optax.adam`` lives in
``optax``); ``pi.compare`` itself is this module. The rule-recovery metrics — a fitted rule against the
true one (``cosine_similarity``, ``coefficient_error``, ``heldout_r2``) — are here too.
"""

from ._agents import (
    AcceptReject as AcceptReject,
    OptionTaylorRule as OptionTaylorRule,
    QAgentRule as QAgentRule,
    SparseRuleHypothesis as SparseRuleHypothesis,
    accept_reject_policy as accept_reject_policy,
    agent_model as agent_model,
    classical_agents as classical_agents,
    classical_rules as classical_rules,
    option_taylor_rule as option_taylor_rule,
    softmax_policy as softmax_policy,
)
from ._baselines import (
    BaseRate as BaseRate,
    CoinFlip as CoinFlip,
    rescorla_wagner_model as rescorla_wagner_model,
    standard_baselines as standard_baselines,
    static_weights_model as static_weights_model,
)
from ._compare import RESTARTS as RESTARTS, compare as compare
from .._metrics import (
    HeldOutScore as HeldOutScore,
    coefficient_error as coefficient_error,
    cosine_similarity as cosine_similarity,
    heldout_r2 as heldout_r2,
    r2_score as r2_score,
)
from ._parse import RuleHypothesis as RuleHypothesis, parse_hypothesis as parse_hypothesis, rule_equation as rule_equation
from ._result import ComparisonResult as ComparisonResult
from .._errors import ComparisonError as ComparisonError
from ._gru import GRUFit as GRUFit, GRUHypothesis as GRUHypothesis, TinyGRU as TinyGRU, fit_gru as fit_gru
from ._hypotheses import (
    LAPSE as LAPSE,
    AbstractHypothesis as AbstractHypothesis,
    FitSettings as FitSettings,
    FoldScore as FoldScore,
    ModelHypothesis as ModelHypothesis,
    activity_model as activity_model,
    as_populations as as_populations,
    choice_model as choice_model,
)
from ._plots import plot_comparison as plot_comparison
from .._population import PopulationModel as PopulationModel
from ._splits import (
    AbstractSplit as AbstractSplit,
    DatasetSplit as DatasetSplit,
    Fold as Fold,
    HeldOutTrials as HeldOutTrials,
    InSample as InSample,
    LeaveFutureOut as LeaveFutureOut,
    LeaveOneSubjectOut as LeaveOneSubjectOut,
    SubjectKFold as SubjectKFold,
)
from ._stats import (
    PairedTest as PairedTest,
    aic as aic,
    bic as bic,
    deviance_explained as deviance_explained,
    wilcoxon_signed_rank as wilcoxon_signed_rank,
)

__all__ = [
    "AcceptReject",
    "OptionTaylorRule",
    "QAgentRule",
    "SparseRuleHypothesis",
    "accept_reject_policy",
    "agent_model",
    "classical_agents",
    "classical_rules",
    "option_taylor_rule",
    "softmax_policy",
    "GRUFit",
    "GRUHypothesis",
    "TinyGRU",
    "fit_gru",
    "AbstractHypothesis",
    "AbstractSplit",
    "BaseRate",
    "CoinFlip",
    "ComparisonError",
    "ComparisonResult",
    "DatasetSplit",
    "FitSettings",
    "Fold",
    "FoldScore",
    "HeldOutTrials",
    "InSample",
    "LeaveFutureOut",
    "LAPSE",
    "LeaveOneSubjectOut",
    "ModelHypothesis",
    "PairedTest",
    "PopulationModel",
    "RESTARTS",
    "RuleHypothesis",
    "SubjectKFold",
    "activity_model",
    "as_populations",
    "aic",
    "bic",
    "choice_model",
    "compare",
    "deviance_explained",
    "parse_hypothesis",
    "plot_comparison",
    "rescorla_wagner_model",
    "rule_equation",
    "standard_baselines",
    "static_weights_model",
    "wilcoxon_signed_rank",
    # rule recovery
    "HeldOutScore",
    "coefficient_error",
    "cosine_similarity",
    "heldout_r2",
    "r2_score",
]

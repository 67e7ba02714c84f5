"""Meta-learning local plasticity rules that let networks with fixed random feedback learn online.

Deep networks trained by feedback alignment deliver errors through fixed random matrices B instead of
the transposed forward weights. Here a sparse combination of local candidate terms (the
feedback-alignment pseudo-gradient, error-Hebbian, Oja, Hebb, decay, …) is meta-learned by
differentiating through whole online few-shot episodes, and compared with online backprop and plain
feedback alignment on digit classes held out of meta-training.

Reach these names through the subpackage: ``pi.metalearn.meta_learn``, ``pi.metalearn.DigitsEpisodes``, ….
"""

from ._episodes import (
    DEFAULT_HELDOUT_CLASSES as DEFAULT_HELDOUT_CLASSES,
    DigitsEpisodes as DigitsEpisodes,
    Episode as Episode,
    digits_split as digits_split,
)
from ._evaluate import LearnerEvaluation as LearnerEvaluation, evaluate_learners as evaluate_learners
from ._learner import EpisodeOutcome as EpisodeOutcome, run_episode as run_episode, run_episodes as run_episodes
from ._metalearn import (
    MetaLearnResult as MetaLearnResult,
    default_optimiser as default_optimiser,
    meta_learn as meta_learn,
    meta_loss as meta_loss,
    tune_scale as tune_scale,
)
from ._network import (
    AbstractFeedback as AbstractFeedback,
    FeedbackNetwork as FeedbackNetwork,
    FeedbackState as FeedbackState,
    RandomFeedback as RandomFeedback,
    SymmetricFeedback as SymmetricFeedback,
    sharp_softplus as sharp_softplus,
)
from ._report import FeedbackAlignmentReport as FeedbackAlignmentReport, feedback_alignment_experiment as feedback_alignment_experiment
from ._terms import (
    TERM_POOL as TERM_POOL,
    LayerSignals as LayerSignals,
    LocalRule as LocalRule,
    LocalTerm as LocalTerm,
    find_term as find_term,
)

__all__ = [
    "DEFAULT_HELDOUT_CLASSES",
    "TERM_POOL",
    "AbstractFeedback",
    "DigitsEpisodes",
    "Episode",
    "EpisodeOutcome",
    "LearnerEvaluation",
    "FeedbackAlignmentReport",
    "FeedbackNetwork",
    "LayerSignals",
    "LocalRule",
    "LocalTerm",
    "MetaLearnResult",
    "FeedbackState",
    "RandomFeedback",
    "SymmetricFeedback",
    "default_optimiser",
    "digits_split",
    "evaluate_learners",
    "feedback_alignment_experiment",
    "find_term",
    "meta_learn",
    "meta_loss",
    "run_episode",
    "run_episodes",
    "sharp_softplus",
    "tune_scale",
]

"""Two-odour choice learning (Drosophila reward learning): the standard rule hypotheses and their report.

The analysis itself is :func:`plasticinfer.compare.compare` (one comparison engine): the same
restarts, lapse, base rate, paired test and metrics. Deviance explained, the Wilcoxon test and the
base rate live in :mod:`plasticinfer.compare`.
"""

from ._analysis import (
    ChoiceAnalysis as ChoiceAnalysis,
    analyse_choices as analyse_choices,
    choice_probabilities as choice_probabilities,
    decay_summary as decay_summary,
    shuffle_rewards as shuffle_rewards,
)
from ._hypotheses import Hypothesis as Hypothesis, get_hypotheses as get_hypotheses, standard_hypotheses as standard_hypotheses
from ._hierarchical import PopulationPosterior as PopulationPosterior, hierarchical_fit as hierarchical_fit
from ._report import write_report as write_report

__all__ = [
    "ChoiceAnalysis",
    "Hypothesis",
    "PopulationPosterior",
    "analyse_choices",
    "choice_probabilities",
    "decay_summary",
    "get_hypotheses",
    "hierarchical_fit",
    "shuffle_rewards",
    "standard_hypotheses",
    "write_report",
]

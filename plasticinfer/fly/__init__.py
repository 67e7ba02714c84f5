"""Two-odour choice learning (Drosophila reward learning): hypotheses, per-fly fits, fair comparison, report."""

from ._analysis import (
    ChoiceAnalysis as ChoiceAnalysis,
    analyse_choices as analyse_choices,
    choice_probabilities as choice_probabilities,
    decay_summary as decay_summary,
    deviance_explained as deviance_explained,
    per_subject_log_likelihood as per_subject_log_likelihood,
)
from ._hypotheses import Hypothesis as Hypothesis, get_hypotheses as get_hypotheses, standard_hypotheses as standard_hypotheses
from ._hierarchical import PopulationPosterior as PopulationPosterior, hierarchical_fit as hierarchical_fit
from ._report import write_report as write_report

"""Hypotheses under comparison: a model fitted on the training part and scored on the held-out part."""

from __future__ import annotations

import abc
import contextlib
import re
import warnings
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from .._interrupt import finished

from .._fit import check_count, check_l1, check_real, fit, fit_independent
from .._model import PlasticityModel
from .._optimise import fit_context
from .._population import PopulationModel
from .._networks import ChoiceCircuit, FeedForward
from .._observation import BernoulliChoice, GaussianActivity
from .._rules import AbstractRule
from .._trial_data import TrialData
from ..bayes._groups import count_free_parameters, reachable_initial_weights
from .._errors import ComparisonError
from ._splits import Fold, trial_valid


@dataclass(frozen=True)
class FitSettings:
    """How model hypotheses are fitted (the same for every hypothesis, so the comparison is fair)."""

    steps: int = 300
    l1: float = 0.0
    per_subject: bool = True
    fit_initial_weights: bool = True
    restarts: int = 4
    restart_scale: float = 0.2
    key: object = None
    progress: bool = True

    def __post_init__(self):
        # checked here, where every path (compare, fly, the CLIs) passes: the summary once said "× -2 starts"
        object.__setattr__(self, "steps", check_count(self.steps, "steps", error=ComparisonError))
        object.__setattr__(self, "restarts", check_count(self.restarts, "restarts", error=ComparisonError))
        object.__setattr__(self, "restart_scale", check_real(self.restart_scale, "restart_scale", minimum=0.0, error=ComparisonError))
        # a number, also when given as a JAX scalar: the settings are saved as JSON
        object.__setattr__(self, "l1", float(check_l1(self.l1, error=ComparisonError)))

    def fit_kwargs(self) -> dict:
        out = dict(steps=self.steps, l1=self.l1, progress=self.progress, fit_initial_weights=self.fit_initial_weights)
        if self.restarts > 1:
            if self.key is None:
                raise ComparisonError("restarts > 1 need a PRNG key: compare(..., key=jax.random.key(0))")
            out.update(restarts=self.restarts, restart_scale=self.restart_scale, key=self.key)
        return out


@dataclass
class FoldScore:
    """A hypothesis's log-likelihood on one fold.

    Attributes:
        test_ll: summed held-out log-likelihood per test subject.
        n_test: held-out observations per test subject.
        train_ll: summed training log-likelihood per training subject.
        n_train: training observations per training subject.
        n_params: free parameters — per subject if ``per_subject_params``, else in total; for per-subject
            fits an array (one per training subject) where the subjects' counts differ.
        per_subject_params: one fit per training subject (``True``) or one shared fit.
        coefficients: fitted rule coefficients (term → value): one dict per training subject for
            per-subject fits, a single dict for a shared fit; ``None`` when the hypothesis has none.
        model: the fitted model (stacked over subjects for per-subject fits), for plots; not saved.
        converged: whether each training fit's loss had settled (one per training subject for
            per-subject fits, one for a shared fit); ``None`` where nothing was optimised to a verdict.
        calibration_converged: whether the fit of the held-out subjects' initial weights on their
            calibration trials had settled; ``None`` where the fold has no calibration part.
    """

    test_ll: np.ndarray
    n_test: np.ndarray
    train_ll: np.ndarray
    n_train: np.ndarray
    n_params: int | np.ndarray
    per_subject_params: bool
    coefficients: list[dict[str, float]] | None = None
    model: PlasticityModel | None = None
    converged: list[bool] | None = None
    calibration_converged: bool | None = None


def n_observations(data: TrialData) -> np.ndarray:
    """Observations inside the mask, per trajectory."""
    full = np.asarray(jnp.broadcast_to(data.mask, data.observations.shape))
    return full.reshape(full.shape[0], -1).sum(1)


class AbstractHypothesis(abc.ABC):
    """Something that can be trained on a fold's training part and scored on its held-out part."""

    name: str

    @abc.abstractmethod
    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        """Fit on ``fold.train``, score on ``fold.test``."""

    def applies_to(self, data: TrialData) -> bool:
        return True

    def check(self, data: TrialData, settings: FitSettings, folds: list[Fold]) -> None:
        """Refuse, before any fit of the comparison, what ``score`` would refuse on these data."""


def is_choice_data(data: TrialData) -> bool:
    return "cues" in data.inputs and "choice" in data.inputs


def is_binary_choice_data(data: TrialData) -> bool:
    """Choices between two options, coded 0/1 wherever the mask lets them into the likelihood."""
    if not is_choice_data(data) or data.inputs["cues"].shape[-2] != 2:
        return False
    obs = np.asarray(data.observations)
    return bool(np.isin(obs[np.broadcast_to(np.asarray(data.mask), obs.shape)], (0, 1)).all())


#: The lapse rate of the standard choice model, in every path (compare, fly, baselines).
LAPSE = 0.0


def choice_model(
    rule: AbstractRule, data: TrialData, *, reward_expectation: bool = False, lapse: float = LAPSE
) -> PlasticityModel:
    """The standard choice model for a rule: ChoiceCircuit, BernoulliChoice with β fixed at 1, w₀ = 0.

    β is fixed because it is confounded with the scale of the reward term; the bias and the rule
    (and with ``reward_expectation`` the expectation rate) are fitted; whether the initial weights are
    is the comparison's choice (for choices: no — a naive animal starts at 0). No lapses by default.
    """
    n_in = int(data.inputs["cues"].shape[-1])
    return PlasticityModel.create(
        rule,
        ChoiceCircuit(n_in, reward_expectation=reward_expectation),
        BernoulliChoice(1.0, 0.0, learn_temperature=False, lapse=lapse),
        n_trajectories=data.n_trajectories,
        initial_weights={"w": jnp.zeros((1, n_in))},
    )


def activity_model(rule: AbstractRule, data: TrialData, *, key: PRNGKeyArray, init_scale: float = 0.1) -> PlasticityModel:
    """The standard activity model for a rule: one FeedForward layer, Gaussian noise, random w₀ (fitted)."""
    n_pre = int(data.inputs["x"].shape[-1])
    n_post = int(data.observations.shape[-1])
    return PlasticityModel.create(
        rule, FeedForward(n_pre, n_post), GaussianActivity(0.5), n_trajectories=data.n_trajectories, key=key, init_scale=init_scale
    )


def _with_initial_weights(model: PlasticityModel, w0: dict) -> PlasticityModel:
    """``model`` (of whatever PlasticityModel class) with other initial weights."""
    return eqx.tree_at(lambda m: m.initial_weights, model, w0)


def _for_subjects(model: PlasticityModel, index: np.ndarray) -> PlasticityModel:
    return _with_initial_weights(model, {k: v[np.asarray(index)] for k, v in model.initial_weights.items()})


def _stacked_log_likelihood(stacked: PlasticityModel, data: TrialData):
    """Log-likelihood per subject and trial for a stack of one-trajectory models (``fit_independent``)."""
    data_1 = jax.tree_util.tree_map(lambda a: a[:, None], data)
    with jax.numpy_dtype_promotion("standard"):
        return eqx.filter_vmap(lambda m, d: m.log_likelihood(d)[0])(stacked, data_1)


def per_subject_ll(stacked: PlasticityModel, data: TrialData) -> np.ndarray:
    """Summed log-likelihood per subject for a stack of one-trajectory models (``fit_independent``)."""
    return np.asarray(_stacked_log_likelihood(stacked, data)).sum(-1)


def _index(stacked, index):
    return jax.tree_util.tree_map(lambda a: a[np.asarray(index)] if eqx.is_array(a) else a, stacked)


@dataclass
class ModelHypothesis(AbstractHypothesis):
    """A :class:`PlasticityModel` (its values are the fit's starting point).

    Attributes:
        name: label in tables.
        model: the model; its initial weights are also where subjects the fit never saw start.
        l1: this hypothesis's L1 penalty (``None``: the comparison's).
    """

    name: str
    model: PlasticityModel
    l1: float | None = None

    def __post_init__(self):
        if self.l1 is not None:
            self.l1 = check_l1(self.l1, error=ComparisonError)

    def _for_all(self, n_total: int) -> PlasticityModel:
        """The model with initial weights for ``n_total`` subjects (one set broadcast to all)."""
        model = self.model
        if model.n_trajectories == 1 and n_total > 1:
            model = _with_initial_weights(model, {k: jnp.broadcast_to(v[0], (n_total,) + v.shape[1:]) for k, v in model.initial_weights.items()})
        if model.n_trajectories < n_total:
            raise ComparisonError(
                f"hypothesis {self.name!r} has initial weights for {model.n_trajectories} trajectories; the data have {n_total}"
            )
        return model

    def _check_fold(self, fold: Fold, settings: FitSettings) -> None:
        if isinstance(self.model, PopulationModel) and (settings.per_subject or not fold.new_subjects):
            raise ComparisonError(
                f"hypothesis {self.name!r} is a population model: it predicts animals it never saw from the "
                "population fitted on the others. Use per_subject=False with a split that holds out whole "
                "subjects (DatasetSplit, SubjectKFold, LeaveOneSubjectOut)."
            )
        if settings.per_subject and fold.new_subjects:
            raise ComparisonError(
                "per-subject fits cannot score subjects they never saw; use per_subject=False (a shared rule) "
                "with LeaveOneSubjectOut, SubjectKFold or DatasetSplit"
            )

    def check(self, data: TrialData, settings: FitSettings, folds: list[Fold]) -> None:
        """The model against the whole data set (trajectories, reward terms, network, observations: what ``fit``
        checks) and the split's folds against the settings, so that a comparison refuses before its first fit."""
        model = self._for_all(data.n_trajectories)
        if model.n_trajectories > data.n_trajectories:
            model = _for_subjects(model, np.arange(data.n_trajectories))
        model.check_data(data, f"the data of hypothesis {self.name!r}")
        for fold in folds:
            self._check_fold(fold, settings)
            if settings.fit_initial_weights:
                _check_trained_weights(self.name, fold, model)

    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        n_total = int(max(fold.train_subjects.max(), fold.test_subjects.max())) + 1
        model = self._for_all(n_total)
        train_model = _for_subjects(model, fold.train_subjects)
        kwargs = settings.fit_kwargs()
        if self.l1 is not None:
            kwargs["l1"] = self.l1
        n_train = n_observations(fold.train)
        n_test = n_observations(fold.test)
        self._check_fold(fold, settings)
        if settings.per_subject:
            with _quiet_jitter():
                result = finished(fit_independent(train_model, fold.train, **kwargs))
            train_ll = per_subject_ll(result.model, fold.train)
            pos = {s: i for i, s in enumerate(fold.train_subjects.tolist())}
            rows = [pos[s] for s in fold.test_subjects.tolist()]
            test_ll = per_subject_ll(_index(result.model, rows), fold.test)
            # per subject: the rule, observation and network, and the initial weights its own training data reach
            # (not those onto an output neuron it never recorded in training: they never touch its likelihood)
            reach = (reachable_initial_weights(result.model, fold.train, log_likelihood=_stacked_log_likelihood)
                     if settings.fit_initial_weights else None)
            k = count_free_parameters(result.subject(0), initial_weights=settings.fit_initial_weights,
                                      per_trajectory=True, reachable=reach)
            coeffs = _records(result)
            return FoldScore(test_ll, n_test, train_ll, n_train, k, True, coeffs, result.model, result.subject_converged.tolist())
        with _quiet_jitter():
            result = finished(fit(train_model, fold.train, **kwargs))
        fitted = result.model
        with jax.numpy_dtype_promotion("standard"):
            train_ll = np.asarray(fitted.log_likelihood(fold.train)).sum(-1)
        reach = reachable_initial_weights(fitted, fold.train) if settings.fit_initial_weights else None
        k = count_free_parameters(fitted, initial_weights=settings.fit_initial_weights, reachable=reach)
        calibrated = None
        if not fold.new_subjects:
            pos = {s: i for i, s in enumerate(fold.train_subjects.tolist())}
            rows = [pos[s] for s in fold.test_subjects.tolist()]
            test_model = _for_subjects(fitted, rows)
        else:
            test_model, calibrated = _new_subjects_model(fitted, model, fold, settings, reach)
        with jax.numpy_dtype_promotion("standard"):
            test_ll = np.asarray(test_model.log_likelihood(fold.test)).sum(-1)
        return FoldScore(test_ll, n_test, train_ll, n_train, k, False, _records(result), fitted, [bool(result.converged)],
                         calibrated)


def _records(result) -> list[dict[str, float]] | None:
    """Fitted Taylor coefficients (term → value): one dict per subject, or one for a shared fit.

    A rule that sees the reward-prediction error has its reward factor named as such (``x*(r-E[r])``,
    not ``x*r``), as in the hypothesis's equation.
    """
    rows = result.coefficients.to_dict("records")
    if rows and getattr(getattr(result.model, "network", None), "reward_expectation", False):
        rows = [{_RPE_TOKEN.sub("(r-E[r])", term): v for term, v in row.items()} for row in rows]
    return rows or None


#: The reward factor ``r`` in a term name (not the ``r`` of another name).
_RPE_TOKEN = re.compile(r"(?<![A-Za-z_\[])r(?![A-Za-z_\]])")


def _check_trained_weights(name: str, fold: Fold, model: PlasticityModel) -> None:
    """Refuse, before any fit, a held-out subject whose likelihood depends on initial weights that no training
    trial reaches (nor, for a subject the fit never saw, its own calibration trials): the fit could not set them, so
    the subject would be scored on weights where the fit happened to start. In a feed-forward layer these are the
    weights onto an output neuron recorded only in held-out trials, or from an input active only there.

    ``model``: the hypothesis's starting model for every subject (what the fit starts from; reachability is
    judged there and at a copy with every parameter perturbed, so a rule starting at 0 still has its plastic
    paths)."""
    train = reachable_initial_weights(_for_subjects(model, fold.train_subjects), fold.train)
    test_model = _for_subjects(model, fold.test_subjects)
    tested = reachable_initial_weights(test_model, fold.test, count_nonfinite=False)
    if fold.new_subjects:
        trained = {n: np.broadcast_to(r.any(0), (len(fold.test_subjects),) + r.shape[1:]) for n, r in train.items()}
        where = "no training subject's trials"
        if fold.calibration is not None and trial_valid(fold.calibration).any():
            by_calibration = reachable_initial_weights(test_model, fold.calibration)
            trained = {n: t | by_calibration[n] for n, t in trained.items()}
            where += " and none of the subject's calibration trials"
    else:
        pos = {s: i for i, s in enumerate(fold.train_subjects.tolist())}
        trained = {n: r[[pos[s] for s in fold.test_subjects.tolist()]] for n, r in train.items()}
        where = "none of its own training trials"
    for j, s in enumerate(fold.test_subjects.tolist()):
        bad = {n: np.argwhere(tested[n][j] & ~trained[n][j]) for n in tested}
        bad = {n: b for n, b in bad.items() if len(b)}
        if bad:
            which = "; ".join(f"initial {n} at {[tuple(int(i) for i in e) for e in b[:8]]}" + (f" and {len(b) - 8} more" if len(b) > 8 else "")
                              for n, b in bad.items())
            raise ComparisonError(
                f"hypothesis {name!r}, fold {fold.name}: the held-out trials of subject {s} depend on initial weights "
                f"that {where} reach ({which}), so the fit cannot set them and the score would rest on where it "
                "started. In a feed-forward layer an entry (i, j) is the weight onto output neuron i from input j: "
                "neuron i recorded (or active) in held-out trials only, or input j non-zero in held-out trials only "
                "with no plastic path from there into the training trials. "
                "Drop those neurons or inputs (or mask their held-out trials), or use a split whose training part "
                "covers them."
            )


def _new_subjects_model(fitted: PlasticityModel, start: PlasticityModel, fold: Fold, settings: FitSettings,
                        reach: dict | None = None) -> tuple[PlasticityModel, bool | None]:
    """The fitted rule, observation and network for subjects the fit never saw, and whether their calibration fit
    converged (``None``: no calibration part).

    They start naive — at the hypothesis's own initial weights for those subjects (for choice models,
    0) — when initial weights were not fitted; when they were (activity data), at the mean of the
    training subjects' fitted initial weights. With a calibration part, their own initial weights are
    then fitted on it with everything else held fixed.
    """
    n_test = len(fold.test_subjects)
    if settings.fit_initial_weights:
        # the mean over the training subjects whose data reached each entry (the others still hold their start);
        # an entry no training subject reached keeps the mean start
        w0 = {}
        for key, v in fitted.initial_weights.items():
            r = jnp.asarray(reach[key]) if reach is not None else jnp.ones(v.shape, bool)
            n = r.sum(0).astype(v.dtype)
            mean = jnp.where(n > 0, jnp.where(r, v, jnp.zeros((), v.dtype)).sum(0) / jnp.maximum(n, 1.0), v.mean(0))
            w0[key] = jnp.broadcast_to(mean, (n_test,) + v.shape[1:])
    else:
        w0 = {name: v[np.asarray(fold.test_subjects)] for name, v in start.initial_weights.items()}
    test_model, converged = _with_initial_weights(fitted, w0), None
    # calibration fits the held-out subject's own initial weights even when the training fit kept them fixed
    # (choices: 0, a naive animal): that is what a calibration part is for
    if fold.calibration is not None and trial_valid(fold.calibration).any():
        with fit_context("the calibration fit of the held-out subjects' initial weights", within=True):
            calibration = finished(fit(
                test_model, fold.calibration, steps=settings.steps, progress=settings.progress,
                fit_rule=False, fit_observation=False, fit_network=False,
            ))
        test_model, converged = calibration.model, bool(calibration.converged)
    return test_model, converged


@contextlib.contextmanager
def _quiet_jitter():
    """Jittered restarts that diverge are expected (a positive decay term explodes); fit keeps the others."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*diverged.*", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=r".*does not divide across.*", category=UserWarning)
        yield


def as_hypothesis(name: str, value, data: TrialData, *, key: PRNGKeyArray | None) -> AbstractHypothesis:
    """A hypothesis from a model, a rule or a :class:`RuleHypothesis` (standard model for the data), an
    equation string (:func:`parse_hypothesis`), or a hypothesis."""
    from ._parse import ACTIVITY_LEARNING_RATE, CHOICE_LEARNING_RATE, RuleHypothesis, parse_hypothesis

    if isinstance(value, AbstractHypothesis):
        return value
    if isinstance(value, PlasticityModel):
        return ModelHypothesis(name, value)
    if isinstance(value, str):  # at the rate the command line uses for these data (activity rules: η = 0.01, not 1)
        value = parse_hypothesis(value, name=name, learning_rate=CHOICE_LEARNING_RATE if is_choice_data(data) else ACTIVITY_LEARNING_RATE)
    if isinstance(value, AbstractRule):
        value = RuleHypothesis(name, value)
    if isinstance(value, RuleHypothesis):
        return ModelHypothesis(name, value.model(data, key=key), l1=value.l1)
    raise ComparisonError(
        f"hypothesis {name!r} must be an equation string, a rule, a RuleHypothesis or a PlasticityModel; got {type(value).__name__}"
    )


def as_populations(
    hypotheses, data: TrialData, *, n_draws: int = 64, scale: float = 0.3, key: PRNGKeyArray | None = None, suffix: str = " (population)"
) -> dict[str, ModelHypothesis]:
    """Every model hypothesis as a :class:`PopulationModel` (its rule's parameters vary between subjects).

    ``hypotheses`` is what :func:`compare` takes (a dict or a list of equations); each becomes its
    standard model for ``data`` (:func:`as_hypothesis`), is wrapped by
    :meth:`PopulationModel.from_model` (σ starts at ``scale``; ``n_draws`` fixed draws from ``key``)
    and is named ``name + suffix``. Score them with ``per_subject=False`` and a split that holds out
    whole subjects. A hypothesis that is not a model (a GRU, an L1 search) is refused.
    """
    if not isinstance(hypotheses, dict):
        hypotheses = {str(h): h for h in hypotheses}
    key = jax.random.key(0) if key is None else key
    out = {}
    for name, value in hypotheses.items():
        h = as_hypothesis(name, value, data, key=key)
        if not isinstance(h, ModelHypothesis):
            raise ComparisonError(f"hypothesis {name!r} ({type(h).__name__}) is not a model; only models have a population version")
        label = f"{name}{suffix}"
        out[label] = ModelHypothesis(label, PopulationModel.from_model(h.model, n_draws=n_draws, scale=scale, key=key), l1=h.l1)
    return out


__all__ = [
    "as_populations",
    "AbstractHypothesis",
    "ModelHypothesis",
    "FitSettings",
    "FoldScore",
    "choice_model",
    "LAPSE",
    "activity_model",
    "as_hypothesis",
    "is_choice_data",
    "n_observations",
    "per_subject_ll",
]

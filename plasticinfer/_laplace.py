"""Laplace-approximation intervals for a fitted Taylor rule's coefficients."""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ModelError, PosteriorWarning
from ._errors import warn as _warn
from ._model import PlasticityModel
from ._rules import TaylorRule, forward_mode
from ._trial_data import TrialData


def laplace_intervals(model: PlasticityModel, data: TrialData, *, level: float = 0.95):
    """Intervals for the rule's coefficients from the curvature of the log-likelihood at the fit.

    The Hessian of the total negative log-likelihood with respect to the Taylor coefficients is
    taken with every other parameter held at its fitted value (a *conditional* Laplace
    approximation: it ignores uncertainty in initial weights and noise, so intervals are on the
    narrow side; use the Bayesian module for full posteriors).

    Args:
        model: a fitted model (``result.model`` of :func:`fit`; one subject of :func:`fit_independent`:
            ``result.subject(i)``).
        data: the data it was fitted to (a :class:`TrialData` or a validated dataset).
        level: the intervals' mass, a fraction in (0, 1) (0.95, not 95).

    Returns:
        pandas DataFrame indexed by term: estimate, standard error, lower, upper. When the Hessian is not
        positive definite (the coefficients are not at a maximum of the likelihood, e.g. an unconverged
        fit), every standard error and bound is NaN, with a :class:`PosteriorWarning`.
    """
    import pandas as pd

    from ._fit import _as_trial_data, _check_data, check_model, check_real

    check_model(model, "laplace_intervals")
    level = check_real(level, "level (a fraction, e.g. 0.95 for 95 % intervals)", minimum=0, maximum=1, open_low=True, open_high=True)
    if not isinstance(model.rule, TaylorRule):
        raise ModelError("laplace_intervals needs a model with a single TaylorRule")
    if np.ndim(model.rule.coeffs) != 1:
        raise ModelError(
            "laplace_intervals takes one fitted rule; this model holds one per subject (fit_independent): "
            "pass result.subject(i) and that subject's data"
        )
    data = _as_trial_data(data, "data")
    _check_data(model, data, "data")

    # jax.hessian goes forward over reverse, through either derivative of a Taylor rule; the JVP keeps
    # it on one path for every layer size
    fmodel = forward_mode(model)

    def nll(coeffs):
        m = eqx.tree_at(lambda mm: mm.rule.coeffs, fmodel, coeffs)
        return -jnp.sum(m.log_likelihood(data))

    coeffs = model.rule.coeffs
    hess = np.asarray(jax.hessian(nll)(coeffs))
    free = ~np.asarray(model.rule.fixed)
    cov = np.full(hess.shape, np.nan)
    sub = hess[np.ix_(free, free)]
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(sub)
    except np.linalg.LinAlgError:
        raise ModelError("the log-likelihood is flat in some direction of the coefficients (singular Hessian): "
                         "some terms are not identifiable from these data; drop one of each look-alike pair") from None
    if not np.all(np.linalg.eigvalsh((sub + sub.T) / 2) > 0):
        # not a maximum: a clipped negative variance would print as a zero-width interval
        _warn(
            "laplace_intervals: the Hessian of the negative log-likelihood is not positive definite at these "
            "coefficients, so they are not at a maximum of the likelihood (is the fit converged? see "
            "result.converged); the intervals are NaN. Fit longer, or from more restarts, and try again.",
            PosteriorWarning,
        )
        cov[:] = np.nan
    se = np.sqrt(np.diag(cov))
    from scipy.stats import norm  # here, not at import: scipy.stats costs every `import plasticinfer` ~0.5 s

    z = norm.ppf(0.5 + level / 2)
    est = np.asarray(coeffs)
    return pd.DataFrame(
        {"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se}, index=list(model.rule.names)
    )

"""Laplace-approximation intervals for a fitted Taylor rule's coefficients."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._errors import ModelError
from ._model import PlasticityModel
from ._rules import TaylorRule, forward_mode
from ._trial_data import TrialData


def laplace_intervals(model: PlasticityModel, data: TrialData, *, level: float = 0.95):
    """Intervals for the rule's coefficients from the curvature of the log-likelihood at the fit.

    The Hessian of the total negative log-likelihood with respect to the Taylor coefficients is
    taken with every other parameter held at its fitted value (a *conditional* Laplace
    approximation: it ignores uncertainty in initial weights and noise, so intervals are on the
    narrow side; use the Bayesian module for full posteriors).

    Returns:
        pandas DataFrame indexed by term: estimate, standard error, lower, upper.
    """
    import pandas as pd

    if not isinstance(model.rule, TaylorRule):
        raise ModelError("laplace_intervals needs a model with a single TaylorRule")

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
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    from scipy.stats import norm  # here, not at import: scipy.stats costs every `import plasticinfer` ~0.5 s

    z = norm.ppf(0.5 + level / 2)
    est = np.asarray(coeffs)
    return pd.DataFrame(
        {"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se}, index=list(model.rule.names)
    )

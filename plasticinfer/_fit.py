"""`fit` and `fit_independent`: gradient-through-trajectory fitting with optax.

Restarts and subjects run as one vmapped, sharded computation (the loop is in
``_optimise.py``; the result type in ``_fit_result.py``).
"""

from __future__ import annotations

import operator
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from jaxtyping import PRNGKeyArray

from .distributed import unshard
from ._errors import DivergenceWarning, FitDivergedError, ModelError
from ._errors import warn as _warn
from ._fit_result import FitResult, index_model as _index_model
from ._model import PlasticityModel, one_float_dtype
from ._optimise import CONVERGENCE_TOL, USER_OPTIMISER, _DEFAULT_OPTIMISER, describe_optimiser, _all_finite, _optimise, _tree_where, convergence, subject_label  # noqa: F401 (re-exported)
from ._trial_data import TrialData


# --------------------------------------------------------------------------------------
# What is trained
# --------------------------------------------------------------------------------------


def trainable_filter(
    model: PlasticityModel,
    *,
    rule: bool = True,
    initial_weights: bool = True,
    observation: bool = True,
    network: bool = True,
):
    """A filter spec (pytree of bools) marking the floating-point arrays a fit may change."""
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    parts = {
        "rule": (lambda m: m.rule, rule),
        "initial_weights": (lambda m: m.initial_weights, initial_weights),
        "observation": (lambda m: m.observation, observation),
        "network": (lambda m: m.network, network),
    }
    for where, on in parts.values():
        if not on:
            sub = where(spec)
            spec = eqx.tree_at(where, spec, jax.tree_util.tree_map(lambda _: False, sub))
    return spec


def _broadcast(tree, batch_shape, axis=0):
    """Insert batch axes (at ``axis``) into every array of ``tree``."""

    def b(a):
        if not eqx.is_array(a):
            return a
        shape = a.shape[:axis] + batch_shape + a.shape[axis:]
        return jnp.broadcast_to(jnp.expand_dims(a, tuple(range(axis, axis + len(batch_shape)))), shape)

    return jax.tree_util.tree_map(b, tree)


def _jitter_spec(rule_spec):
    """``rule_spec`` with each Taylor rule's coefficient flag replaced by a 0/1 array that is 0 on its fixed terms."""
    from ._rules import TaylorRule

    def one(node):
        if isinstance(node, TaylorRule) and node.coeffs is True and any(node.fixed):
            return eqx.tree_at(lambda r: r.coeffs, node, (~np.asarray(node.fixed)).astype(np.float64))
        return node

    return jax.tree_util.tree_map(one, rule_spec, is_leaf=lambda x: isinstance(x, TaylorRule))


def _perturb(params, key, scale, n, rule_spec):
    """n copies of params; copy 0 unchanged, the others with the rule's free floats jittered by scale·N(0,1)
    (a Taylor rule's fixed terms keep their values in every copy)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    spec_leaves = jax.tree_util.tree_leaves(_jitter_spec(rule_spec))
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, is_rule, k in zip(leaves, spec_leaves, keys):
        stacked = jnp.broadcast_to(leaf, (n,) + leaf.shape)
        if is_rule is not False and is_rule is not None and n > 1:
            noise = scale * jax.random.normal(k, stacked.shape, leaf.dtype)
            if not isinstance(is_rule, bool):
                noise = noise * jnp.asarray(is_rule, leaf.dtype)  # 0 on fixed terms
            noise = noise.at[0].set(0.0)
            stacked = stacked + noise
        out.append(stacked)
    return jax.tree_util.tree_unflatten(treedef, out)


def check_model(model, who: str) -> None:
    """Refuse anything but a :class:`PlasticityModel` where ``who`` (``"fit"``, ``"sample"``, …) needs one."""
    if not isinstance(model, PlasticityModel):
        raise ModelError(
            f"{who} needs a PlasticityModel (a rule inside a network, with an observation model); got "
            f"{type(model).__name__}. Build one with PlasticityModel.create(rule, network, observation, ...)"
            + ("; for a fit's result pass result.model (or init=result)" if isinstance(model, FitResult) else "")
        )


def _check_data(model: PlasticityModel, data: TrialData, name: str, *, rule_fitted: bool = True):
    if not isinstance(data, TrialData):
        raise ModelError(
            f"{name} must be a TrialData or a validated xarray Dataset from the loaders; got {type(data).__name__}"
        )
    obs = np.asarray(data.observations)
    mask = np.asarray(jnp.broadcast_to(data.mask, obs.shape))
    if np.issubdtype(obs.dtype, np.floating):
        bad = mask & ~np.isfinite(obs)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(
                f"{name}.observations has a non-finite value at (trajectory, trial, ...) = {idx} that is not masked out; "
                "set mask=False there (unrecorded/padded) or clean the data"
            )
    if mask.sum() == 0:
        raise ModelError(f"{name} has no observations inside its mask; nothing to fit")
    # A non-finite input poisons every later trial's weights, and the gradient through masked trials too
    # (the loaders fill padded trials' inputs with 0).
    for key_, leaf in data.inputs.items():
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        bad = ~np.isfinite(arr).reshape(arr.shape[:2] + (-1,)).all(axis=-1)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ModelError(
                f"{name}.inputs[{key_!r}] is not finite at (trajectory, trial) = {idx}; the network would carry the "
                "NaN/inf into every later trial and every gradient. Clean that trial, or set its inputs to 0 if it is "
                "padding (mask False there)"
            )
    if rule_fitted and name == "data" and not mask.reshape(mask.shape[:2] + (-1,))[:, 1:].any():
        raise ModelError(
            f"{name} has no observation after the first trial of any trajectory ({mask.shape[1]} trial(s) each): every "
            "trial is predicted from the weights before it, so the rule never reaches the likelihood and its "
            "coefficients cannot be fitted. If each subject's session was read as many one-trial subjects, transpose "
            "it (rows are subjects, columns trials); to fit only the other parts, pass fit_rule=False"
        )
    model.check_data(data, name, rule_fitted=rule_fitted)


def _check_arguments(model, data, validation, restarts, key, steps, optimiser, fit_rule=True, *, restart_scale=0.0,
                     clip_norm=None, convergence_tol=CONVERGENCE_TOL, patience=None):
    """Validate what fit/fit_independent were given; returns the optimiser to use."""
    check_model(model, "fit")
    check_count(steps, "steps")
    check_count(restarts, "restarts")
    check_real(restart_scale, "restart_scale", minimum=0.0)
    check_real(convergence_tol, "convergence_tol", minimum=0.0, allow_inf=True)  # inf: no convergence check
    check_clip_norm(clip_norm)
    if patience is not None:
        check_count(patience, "patience")
        if validation is None:
            raise ModelError("patience stops the fit when the validation loss stops improving; pass validation=<held-out data>, or drop patience")
    check_key(key, "fit")
    if restarts > 1 and key is None:
        raise ModelError("restarts > 1 needs a PRNG key for the jitter: pass key=jax.random.key(0)")
    if optimiser is not None and not (callable(getattr(optimiser, "init", None)) and callable(getattr(optimiser, "update", None))):
        raise ModelError(
            f"optimiser must be an optax optimiser (e.g. optax.adam(1e-2), optax.lbfgs()); got {optimiser!r}"
        )
    _check_data(model, data, "data", rule_fitted=fit_rule)
    if validation is not None:
        _check_data(model, validation, "validation", rule_fitted=fit_rule)
    return _DEFAULT_OPTIMISER if optimiser is None else optimiser


def _check_free(params, fit_rule, fit_initial_weights, fit_observation, fit_network) -> None:
    """Refuse a fit with no free parameter (every part held, or the rule's every term fixed)."""
    if not jax.tree_util.tree_leaves(params):
        parts = dict(fit_rule=fit_rule, fit_initial_weights=fit_initial_weights, fit_observation=fit_observation, fit_network=fit_network)
        held = ", ".join(f"{k}={v}" for k, v in parts.items())
        raise ModelError(
            f"nothing to fit: with {held} the model has no free parameter (a held part, or a rule whose terms are all "
            "fixed, has none). To score a model as it is, use model.log_likelihood(data)"
        )


def check_count(value, what: str, minimum: int = 1, error: type[Exception] = ModelError) -> int:
    """``value`` as an ``int`` of at least ``minimum``: an integer (Python, NumPy or 0-d JAX; not a bool) or a
    whole float such as ``1e3``."""
    try:
        number = operator.index(value)
        integer = not isinstance(value, bool)
    except TypeError:
        number = value
        integer = isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()
    if not integer:
        raise error(f"{what} must be an integer; got {value!r}")
    if number < minimum:
        raise error(f"{what} must be ≥ {minimum}; got {value}")
    return int(number)


def check_real(value, what: str, *, minimum: float | None = None, maximum: float | None = None, open_low: bool = False,
               open_high: bool = False, allow_inf: bool = False, error: type[Exception] = ModelError) -> float:
    """``value`` as a ``float``: a real number (Python, NumPy or 0-d JAX; not a bool) within the given bounds."""
    try:
        number = float(value) if np.ndim(value) == 0 and not isinstance(value, (bool, np.bool_, str, bytes)) else None
    except (TypeError, ValueError):
        number = None
    if number is None or np.isnan(number) or (np.isinf(number) and not allow_inf):
        raise error(f"{what} must be a {'' if allow_inf else 'finite '}number; got {value!r}")
    low = minimum is not None and (number <= minimum if open_low else number < minimum)
    high = maximum is not None and (number >= maximum if open_high else number > maximum)
    if low or high:
        lo = "" if minimum is None else f"{'>' if open_low else '≥'} {minimum:g}"
        hi = "" if maximum is None else f"{'<' if open_high else '≤'} {maximum:g}"
        raise error(f"{what} must be {' and '.join(b for b in (lo, hi) if b)}; got {value!r}")
    return number


def check_clip_norm(clip_norm, error: type[Exception] = ModelError):
    """``clip_norm`` checked: ``None`` or a number > 0 (0 froze every parameter, a negative norm reversed the gradient)."""
    if clip_norm is None:
        return None
    return check_real(clip_norm, "clip_norm (a gradient norm; None for no clipping)", minimum=0.0, open_low=True, allow_inf=True,
                      error=error)


def check_l1(l1, error: type[Exception] = ModelError):
    """``l1`` checked: a negative, non-finite or non-numeric penalty is refused.

    A number comes back as a float; a JAX array comes back as it is (an L1 path passes its strength as
    an array so that every strength runs the same compiled program), and a traced one is not checked.
    """
    if isinstance(l1, jax.core.Tracer):
        return l1
    try:
        value = None if isinstance(l1, (bool, str)) else float(l1)
    except (TypeError, ValueError):
        value = None
    if value is None or not np.isfinite(value) or value < 0:
        raise error(f"l1 must be a non-negative number (0 for no sparsity penalty); got {l1!r}")
    return l1 if isinstance(l1, jax.Array) else value


def check_key(key, where: str, error: type[Exception] = ModelError) -> None:
    """Refuse something that is not a JAX PRNG key (``jax.random.key(0)``) where one is expected."""
    if key is None:
        return
    typed = isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    legacy = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape[-1:] == (2,)
    if not (typed or legacy):
        raise error(f"{where}: key must be a JAX PRNG key such as jax.random.key(0); got {key!r}")


def fit(
    model: PlasticityModel,
    data: TrialData | xr.Dataset,
    *,
    optimiser: optax.GradientTransformation | None = None,
    steps: int = 1000,
    l1: float = 0.0,
    restarts: int = 1,
    key: PRNGKeyArray | None = None,
    restart_scale: float = 0.1,
    validation: TrialData | xr.Dataset | None = None,
    patience: int | None = None,
    eval_every: int = 25,
    clip_norm: float | None = None,
    fit_rule: bool = True,
    fit_initial_weights: bool = True,
    fit_observation: bool = True,
    fit_network: bool = True,
    progress: bool = True,
    devices=None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    convergence_tol: float = CONVERGENCE_TOL,
) -> FitResult:
    """Fit a model's parameters by gradient descent through the whole learning trajectory.

    The objective is the negative log-likelihood *per observation* plus ``l1`` times the
    L1 norm of the rule's coefficients, so ``l1`` means the same for 10 or 10,000
    observations. Gradients are clipped to global norm ``clip_norm``. A restart whose
    loss or gradient turns non-finite is frozen at its last finite parameters and
    reported (``diverged_at``); if all restarts diverge before any finite step,
    :class:`FitDivergedError` is raised.

    Args:
        model: the model, whose parameters are the starting point (restart 0).
        data: the training data (its mask selects the training observations).
        optimiser: an optax optimiser. The default, ``optax.lbfgs()`` (with its line search),
            suits these smooth, deterministic objectives best; first-order optimisers such
            as ``optax.adam(1e-2)`` work too (pair them with ``clip_norm=1.0``).
        steps: maximum optimisation steps.
        l1: sparsity penalty on the Taylor coefficients.
        restarts: independent starts, run as one vmapped computation (sharded across devices).
        key: PRNG key for the restart jitter (required when ``restarts > 1``).
        restart_scale: standard deviation of the jitter added to the rule's coefficients.
        validation: held-out data (typically the same trajectories with a disjoint mask,
            from ``data.split_trials``); the returned parameters are those with the best
            held-out loss, and ``patience`` enables early stopping on it.
        patience: stop when the held-out loss has not improved for this many steps.
        eval_every: steps between held-out evaluations and progress updates.
        clip_norm: clip gradients to this global norm before the optimiser (``None``: no
            clipping; do not clip for L-BFGS, whose line search needs the true gradient).
        fit_rule, fit_initial_weights, fit_observation, fit_network: which parts are trained.
        progress: show a progress bar (only on a terminal or in Jupyter: logs and pipes stay clean).
        devices: devices to shard restarts across (default: all of ``jax.devices()``).
        checkpoint: a file to which the whole optimiser state (parameters, optimiser state,
            step, best-so-far, loss histories) is written atomically every
            ``checkpoint_every`` steps, at the end and on Ctrl-C.
        checkpoint_every: steps between checkpoints.
        resume: continue from ``checkpoint`` if it exists (a checkpoint of a different
            model, data or optimiser is refused); the final numbers equal those of an
            uninterrupted run. ``steps`` counts from the start of the original run.
        convergence_tol: the fit counts as not converged (``result.converged`` False, a
            :class:`ConvergenceWarning`) if over the last 10 % of steps the loss still fell
            by more than this fraction of its scale, or if it never moved.

    ``data`` and ``validation`` may be a validated dataset from the loaders (converted by
    :meth:`TrialData.from_dataset`). Ctrl-C during the fit returns the best parameters so far
    with ``result.interrupted`` True (and an :class:`InterruptedWarning`).
    """
    data, validation = _as_trial_data(data, "data"), _as_trial_data(validation, "validation")
    if isinstance(model, PlasticityModel):
        model = one_float_dtype(model, like=data)
    optimiser = _check_arguments(model, data, validation, restarts, key, steps, optimiser, fit_rule, restart_scale=restart_scale,
                                 clip_norm=clip_norm, convergence_tol=convergence_tol, patience=patience)
    l1, steps, restarts = check_l1(l1), int(steps), int(restarts)
    spec = trainable_filter(
        model, rule=fit_rule, initial_weights=fit_initial_weights, observation=fit_observation, network=fit_network
    )
    params, static = eqx.partition(model, spec)
    _check_free(params, fit_rule, fit_initial_weights, fit_observation, fit_network)
    frozen, static = eqx.partition(static, eqx.is_array)
    rule_on_params = eqx.filter(trainable_filter(model, initial_weights=False, observation=False, network=False), spec)
    params_b = _perturb(params, key if key is not None else jax.random.key(0), restart_scale, restarts, rule_on_params)
    out = _optimise(
        params_b,
        frozen,
        static,
        data,
        None,
        optimiser=optimiser,
        steps=steps,
        l1=l1,
        clip_norm=clip_norm,
        validation=validation,
        eval_every=eval_every,
        patience=patience,
        progress=progress,
        devices=devices,
        desc="fit",
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        identity=("fit",),
    )
    _report_divergence(out["diverged_at"], out["score"], "restart")
    best = int(np.nanargmin(np.where(np.isfinite(out["score"]), out["score"], np.inf)))
    converged, message, _ = convergence(
        [out["history"][best]], ["fit"], tol=convergence_tol, interrupted=out["interrupted"],
        stopped_early=out["stopped_early"], steps_run=out["steps_run"],
    )
    return unshard(FitResult(
        model=eqx.combine(_index_model(out["params"], best), frozen, static),
        restarts=eqx.combine(out["params"], _broadcast(frozen, (restarts,)), static),
        loss_history=out["history"],
        validation_history=out["val_history"],
        validation_steps=out["val_steps"],
        best_restart=np.asarray(best),
        diverged_at=out["diverged_at"],
        stopped_early=out["stopped_early"],
        steps_run=out["steps_run"],
        settings=_settings(steps, l1, restarts, clip_norm, optimiser),
        interrupted=out["interrupted"],
        converged=converged,
        convergence_message=message,
    ))


def fit_independent(
    model: PlasticityModel,
    data: TrialData | xr.Dataset,
    *,
    optimiser: optax.GradientTransformation | None = None,
    steps: int = 1000,
    l1: float = 0.0,
    restarts: int = 1,
    key: PRNGKeyArray | None = None,
    restart_scale: float = 0.1,
    validation: TrialData | xr.Dataset | None = None,
    patience: int | None = None,
    eval_every: int = 25,
    clip_norm: float | None = None,
    fit_rule: bool = True,
    fit_initial_weights: bool = True,
    fit_observation: bool = True,
    fit_network: bool = True,
    progress: bool = True,
    devices=None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    convergence_tol: float = CONVERGENCE_TOL,
) -> FitResult:
    """Fit every trajectory (subject) separately, each with its own rule, as one vmapped computation.

    ``model`` is a template with one set of initial weights per trajectory of ``data``;
    subject ``s`` starts from the template's rule and its own initial weights. The batch
    of (subject × restart) fits is sharded across devices. Arguments as in :func:`fit`;
    :meth:`FitResult.subject` returns subject ``s``'s fitted model.
    """
    subjects = subject_labels(data)
    data, validation = _as_trial_data(data, "data"), _as_trial_data(validation, "validation")
    if isinstance(model, PlasticityModel):
        model = one_float_dtype(model, like=data)
    optimiser = _check_arguments(model, data, validation, restarts, key, steps, optimiser, fit_rule, restart_scale=restart_scale,
                                 clip_norm=clip_norm, convergence_tol=convergence_tol, patience=patience)
    l1, steps, restarts = check_l1(l1), int(steps), int(restarts)
    n_subj = data.n_trajectories
    # One single-trajectory model per subject, stacked along a leading axis.
    per_subject = model.split_trajectories()
    one = _index_model(per_subject, 0)
    spec = trainable_filter(
        one, rule=fit_rule, initial_weights=fit_initial_weights, observation=fit_observation, network=fit_network
    )
    params_s, static = eqx.partition(per_subject, spec)
    _check_free(params_s, fit_rule, fit_initial_weights, fit_observation, fit_network)
    frozen_s, static = eqx.partition(static, eqx.is_array)  # frozen arrays carry the subject axis
    rule_on_params = eqx.filter(trainable_filter(one, initial_weights=False, observation=False, network=False), spec)
    keys = jax.random.split(key if key is not None else jax.random.key(0), n_subj)
    params_sr = jax.vmap(lambda p, k: _perturb(p, k, restart_scale, restarts, rule_on_params))(params_s, keys)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((n_subj * restarts,) + a.shape[2:]), params_sr)
    index = np.repeat(np.arange(n_subj), restarts)
    expand = lambda d: jax.tree_util.tree_map(lambda a: a[index][:, None], d)  # noqa: E731
    data_b = expand(data)
    val_b = expand(validation) if validation is not None else None
    frozen_b = jax.tree_util.tree_map(lambda a: a[index], frozen_s)
    out = _optimise(
        flat,
        frozen_b,
        static,
        data_b,
        0,
        optimiser=optimiser,
        steps=steps,
        l1=l1,
        clip_norm=clip_norm,
        validation=val_b,
        eval_every=eval_every,
        patience=patience,
        progress=progress,
        devices=devices,
        desc=f"fit {n_subj} subjects",
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        identity=("fit_independent",),
    )
    _report_divergence(out["diverged_at"], out["score"], "fit (subject×restart)")
    score = out["score"].reshape(n_subj, restarts)
    best = np.argmin(np.where(np.isfinite(score), score, np.inf), axis=1)
    params_sr = jax.tree_util.tree_map(lambda a: a.reshape((n_subj, restarts) + a.shape[1:]), out["params"])
    best_params = jax.tree_util.tree_map(lambda a: a[np.arange(n_subj), best], params_sr)
    history = out["history"].reshape(n_subj, restarts, -1)
    converged, message, each = convergence(
        [history[s, best[s]] for s in range(n_subj)], [subject_label(s, subjects) for s in range(n_subj)], tol=convergence_tol,
        interrupted=out["interrupted"], stopped_early=out["stopped_early"], steps_run=out["steps_run"],
    )
    return unshard(FitResult(
        model=eqx.combine(best_params, frozen_s, static),
        restarts=eqx.combine(params_sr, _broadcast(frozen_s, (restarts,), axis=1), static),
        loss_history=history,
        validation_history=None if out["val_history"] is None else out["val_history"].reshape(n_subj, restarts, -1),
        validation_steps=out["val_steps"],
        best_restart=best,
        diverged_at=out["diverged_at"].reshape(n_subj, restarts),
        stopped_early=out["stopped_early"],
        steps_run=out["steps_run"],
        independent=True,
        settings=_settings(steps, l1, restarts, clip_norm, optimiser),
        interrupted=out["interrupted"],
        converged=converged,
        convergence_message=message,
        subjects=subjects,
        subject_converged=each,
    ))


def subject_labels(data) -> tuple[str, ...] | None:
    """The ``subject`` coordinate of a dataset as text, or ``None`` (a :class:`TrialData` carries no labels)."""
    if isinstance(data, xr.Dataset) and "subject" in data.coords:
        return tuple(str(v) for v in data["subject"].values)
    return None


def _as_trial_data(data, name):
    if isinstance(data, xr.Dataset):
        return TrialData.from_dataset(data)
    return data


def _settings(steps, l1, restarts, clip_norm, optimiser) -> dict:
    described = describe_optimiser(optimiser, _DEFAULT_OPTIMISER, "optax.lbfgs() (the default, with its line search)")
    return dict(steps=steps, l1=l1, restarts=restarts, clip_norm=clip_norm, optimiser=described)


def _report_divergence(diverged_at, score, what):
    diverged_at = np.asarray(diverged_at).ravel()
    score = np.asarray(score).ravel()
    bad = np.flatnonzero(diverged_at >= 0)
    if len(bad) and not np.isfinite(score).any():
        raise FitDivergedError(
            f"every {what} produced a non-finite loss or gradient (first at step {int(diverged_at[bad].min())}) before "
            "any finite step. Lower the learning rate, start the rule's coefficients nearer zero, add an L1 penalty "
            "(l1=...; `plasticinfer fit --l1`), or drop high-power terms such as w^2."
        )
    if len(bad):
        _warn(
            f"{len(bad)} of {len(diverged_at)} {what}s diverged (non-finite loss/gradient at steps "
            f"{sorted(set(int(s) for s in diverged_at[bad]))[:10]}); their last finite parameters were kept. "
            "Consider a lower learning rate or an L1 penalty.",
            DivergenceWarning,
        )


__all__ = ["fit", "fit_independent", "FitResult", "trainable_filter"]

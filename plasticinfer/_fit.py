"""Gradient-through-trajectory fitting with optax: restarts and subjects as one vmapped, sharded computation."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from ._errors import DivergenceWarning, FitDivergedError, ModelError
from ._model import PlasticityModel
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


# --------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        model: the best parameters found (for :func:`fit_independent`: one model per
            subject, stacked along a leading axis of every array leaf — see :meth:`subject`).
        restarts: the best parameters of every restart, stacked along a leading axis
            (``(subject, restart)`` axes for independent fits).
        loss_history: training objective per restart and step (NaN after divergence / early stop).
        validation_history: held-out loss per restart at each evaluation, or ``None``.
        validation_steps: the steps at which the held-out loss was evaluated.
        best_restart: index of the restart chosen (per subject for independent fits).
        diverged_at: step at which each restart first produced a non-finite loss or gradient (−1: never).
        stopped_early: whether early stopping ended the fit.
        steps_run: optimisation steps taken.
    """

    model: PlasticityModel
    restarts: PlasticityModel
    loss_history: np.ndarray
    validation_history: np.ndarray | None
    validation_steps: np.ndarray
    best_restart: np.ndarray
    diverged_at: np.ndarray
    stopped_early: bool
    steps_run: int
    independent: bool = False
    settings: dict = field(default_factory=dict)

    @property
    def n_subjects(self) -> int:
        return int(self.loss_history.shape[0]) if self.independent else 1

    def subject(self, i: int) -> PlasticityModel:
        """The fitted model of subject ``i`` (independent fits only)."""
        if not self.independent:
            raise ModelError("subject(i) is for results of fit_independent; use .model")
        return _index_model(self.model, i)

    @property
    def coefficients(self):
        """Fitted Taylor coefficients as a pandas DataFrame (one row, or one row per subject)."""
        import pandas as pd

        rows = _coefficient_rows(self.model, self.independent)
        return pd.DataFrame(rows)

    def equation(self, subject: int | None = None) -> str:
        model = self.subject(subject) if subject is not None else self.model
        rules = model.taylor_rules()
        return "\n".join(f"{k}: {r}" if k != "rule" else str(r) for k, r in rules.items()) or str(model.rule)

    def to_dataset(self):
        from ._results_io import fit_to_dataset

        return fit_to_dataset(self)

    def save(self, path) -> None:
        """Write the result as netCDF (atomically: a temporary file, then a rename)."""
        from ._results_io import save_fit

        save_fit(self, path)

    @classmethod
    def load(cls, path, like: PlasticityModel) -> "FitResult":
        """Read a saved result; ``like`` is a model of the same structure (e.g. the one you fitted)."""
        from ._results_io import load_fit

        return load_fit(path, like)


def _broadcast(tree, batch_shape, axis=0):
    """Insert batch axes (at ``axis``) into every array of ``tree``."""

    def b(a):
        if not eqx.is_array(a):
            return a
        shape = a.shape[:axis] + batch_shape + a.shape[axis:]
        return jnp.broadcast_to(jnp.expand_dims(a, tuple(range(axis, axis + len(batch_shape)))), shape)

    return jax.tree_util.tree_map(b, tree)


def _index_model(model, i):
    return jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) else a, model)


def _coefficient_rows(model, independent):
    rules = model.taylor_rules()
    if not rules:
        return []
    n = next(iter(rules.values())).coeffs.shape[0] if independent else None
    rows = []
    for s in range(n if independent else 1):
        row = {}
        for key, r in rules.items():
            coeffs = np.asarray(r.coeffs[s] if independent else r.coeffs)
            prefix = "" if key == "rule" else f"{key}:"
            row.update({prefix + name: float(c) for name, c in zip(r.names, coeffs)})
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# The optimisation loop
# --------------------------------------------------------------------------------------


def _tree_where(cond, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(l)) for l in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(l)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _has_linesearch(opt_state) -> bool:
    """Whether the optimiser state stores the value and gradient (optax line searches do)."""
    return bool(optax.tree_utils.tree_get_all_with_path(opt_state, "value"))


def _make_objective(static, l1):
    def objective(params, data, frozen=None):
        model = eqx.combine(params, frozen, static) if frozen is not None else eqx.combine(params, static)
        ll = model.log_likelihood(data)
        n_obs = jnp.sum(jnp.broadcast_to(data.mask, data.observations.shape), dtype=ll.dtype)
        nll = -jnp.sum(ll) / jnp.maximum(n_obs, 1.0)
        return nll + l1 * model.penalty()

    return objective


_DEFAULT_OPTIMISER = optax.lbfgs()


@functools.lru_cache(maxsize=32)
def _prepared_optimiser(optimiser, clip_norm):
    """Clip (optionally) and accept extra args; cached so the same optimiser object keeps its identity."""
    if clip_norm is not None:
        optimiser = optax.chain(optax.clip_by_global_norm(clip_norm), optimiser)
    return optax.with_extra_args_support(optimiser)


@eqx.filter_jit
def _init_opt_state(optimiser, params_b):
    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS mixes int32/int64 under x64
        return jax.vmap(optimiser.init)(params_b)


def _one_step(params, opt_state, alive, data, frozen, *, static, optimiser, l1):
    objective = _make_objective(static, l1)
    value_fn = lambda p: objective(p, data, frozen)  # noqa: E731
    if _has_linesearch(opt_state):  # reuse the value and gradient the line search already computed
        loss, grads = optax.value_and_grad_from_state(value_fn)(params, state=opt_state)
    else:
        loss, grads = jax.value_and_grad(value_fn)(params)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    grads = _tree_where(finite, grads, jax.tree_util.tree_map(jnp.zeros_like, grads))
    with jax.numpy_dtype_promotion("standard"):
        updates, new_opt = optimiser.update(grads, opt_state, params, value=loss, grad=grads, value_fn=value_fn)
    new_params = eqx.apply_updates(params, updates)
    ok = finite & alive
    new_params = _tree_where(ok & _all_finite(new_params), new_params, params)
    new_opt = _tree_where(ok, new_opt, opt_state)
    return new_params, new_opt, loss, finite


@eqx.filter_jit
def _run_chunk(carry, data, frozen, static, optimiser, l1, n, data_axis):
    """``n`` vmapped optimisation steps in one scan, tracking the best finite parameters per batch member."""
    step = functools.partial(_one_step, static=static, optimiser=optimiser, l1=l1)
    v_step = jax.vmap(step, in_axes=(0, 0, 0, data_axis, data_axis))

    def body(c, t):
        params, opt_state, alive, best_params, best_loss, diverged_at = c
        new_params, new_opt, loss, finite = v_step(params, opt_state, alive, data, frozen)
        newly_dead = alive & ~finite
        diverged_at = jnp.where(newly_dead, t, diverged_at)
        alive = alive & finite
        better = alive & (loss < best_loss)
        best_params = jax.vmap(_tree_where)(better, params, best_params)
        best_loss = jnp.where(better, loss, best_loss)
        recorded = jnp.where(alive, loss, jnp.nan)
        return (new_params, new_opt, alive, best_params, best_loss, diverged_at), recorded

    step0 = carry[-1]
    c, losses = jax.lax.scan(body, carry[:-1], step0 + jnp.arange(n))
    return c + (step0 + n,), losses


@eqx.filter_jit
def _validation_loss(params_b, validation, frozen, static, l1, data_axis):
    return jax.vmap(_make_objective(static, l1), in_axes=(0, data_axis, data_axis))(params_b, validation, frozen)


def _optimise(
    params_b,
    frozen,
    static,
    data: TrialData,
    data_axis,
    *,
    optimiser,
    steps,
    l1,
    clip_norm,
    validation,
    eval_every,
    patience,
    progress,
    devices,
    desc,
):
    """Run ``steps`` of ``optimiser`` on a batch of parameter sets (leading axis), vmapped.

    The jitted pieces are module-level and take the model's static structure, the
    optimiser and the penalty as static arguments, so a second fit of a model with the
    same structure (another hypothesis' train/all-trials fit, another dataset of the
    same shape) reuses the compiled code.
    """
    optimiser = _prepared_optimiser(optimiser, clip_norm)
    n_batch = jax.tree_util.tree_leaves(params_b)[0].shape[0]
    opt_state = _init_opt_state(optimiser, params_b)
    alive = jnp.ones(n_batch, bool)
    best_loss = jnp.full(n_batch, jnp.inf)
    diverged_at = jnp.full(n_batch, -1, dtype=jnp.int32 if not jax.config.jax_enable_x64 else jnp.int64)
    carry = (params_b, opt_state, alive, params_b, best_loss, diverged_at, jnp.asarray(0))
    carry, (data, frozen), validation = _shard(carry, (data, frozen), validation, data_axis, devices, n_batch)

    from tqdm.auto import tqdm

    history = []
    val_hist, val_steps = [], []
    best_val = np.full(n_batch, np.inf)
    best_val_params = params_b
    since_improved = 0
    stopped_early = False
    done = 0
    with tqdm(total=steps, desc=desc, disable=not progress, leave=False) as bar:
        while done < steps:
            n = min(eval_every, steps - done)
            carry, losses = _run_chunk(carry, data, frozen, static, optimiser, l1, n, data_axis)
            losses = np.asarray(losses)
            history.append(losses)
            done += n
            bar.update(n)
            finite_losses = losses[-1][np.isfinite(losses[-1])]
            postfix = {"loss": f"{finite_losses.min():.4g}" if finite_losses.size else "nan"}
            if validation is not None:
                v = np.asarray(_validation_loss(carry[0], validation, frozen, static, l1, data_axis))
                alive_np = np.asarray(carry[2])
                v = np.where(alive_np & np.isfinite(v), v, np.inf)
                improved = v < best_val - 1e-12
                best_val = np.where(improved, v, best_val)
                best_val_params = jax.vmap(_tree_where)(jnp.asarray(improved), carry[0], best_val_params)
                val_hist.append(np.where(np.isfinite(v), v, np.nan))
                val_steps.append(done)
                postfix["held-out"] = f"{np.min(best_val):.4g}"
                since_improved = 0 if improved.any() else since_improved + n
                if patience is not None and since_improved >= patience:
                    stopped_early = True
                    bar.set_postfix(postfix)
                    break
            bar.set_postfix(postfix)
            if not np.asarray(carry[2]).any():
                break

    params_final, _, alive, best_params, best_loss, diverged_at, _ = carry
    history = np.concatenate(history, axis=0).T if history else np.zeros((n_batch, 0))
    if validation is not None:
        chosen, score = best_val_params, best_val
        never = ~np.isfinite(best_val)
        if never.any():  # no finite held-out loss: fall back to the training-loss best
            chosen = jax.vmap(_tree_where)(jnp.asarray(never), best_params, chosen)
            score = np.where(never, np.asarray(best_loss), score)
    else:
        chosen, score = best_params, np.asarray(best_loss)
    return dict(
        params=chosen,
        score=np.asarray(score),
        history=history,
        val_history=np.stack(val_hist, axis=1) if val_hist else None,
        val_steps=np.asarray(val_steps),
        diverged_at=np.asarray(diverged_at),
        stopped_early=stopped_early,
        steps_run=done,
    )


def _shard(carry, data, validation, data_axis, devices, n_batch):
    """Place the batch axis across devices (one shard each) when the batch divides evenly."""
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) <= 1:
        return carry, data, validation
    if n_batch % len(devices):
        warnings.warn(
            f"batch of {n_batch} fits does not divide across {len(devices)} devices; running on one device. "
            f"Use a multiple of {len(devices)} restarts/subjects to use them all.",
            stacklevel=4,
        )
        return carry, data, validation
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.asarray(devices), ("batch",))
    batched = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())

    def put(tree, sharding):
        return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding) if eqx.is_array(a) else a, tree)

    *batched_part, step = carry
    carry = tuple(put(c, batched) for c in batched_part) + (jax.device_put(step, replicated),)
    data_sharding = batched if data_axis == 0 else replicated
    data = put(data, data_sharding)
    if validation is not None:
        validation = put(validation, data_sharding)
    return carry, data, validation


def _perturb(params, key, scale, n, rule_spec):
    """n copies of params; copy 0 unchanged, the others with the rule's floats jittered by scale·N(0,1)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    spec_leaves = jax.tree_util.tree_leaves(rule_spec)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, is_rule, k in zip(leaves, spec_leaves, keys):
        stacked = jnp.broadcast_to(leaf, (n,) + leaf.shape)
        if is_rule and n > 1:
            noise = scale * jax.random.normal(k, stacked.shape, leaf.dtype)
            noise = noise.at[0].set(0.0)
            stacked = stacked + noise
        out.append(stacked)
    return jax.tree_util.tree_unflatten(treedef, out)


def _check_data(model: PlasticityModel, data: TrialData, name: str):
    if not isinstance(data, TrialData):
        raise ModelError(f"{name} must be a TrialData; got {type(data).__name__}")
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


def _check_arguments(model, data, validation, restarts, key, steps, optimiser):
    """Validate what fit/fit_independent were given; returns the optimiser to use."""
    _check_data(model, data, "data")
    if validation is not None:
        _check_data(model, validation, "validation")
    if model.n_trajectories != data.n_trajectories:
        raise ModelError(
            f"model has initial weights for {model.n_trajectories} trajectories but data has {data.n_trajectories}; "
            f"build it with PlasticityModel.create(..., n_trajectories={data.n_trajectories})"
        )
    if restarts < 1:
        raise ModelError(f"restarts must be ≥ 1; got {restarts}")
    if restarts > 1 and key is None:
        raise ModelError("restarts > 1 needs a PRNG key for the jitter: pass key=jax.random.key(0)")
    if steps < 1:
        raise ModelError(f"steps must be ≥ 1; got {steps}")
    return _DEFAULT_OPTIMISER if optimiser is None else optimiser


def fit(
    model: PlasticityModel,
    data: TrialData,
    *,
    optimiser: optax.GradientTransformation | None = None,
    steps: int = 1000,
    l1: float = 0.0,
    restarts: int = 1,
    key: PRNGKeyArray | None = None,
    restart_scale: float = 0.1,
    validation: TrialData | None = None,
    patience: int | None = None,
    eval_every: int = 25,
    clip_norm: float | None = None,
    fit_rule: bool = True,
    fit_initial_weights: bool = True,
    fit_observation: bool = True,
    fit_network: bool = True,
    progress: bool = True,
    devices=None,
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
        progress: show a progress bar.
        devices: devices to shard restarts across (default: all of ``jax.devices()``).
    """
    optimiser = _check_arguments(model, data, validation, restarts, key, steps, optimiser)
    spec = trainable_filter(
        model, rule=fit_rule, initial_weights=fit_initial_weights, observation=fit_observation, network=fit_network
    )
    params, static = eqx.partition(model, spec)
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
    )
    _report_divergence(out["diverged_at"], out["score"], "restart")
    best = int(np.nanargmin(np.where(np.isfinite(out["score"]), out["score"], np.inf)))
    return FitResult(
        model=eqx.combine(_index_model(out["params"], best), frozen, static),
        restarts=eqx.combine(out["params"], _broadcast(frozen, (restarts,)), static),
        loss_history=out["history"],
        validation_history=out["val_history"],
        validation_steps=out["val_steps"],
        best_restart=np.asarray(best),
        diverged_at=out["diverged_at"],
        stopped_early=out["stopped_early"],
        steps_run=out["steps_run"],
        settings=dict(steps=steps, l1=l1, restarts=restarts, clip_norm=clip_norm, optimiser=repr(optimiser)),
    )


def fit_independent(
    model: PlasticityModel,
    data: TrialData,
    *,
    optimiser: optax.GradientTransformation | None = None,
    steps: int = 1000,
    l1: float = 0.0,
    restarts: int = 1,
    key: PRNGKeyArray | None = None,
    restart_scale: float = 0.1,
    validation: TrialData | None = None,
    patience: int | None = None,
    eval_every: int = 25,
    clip_norm: float | None = None,
    fit_rule: bool = True,
    fit_initial_weights: bool = True,
    fit_observation: bool = True,
    fit_network: bool = True,
    progress: bool = True,
    devices=None,
) -> FitResult:
    """Fit every trajectory (subject) separately, each with its own rule, as one vmapped computation.

    ``model`` is a template with one set of initial weights per trajectory of ``data``;
    subject ``s`` starts from the template's rule and its own initial weights. The batch
    of (subject × restart) fits is sharded across devices. Arguments as in :func:`fit`;
    :meth:`FitResult.subject` returns subject ``s``'s fitted model.
    """
    optimiser = _check_arguments(model, data, validation, restarts, key, steps, optimiser)
    n_subj = data.n_trajectories
    # One single-trajectory model per subject, stacked along a leading axis.
    per_subject = eqx.filter_vmap(
        lambda w0: PlasticityModel(model.rule, model.network, model.observation, jax.tree_util.tree_map(lambda a: a[None], w0))
    )(model.initial_weights)
    one = _index_model(per_subject, 0)
    spec = trainable_filter(
        one, rule=fit_rule, initial_weights=fit_initial_weights, observation=fit_observation, network=fit_network
    )
    params_s, static = eqx.partition(per_subject, spec)
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
    )
    _report_divergence(out["diverged_at"], out["score"], "fit (subject×restart)")
    score = out["score"].reshape(n_subj, restarts)
    best = np.argmin(np.where(np.isfinite(score), score, np.inf), axis=1)
    params_sr = jax.tree_util.tree_map(lambda a: a.reshape((n_subj, restarts) + a.shape[1:]), out["params"])
    best_params = jax.tree_util.tree_map(lambda a: a[np.arange(n_subj), best], params_sr)
    return FitResult(
        model=eqx.combine(best_params, frozen_s, static),
        restarts=eqx.combine(params_sr, _broadcast(frozen_s, (restarts,), axis=1), static),
        loss_history=out["history"].reshape(n_subj, restarts, -1),
        validation_history=None if out["val_history"] is None else out["val_history"].reshape(n_subj, restarts, -1),
        validation_steps=out["val_steps"],
        best_restart=best,
        diverged_at=out["diverged_at"].reshape(n_subj, restarts),
        stopped_early=out["stopped_early"],
        steps_run=out["steps_run"],
        independent=True,
        settings=dict(steps=steps, l1=l1, restarts=restarts, clip_norm=clip_norm, optimiser=repr(optimiser)),
    )


def _report_divergence(diverged_at, score, what):
    diverged_at = np.asarray(diverged_at).ravel()
    score = np.asarray(score).ravel()
    bad = np.flatnonzero(diverged_at >= 0)
    if len(bad) and not np.isfinite(score).any():
        raise FitDivergedError(
            f"every {what} produced a non-finite loss or gradient (first at step {int(diverged_at[bad].min())}) before "
            "any finite step. Lower the learning rate, start the rule's coefficients nearer zero, add an L1 penalty "
            "(l1=...), or drop high-power terms such as w^2."
        )
    if len(bad):
        warnings.warn(
            f"{len(bad)} of {len(diverged_at)} {what}s diverged (non-finite loss/gradient at steps "
            f"{sorted(set(int(s) for s in diverged_at[bad]))[:10]}); their last finite parameters were kept. "
            "Consider a lower learning rate or an L1 penalty.",
            DivergenceWarning,
            stacklevel=3,
        )


__all__ = ["fit", "fit_independent", "FitResult", "trainable_filter"]

"""The optimisation loop: vmapped optax steps in compiled chunks, with divergence guards, early stopping,
checkpoints, Ctrl-C handling and convergence diagnostics."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ._checkpoint import check_checkpoint_options, fingerprint, load_checkpoint, save_checkpoint
from ._errors import ConvergenceWarning, InterruptedWarning, ModelError, PlasticInferWarning
from ._errors import warn as _warn
from ._trial_data import TrialData


# --------------------------------------------------------------------------------------
# One compiled step
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

#: What a results file records for an optimiser the user passed: optax transformations are pairs of closures
#: whose settings (learning rate, schedule) cannot be read back, and their repr is the same for all of them.
USER_OPTIMISER = "user-supplied optax transformation (optax does not expose its settings: record them with the result)"


class DescribedOptimiser(optax.GradientTransformationExtraArgs):
    """An optax transformation with the words a result's settings record for it (optax keeps none).

    ``described(optax.adam(1e-2), "Adam 0.01")`` is accepted wherever an optimiser is (line searches such
    as ``optax.lbfgs()`` keep their extra arguments), and the result of the fit or search records
    ``"Adam 0.01"`` instead of :data:`USER_OPTIMISER`. Made by :func:`described`, which sets ``description``.
    """


def described(optimiser, description: str) -> DescribedOptimiser:
    """``optimiser`` carrying ``description`` into the settings a result records."""
    tx = optax.with_extra_args_support(optimiser)
    out = DescribedOptimiser(tx.init, tx.update)
    out.description = str(description)
    return out


def describe_optimiser(optimiser, default, default_text: str) -> str:
    """What a result records for ``optimiser``: ``default_text`` for the default, a described optimiser's own
    words, else :data:`USER_OPTIMISER`."""
    if optimiser is None or optimiser is default:
        return default_text
    return optimiser.description if isinstance(optimiser, DescribedOptimiser) else USER_OPTIMISER


@functools.lru_cache(maxsize=32)
def _prepared_optimiser(optimiser, clip_norm):
    """Clip (optionally) and accept extra args; cached so the same optimiser object keeps its identity."""
    if clip_norm is not None:
        optimiser = optax.chain(optax.clip_by_global_norm(clip_norm), optimiser)
    return optax.with_extra_args_support(optimiser)


DIVERGENCE_POLICIES = ("stop", "step_back")
CONVERGENCE_TOL = 1e-4  # the default tolerance of diagnose() for fits, searches and meta-learning


def check_divergence(divergence: str) -> str:
    """``divergence`` if it names a policy of :func:`guarded_update`, else a :class:`ModelError` listing them."""
    if divergence not in DIVERGENCE_POLICIES:
        raise ModelError(f"divergence must be one of {DIVERGENCE_POLICIES}; got {divergence!r}")
    return divergence


def guarded_update(params, opt_state, loss, grads, alive, last_ok, *, optimiser, divergence: str, value_fn=None):
    """One optax update with the divergence guard that fit, discovery and meta-learning share.

    A non-finite loss or gradient never reaches the optimiser (the gradient is zeroed, the update
    discarded), and neither does an update that makes the parameters non-finite. Then:

    - ``"stop"``: the member stops for good (``alive`` turns False; its parameters and optimiser state
      stay where they were). What ``fit`` and ``meta_learn`` do; the best finite iterate is kept by them.
    - ``"step_back"``: the member steps halfway back towards ``last_ok``, the last parameters whose
      loss was finite, and goes on (a backtracking that ends inside the finite region). What the
      gradient search of discovery does: its resampled episodes make a rare non-finite draw recoverable.

    ``value_fn`` (optional) is passed to optimisers that take extra arguments (optax line searches), with
    the loss and gradient. Returns ``(params, opt_state, alive, last_ok, recorded_loss, discarded)``:
    the loss is NaN where it was non-finite (or the member had stopped); ``discarded`` marks steps
    whose update was not applied.
    """
    check_divergence(divergence)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    grads = _tree_where(finite, grads, jax.tree_util.tree_map(jnp.zeros_like, grads))
    extra = {} if value_fn is None else dict(value=loss, grad=grads, value_fn=value_fn)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 step counts (and L-BFGS int64s) with floats
        updates, new_opt = optimiser.update(grads, opt_state, params, **extra)
    new_params = eqx.apply_updates(params, updates)
    new_last_ok = None if last_ok is None else _tree_where(finite & alive, params, last_ok)
    if divergence == "stop":
        ok = finite & alive
        applied = ok & _all_finite(new_params)
        return (
            _tree_where(applied, new_params, params), _tree_where(ok, new_opt, opt_state), ok, new_last_ok,
            jnp.where(ok, loss, jnp.nan), ~applied,
        )  # fmt: skip
    ok = finite & _all_finite(new_params)  # "step_back"
    back = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), params, last_ok)
    return (
        _tree_where(ok, new_params, back), _tree_where(ok, new_opt, opt_state), alive,
        new_last_ok, jnp.where(finite, loss, jnp.nan), ~ok,
    )  # fmt: skip


class Steps(NamedTuple):
    """The state of one optimisation, or of a batch of them (leading axis), between compiled chunks."""

    params: Any
    opt_state: Any
    alive: jax.Array  # False once a member has stopped (the "stop" policy)
    last_ok: Any  # the last parameters whose loss was finite (None: not tracked)
    best_params: Any  # the parameters with the lowest finite loss so far
    best_loss: jax.Array
    diverged_at: jax.Array  # the step at which a member stopped, −1 if it has not
    skipped: jax.Array  # steps whose update was discarded
    step: jax.Array  # steps run (a scalar: every member runs the same steps)


def start_steps(params, optimiser, *, batched: bool, track_last_ok: bool = False) -> Steps:
    """The state before the first step: ``params`` (with a leading batch axis if ``batched``)."""
    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS mixes int32/int64 under x64
        opt_state = (jax.vmap(optimiser.init) if batched else optimiser.init)(params)
    shape = (jax.tree_util.tree_leaves(params)[0].shape[0],) if batched else ()
    index = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
    dtype = jnp.result_type(float)  # the widest float: losses are recorded (and compared) without rounding
    return Steps(
        params, opt_state, jnp.ones(shape, bool), params if track_last_ok else None, params,
        jnp.full(shape, jnp.inf, dtype), jnp.full(shape, -1, index), jnp.zeros(shape, index), jnp.asarray(0, index),
    )  # fmt: skip


def _member_step(params, opt_state, alive, last_ok, data, x, loss, grads, *, loss_fn, optimiser, divergence):
    value_fn = lambda p: loss_fn(p, data, x)  # noqa: E731
    return guarded_update(
        params, opt_state, loss, grads, alive, last_ok, optimiser=optimiser, divergence=divergence, value_fn=value_fn
    )


def _values_and_grads(loss_fn, params, opt_state, data, x, batched, data_axis):
    """The loss and gradient at ``params``, of every member of a batch if ``batched``.

    A line search (optax's L-BFGS) already evaluated them at the point it accepted and stores them in its
    state: those are reused. They are computed only where the stored value is not finite (before the first
    step), behind a condition on the whole batch: a condition inside ``vmap`` becomes a select that
    computes both branches, which cost every batched L-BFGS step one more loss and gradient.
    """
    fresh = jax.value_and_grad(loss_fn)
    if batched:
        fresh = jax.vmap(fresh, in_axes=(0, data_axis, None))
    if not _has_linesearch(opt_state):
        return fresh(params, data, x)
    stored = (optax.tree_utils.tree_get(opt_state, "value"), optax.tree_utils.tree_get(opt_state, "grad"))
    valid = jnp.isfinite(stored[0])

    def recompute(stored):
        new = fresh(params, data, x)
        if batched:
            return jax.vmap(_tree_where)(valid, stored, new)
        return new

    return jax.lax.cond(jnp.all(valid), lambda s: s, recompute, stored)


@eqx.filter_jit
def run_steps(loss_fn, state: Steps, data, xs, optimiser, divergence, length, n, data_axis=None, project=None):
    """``n`` guarded optimisation steps (:func:`guarded_update`) in one compiled scan: the loop of every fit,
    search and meta-learning run.

    ``loss_fn(params, data, x)`` is the scalar loss: a module-level function bound with
    :class:`equinox.Partial` (its arrays are traced, the rest is static), so a second call with the same
    shapes and settings compiles nothing. ``data`` is vmapped along ``data_axis`` when ``state`` is a batch
    (``None``: shared by every member); ``xs`` (or ``None``) has one entry per step along its leading axis
    (e.g. PRNG keys). The scan has the static ``length`` (≥ n) and its steps from ``n`` (traced) on do
    nothing, so every chunk of a run, the last, shorter one included, is one compiled program.
    ``project`` (optional) maps the parameters after every update (e.g. zeroing pruned terms). Along the
    way the best finite parameters, the step at which a member stopped and the discarded steps are kept
    in ``state``. Returns the new state and the losses, (length,) or (length, batch), NaN where a step
    was not taken or its loss was non-finite.
    """
    optimiser = optax.with_extra_args_support(optimiser)  # line searches are passed the loss and its function
    batched = state.alive.ndim == 1
    step = functools.partial(_member_step, loss_fn=loss_fn, optimiser=optimiser, divergence=divergence)
    where = _tree_where
    if batched:
        step = jax.vmap(step, in_axes=(0, 0, 0, 0, data_axis, None, 0, 0))
        where = jax.vmap(_tree_where)

    def body(s, tx):
        t, x = tx
        loss, grads = _values_and_grads(loss_fn, s.params, s.opt_state, data, x, batched, data_axis)
        params, opt_state, alive, last_ok, loss, discarded = step(
            s.params, s.opt_state, s.alive, s.last_ok, data, x, loss, grads
        )
        if project is not None:
            params = project(params)
        loss = loss.astype(s.best_loss.dtype)
        better = alive & (loss < s.best_loss)  # loss is NaN once a member has stopped
        new = Steps(
            params, opt_state, alive, last_ok, where(better, s.params, s.best_params), jnp.where(better, loss, s.best_loss),
            jnp.where(s.alive & ~alive, t, s.diverged_at), s.skipped + discarded.astype(s.skipped.dtype), s.step,
        )  # fmt: skip
        return new, loss

    def idle(s, tx):
        return s, jnp.full(s.alive.shape, jnp.nan, dtype=s.best_loss.dtype)

    ts = state.step + jnp.arange(length, dtype=state.step.dtype)
    s, losses = jax.lax.scan(lambda s, tx: jax.lax.cond(tx[0] < state.step + n, body, idle, s, tx), state, (ts, xs))
    return s._replace(step=state.step + n), losses


def _fit_loss(params, data, x, *, static, l1):
    trials, frozen = data
    return _make_objective(static, l1)(params, trials, frozen)


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
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    identity=(),
):
    """Run ``steps`` of ``optimiser`` on a batch of parameter sets (leading axis), vmapped.

    The jitted pieces are module-level and take the model's static structure, the
    optimiser and the penalty as static arguments, so a second fit of a model with the
    same structure (another hypothesis' train/all-trials fit, another dataset of the
    same shape) reuses the compiled code.

    Steps run in compiled chunks that end at multiples of ``eval_every`` and of
    ``checkpoint_every`` (with a checkpoint) and at ``steps``. With ``checkpoint``, the whole
    state is written there every ``checkpoint_every`` steps, at the end and on Ctrl-C;
    ``resume`` continues from it. ``identity`` (extra pytrees: the starting point, settings)
    enters the checkpoint's fingerprint. A ``KeyboardInterrupt`` between or during chunks
    ends the loop with the state of the last completed chunk (``interrupted`` in the output).
    """
    check_checkpoint_options(checkpoint, checkpoint_every, resume)
    if eval_every < 1:
        raise ModelError(f"eval_every must be ≥ 1; got {eval_every}")
    optimiser = _prepared_optimiser(optimiser, clip_norm)
    n_batch = jax.tree_util.tree_leaves(params_b)[0].shape[0]
    carry = start_steps(params_b, optimiser, batched=True)
    loss_fn = eqx.Partial(_fit_loss, static=static, l1=l1)

    history = []
    val_hist, val_steps = [], []
    best_val = np.full(n_batch, np.inf)
    best_val_params = params_b
    since_improved = 0
    stopped_early = False
    done = 0
    fp = None
    if checkpoint is not None:
        fp = fingerprint(params_b, frozen, static, data, validation, l1, clip_norm, optimiser, identity)
        if resume and Path(checkpoint).exists():
            trees, header = load_checkpoint(checkpoint, {"carry": carry, "best_val_params": best_val_params}, fp)
            carry, best_val_params = trees["carry"], trees["best_val_params"]
            done = int(header["done"])
            since_improved, stopped_early = int(header["since_improved"]), bool(header["stopped_early"])
            history = [np.asarray(trees["history"][0]).T] if done else []
            if header["has_validation"]:
                val_hist = list(np.asarray(trees["val_history"][0]).T)
                val_steps = list(np.asarray(trees["val_steps"][0]))
                best_val = np.asarray(trees["best_val"][0])

    def save(done):
        if checkpoint is None:
            return
        hist = np.concatenate(history, axis=0).T if history else np.zeros((n_batch, 0))
        trees = {"carry": carry, "best_val_params": best_val_params, "history": [hist]}
        if validation is not None:
            trees.update(
                val_history=[np.stack(val_hist, axis=1) if val_hist else np.zeros((n_batch, 0))],
                val_steps=[np.asarray(val_steps, dtype=np.int64)],
                best_val=[best_val],
            )
        header = dict(
            fingerprint=fp, done=done, since_improved=since_improved, stopped_early=stopped_early,
            has_validation=validation is not None,
        )
        save_checkpoint(checkpoint, trees, header)

    carry, (data, frozen), validation = _shard(carry, (data, frozen), validation, data_axis, devices, n_batch)

    from tqdm.auto import tqdm

    from ._progress import show_progress

    from . import _interrupt

    interrupted = False
    finished = stopped_early or (done > 0 and not np.asarray(carry.alive).any())
    # every chunk is at most this long: one compiled program per fit, whatever the remainder of steps
    length = min(eval_every, checkpoint_every if checkpoint is not None else eval_every, steps)
    with tqdm(total=steps, initial=min(done, steps), desc=desc, disable=not show_progress(progress), leave=False) as bar:
        while done < steps and not finished:
            n = min(eval_every - done % eval_every, steps - done)
            if checkpoint is not None:
                n = min(n, checkpoint_every - done % checkpoint_every)
            try:
                new_carry, losses = run_steps(
                    loss_fn, carry, (data, frozen), None, optimiser, "stop", length, jnp.asarray(n), data_axis
                )
                losses = np.asarray(losses)[:n]
            except KeyboardInterrupt:
                interrupted = True
                break
            carry = new_carry
            if _interrupt.count():  # a Ctrl-C on the command line whose KeyboardInterrupt was swallowed elsewhere
                interrupted = True  # stop after this chunk's bookkeeping below: its steps are kept
            history.append(losses)
            done += n
            bar.update(n)
            finite_losses = losses[-1][np.isfinite(losses[-1])]
            postfix = {"loss": f"{finite_losses.min():.4g}" if finite_losses.size else "nan"}
            if validation is not None and (done % eval_every == 0 or done == steps):
                v = np.asarray(_validation_loss(carry.params, validation, frozen, static, l1, data_axis))
                alive_np = np.asarray(carry.alive)
                v = np.where(alive_np & np.isfinite(v), v, np.inf)
                improved = v < best_val - 1e-12
                best_val = np.where(improved, v, best_val)
                best_val_params = jax.vmap(_tree_where)(jnp.asarray(improved), carry.params, best_val_params)
                since_improved = 0 if improved.any() else since_improved + done - (val_steps[-1] if val_steps else 0)
                val_hist.append(np.where(np.isfinite(v), v, np.nan))
                val_steps.append(done)
                postfix["held-out"] = f"{np.min(best_val):.4g}"
                if patience is not None and since_improved >= patience:
                    stopped_early = finished = True
            bar.set_postfix(postfix)
            if not np.asarray(carry.alive).any():
                finished = True
            if checkpoint is not None and (done % checkpoint_every == 0 or done == steps or finished):
                save(done)
            if interrupted:
                break
    if interrupted:
        save(done)
        _warn(
            f"{desc} interrupted at step {done} of {steps}; returning the best parameters so far"
            + (f" (state saved to {checkpoint}; resume=True continues it)" if checkpoint is not None else ""),
            InterruptedWarning,
        )

    best_params, best_loss, diverged_at = carry.best_params, carry.best_loss, carry.diverged_at
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
        val_steps=np.asarray(val_steps, dtype=int),
        diverged_at=np.asarray(diverged_at),
        stopped_early=stopped_early,
        steps_run=done,
        interrupted=interrupted,
    )


# --------------------------------------------------------------------------------------
# Convergence diagnostics
# --------------------------------------------------------------------------------------


def _flat_noisy(h: np.ndarray, k: int) -> bool:
    """No window of ``k`` steps has a mean significantly (three standard errors) below the first window's.

    The pointwise test (no step below the first) misreads a noisy loss whose first draw happened to be
    low as one that never moved; window means with their standard errors do not. A loss that fell steeply
    *within* the first window (400 → 0.01 in 30 steps) gives that window a standard error larger than the
    whole fall; a rank test (Mann–Whitney, p < 10⁻⁴: every value of the best window below nearly every
    value of the first) tells that fall from noise as well. Windows of fewer than 8 steps (a search of
    under 80 steps) are too small for that rank test: there the first value is compared with the best
    window, three standard deviations of the later windows' noise apart, and the rank test uses windows of 8.
    """
    windows = h[: (h.size // k) * k].reshape(-1, k)
    means = windows.mean(axis=1)
    j = int(np.argmin(means))
    if j == 0:
        return True
    se = float(np.sqrt((np.var(windows[0], ddof=1) + np.var(windows[j], ddof=1)) / k)) if k > 1 else 0.0
    if means[0] - means[j] > max(3.0 * se, 1e-12 * max(1.0, abs(means[0]))):
        return False
    if k < 8:  # too few values per window for the rank test to reach 10⁻⁴ (a short search)
        # a fall within the first window: the first value against the best window, with the noise taken from
        # the windows after the first (their spread, not the fall's)
        if k > 1 and len(windows) > 1:
            sd = float(np.sqrt(np.mean(np.var(windows[1:], axis=1, ddof=1))))
            if h[0] - means[j] > 3.0 * sd * np.sqrt(1.0 + 1.0 / k):
                return False
        if h.size < 16:
            return True
        k = 8
        windows = h[: (h.size // k) * k].reshape(-1, k)
        j = int(np.argmin(windows.mean(axis=1)))
        if j == 0:
            return True
    from scipy.stats import mannwhitneyu

    return bool(mannwhitneyu(windows[0], windows[j], alternative="greater").pvalue >= 1e-4)


def never_moved(history) -> bool:
    """Whether a finite loss history never fell below its first value (beyond rounding)."""
    h = np.asarray(history, dtype=float)
    return h.size > 1 and bool(h[0] - np.nanmin(h) <= 1e-12 * max(1.0, abs(h[0])))


def diagnose(history, *, tol: float, noisy: bool = False) -> str:
    """Why one loss history has not converged ("" if it has).

    - *diverged*: the loss or gradient turned non-finite (the best finite parameters are kept);
    - *flat*: the loss never moved below its first value (a learning rate so large that every
      step was rejected, or one so small that nothing happened); with ``noisy``, no window of 10 %
      of the steps has a mean three standard errors below the first window's;
    - *still falling*: over the last 10 % of steps the loss fell by more than ``tol`` relative
      to its scale (the larger of |final loss| and the total decrease).

    With ``noisy`` (a stochastic objective: episodes or inputs resampled at every step), the mean of
    the last 10 % of steps is compared with the mean of the 10 % before, and the fall must also exceed
    three times its standard error, so noise alone is rarely read as progress (0.8 % of 2,000 pure-noise
    histories of 300 steps); NaNs followed by finite losses (steps the guard stepped back from) are left
    out, NaNs to the end mean the run stopped there.
    """
    h = np.asarray(history, dtype=float)
    if h.size < 2:
        return ""
    bad = ~np.isfinite(h)
    if noisy and bad.any():
        if bad[-1]:
            t = int(np.flatnonzero(~bad)[-1]) + 1 if (~bad).any() else 0
            return f"the loss turned non-finite at step {t} and the run stopped there; its last finite parameters are returned"
        h = h[~bad]  # steps the guard stepped back from
    elif bad.any():
        t = int(np.argmax(bad))
        return f"the loss or gradient turned non-finite at step {t}; the best parameters before it are returned"
    first, last = h[0], h[-1]
    k = max(1, int(np.ceil(0.1 * h.size)))
    if noisy and h.size >= 4:
        k = min(k, h.size // 2)
        if _flat_noisy(h, k):
            return (
                f"the loss never moved detectably: no stretch of {k} steps has a mean below that of the first {k} "
                f"({np.mean(h[:k]):.6g}) by more than three standard errors, in {h.size} steps (too few steps for the "
                "noise, or a learning rate far too large or too small?)"
            )
    elif never_moved(h):
        return f"the loss never moved from {first:.6g} in {h.size} steps (learning rate far too large or too small?)"
    if noisy and h.size >= 4:
        recent, before = h[-k:], h[-2 * k : -k]
        last = float(np.mean(recent))
        drop = float(np.mean(before)) - last
        noise = 3.0 * float(np.sqrt(np.var(recent, ddof=1) / k + np.var(before, ddof=1) / k)) if k > 1 else 0.0
        scale = max(abs(last), first - last, 1e-300)
        if drop > max(tol * scale, noise):
            against = (f"more than {tol:g} and than three times its standard error" if k > 1 else
                       f"more than {tol:g}; too few steps to estimate the noise, so this may be noise")
            return (
                f"the loss was still falling at the step limit (mean over the last {k} of {h.size} steps "
                f"{drop / scale:.2g} lower, relative, than over the {k} before; {against}); run more steps"
            )
        return ""
    drop = h[-k - 1] - last
    scale = max(abs(last), first - last, 1e-300)
    if drop > tol * scale:
        return (
            f"the loss was still falling at the step limit ({drop / scale:.2g} relative decrease over the last "
            f"{k} of {h.size} steps > {tol:g}); run more steps"
        )
    return ""


class _FitContext(NamedTuple):
    what: str
    subjects: tuple[str, ...] | None


_FIT_CONTEXT: contextvars.ContextVar[_FitContext | None] = contextvars.ContextVar("plasticinfer_fit_context", default=None)


@contextlib.contextmanager
def fit_context(what: str, subjects=None, *, within: bool = False):
    """Fits run inside this say which analysis they belong to: their convergence warnings start with ``what``
    (e.g. a comparison's hypothesis and fold), and name subjects by ``subjects`` (labels, by position) where
    the data they are given carry none (a :class:`TrialData`). ``within``: a part of the enclosing context's
    analysis (``"<its what>, <what>"``; its subjects are not these fits' subjects unless given again)."""
    outer = _FIT_CONTEXT.get()
    if within and outer is not None:
        what = f"{outer.what}, {what}"
    token = _FIT_CONTEXT.set(_FitContext(what, None if subjects is None else tuple(str(s) for s in subjects)))
    try:
        yield
    finally:
        _FIT_CONTEXT.reset(token)


def subject_label(s: int, subjects=None) -> str:
    """How messages name the subject at position ``s``: by its label (the data's, else the :func:`fit_context`'s)."""
    context = _FIT_CONTEXT.get()
    names = subjects if subjects is not None else (context.subjects if context is not None else None)
    return f"subject {names[s]!r}" if names is not None and s < len(names) else f"subject {s}"


def convergence(histories, labels, *, tol: float, interrupted: bool, stopped_early: bool, steps_run: int):
    """(converged, message, converged per history) over the chosen histories (one per subject), with a
    :class:`ConvergenceWarning` that starts with the :func:`fit_context`'s name, if any."""
    n = len(labels)
    if interrupted:
        return False, f"interrupted at step {steps_run}", np.zeros(n, bool)
    if stopped_early:
        return True, "", np.ones(n, bool)
    messages = [diagnose(h, tol=tol) for h in histories]
    problems = [(label, m) for label, m in zip(labels, messages) if m]
    flags = np.array([not m for m in messages], bool)
    if not problems:
        return True, "", flags
    if len(labels) == 1:
        message = problems[0][1]
    else:
        message = f"{len(problems)} of {len(labels)} {labels[0].split()[0]}s not converged; " + "; ".join(
            f"{label}: {m}" for label, m in problems[:3]
        )
    context = _FIT_CONTEXT.get()
    _warn(message if context is None else f"{context.what}: {message}", ConvergenceWarning)
    return False, message, flags


def _shard(carry, data, validation, data_axis, devices, n_batch):
    """Place the batch axis across devices (one shard each) when the batch divides evenly."""
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) <= 1:
        return carry, data, validation
    if n_batch % len(devices):
        _warn(
            f"batch of {n_batch} fits does not divide across {len(devices)} devices; running on one device. "
            f"Use a multiple of {len(devices)} restarts/subjects to use them all.",
            PlasticInferWarning,
        )
        return carry, data, validation
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.asarray(devices), ("batch",))
    batched = NamedSharding(mesh, P("batch"))
    replicated = NamedSharding(mesh, P())

    def put(tree, sharding):
        return jax.tree_util.tree_map(lambda a: jax.device_put(a, sharding) if eqx.is_array(a) else a, tree)

    carry = put(carry._replace(step=None), batched)._replace(step=jax.device_put(carry.step, replicated))
    data_sharding = batched if data_axis == 0 else replicated
    data = put(data, data_sharding)
    if validation is not None:
        validation = put(validation, data_sharding)
    return carry, data, validation

"""Meta-learning a local rule's coefficients by differentiating through whole online episodes.

meta-loss(θ) = mean over a meta-batch of episodes of the query cross-entropy after online learning
with rule θ, plus l1·Σ|θ_k|. Each step draws fresh episodes and fresh networks (fresh random
feedback), so the rule must work for any draw, not for one network.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from .._errors import ConvergenceWarning, DivergenceWarning, FitDivergedError, ModelError
from .._errors import warn as _warn
from .._fit import check_count, check_key
from .._optimise import CONVERGENCE_TOL, diagnose, run_steps, start_steps
from ._episodes import DigitsEpisodes
from ._learner import check_compatible, run_episodes
from ._network import FeedbackNetwork
from ._terms import LocalRule


@functools.lru_cache(maxsize=16)
def default_optimiser(learning_rate: float = 1e-2) -> optax.GradientTransformation:
    """Adam with the meta-gradient clipped to global norm 1.

    Cached: the same rate returns the same (stateless) object, so compiled meta-steps are reused.
    """
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))


def meta_loss(
    rule: LocalRule,
    network: FeedbackNetwork,
    episodes: DigitsEpisodes,
    keys: PRNGKeyArray,
    l1: float = 0.0,
    *,
    checkpoint: bool | int = True,
) -> tuple[Array, Array]:
    """(query cross-entropy + l1·|θ|₁, query cross-entropy), averaged over one episode per key."""
    out = run_episodes(rule, network, episodes, keys, checkpoint=checkpoint)
    ce = jnp.mean(out.query_loss)
    return ce + l1 * rule.astype(ce.dtype).penalty(), ce


@dataclass
class MetaLearnResult:
    """Meta-learned rule (best held-aside meta-loss among finite iterates) and the run's history.

    Attributes:
        rule: coefficients with the lowest validation meta-loss (episodes from the meta-training classes
            drawn with a key of their own; never the evaluation classes).
        final_rule: coefficients after the last finite step.
        loss_history: training meta-loss per step (NaN from a divergence on).
        validation_history / validation_steps: validation meta-loss and the step count at which it was
            taken (as ``FitResult.validation_history`` / ``validation_steps``).
        coeff_history: coefficients at each validation point, (n_validations, terms).
        diverged_at: the first step with a non-finite loss or meta-gradient; −1: never (as on
            :class:`~plasticinfer.FitResult`).
        wall_time: seconds spent in the meta-training loop (compilation included); NaN for a loaded result
            (files hold no wall times: the same run saves the same bytes).
        converged / convergence_message: whether the meta-loss had settled at the step limit, and why
            not (the diagnostics every fit uses, for a noisy loss; a ``ConvergenceWarning`` when not).
    """

    rule: LocalRule
    final_rule: LocalRule
    loss_history: np.ndarray
    validation_history: np.ndarray
    validation_steps: np.ndarray
    coeff_history: np.ndarray
    diverged_at: int
    steps_run: int
    wall_time: float
    settings: dict = field(default_factory=dict)
    converged: bool = True
    convergence_message: str = ""

    def equation(self, threshold: float = 0.02) -> str:
        return self.rule.equation(threshold=threshold)

    def to_dataset(self, annotations=None):
        """The content of the file :meth:`save` writes (format ``plasticinfer-metalearn/1``): ``rule.coeffs`` and
        ``final_rule.coeffs`` by ``term`` (with ``alias``), the rules' terms and η (``rule_structure``,
        ``final_rule_structure``), ``loss_history`` (step), ``validation_history`` and ``validation_step``
        (validation), ``coeff_history`` (validation, term); attributes ``diverged_at``, ``steps_run``,
        ``settings``, ``converged``, ``convergence_message``, ``equation``. ``annotations``
        (a report's extra variables) are merged in; :meth:`load` ignores them."""
        import xarray as xr

        from .._results_io import pytree_variables, tagged, to_json

        variables, attrs = {}, {}
        for name, rule in (("rule", self.rule), ("final_rule", self.final_rule)):
            v, a = pytree_variables(rule, name)
            variables.update({k: x.rename({x.dims[0]: "term"}) if k == f"{name}.coeffs" else x for k, x in v.items()})
            attrs.update(a)
        ds = xr.Dataset(
            {
                **variables,
                "loss_history": ("step", np.asarray(self.loss_history)),
                "validation_history": ("validation", np.asarray(self.validation_history)),
                "coeff_history": (("validation", "term"), np.asarray(self.coeff_history)),
            },
            coords={
                "term": [t.name for t in self.rule.terms],
                "alias": ("term", [t.alias for t in self.rule.terms]),
                "step": np.arange(1, np.size(self.loss_history) + 1),
                "validation_step": ("validation", np.asarray(self.validation_steps)),
            },
            attrs={
                **attrs,
                "equation": self.rule.equation(),
                "diverged_at": int(self.diverged_at),
                "steps_run": int(self.steps_run),
                "settings": to_json(self.settings),
                "converged": int(self.converged),
                "convergence_message": self.convergence_message,
            },
        )
        return tagged(ds, "metalearn", annotations)

    def save(self, path, annotations=None) -> Path:
        """Write the result to one self-describing netCDF file, atomically (see :meth:`to_dataset`);
        :meth:`load` reads it back without a template."""
        from .._io import write_netcdf

        return write_netcdf(self.to_dataset(annotations), path)

    @classmethod
    def load(cls, path) -> "MetaLearnResult":
        """Read a file written by :meth:`save` (or the ``results.nc`` of a feedback-alignment report); any other
        file is refused with one :class:`~plasticinfer.DataError` naming the kind it holds. Rules whose terms
        are not named constants of an importable module (a term defined in a script) cannot be rebuilt."""
        from .._results_io import read_pytree, read_result, reading

        path = Path(path)
        ds = read_result(path, "metalearn")
        with reading(path, "meta-learning result"):
            return cls(
                rule=read_pytree(ds, "rule", path),
                final_rule=read_pytree(ds, "final_rule", path),
                loss_history=ds["loss_history"].values,
                validation_history=ds["validation_history"].values,
                validation_steps=ds["validation_step"].values,
                coeff_history=ds["coeff_history"].values,
                diverged_at=int(ds.attrs["diverged_at"]),
                steps_run=int(ds.attrs["steps_run"]),
                wall_time=float(ds.attrs.get("wall_time_s", np.nan)),
                settings=json.loads(ds.attrs["settings"]),
                converged=bool(ds.attrs["converged"]),
                convergence_message=str(ds.attrs["convergence_message"]),
            )


def _objective(params, static, network, episodes, keys, l1, checkpoint):
    return meta_loss(eqx.combine(params, static), network, episodes, keys, l1, checkpoint=checkpoint)


@eqx.filter_jit
def _validate(params, static, network, episodes, keys, l1):
    return _objective(params, static, network, episodes, keys, l1, False)[0]


def _meta_step_loss(params, _data, keys, *, static, network, episodes, l1, checkpoint):
    return _objective(params, static, network, episodes, keys, l1, checkpoint)[0]


@eqx.filter_jit
def _mean_query_loss(rule, network, episodes, keys):
    return jnp.mean(run_episodes(rule, network, episodes, keys, checkpoint=False).query_loss)


def meta_learn(
    rule: LocalRule,
    network: FeedbackNetwork,
    episodes: DigitsEpisodes,
    *,
    key: PRNGKeyArray,
    optimiser: optax.GradientTransformation | None = None,
    steps: int = 300,
    meta_batch: int = 16,
    l1: float = 0.03,
    validation_episodes: int = 64,
    eval_every: int = 25,
    checkpoint: bool | int = True,
    progress: bool = True,
) -> MetaLearnResult:
    """Meta-learn ``rule.coeffs`` so that ``network`` learns ``episodes`` online, one example at a time.

    Args:
        rule: the starting rule (its terms and η are kept; only the coefficients change).
        network: the learner, e.g. ``FeedbackNetwork((64, 100, 80, 5), RandomFeedback())``.
        episodes: the meta-training episode sampler (e.g. the first value of :func:`digits_split`).
        key: the root key; training episodes and the validation episodes are split from it.
        optimiser: an optax transformation (default :func:`default_optimiser`: clipped Adam, 1e-2).
        steps: meta-gradient steps. meta_batch: episodes per step (vmapped).
        l1: weight of Σ|θ_k| in the meta-loss.
        validation_episodes: fixed episodes (from ``episodes``' classes) scored every ``eval_every`` steps
            to choose the returned coefficients.
        checkpoint: rematerialise every online step on the backward pass (less memory; see ``run_episode``).
        progress: show a tqdm bar (only on a terminal or in Jupyter).

    Raises:
        FitDivergedError: if not even the starting coefficients give a finite meta-loss.
    """
    if not isinstance(rule, LocalRule):
        raise ModelError(
            f"meta_learn needs a pi.metalearn.LocalRule (e.g. LocalRule.from_terms({{'pseudo_gradient': 1.0}})); "
            f"got {type(rule).__name__}"
        )
    if key is None:
        raise ModelError("meta_learn needs key=jax.random.key(0) (or another seed): it draws the training episodes")
    check_key(key, "meta_learn")
    check_compatible(network, episodes)
    if steps < 1 or meta_batch < 1 or eval_every < 1 or validation_episodes < 1:
        raise ModelError("steps, meta_batch, eval_every and validation_episodes must all be ≥ 1")
    if l1 < 0:
        raise ModelError(f"l1 must be ≥ 0, got {l1}")
    optimiser = default_optimiser(1e-2) if optimiser is None else optimiser
    rule = rule.astype(episodes.dtype)
    params, static = eqx.partition(rule, eqx.is_inexact_array)
    k_train, k_val = jax.random.split(key)
    val_keys = jax.random.split(k_val, validation_episodes)

    from tqdm.auto import tqdm

    from .._progress import show_progress

    start = time.perf_counter()
    best_val = float(_validate(params, static, network, episodes, val_keys, l1))
    if not np.isfinite(best_val):
        raise FitDivergedError(
            f"the starting rule {rule.equation()} already gives a non-finite meta-loss; "
            "lower its coefficients or the network's learning rate η"
        )
    best_params = params
    val_hist, val_steps, coeff_hist = [best_val], [0], [np.asarray(params.coeffs)]
    state = start_steps(params, optimiser, batched=False)
    loss_fn = eqx.Partial(_meta_step_loss, static=static, network=network, episodes=episodes, l1=l1, checkpoint=checkpoint)
    length = min(eval_every, steps)
    history: list[np.ndarray] = []
    with tqdm(total=steps, desc="meta-learning", disable=not show_progress(progress), leave=False) as bar:
        while (done := int(state.step)) < steps:
            n = min(eval_every, steps - done)
            k_train, sub = jax.random.split(k_train)
            keys = jax.random.split(sub, (length, meta_batch))
            state, losses = run_steps(loss_fn, state, None, keys, optimiser, "stop", length, jnp.asarray(n))
            losses = np.asarray(losses)[:n]
            history.append(losses)
            bar.update(n)
            if not bool(state.alive):
                break
            params = state.params
            v = float(_validate(params, static, network, episodes, val_keys, l1))
            val_hist.append(v)
            val_steps.append(done + n)
            coeff_hist.append(np.asarray(params.coeffs))
            if np.isfinite(v) and v < best_val:
                best_val, best_params = v, params
            bar.set_postfix({"meta-loss": f"{losses[-1]:.4f}", "validation": f"{v:.4f}", "best": f"{best_val:.4f}"})
    done = int(state.step)
    diverged_at = int(state.diverged_at)
    params = state.params
    wall = time.perf_counter() - start
    if diverged_at >= 0:
        _warn(
            f"meta-learning stopped at step {diverged_at}: non-finite meta-loss or meta-gradient; "
            f"returning the best finite coefficients (validation meta-loss {best_val:.4g})",
            DivergenceWarning,
        )
    loss_history = np.concatenate(history) if history else np.zeros(0)
    message = diagnose(loss_history, tol=CONVERGENCE_TOL, noisy=True)  # every step draws new episodes: a noisy loss
    if message and diverged_at < 0:
        _warn(f"meta-learning has not converged: {message}", ConvergenceWarning)
    return MetaLearnResult(
        rule=eqx.combine(best_params, static),
        final_rule=eqx.combine(params, static),
        loss_history=loss_history,
        validation_history=np.asarray(val_hist),
        validation_steps=np.asarray(val_steps),
        coeff_history=np.stack(coeff_hist),
        diverged_at=diverged_at,
        steps_run=done,
        wall_time=wall,
        settings=dict(steps=steps, meta_batch=meta_batch, l1=l1, validation_episodes=validation_episodes, eval_every=eval_every),
        converged=not message,
        convergence_message=message,
    )


def tune_scale(
    rule: LocalRule,
    network: FeedbackNetwork,
    episodes: DigitsEpisodes,
    *,
    key: PRNGKeyArray,
    scales: Sequence[float] = tuple(np.geomspace(1 / 8, 8, 19)),
    n_episodes: int = 128,
) -> tuple[LocalRule, dict[float, float]]:
    """Rescale ``rule.coeffs`` by the factor in ``scales`` with the lowest mean query cross-entropy.

    The fair way to set a baseline's learning rate: every scale is scored on the same ``n_episodes``
    episodes (and networks) drawn from ``episodes`` with ``key``. Returns the rescaled rule and
    {scale: mean query cross-entropy}.
    """
    check_compatible(network, episodes)
    rule = rule.astype(episodes.dtype)
    if len(scales) == 0 or any(not float(s) > 0 for s in scales):
        raise ModelError(f"tune_scale needs at least one positive scale; got {tuple(scales)}")
    check_count(n_episodes, "tune_scale: n_episodes (episodes that score each scale)")
    keys = jax.random.split(key, n_episodes)
    table = {float(s): float(_mean_query_loss(rule.with_coeffs(rule.coeffs * float(s)), network, episodes, keys)) for s in scales}
    finite = {s: v for s, v in table.items() if np.isfinite(v)}
    if not finite:
        raise FitDivergedError(f"every scale of {rule.equation()} gives a non-finite query loss")
    best = min(finite, key=finite.get)
    return rule.with_coeffs(rule.coeffs * best), table

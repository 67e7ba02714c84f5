"""A tiny recurrent network as the flexible reference ("ceiling") for behavioural models.

Following the tiny-RNN studies of animal choice (Ji-An, Benna & Mattar, Nature 2025), a GRU of a
few units reads the previous trial's (choice, reward) and outputs the logit of the next choice. It
is fitted on the training animals of a fold, with early stopping on a validation part *of the
training animals*, and scored on the held-out part like any other hypothesis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ComparisonError
from .._optimise import run_steps, start_steps
from .._trial_data import TrialData
from ._hypotheses import AbstractHypothesis, FitSettings, FoldScore, is_choice_data, n_observations
from ._splits import Fold, restrict, subjects, trial_valid


def validation_split(fold: Fold, fraction: float, seed: int) -> tuple[TrialData, TrialData, np.ndarray]:
    """Cut a fold's *training* part into a fitting part and a validation part; held-out data are never used.

    With at least three training animals, ``fraction`` of them (drawn with ``seed``) validate; with
    fewer, the last ``fraction`` of each animal's training trials. Returns (fit part, validation
    part, validation animals as data indices — empty for the trial split).
    """
    if not 0.0 < fraction < 1.0:
        raise ComparisonError(f"validation fraction must be in (0, 1); got {fraction}")
    n = len(fold.train_subjects)
    if n >= 3:
        n_val = min(max(1, int(round(fraction * n))), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        val_pos, fit_pos = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        return subjects(fold.train, fit_pos), subjects(fold.train, val_pos), fold.train_subjects[val_pos]
    valid = trial_valid(fold.train)
    late = np.zeros_like(valid)
    for i in range(valid.shape[0]):
        idx = np.flatnonzero(valid[i])
        k = max(1, int(round(fraction * len(idx))))
        late[i, idx[len(idx) - k :]] = True
    return restrict(fold.train, valid & ~late), restrict(fold.train, late), np.asarray([], dtype=int)


def previous_trial_inputs(choice: Array, reward: Array) -> Float[Array, "trial 4"]:
    """One-hot of the previous trial's (choice, reward): [c=0·r, c=0·(1−r), c=1·r, c=1·(1−r)]; zeros on trial 0."""
    c = choice.astype(reward.dtype)
    x = jnp.stack([(1 - c) * reward, (1 - c) * (1 - reward), c * reward, c * (1 - reward)], axis=-1)
    return jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]], axis=0)


class TinyGRU(eqx.Module):
    """GRU with ``hidden`` units; P(choice = 1 on trial t) = sigmoid(readout(h_t)), h_t from trials < t."""

    cell: eqx.nn.GRUCell
    readout: eqx.nn.Linear

    def __init__(self, hidden: int = 4, *, key: PRNGKeyArray):
        if not 1 <= int(hidden) <= 64:
            raise ComparisonError(f"TinyGRU: hidden must be between 1 and 64 units; got {hidden}")
        k1, k2 = jax.random.split(key)
        self.cell = eqx.nn.GRUCell(4, int(hidden), key=k1)
        self.readout = eqx.nn.Linear(int(hidden), 1, key=k2)

    @property
    def hidden(self) -> int:
        return int(self.cell.hidden_size)

    def logits(self, choice: Array, reward: Array) -> Float[Array, " trial"]:
        """Choice-1 logits for one animal's trials."""
        inputs = previous_trial_inputs(choice, reward)

        def step(h, x):
            h = self.cell(x, h)
            return h, self.readout(h)[0]

        h0 = jnp.zeros((self.hidden,), inputs.dtype)
        return jax.lax.scan(step, h0, inputs)[1]

    def log_likelihood(self, data: TrialData) -> Float[Array, "trajectory trial"]:
        """Log-probability of every observed choice (0 outside the mask)."""
        logits = jax.vmap(self.logits)(data.inputs["choice"], data.inputs["reward"].astype(float))
        obs = data.observations.astype(logits.dtype)
        lp = obs * jax.nn.log_sigmoid(logits) + (1 - obs) * jax.nn.log_sigmoid(-logits)
        return jnp.where(jnp.broadcast_to(data.mask, lp.shape), lp, 0.0)

    def n_parameters(self) -> int:
        return int(sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(self, eqx.is_inexact_array))))


@eqx.filter_jit
def _mean_nll(model: TinyGRU, data: TrialData) -> Array:
    ll = model.log_likelihood(data)
    n = jnp.sum(jnp.broadcast_to(data.mask, ll.shape), dtype=ll.dtype)
    return -jnp.sum(ll) / jnp.maximum(n, 1.0)


@functools.lru_cache(maxsize=16)
def _adam(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate)  # one object per rate, so compiled chunks are reused across fits


def _gru_loss(params, train, _x, *, static):
    return _mean_nll(eqx.combine(params, static), train)


@dataclass
class GRUFit:
    """What :func:`fit_gru` returns: the parameters with the best validation loss and the loss curves.

    ``initial_loss`` is the training loss before training; ``loss_history`` (training) and
    ``validation_history`` hold one entry per ``eval_every`` steps, taken at ``validation_steps`` (the
    field names of :class:`~plasticinfer.FitResult`).
    """

    model: TinyGRU
    initial_loss: float
    loss_history: np.ndarray
    validation_history: np.ndarray
    validation_steps: np.ndarray
    best_step: int

    def converged(self, patience: int) -> bool:
        """Early stopping's verdict: the validation loss had stopped improving (its best at least ``patience``
        steps before the last evaluation) and every loss was finite. False when training ran to its step
        limit with the validation loss still improving: more steps might have given a better network."""
        finite = bool(np.isfinite(self.validation_history).all() and np.isfinite(self.loss_history).all())
        last = int(self.validation_steps[-1]) if len(self.validation_steps) else 0
        return finite and last - int(self.best_step) >= max(int(patience), 1)  # patience 0: stopped at the first non-improvement


def fit_gru(
    model: TinyGRU,
    train: TrialData,
    validation: TrialData | None,
    *,
    steps: int = 3000,
    learning_rate: float = 1e-2,
    eval_every: int = 50,
    patience: int = 500,
) -> GRUFit:
    """Adam on the mean negative log-likelihood; keeps the parameters with the best validation loss.

    Stops when the validation loss has not improved for ``patience`` steps. Without validation data
    the last parameters are kept.
    """
    if steps < 1 or eval_every < 1:
        raise ComparisonError(f"fit_gru: steps and eval_every must be ≥ 1; got {steps}, {eval_every}")
    opt = _adam(float(learning_rate))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = start_steps(params, opt, batched=False)
    loss_fn = eqx.Partial(_gru_loss, static=static)
    initial = float(_mean_nll(model, train))
    best, best_val, best_step = params, np.inf, 0
    tr, va, st = [], [], []
    done = 0
    while done < steps:
        n = min(eval_every, steps - done)  # the last chunk runs what is left, with the same program
        state, losses = run_steps(loss_fn, state, train, None, opt, "stop", min(eval_every, steps), jnp.asarray(n))
        params = state.params
        done += n
        tr.append(float(losses[n - 1]))
        va.append(float(_mean_nll(eqx.combine(params, static), validation)) if validation is not None else tr[-1])
        st.append(done)
        if not (np.isfinite(va[-1]) and np.isfinite(tr[-1])):  # diverged: the guard stopped it at its last finite point
            break
        if va[-1] < best_val:
            best, best_val, best_step = params, va[-1], done
        elif validation is not None and done - best_step >= patience:
            break
    if validation is None:
        best, best_step = params, done
    return GRUFit(eqx.combine(best, static), initial, np.asarray(tr), np.asarray(va), np.asarray(st), best_step)


@dataclass
class GRUHypothesis(AbstractHypothesis):
    """A tiny GRU fitted on a fold's training animals (one shared network), scored on its held-out part.

    Early stopping: with at least three training animals, ``validation_fraction`` of them (drawn
    with ``seed``) are set aside and the network with the best loss on their training trials is
    kept; with fewer, the last ``validation_fraction`` of each animal's training trials. Held-out
    animals are never seen. The network's parameters are shared, so it counts as one parameter set.

    Attributes:
        name: label in tables.
        hidden: GRU units (tiny-RNN studies use 1–4; up to 8 here).
        steps, learning_rate, eval_every, patience: Adam settings (see :func:`fit_gru`). A fit that runs out of
            steps before early stopping ends it is marked unconverged in the comparison (``fits.csv``).
        validation_fraction: share of the training animals (or trials) used for early stopping.
        seed: seed of the initial weights and of the validation draw.
    """

    name: str = "GRU"
    hidden: int = 4
    steps: int = 3000
    learning_rate: float = 1e-2
    eval_every: int = 50
    patience: int = 500
    validation_fraction: float = 0.2
    seed: int = 0
    last_fit: GRUFit | None = field(default=None, repr=False)
    last_validation_subjects: np.ndarray | None = field(default=None, repr=False)

    def applies_to(self, data):
        return is_choice_data(data) and int(data.inputs["cues"].shape[-2]) == 2

    def split_training(self, fold: Fold) -> tuple[TrialData, TrialData, np.ndarray]:
        """(fit part, validation part, validation subjects), both from ``fold.train`` only (see :func:`validation_split`)."""
        return validation_split(fold, self.validation_fraction, self.seed)

    def score(self, fold: Fold, settings: FitSettings) -> FoldScore:
        fit_part, val_part, val_subjects = self.split_training(fold)
        model = TinyGRU(self.hidden, key=jax.random.key(self.seed))
        result = fit_gru(
            model, fit_part, val_part, steps=self.steps, learning_rate=self.learning_rate,
            eval_every=self.eval_every, patience=self.patience,
        )
        self.last_fit, self.last_validation_subjects = result, val_subjects
        train_ll = np.asarray(result.model.log_likelihood(fold.train)).sum(-1)
        test_ll = np.asarray(result.model.log_likelihood(fold.test)).sum(-1)
        return FoldScore(test_ll, n_observations(fold.test), train_ll, n_observations(fold.train), result.model.n_parameters(), False,
                         converged=[result.converged(self.patience)])  # fmt: skip


__all__ = ["TinyGRU", "GRUFit", "GRUHypothesis", "fit_gru", "previous_trial_inputs", "validation_split"]

"""Synthetic data from known rules: activity in a plastic layer, and choices in a two-alternative task."""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._errors import ModelError
from ._model import PlasticityModel
from ._networks import ChoiceCircuit
from ._observation import BernoulliChoice
from ._simulate import AbstractEnvironment, simulate
from ._trial_data import TrialData


class GaussianInputs(eqx.Module):
    """Inputs x ~ N(mean, cov) per trial (and per sample, if ``n_samples`` > 0).

    Attributes:
        cov: input covariance (n, n).
        mean: input mean (n,).
        n_samples: input samples per trial for batch-mean updates (0: one unbatched vector per trial).
    """

    cov: Float[Array, "n n"]
    mean: Float[Array, " n"]
    n_samples: int = eqx.field(static=True, default=0)

    @classmethod
    def isotropic(cls, n: int, scale: float = 1.0, n_samples: int = 0) -> "GaussianInputs":
        return cls(scale**2 * jnp.eye(n), jnp.zeros(n), n_samples)

    @classmethod
    def with_spectrum(cls, key: PRNGKeyArray, eigenvalues, n_samples: int = 0) -> "GaussianInputs":
        """Covariance QᵀDQ with a random rotation Q and the given eigenvalues (DESIGN.md B1)."""
        ev = jnp.asarray(eigenvalues, dtype=float)
        q, _ = jnp.linalg.qr(jax.random.normal(key, (ev.shape[0], ev.shape[0])))
        return cls(q.T @ jnp.diag(ev) @ q, jnp.zeros(ev.shape[0]), n_samples)

    @property
    def n(self) -> int:
        return int(self.mean.shape[0])

    def sample(self, key: PRNGKeyArray, n_trajectories: int, n_trials: int) -> Array:
        shape = (n_trajectories, n_trials) + ((self.n_samples,) if self.n_samples else ())
        chol = jnp.linalg.cholesky(self.cov + 1e-12 * jnp.eye(self.n))
        z = jax.random.normal(key, shape + (self.n,))
        return self.mean + z @ chol.T

    def principal_components(self) -> Array:
        """Eigenvectors of the covariance as rows, largest eigenvalue first."""
        ev, vec = jnp.linalg.eigh(self.cov)
        return vec[:, ::-1].T


@dataclass
class SyntheticActivity:
    """Synthetic recordings from a known rule, with everything needed to check recovery."""

    data: TrialData
    true_model: PlasticityModel
    inputs: GaussianInputs
    weights: dict[str, Array]  # true weights on every trial (trajectory, trial, ...)
    clean_activity: Array


#: Largest growth of simulated activity over its first trial that synthetic data may show (beyond: refused).
_MAX_GROWTH = 1e6


def make_activity_data(
    rule,
    network,
    inputs: GaussianInputs,
    *,
    key: PRNGKeyArray,
    n_trajectories: int = 1,
    n_trials: int = 200,
    noise: float = 0.1,
    relative_noise: bool = True,
    recorded_fraction: float = 1.0,
    init_scale: float = 0.1,
) -> SyntheticActivity:
    """Simulate a rule in a network and record noisy activity of a subset of output neurons.

    Args:
        rule: the true rule.
        network: a network with a ``"x"`` trial input (e.g. FeedForward).
        inputs: the input distribution.
        key: PRNG key (split internally into inputs, initial weights, noise, recorded subset).
        noise: noise standard deviation; with ``relative_noise`` it is a fraction of the
            clean activity's standard deviation (10 % noise: ``noise=0.1``).
        recorded_fraction: fraction of output neurons recorded (the same neurons on every trial);
            the count is rounded half to even, at least 1 (0.5 of 5 neurons records 2).
        init_scale: initial weights are ``init_scale · N(0, 1)``.
    """
    if not 0 < recorded_fraction <= 1:
        raise ModelError(f"recorded_fraction must be in (0, 1]; got {recorded_fraction}")
    from ._fit import check_count, check_real

    # a negative noise drew the same data as its absolute value but recorded σ = 1e-6 as the truth
    noise = check_real(noise, "noise (a standard deviation)", minimum=0.0)
    n_trajectories = check_count(n_trajectories, "n_trajectories")
    n_trials = check_count(n_trials, "n_trials")
    k_in, k_w, k_noise, k_rec = jax.random.split(key, 4)
    x = inputs.sample(k_in, n_trajectories, n_trials)
    from ._observation import GaussianActivity

    true = PlasticityModel.create(
        rule, network, GaussianActivity(1.0), n_trajectories=n_trajectories, key=k_w, init_scale=init_scale
    )
    for where, r in true.taylor_rules().items():
        silent = [t.name for t, c in zip(r.terms, np.asarray(r.coeffs)) if t.r > 0 and c != 0]
        if silent:
            raise ModelError(
                f"the rule has reward terms {silent}, but simulated recordings have no reward (r = 0 on every trial): "
                "they would never act, and the data would not show them. Drop them from the rule"
            )
    traj = true.simulate({"x": x}, save_weights=True, checkpoint=False)
    clean = traj.outputs
    sigma = noise * float(jnp.std(clean)) if relative_noise else noise
    if not np.isfinite(sigma):
        detail = "; ".join(
            f"learning rate {float(r.learning_rate):g}, coefficients up to {float(np.max(np.abs(np.asarray(r.coeffs)))):g} in size"
            for r in true.taylor_rules().values()
        )
        raise ModelError(
            "the true rule diverged in simulation (non-finite activity)" + (f" ({detail})" if detail else "")
            + "; lower the learning rate or the coefficients"
        )
    # the scale to grow from: the first trial's activity, or the inputs' (weights may start at 0)
    start = max(float(jnp.max(jnp.abs(clean[:, 0]))), float(jnp.max(jnp.abs(x))))
    peak = float(jnp.max(jnp.abs(clean)))
    if peak > _MAX_GROWTH * start:
        raise ModelError(
            f"the true rule blew up in simulation: activity reached {peak:.3g}, more than {_MAX_GROWTH:.0e} times the "
            f"larger of the first trial's activity and the inputs ({start:.3g}); lower its learning rate, use fewer "
            "trials, or add a stabilising term such as −y²·w"
        )
    obs = clean + sigma * jax.random.normal(k_noise, clean.shape, clean.dtype)
    n_post = clean.shape[-1]
    n_rec = max(1, int(round(recorded_fraction * n_post)))
    recorded = jnp.zeros(n_post, bool).at[jax.random.permutation(k_rec, n_post)[:n_rec]].set(True)
    mask = jnp.broadcast_to(recorded, clean.shape)
    obs = jnp.where(mask, obs, jnp.nan)
    true = eqx.tree_at(lambda m: m.observation, true, GaussianActivity(max(sigma, 1e-6)))
    return SyntheticActivity(TrialData({"x": x}, obs, mask), true, inputs, traj.weights, clean)


# --------------------------------------------------------------------------------------
# Two-alternative choice task (DESIGN.md B4)
# --------------------------------------------------------------------------------------


@dataclass
class SyntheticChoices:
    data: TrialData
    true_model: PlasticityModel
    p_reward: Array  # (trajectory, trial, option)
    block: Array  # (trajectory, trial)
    probabilities: Array  # model P(choice = 1) on every trial


def block_schedule(block_probabilities, trials_per_block: int = 80) -> tuple[Array, Array]:
    """Per-trial reward probabilities (trial, option) and block labels from [(p0, p1), …] per block."""
    probs = np.asarray(block_probabilities, dtype=float)
    if probs.ndim != 2 or probs.shape[1] != 2:
        raise ModelError(f"block_probabilities must be a list of (p0, p1) pairs; got shape {probs.shape}")
    p = np.repeat(probs, trials_per_block, axis=0)
    block = np.repeat(np.arange(1, len(probs) + 1), trials_per_block)
    return jnp.asarray(p), jnp.asarray(block)


class BaitedBandit(AbstractEnvironment):
    """A two-alternative task with (optionally baited) probabilistic rewards, played by a choice model.

    On every trial the network's drives for the option ``cues`` go through the ``observation`` model
    (P(choice = 1)), a choice is drawn, each option is newly baited with its scheduled probability, and
    the chosen option pays out if it is baited. With ``baited`` rewards, a reward assigned to an option
    stays available until that option is chosen (as in the fly operant-matching experiments); without,
    bait never carries over. The schedule (``trials`` of :func:`simulate`) is the reward probability of
    each option on each trial, (trial, option). Records per trial: choice, reward and P(choice = 1).
    """

    cues: Array
    observation: BernoulliChoice
    baited: bool = eqx.field(static=True, default=True)

    def initial_state(self):
        return jnp.zeros(2, bool)

    def trial(self, network, weights, bait, p_reward, key):
        k_choice, k_bait = jax.random.split(key)
        prob = self.observation.probability(network.drives(weights, self.cues))
        choice = jax.random.bernoulli(k_choice, prob).astype(jnp.int32)
        new_bait = jax.random.bernoulli(k_bait, p_reward)
        available = (bait | new_bait) if self.baited else new_bait
        reward = available[choice].astype(self.cues.dtype)
        bait = available.at[choice].set(False) if self.baited else jnp.zeros_like(bait)
        return {"cues": self.cues, "choice": choice, "reward": reward}, bait, (choice, reward, prob)


def simulate_choices(
    model: PlasticityModel,
    cues: Array,
    p_reward: Array,
    *,
    key: PRNGKeyArray,
    baited: bool = True,
) -> tuple[TrialData, Array]:
    """Let a choice model play a two-alternative task; returns (data, P(choice=1) per trial).

    Every trajectory is :func:`simulate` with a :class:`BaitedBandit` environment (the one simulator).

    Args:
        model: a model with a :class:`ChoiceCircuit` and a :class:`BernoulliChoice` observation.
        cues: option patterns (option, feature).
        p_reward: reward probabilities (trajectory, trial, option).
        key: split into one key per trajectory.
        baited: a reward assigned to an option stays available until that option is chosen.
    """
    if not isinstance(model.network, ChoiceCircuit) or not isinstance(model.observation, BernoulliChoice):
        raise ModelError("simulate_choices needs a ChoiceCircuit network and a BernoulliChoice observation")
    n_traj, n_trials, _ = p_reward.shape
    if model.n_trajectories != n_traj:
        raise ModelError(f"model has {model.n_trajectories} trajectories; p_reward has {n_traj}")
    env = BaitedBandit(cues, model.observation, baited=baited)

    def one(w0, p, k):
        traj = simulate(model.rule, model.network, w0, p, environment=env, key=k, checkpoint=False)
        return traj.records

    keys = jax.random.split(key, n_traj)
    choice, reward, prob = jax.vmap(one)(model.initial_weights, p_reward, keys)
    cue_b = jnp.broadcast_to(cues, (n_traj, n_trials) + cues.shape)
    data = TrialData({"cues": cue_b, "choice": choice, "reward": reward}, choice, jnp.ones_like(choice, bool))
    return data, prob


def make_choice_data(
    rule,
    *,
    key: PRNGKeyArray,
    n_subjects: int = 1,
    block_probabilities=((0.2, 0.8), (0.8, 0.2), (0.5, 0.5)),
    trials_per_block: int = 80,
    inverse_temperature: float = 4.0,
    bias: float = 0.0,
    initial_weight: float = 0.0,
    baited: bool = True,
    reward_expectation: bool = False,
) -> SyntheticChoices:
    """Synthetic two-odour choice data (one-hot odours) from a known rule (DESIGN.md B4)."""
    from ._networks import one_hot_cues

    cues = one_hot_cues(2)
    net = ChoiceCircuit(2, reward_expectation=reward_expectation)
    model = PlasticityModel.create(
        rule,
        net,
        BernoulliChoice(inverse_temperature, bias),
        n_trajectories=n_subjects,
        initial_weights={"w": jnp.full((1, 2), initial_weight)},
    )
    p, block = block_schedule(block_probabilities, trials_per_block)
    p = jnp.broadcast_to(p, (n_subjects,) + p.shape)
    block = jnp.broadcast_to(block, (n_subjects,) + block.shape)
    data, prob = simulate_choices(model, cues, p, key=key, baited=baited)
    return SyntheticChoices(data, model, p, block, prob)


def rollout(rule, network, initial_weights: dict[str, Array], x: Array) -> tuple[Array, dict[str, Array]]:
    """Activity and weights of trajectories (leading axis) under ``rule`` with known initial weights."""
    traj = jax.vmap(lambda w0, xx: simulate(rule, network, w0, {"x": xx}, save_weights=True, checkpoint=False))(
        initial_weights, x
    )
    return traj.outputs, traj.weights

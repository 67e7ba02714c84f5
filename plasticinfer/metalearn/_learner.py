"""One online episode: present the support stream one example at a time, then score the query set."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ModelError
from .._simulate import AbstractEnvironment, simulate
from ._episodes import DigitsEpisodes, Episode
from ._network import FeedbackNetwork
from ._terms import LocalRule


class EpisodeOutcome(eqx.Module):
    """Query cross-entropy and accuracy after the online phase; optionally the whole learning curve."""

    query_loss: Float[Array, ""]
    query_accuracy: Float[Array, ""]
    curve: Float[Array, " seen"] | None = None  # query accuracy after 0, 1, …, n_support examples


def check_compatible(network: FeedbackNetwork, episodes: DigitsEpisodes) -> None:
    """Raise ModelError unless the network's input and output widths fit the episodes."""
    if network.sizes[0] != episodes.n_pixels:
        raise ModelError(f"network input width {network.sizes[0]} ≠ {episodes.n_pixels} pixels per image")
    if network.n_classes != episodes.n_way:
        raise ModelError(
            f"network has {network.n_classes} outputs but episodes are {episodes.n_way}-way; "
            f"use sizes=(…, {episodes.n_way})"
        )


class _QueryProbe(AbstractEnvironment):
    """Hands the support examples to the network unchanged and records the query accuracy of the weights
    each example meets (the learning curve, computed inside the scan: no per-step weights are stored)."""

    query_x: Array
    query_y: Array

    def initial_state(self):
        return None

    def trial(self, network, weights, state, schedule, key):
        return schedule, None, network.accuracy(network.layers(weights), self.query_x, self.query_y)


def run_episode(
    rule: LocalRule,
    network: FeedbackNetwork,
    episode: Episode,
    key: PRNGKeyArray,
    *,
    curve: bool = False,
    checkpoint: bool | int = True,
) -> EpisodeOutcome:
    """Learn the support stream online (batch size 1) from a fresh network drawn with ``key``; score the queries.

    The online phase is :func:`~plasticinfer.simulate` (``checkpoint`` as there, except that ``True``
    rematerialises every step, the fastest here); with ``curve`` it runs in a probe environment that
    records the query accuracy before every example.
    """
    dtype = episode.support_x.dtype
    state0 = network.init(key, dtype)
    trials = {"x": episode.support_x, "label": episode.support_y}
    weights = dict(zip(network.weight_shapes(), state0.weights))
    # checkpoint=True rematerialises every online step (segments of 1): for these small layers with many
    # operations per step, 1.6× faster meta-gradients than √T segments and 1.9× faster than storing every step
    ck = 1 if checkpoint is True else checkpoint
    probe = dict(environment=_QueryProbe(episode.query_x, episode.query_y), key=jax.random.fold_in(key, 1)) if curve else {}
    traj = simulate(rule.astype(dtype), network, weights, trials, state=state0.feedback, checkpoint=ck, **probe)
    final = network.layers(traj.final_weights)
    loss = network.loss(final, episode.query_x, episode.query_y)
    acc = network.accuracy(final, episode.query_x, episode.query_y)
    if curve:
        return EpisodeOutcome(loss, acc, jnp.concatenate([traj.records, acc[None]]))
    return EpisodeOutcome(loss, acc)


def run_episodes(
    rule: LocalRule,
    network: FeedbackNetwork,
    episodes: DigitsEpisodes,
    keys: PRNGKeyArray,
    *,
    curve: bool = False,
    checkpoint: bool | int = True,
) -> EpisodeOutcome:
    """Vmapped over a batch of keys: each key draws one episode and one fresh network (independently)."""

    def one(k):
        k_ep, k_net = jax.random.split(k)
        return run_episode(rule, network, episodes.sample(k_ep), k_net, curve=curve, checkpoint=checkpoint)

    return jax.vmap(one)(keys)

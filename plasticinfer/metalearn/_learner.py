"""One online episode: present the support stream one example at a time, then score the query set."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._errors import ModelError
from ._episodes import DigitsEpisodes, Episode
from ._network import FeedbackNetwork, FeedbackState
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


def run_episode(
    rule: LocalRule,
    network: FeedbackNetwork,
    episode: Episode,
    key: PRNGKeyArray,
    *,
    curve: bool = False,
    checkpoint: bool = True,
) -> EpisodeOutcome:
    """Learn the support stream online (batch size 1) from a fresh network drawn with ``key``; score the queries.

    ``checkpoint`` rematerialises each online step on the backward pass, so differentiating through
    the episode stores only the weights per step.
    """
    dtype = episode.support_x.dtype
    rule = rule.astype(dtype)
    state0 = network.init(key, dtype)

    def body(state: FeedbackState, example):
        x, label = example
        new = network.step(rule, state, x, label)
        acc = network.accuracy(new.weights, episode.query_x, episode.query_y) if curve else None
        return new, acc

    if checkpoint:
        body = jax.checkpoint(body)
    state, accs = jax.lax.scan(body, state0, (episode.support_x, episode.support_y))
    loss = network.loss(state.weights, episode.query_x, episode.query_y)
    acc = network.accuracy(state.weights, episode.query_x, episode.query_y)
    if curve:
        acc0 = network.accuracy(state0.weights, episode.query_x, episode.query_y)
        return EpisodeOutcome(loss, acc, jnp.concatenate([acc0[None], accs]))
    return EpisodeOutcome(loss, acc)


def run_episodes(
    rule: LocalRule,
    network: FeedbackNetwork,
    episodes: DigitsEpisodes,
    keys: PRNGKeyArray,
    *,
    curve: bool = False,
    checkpoint: bool = True,
) -> EpisodeOutcome:
    """Vmapped over a batch of keys: each key draws one episode and one fresh network (independently)."""

    def one(k):
        k_ep, k_net = jax.random.split(k)
        return run_episode(rule, network, episodes.sample(k_ep), k_net, curve=curve, checkpoint=checkpoint)

    return jax.vmap(one)(keys)

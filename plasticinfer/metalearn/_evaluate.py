"""Paired evaluation of online learners on held-out episodes: accuracy, mean ± s.e., learning curves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import equinox as eqx
import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from .._errors import ModelError
from .._fit import check_count
from ._episodes import DigitsEpisodes
from ._learner import check_compatible, run_episodes
from ._network import FeedbackNetwork
from ._terms import LocalRule


@dataclass
class LearnerEvaluation:
    """Per learner and episode: query accuracy, query cross-entropy, and accuracy after each online example.

    Every learner saw the same episodes and started from the same initial weights (and, where it uses
    random feedback, the same B), so differences between learners are paired.
    """

    learners: tuple[str, ...]
    accuracy: np.ndarray  # (learner, episode)
    loss: np.ndarray  # (learner, episode)
    curve: np.ndarray  # (learner, episode, seen), seen = 0 … n_support

    def _row(self, name: str) -> int:
        if name not in self.learners:
            raise ModelError(f"no learner {name!r}; evaluated learners are {list(self.learners)}")
        return self.learners.index(name)

    @property
    def n_episodes(self) -> int:
        return self.accuracy.shape[1]

    def mean(self, name: str) -> float:
        return float(np.mean(self.accuracy[self._row(name)]))

    def se(self, name: str) -> float:
        """Standard error of the mean accuracy over episodes."""
        a = self.accuracy[self._row(name)]
        return float(np.std(a, ddof=1) / np.sqrt(a.size))

    def difference(self, a: str, b: str) -> tuple[float, float]:
        """Paired accuracy difference a − b: (mean, standard error) over the shared episodes."""
        d = self.accuracy[self._row(a)] - self.accuracy[self._row(b)]
        return float(np.mean(d)), float(np.std(d, ddof=1) / np.sqrt(d.size))

    def gap_closed(self, learner: str, low: str, high: str) -> float:
        """(acc(learner) − acc(low)) / (acc(high) − acc(low)): 0 = no better than ``low``, 1 = as good as ``high``;
        NaN when ``high`` and ``low`` score the same (there is no gap to close)."""
        gap = self.mean(high) - self.mean(low)
        return (self.mean(learner) - self.mean(low)) / gap if gap != 0 else float("nan")

    def table(self):
        """pandas DataFrame: mean and s.e. of query accuracy and cross-entropy per learner."""
        import pandas as pd

        n = self.n_episodes
        return pd.DataFrame(
            {
                "accuracy": self.accuracy.mean(1),
                "accuracy_se": self.accuracy.std(1, ddof=1) / np.sqrt(n),
                "cross_entropy": self.loss.mean(1),
                "cross_entropy_se": self.loss.std(1, ddof=1) / np.sqrt(n),
            },
            index=pd.Index(self.learners, name="learner"),
        )


@eqx.filter_jit
def _curves(rule, network, episodes, keys):
    return run_episodes(rule, network, episodes, keys, curve=True, checkpoint=False)


def evaluate_learners(
    learners: Mapping[str, tuple[LocalRule, FeedbackNetwork]],
    episodes: DigitsEpisodes,
    *,
    key: PRNGKeyArray,
    n_episodes: int = 100,
    chunk: int = 50,
) -> LearnerEvaluation:
    """Score each (rule, network) learner on the same ``n_episodes`` episodes drawn from ``episodes`` with ``key``.

    Use episodes over classes held out of meta-training and a key split apart from the meta-training key.
    """
    if not learners:
        raise ModelError("evaluate needs at least one learner")
    if n_episodes < 2:
        raise ModelError(f"n_episodes must be ≥ 2 for a standard error, got {n_episodes}")
    chunk = check_count(chunk, "chunk (episodes per compiled batch)")
    keys = jax.random.split(key, n_episodes)
    acc, loss, curve = [], [], []
    for name, (rule, network) in learners.items():
        check_compatible(network, episodes)
        parts = [_curves(rule.astype(episodes.dtype), network, episodes, keys[i : i + chunk]) for i in range(0, n_episodes, chunk)]
        acc.append(np.concatenate([np.asarray(p.query_accuracy) for p in parts]))
        loss.append(np.concatenate([np.asarray(p.query_loss) for p in parts]))
        curve.append(np.concatenate([np.asarray(p.curve) for p in parts]))
    return LearnerEvaluation(tuple(learners), np.stack(acc), np.stack(loss), np.stack(curve))

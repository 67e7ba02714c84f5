"""Familiarity memory of a plastic E/I network, scored by a population readout against nulls.

Protocol (:class:`FamiliarityProtocol`, one run per rule, all rules on the same network,
patterns and input noise — common random numbers):

1. ``warmup`` s of background input with plasticity on;
2. familiarisation: the first half of ``n_patterns`` patterns (each drives a random
   ``active_fraction`` of the excitatory neurons at (1 + ``contrast``)× the external rate) shown
   in turn, one segment each, ``repeats`` times, plasticity on;
3. ``delay`` s of background input, plasticity on;
4. test: every pattern, familiar and novel, ``test_repeats`` times, plasticity **off**, and the
   spike counts of the excitatory neurons recorded per presentation.

Only these after-familiarisation responses are used: a linear readout (L2 logistic regression
on standardised counts) is trained to tell familiar from novel and scored by its ROC AUC on
held-out *patterns* (each fold leaves out one familiar and one novel pattern, so the readout
must generalise "familiar" rather than learn pattern identities). The pre-familiarisation
response of a pattern is never used — no readout has it.

Nulls: the same readout with the familiar/novel labels shuffled across patterns (the AUC one
gets by chance at this number of patterns), the same protocol without plasticity (labels
then carry no information, exactly), rules drawn from the prior, and hand-written rules whose
*speed* (relative weight change during familiarisation) matches the rule under test.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._common import DiscoveryError
from ._plausibility import FamilyTask
from ._probes import roc_auc
from ._spiking import simulate_network


@dataclass(frozen=True)
class FamiliarityProtocol:
    """Sizes and durations (seconds; rounded to whole segments of the task)."""

    n_patterns: int = 16
    active_fraction: float = 0.2
    contrast: float = 1.0
    repeats: int = 3
    warmup: float = 0.5
    delay: float = 1.0
    test_repeats: int = 2

    def __post_init__(self):
        if self.n_patterns < 4 or self.n_patterns % 2:
            raise DiscoveryError(f"n_patterns must be even and ≥ 4 (half familiar, half novel); got {self.n_patterns}")
        if not 0 < self.active_fraction < 1 or self.contrast <= 0:
            raise DiscoveryError("active_fraction must be in (0, 1) and contrast > 0")
        if self.repeats < 1 or self.test_repeats < 1 or self.delay < 0 or self.warmup < 0:
            raise DiscoveryError("repeats, test_repeats ≥ 1 and warmup, delay ≥ 0 s")


def make_patterns(key: PRNGKeyArray, task: FamilyTask, protocol: FamiliarityProtocol):
    """(pattern, n) external-rate factors: 1 + contrast on a random ``active_fraction`` of excitatory neurons."""
    net = task.network
    active = jax.random.uniform(key, (protocol.n_patterns, net.n_exc)) < protocol.active_fraction
    exc = jnp.where(active, 1.0 + protocol.contrast, 1.0)
    return jnp.concatenate([exc, jnp.ones((protocol.n_patterns, net.n - net.n_exc))], axis=1).astype(net.weights.dtype)


def _segments(task: FamilyTask, seconds: float) -> int:
    return int(round(seconds / (task.segment_steps * task.network.dt)))


def familiarity_responses(task: FamilyTask, protocol: FamiliarityProtocol, theta, patterns, key: PRNGKeyArray, familiar=None):
    """Run the protocol for one rule θ (vmap over θ for many). Returns (responses (test, n_exc), pattern ids (test,), speed).

    ``familiar``: indices of the familiarised patterns (default: the first half). ``speed`` is
    Σ|W_after − W_before| / Σ W_before over the familiarisation and delay phases.
    """
    net, seg = task.network, task.segment_steps
    n_pat = protocol.n_patterns
    familiar = jnp.arange(n_pat // 2) if familiar is None else jnp.asarray(familiar)
    ones = jnp.ones((1, net.n), net.weights.dtype)
    rules = task.rules(theta)
    k_v, k_w, k_f, k_t = jax.random.split(key, 4)
    state = net.initial_state(k_v)
    n_warm, n_delay = _segments(task, protocol.warmup), _segments(task, protocol.delay)
    if n_warm:
        state = simulate_network(net, rules, k_w, drive=jnp.repeat(ones, n_warm, 0), segment_steps=seg, state=state).state
    w_before = state.weights
    learn = jnp.concatenate([patterns[jnp.tile(familiar, protocol.repeats)], jnp.repeat(ones, n_delay, 0)])
    state = simulate_network(net, rules, k_f, drive=learn, segment_steps=seg, state=state).state
    speed = jnp.sum(jnp.abs(state.weights - w_before)) / jnp.sum(w_before)
    order = jnp.tile(jnp.arange(n_pat), protocol.test_repeats)
    test = simulate_network(net, None, k_t, drive=patterns[order], segment_steps=seg, state=state)
    return test.counts[:, : net.n_exc], order, speed


def readout_auc(responses, labels, groups, *, C: float = 0.1) -> float:
    """Cross-validated ROC AUC of an L2 logistic readout; each fold holds out one familiar and one novel group (pattern)."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(responses, dtype=float)
    y = np.asarray(labels, dtype=bool)
    g = np.asarray(groups)
    pos, neg = np.unique(g[y]), np.unique(g[~y])
    if len(pos) < 2 or len(neg) < 2 or len(pos) != len(neg):
        raise DiscoveryError(f"readout_auc needs equally many (≥ 2) familiar and novel patterns; got {len(pos)} and {len(neg)}")
    scores = np.empty(len(y))
    for a, b in zip(pos, neg):
        test = (g == a) | (g == b)
        mu, sd = X[~test].mean(0), X[~test].std(0) + 1e-9
        clf = LogisticRegression(C=C, max_iter=500).fit((X[~test] - mu) / sd, y[~test])
        scores[test] = clf.decision_function((X[test] - mu) / sd)
    return roc_auc(scores[y], scores[~y])


def shuffled_aucs(responses, groups, n_familiar: int, rng: np.random.Generator, n: int = 50, **kw) -> np.ndarray:
    """AUCs of the readout with ``n`` random choices of which patterns count as familiar (the chance distribution)."""
    pats = np.unique(np.asarray(groups))
    out = []
    for _ in range(n):
        fam = rng.choice(pats, n_familiar, replace=False)
        out.append(readout_auc(responses, np.isin(groups, fam), groups, **kw))
    return np.array(out)


@dataclass
class MemoryGroup:
    """AUCs and speeds of one group of rules, with the chance distribution of the group mean."""

    name: str
    auc: np.ndarray
    speed: np.ndarray
    null_means: np.ndarray  # group mean AUC under shuffled labels, per replicate

    def mean_ci(self, rng: np.random.Generator, n_boot: int = 2000) -> tuple[float, float, float]:
        boots = rng.choice(self.auc, (n_boot, len(self.auc))).mean(1)
        return float(self.auc.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


@eqx.filter_jit
def _responses_batch(task, protocol, thetas, patterns, keys):
    return jax.vmap(lambda th, k: familiarity_responses(task, protocol, th, patterns, k))(thetas, keys)


def score_rules(task, protocol, thetas, patterns, key, *, rng: np.random.Generator, n_shuffles: int = 50, batch_size: int = 8):
    """AUC, speed and shuffled-label AUCs for every θ (rows of ``thetas``).

    ``key``: one key (every rule sees the same input noise — common random numbers) or one key
    per rule. Batches are padded to ``batch_size`` so the protocol compiles once.
    """
    thetas = jnp.asarray(thetas)
    n = thetas.shape[0]
    keys = jnp.broadcast_to(key, (n,)) if jnp.ndim(key) == 0 else key
    aucs, speeds, nulls = [], [], []
    n_fam = protocol.n_patterns // 2
    for s in range(0, n, batch_size):
        th, k = thetas[s : s + batch_size], keys[s : s + batch_size]
        m = th.shape[0]
        if m < batch_size:
            th = jnp.concatenate([th, jnp.broadcast_to(th[:1], (batch_size - m, th.shape[1]))])
            k = jnp.concatenate([k, jnp.broadcast_to(k[:1], (batch_size - m,))])
        resp, order, speed = _responses_batch(task, protocol, th, patterns, k)
        for r, o, sp in list(zip(np.asarray(resp), np.asarray(order), np.asarray(speed)))[:m]:
            aucs.append(readout_auc(r, o < n_fam, o))
            speeds.append(float(sp))
            nulls.append(shuffled_aucs(r, o, n_fam, rng, n_shuffles))
    return np.array(aucs), np.array(speeds), np.array(nulls)


def hand_written_rules(task: FamilyTask, scales=(0.25, 1.0, 4.0, 16.0)) -> tuple[np.ndarray, list[str]]:
    """Vogels' inhibitory rule on I→E alone, and a symmetric Hebbian pair rule on E→E alone, at several speeds."""
    thetas, names = [], []
    plastic = task.plastic
    base = {
        "Vogels I→E": ("ie", [-2 * 5.0 * 0.02, 0.0, 1.0, 1.0, 0.02, 0.02]),
        "Hebbian E→E": ("ee", [-0.05, -0.05, 1.0, 1.0, 0.02, 0.02]),
    }
    for name, (t, vec) in base.items():
        if t not in plastic:
            continue
        for s in scales:
            theta = np.zeros(6 * len(plastic))
            for k in range(len(plastic)):
                theta[6 * k + 4 : 6 * k + 6] = 0.02
            v = np.array(vec, dtype=float)
            v[:4] *= s
            k = plastic.index(t)
            theta[6 * k : 6 * k + 6] = v
            thetas.append(theta)
            names.append(f"{name} ×{s:g}")
    return np.array(thetas), names


def speed_matched(speeds, hand_speeds) -> np.ndarray:
    """Index of the hand-written rule whose speed is closest (in log) to each rule's."""
    a = np.log(np.asarray(speeds)[:, None] + 1e-12)
    b = np.log(np.asarray(hand_speeds)[None, :] + 1e-12)
    return np.argmin(np.abs(a - b), axis=1)


@dataclass
class MemoryReport:
    """The memory-probe table: each group's mean AUC (95 % bootstrap CI), chance level and the verdict."""

    groups: dict[str, MemoryGroup]
    matched: np.ndarray  # per candidate rule, AUC of its speed-matched hand-written rule
    differences: dict[str, tuple[float, float, float]]  # candidate − control: mean, CI
    verdict: str

    def markdown(self, rng: np.random.Generator | None = None) -> str:
        rng = rng or np.random.default_rng(0)
        rows = ["| rules | n | mean AUC | 95 % CI | chance 95th pct (group mean) | median speed |", "|---|---|---|---|---|---|"]
        for g in self.groups.values():
            m, lo, hi = g.mean_ci(rng)
            rows.append(f"| {g.name} | {len(g.auc)} | {m:.3f} | {lo:.3f}–{hi:.3f} | {np.quantile(g.null_means, 0.95):.3f} | {np.median(g.speed):.3g} |")
        rows.append("")
        rows.append("| candidate − control | mean ΔAUC | 95 % CI |")
        rows.append("|---|---|---|")
        for k, (m, lo, hi) in self.differences.items():
            rows.append(f"| {k} | {m:+.3f} | {lo:+.3f}–{hi:+.3f} |")
        return "\n".join(rows) + f"\n\n**Verdict:** {self.verdict}\n"


def memory_report(groups: dict[str, MemoryGroup], candidate: str, matched_auc, *, rng: np.random.Generator, n_boot: int = 2000) -> MemoryReport:
    """Compare the ``candidate`` group against every other group and its speed-matched hand-written rules.

    The claim "these rules give memory" is made only if the candidate's mean AUC exceeds the 95th
    percentile of its shuffled-label chance and the bootstrap CI of every difference (candidate −
    control) lies above 0.
    """
    cand = groups[candidate]
    diffs = {}

    def boot_diff(a, b):
        da = rng.choice(a, (n_boot, len(a))).mean(1)
        db = rng.choice(b, (n_boot, len(b))).mean(1)
        d = da - db
        return float(a.mean() - b.mean()), float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))

    for name, g in groups.items():
        if name != candidate:
            diffs[f"{candidate} − {name}"] = boot_diff(cand.auc, g.auc)
    matched_auc = np.asarray(matched_auc)
    d = cand.auc - matched_auc
    boots = rng.choice(d, (n_boot, len(d))).mean(1)
    diffs[f"{candidate} − speed-matched hand-written (paired)"] = (float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)))
    above_chance = cand.auc.mean() > np.quantile(cand.null_means, 0.95)
    beats = all(lo > 0 for _, lo, _ in diffs.values())
    if above_chance and beats:
        verdict = f"{candidate} rules detect familiarity above chance and above every control (all CIs of the differences exclude 0)."
    else:
        failed = [k for k, (_, lo, _) in diffs.items() if lo <= 0]
        reasons = (["mean AUC is not above the shuffled-label 95th percentile"] if not above_chance else []) + (
            [f"not better than: {', '.join(failed)}"] if failed else []
        )
        verdict = f"No memory claim for {candidate} rules: " + "; ".join(reasons) + "."
    return MemoryReport(groups, matched_auc, diffs, verdict)


def null_group_means(nulls: np.ndarray, rng: np.random.Generator, n: int = 2000) -> np.ndarray:
    """Chance distribution of a group's mean AUC: one shuffled AUC per rule, averaged, ``n`` times."""
    idx = rng.integers(0, nulls.shape[1], (n, nulls.shape[0]))
    return nulls[np.arange(nulls.shape[0])[None, :], idx].mean(1)


__all__ = [
    "FamiliarityProtocol",
    "MemoryGroup",
    "MemoryReport",
    "familiarity_responses",
    "hand_written_rules",
    "make_patterns",
    "memory_report",
    "null_group_means",
    "readout_auc",
    "score_rules",
    "shuffled_aucs",
    "speed_matched",
]

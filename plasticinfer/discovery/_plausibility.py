"""Families of co-active rules that keep a recurrent E/I network plausible, as an NPE posterior.

:class:`FamilyTask` fixes a network, which synapse types are plastic, their learning rates,
the run length and a box prior over the 6 parameters of each plastic type. Its simulator maps
θ to plausibility summaries of one run (fresh connectivity-independent input noise, random
initial voltages):

    log(1 + rate_E), log(1 + rate_I), CV of ISIs (E), log(mean weight / initial) per plastic type, saturated fraction

and :class:`PlausibilityConstraints` says which summaries count as plausible (rates in a
range, irregular firing, no weight blow-up or collapse, no runaway). The family is the
NPE posterior at the constraint set's target summaries; :func:`predictive_check` simulates
posterior and prior draws and reports how often each meets every constraint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._common import DiscoveryError
from ._pair_rules import SYNAPSE_TYPES, EIRules
from ._sbi import BoxPrior, NPEPosterior, simulate_batched
from ._spiking import EINetwork, network_statistics, simulate_network

_EPS = 1e-3


@dataclass(frozen=True)
class PlausibilityConstraints:
    """Ranges (raw units) a plausible run must meet; ``target`` is where the family is conditioned."""

    rate_e: tuple[float, float] = (1.0, 30.0)  # Hz
    rate_i: tuple[float, float] = (1.0, 60.0)  # Hz
    cv_isi: tuple[float, float] = (0.7, 1.5)  # irregular firing
    w_ratio: tuple[float, float] = (2 / 3, 1.5)  # mean weight of each plastic type, final / initial
    max_saturated: float = 0.0  # fraction of steps with runaway activity
    target: dict = field(default_factory=lambda: {"rate_e": 5.0, "rate_i": 8.0, "cv_isi": 1.0, "w_ratio": 1.0, "saturated": 0.0})

    def __post_init__(self):
        for name in ("rate_e", "rate_i", "cv_isi", "w_ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo < hi:
                raise DiscoveryError(f"constraint {name} must be a range 0 < low < high; got ({lo}, {hi})")

    def bounds(self, plastic) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds on the transformed summaries (see :meth:`FamilyTask.summary_names`)."""
        lo = [math.log1p(self.rate_e[0]), math.log1p(self.rate_i[0]), self.cv_isi[0]] + [math.log(self.w_ratio[0] + _EPS)] * len(plastic) + [-np.inf]
        hi = [math.log1p(self.rate_e[1]), math.log1p(self.rate_i[1]), self.cv_isi[1]] + [math.log(self.w_ratio[1] + _EPS)] * len(plastic) + [self.max_saturated]
        return np.array(lo), np.array(hi)

    def target_summaries(self, plastic) -> np.ndarray:
        t = self.target
        return np.array([math.log1p(t["rate_e"]), math.log1p(t["rate_i"]), t["cv_isi"]] + [math.log(t["w_ratio"] + _EPS)] * len(plastic) + [t["saturated"]])

    def accept(self, x, plastic) -> np.ndarray:
        """Per row of transformed summaries (n, m): meets every constraint (and is finite)."""
        return self.passes(x, plastic).all(axis=1)

    def passes(self, x, plastic) -> np.ndarray:
        """(n, m) booleans: each summary within its range."""
        lo, hi = self.bounds(plastic)
        x = np.asarray(x)
        return np.isfinite(x) & (x >= lo) & (x <= hi)


class FamilyTask(eqx.Module):
    """A network, its plastic synapse types, learning rates, run length and the prior over rule parameters."""

    network: EINetwork
    plastic: tuple[str, ...] = eqx.field(static=True, default=SYNAPSE_TYPES)
    learning_rates: tuple[float, ...] = eqx.field(static=True, default=(0.01, 0.01, 0.08, 0.08))
    n_segments: int = eqx.field(static=True, default=10)
    segment_steps: int = eqx.field(static=True, default=200)
    measure_from: int = eqx.field(static=True, default=2)
    coefficient_range: tuple[float, float, float, float] = eqx.field(static=True, default=(1.0, 1.0, 10.0, 10.0))
    tau_range: tuple[float, float] = eqx.field(static=True, default=(0.005, 0.05))

    @classmethod
    def create(
        cls,
        key: PRNGKeyArray,
        *,
        n_exc: int = 160,
        n_inh: int = 40,
        p: float = 0.2,
        plastic=SYNAPSE_TYPES,
        eta: float = 0.02,
        duration: float = 1.0,
        transient: float = 0.2,
        segment: float = 0.1,
        **network_kwargs,
    ) -> "FamilyTask":
        """A task on a random network; synaptic weights scaled so that each neuron's mean recurrent input matches an 800/200, p = 0.1 network.

        ``eta`` × initial weight of a type is its learning rate; ``duration`` s per simulation, the first ``transient`` s not measured.
        """
        plastic = tuple(plastic)
        bad = [t for t in plastic if t not in SYNAPSE_TYPES]
        if bad or not plastic:
            raise DiscoveryError(f"plastic must name one or more of {SYNAPSE_TYPES}; got {plastic}")
        if n_exc < 1 or n_inh < 1:
            raise DiscoveryError(f"need at least one excitatory and one inhibitory neuron; got n_exc={n_exc}, n_inh={n_inh}")
        if not 0 < p <= 1:
            raise DiscoveryError(f"connection probability p must be in (0, 1]; got {p}")
        j_exc = network_kwargs.pop("j_exc", 0.5 * 80.0 / (p * n_exc))
        g = network_kwargs.pop("g", 8.0)
        net = EINetwork.create(key, n_exc=n_exc, n_inh=n_inh, p=p, j_exc=j_exc, g=g, **network_kwargs)
        dt = net.dt
        if not (segment > 0 and duration > 0):
            raise DiscoveryError(f"segment and duration must be positive; got segment={segment}, duration={duration}")
        seg_steps = int(round(segment / dt))
        n_seg = int(round(duration / segment))
        if n_seg < 2 or abs(n_seg * segment - duration) > 1e-9:
            raise DiscoveryError(f"duration ({duration} s) must be a multiple (≥ 2) of segment ({segment} s)")
        if transient < 0 or int(round(transient / segment)) >= n_seg:
            raise DiscoveryError(
                f"transient ({transient} s) must be at least 0 and leave at least one segment ({segment} s) of the "
                f"duration ({duration} s): the statistics are measured after it"
            )
        initial = {"ee": j_exc, "ei": j_exc, "ie": g * j_exc, "ii": g * j_exc}
        lrs = tuple(eta * initial[t] for t in plastic)
        return cls(net, plastic, lrs, n_seg, seg_steps, int(round(transient / segment)))

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return EIRules.parameter_names(self.plastic)

    @property
    def summary_names(self) -> tuple[str, ...]:
        return ("log1p_rate_e", "log1p_rate_i", "cv_isi") + tuple(f"log_w_ratio_{t}" for t in self.plastic) + ("saturated",)

    def prior(self) -> BoxPrior:
        """Uniform: |α|, |β| ≤ coefficient_range[0..1], |γ|, |κ| ≤ [2..3], τ in tau_range (s)."""
        a, b, g, k = self.coefficient_range
        lo = [-a, -b, -g, -k, self.tau_range[0], self.tau_range[0]] * len(self.plastic)
        hi = [a, b, g, k, self.tau_range[1], self.tau_range[1]] * len(self.plastic)
        return BoxPrior(self.parameter_names, lo, hi)

    def rules(self, theta) -> EIRules:
        return EIRules.from_vector(theta, plastic=self.plastic, learning_rates=dict(zip(self.plastic, self.learning_rates)))

    def run(self, theta, key: PRNGKeyArray, *, plastic: bool = True):
        k_v, k_in = jax.random.split(key)
        rules = self.rules(theta) if plastic else None
        state = self.network.initial_state(k_v)
        return simulate_network(
            self.network, rules, k_in, n_segments=self.n_segments, segment_steps=self.segment_steps, state=state, measure_from=self.measure_from
        )

    def simulator(self, theta, key: PRNGKeyArray):
        """Transformed plausibility summaries (see :attr:`summary_names`) of one run."""
        run = self.run(theta, key)
        s = network_statistics(self.network, run, measure_from=self.measure_from, segment_steps=self.segment_steps)
        cv = jnp.nan_to_num(s["cv_isi"], nan=0.0)
        parts = [jnp.log1p(s["rate_e"]), jnp.log1p(s["rate_i"]), cv] + [jnp.log(s[f"w_ratio_{t}"] + _EPS) for t in self.plastic] + [s["saturated"]]
        return jnp.stack(parts)


@dataclass
class PredictiveCheck:
    """How often draws meet every constraint: posterior vs prior (fractions with 95 % Wilson intervals)."""

    posterior_fraction: float
    posterior_interval: tuple[float, float]
    prior_fraction: float
    prior_interval: tuple[float, float]
    per_summary_posterior: dict[str, float]
    per_summary_prior: dict[str, float]
    n: int
    posterior_theta: np.ndarray | None = None  # (n, d) the simulated posterior draws
    posterior_accepted: np.ndarray | None = None  # (n,) which met every constraint

    def markdown(self) -> str:
        rows = [
            "| draws | meet every constraint | 95 % interval |",
            "|---|---|---|",
            f"| posterior ({self.n}) | {self.posterior_fraction:.2f} | {self.posterior_interval[0]:.2f}–{self.posterior_interval[1]:.2f} |",
            f"| prior ({self.n}) | {self.prior_fraction:.2f} | {self.prior_interval[0]:.2f}–{self.prior_interval[1]:.2f} |",
        ]
        return "\n".join(rows)


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial fraction k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def predictive_check(
    key: PRNGKeyArray,
    posterior: NPEPosterior,
    task: FamilyTask,
    constraints: PlausibilityConstraints,
    *,
    n: int = 64,
    batch_size: int = 32,
) -> PredictiveCheck:
    """Simulate ``n`` posterior draws (at the constraints' target) and ``n`` prior draws; count those meeting every constraint."""
    k_post, k_prior, k_s1, k_s2 = jax.random.split(key, 4)
    x_obs = jnp.asarray(constraints.target_summaries(task.plastic))
    theta_post = np.asarray(posterior.sample(k_post, x_obs, n))
    theta_prior = np.asarray(task.prior().sample(k_prior, n))
    x_post = simulate_batched(task.simulator, theta_post, k_s1, batch_size=batch_size)
    x_prior = simulate_batched(task.simulator, theta_prior, k_s2, batch_size=batch_size)
    acc_post, acc_prior = constraints.accept(x_post, task.plastic), constraints.accept(x_prior, task.plastic)
    names = task.summary_names
    per_post = dict(zip(names, constraints.passes(x_post, task.plastic).mean(0).tolist()))
    per_prior = dict(zip(names, constraints.passes(x_prior, task.plastic).mean(0).tolist()))
    kp, kq = int(acc_post.sum()), int(acc_prior.sum())
    return PredictiveCheck(kp / n, wilson_interval(kp, n), kq / n, wilson_interval(kq, n), per_post, per_prior, n, theta_post, acc_post)


__all__ = ["FamilyTask", "PlausibilityConstraints", "PredictiveCheck", "predictive_check", "wilson_interval"]

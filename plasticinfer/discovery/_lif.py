"""Objective B3, spiking: a leaky integrate-and-fire neuron with plastic inhibitory synapses.

Spikes make the loss piecewise constant in the rule's parameters, so gradients are useless
here; search it with :func:`cma_search`. The rule is a :class:`TraceRule` applied spike by
spike (see :mod:`._homeostasis` for its rate form and the B3 manifold).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._networks import AbstractNetwork, _require, _rule_for
from .._simulate import simulate
from ._common import AbstractObjective, DiscoveryError
from ._homeostasis import TraceRule, tuned_weights


class LIFState(eqx.Module):
    v: Array  # membrane potential (threshold = 1, rest = reset = 0)
    g_exc: Array  # excitatory synaptic current
    g_inh: Array  # inhibitory synaptic current
    x_pre: Array  # presynaptic traces of the inhibitory inputs (n_inh,)
    x_post: Array  # postsynaptic trace
    refractory: Array  # time left in the refractory period (s)


class LIFNeuron(AbstractNetwork):
    """Current-based leaky integrate-and-fire neuron, voltage in units of the threshold.

    τ_m dv/dt = −v + g_E − g_I; each excitatory spike adds w_E to g_E, each inhibitory spike
    w_I to g_I, both decaying with τ_syn. At v ≥ 1 the neuron spikes, resets to 0 and is
    refractory for ``refractory`` s. Inhibitory weights are plastic under a
    :class:`TraceRule` applied spike by spike (traces are read before this bin's spikes
    are added, so a spike never pairs with itself) and kept ≥ 0.

    Trial inputs (one time bin of ``dt`` s): ``exc`` (n_exc,) and ``inh`` (n_inh,) spike
    indicators. Output: the postsynaptic spike (0 or 1).
    """

    w_exc: Float[Array, " n_exc"]
    n_inh: int = eqx.field(static=True)
    dt: float = eqx.field(static=True, default=1e-3)
    tau_m: float = eqx.field(static=True, default=0.02)
    tau_syn: float = eqx.field(static=True, default=0.005)
    refractory: float = eqx.field(static=True, default=0.002)

    def weight_shapes(self):
        return {"inh": (self.n_inh,)}

    def initial_state(self, weights):
        z = jnp.zeros((), weights["inh"].dtype)
        return LIFState(z, z, z, jnp.zeros_like(weights["inh"]), z, z)

    def step(self, rule, weights, state: LIFState, trial):
        s_e = _require(trial, "exc", "LIFNeuron").astype(state.v.dtype)
        s_i = _require(trial, "inh", "LIFNeuron").astype(state.v.dtype)
        rule = _rule_for(rule, "inh")
        if not isinstance(rule, TraceRule):
            raise DiscoveryError(f"LIFNeuron applies spike-triggered updates and needs a TraceRule; got {type(rule).__name__}")
        w = weights["inh"]
        decay_syn = math.exp(-self.dt / self.tau_syn)
        g_e = state.g_exc * decay_syn + s_e @ self.w_exc
        g_i = state.g_inh * decay_syn + s_i @ w
        active = state.refractory <= 0
        v = jnp.where(active, state.v + self.dt / self.tau_m * (g_e - g_i - state.v), 0.0)
        spike = (v >= 1.0).astype(v.dtype)
        v = jnp.where(spike > 0, 0.0, v)
        refr = jnp.where(spike > 0, self.refractory, state.refractory - self.dt)
        x_pre = state.x_pre * math.exp(-self.dt / rule.tau_pre)
        x_post = state.x_post * math.exp(-self.dt / rule.tau_post)
        dw = s_i * rule.on_pre(x_post) + spike * rule.on_post(x_pre)
        w_new = jnp.maximum(w + dw, 0.0)
        new_state = LIFState(v, g_e, g_i, x_pre + s_i, x_post + spike, refr)
        return {"inh": w_new}, new_state, spike


class LIFHomeostasisObjective(AbstractObjective):
    """B3, spiking: Poisson inputs into a :class:`LIFNeuron`; its rate over the last ``measure`` s should be ``target``.

    Loss: the rate is counted in windows of ``window_steps``; the loss is the mean over
    windows of ((ν_window − target)/target)², with weight 1 in the second half of the run and
    ``transient_weight`` in the first, averaged over ``n_networks`` neurons (own input spikes,
    random initial inhibitory weights). A rule that leaves the weights where they started,
    or only passes through the target, fails. Inputs fire as independent Poisson processes
    at ``nu_exc`` / ``nu_inh`` Hz, so the analytic manifold applies with ν_pre = ``nu_inh``
    up to spike-timing correlations (reported as the manifold residual). Reported rates are
    over the last ``measure_steps``.
    """

    neuron: LIFNeuron
    nu_exc: float = eqx.field(static=True, default=10.0)
    nu_inh: float = eqx.field(static=True, default=10.0)
    target: float = eqx.field(static=True, default=5.0)
    n_steps: int = eqx.field(static=True, default=30_000)
    measure_steps: int = eqx.field(static=True, default=10_000)
    n_networks: int = eqx.field(static=True, default=2)
    learning_rate: float = eqx.field(static=True, default=0.01)
    tau_pre: float = eqx.field(static=True, default=0.02)
    tau_post: float = eqx.field(static=True, default=0.02)
    window_steps: int = eqx.field(static=True, default=5000)
    transient_weight: float = eqx.field(static=True, default=0.1)

    @classmethod
    def create(
        cls,
        *,
        target: float = 5.0,
        nu_exc: float = 10.0,
        nu_inh: float = 10.0,
        n_groups: int = 8,
        exc_per_group: int = 10,
        inh_per_group: int = 6,
        drive: float = 1.5,
        duration: float = 30.0,
        measure: float = 10.0,
        dt: float = 1e-3,
        n_networks: int = 2,
        learning_rate: float = 0.01,
        tau_pre: float = 0.02,
        tau_post: float = 0.02,
        tau_m: float = 0.02,
        tau_syn: float = 0.005,
        window: float = 5.0,
        transient_weight: float = 0.1,
    ) -> "LIFHomeostasisObjective":
        """A spiking B3 task; ``drive`` is the uninhibited mean input in units of the threshold (> 1: suprathreshold).

        ``duration`` seconds of plastic simulation; the rate is measured over the last ``measure`` s.
        Many weak inhibitory inputs (6 per group) keep each inhibitory spike's effect on the
        postsynaptic spike times small, and with it the spike-correlation bias against the
        rate-based manifold.
        """
        if not 0 < measure <= duration:
            raise DiscoveryError(f"need 0 < measure ≤ duration; got {measure}, {duration}")
        window = min(window, duration / 2)
        if int(round(duration / dt)) % int(round(window / dt)):
            raise DiscoveryError(f"duration ({duration} s) must be a multiple of the rate window ({window} s)")
        if min(target, nu_exc, nu_inh, dt, drive) <= 0:
            raise DiscoveryError("target, rates, dt and drive must be positive")
        if nu_inh * dt > 0.2 or nu_exc * dt > 0.2:
            raise DiscoveryError(f"rates × dt must stay well below 1 for Poisson bins; lower dt (now {dt} s)")
        w_exc = tuned_weights(n_groups, exc_per_group, drive / (nu_exc * tau_syn))
        neuron = LIFNeuron(jnp.asarray(w_exc), n_groups * inh_per_group, dt, tau_m, tau_syn)
        n_steps = int(round(duration / dt))
        return cls(
            neuron, float(nu_exc), float(nu_inh), float(target), n_steps, int(round(measure / dt)), int(n_networks),
            float(learning_rate), float(tau_pre), float(tau_post), int(round(window / dt)), float(transient_weight),
        )  # fmt: skip

    def default_rule(self) -> TraceRule:
        return TraceRule(tau_pre=self.tau_pre, tau_post=self.tau_post, learning_rate=self.learning_rate)

    def reference_rule(self) -> TraceRule | None:
        if self.tau_pre != self.tau_post:
            return None
        return TraceRule.vogels(self.target, tau=self.tau_pre, learning_rate=self.learning_rate)

    def parameter_scales(self, rule, key):
        """(α, β, γ, κ) scaled by what each multiplies at the goal: ν_pre, ν*, τ_pre·ν_pre·ν*, τ_post·ν_pre·ν*."""
        if not isinstance(rule, TraceRule):
            return None
        f = lambda v: jnp.asarray(v, dtype=rule.alpha.dtype)  # noqa: E731
        nu, tgt = self.nu_inh, self.target
        return TraceRule(f(nu), f(tgt), f(rule.tau_pre * nu * tgt), f(rule.tau_post * nu * tgt), tau_pre=rule.tau_pre, tau_post=rule.tau_post, learning_rate=rule.learning_rate)

    def sample(self, key: PRNGKeyArray) -> dict[str, Array]:
        """Input spike trains (network, step, input) as booleans and initial inhibitory weights."""
        k_e, k_i, k_w = jax.random.split(key, 3)
        n_exc, n_inh, dt = self.neuron.w_exc.shape[0], self.neuron.n_inh, self.neuron.dt
        exc = jax.random.bernoulli(k_e, self.nu_exc * dt, (self.n_networks, self.n_steps, n_exc))
        inh = jax.random.bernoulli(k_i, self.nu_inh * dt, (self.n_networks, self.n_steps, n_inh))
        drive = jnp.sum(self.neuron.w_exc) * self.nu_exc
        w_full = drive / (n_inh * self.nu_inh)  # mean inhibition cancels the mean excitation
        w0 = w_full * jax.random.uniform(k_w, (self.n_networks, n_inh), self.neuron.w_exc.dtype)
        return {"exc": exc, "inh": inh, "w0": w0}

    def run(self, rule, episode):
        """Final inhibitory weights (network, n_inh), rate over the last ``measure_steps`` (network,) and per window (network, window), in Hz."""

        def one(w0, e, i):
            traj = simulate(rule, self.neuron, {"inh": w0}, {"exc": e, "inh": i}, checkpoint=False)
            count = jnp.sum(traj.outputs[-self.measure_steps :])
            windows = traj.outputs.reshape(-1, self.window_steps).sum(axis=1) / (self.window_steps * self.neuron.dt)
            return traj.final_weights["inh"], count / (self.measure_steps * self.neuron.dt), windows

        return jax.vmap(one)(episode["w0"], episode["exc"], episode["inh"])

    def _loss(self, windows):
        n = windows.shape[1]
        weights = jnp.where(jnp.arange(n) >= n // 2, 1.0, self.transient_weight).astype(windows.dtype)
        err2 = ((windows - self.target) / self.target) ** 2
        return jnp.mean(jnp.sum(err2 * weights, axis=1) / jnp.sum(weights))

    def loss(self, rule, episode):
        _, _, windows = self.run(rule, episode)
        return self._loss(windows)

    def metrics(self, rule, episode):
        _, nu, windows = self.run(rule, episode)
        secs = self.measure_steps * self.neuron.dt
        out = {
            "loss": self._loss(windows),
            "rate_hz": jnp.mean(nu),
            "rate_error_hz": jnp.max(jnp.abs(nu - self.target)),
            # Poisson counting noise of rate_hz: √(spikes)/T over all networks (compare off-manifold residuals with it)
            "rate_counting_sd_hz": jnp.sqrt(jnp.sum(nu) * secs) / (secs * nu.shape[0]),
        }
        if isinstance(rule, TraceRule):
            out["manifold_rate_hz"] = rule.fixed_point(self.nu_inh)
            out["stability"] = rule.beta + rule.pair_coefficient * self.nu_inh
        return out

    def success(self, metrics):
        return bool(float(metrics["rate_error_hz"]) < 0.2 * self.target)

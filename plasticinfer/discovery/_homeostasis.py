"""Objective B3 (rate model): plastic inhibition should bring a neuron to a target rate.

The rule is the pair-based trace rule of inhibitory STDP (Vogels et al. 2011 family). In
its spiking form (see :mod:`._lif`), every synapse keeps a presynaptic trace x_pre and the
neuron a postsynaptic trace x_post (each +1 per spike, decaying with τ_pre, τ_post):

    at a presynaptic spike:   Δw = η·(α + κ·x_post)
    at a postsynaptic spike:  Δw = η·(β + γ·x_pre)

For independent Poisson-like spiking at rates ν_pre, ν_post the mean traces are
⟨x_pre⟩ = ν_pre·τ_pre and ⟨x_post⟩ = ν_post·τ_post, so the mean drift is

    dw/dt = η·[α·ν_pre + β·ν_post + (κ·τ_post + γ·τ_pre)·ν_pre·ν_post],

the rate form the rate model uses. It vanishes at

    ν* = −α·ν_pre / (β + (κ·τ_post + γ·τ_pre)·ν_pre)

(the B3 manifold), and that fixed point attracts when raising w lowers ν_post and
β + (κτ_post + γτ_pre)·ν_pre > 0.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._networks import AbstractNetwork, _require, _rule_for
from .._rules import AbstractRule, TaylorRule, _batched
from .._simulate import simulate
from ._common import AbstractObjective, DiscoveryError


class AbstractPairRule(AbstractRule):
    """The pair-based trace rule's update, shared by :class:`TraceRule` (fixed time constants) and
    :class:`~plasticinfer.discovery.PairRule` (time constants as parameters).

    Subclasses hold α, β, γ, κ, τ_pre, τ_post and η as ``alpha``, ``beta``, ``gamma``, ``kappa``,
    ``tau_pre``, ``tau_post`` and ``learning_rate``.
    """

    alpha: eqx.AbstractVar[Float[Array, ""]]
    beta: eqx.AbstractVar[Float[Array, ""]]
    gamma: eqx.AbstractVar[Float[Array, ""]]
    kappa: eqx.AbstractVar[Float[Array, ""]]
    tau_pre: eqx.AbstractVar[float | Float[Array, ""]]
    tau_post: eqx.AbstractVar[float | Float[Array, ""]]
    learning_rate: eqx.AbstractVar[float]

    @property
    def pair_coefficient(self) -> Array:
        """κ·τ_post + γ·τ_pre: the weight of ν_pre·ν_post in the rate form."""
        return self.kappa * self.tau_post + self.gamma * self.tau_pre

    def __call__(self, pre, post, weight, reward):
        pre, post, _ = _batched(pre, post, reward)
        n = pre.shape[0]
        mean_pre = jnp.mean(pre, axis=0)  # (pre,)
        mean_post = jnp.mean(post, axis=0)  # (post,)
        pair = post.T @ pre / n  # (post, pre)
        dw = self.alpha * mean_pre[None, :] + self.beta * mean_post[:, None] + self.pair_coefficient * pair
        return self.learning_rate * jnp.broadcast_to(dw, weight.shape)

    def on_pre(self, x_post) -> Array:
        """Weight change per presynaptic spike given the postsynaptic trace."""
        return self.learning_rate * (self.alpha + self.kappa * x_post)

    def on_post(self, x_pre) -> Array:
        """Weight change per postsynaptic spike given the presynaptic traces."""
        return self.learning_rate * (self.beta + self.gamma * x_pre)

    @property
    def coefficients(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in ("alpha", "beta", "gamma", "kappa")}

    def equation(self, *, precision: int = 3, threshold: float = 0.0) -> str:
        """``"pre spike: Δw = η·(α + κ·x_post); post spike: Δw = η·(β + γ·x_pre)  [τ…]"`` with numbers."""
        c = self.coefficients
        kw = dict(learning_rate=self.learning_rate, precision=precision, threshold=threshold)
        pre = self.format_equation([(c["alpha"], ""), (c["kappa"], "x_post")], lhs="pre spike: Δw", **kw)
        post = self.format_equation([(c["beta"], ""), (c["gamma"], "x_pre")], lhs="post spike: Δw", **kw)
        taus = f"[τ_pre = {float(self.tau_pre) * 1e3:g} ms, τ_post = {float(self.tau_post) * 1e3:g} ms]"
        return f"{pre}; {post}  {taus}"


class TraceRule(AbstractPairRule):
    """Pair-based trace rule (α, β, γ, κ, τ_pre, τ_post); called on rates it returns the mean drift dw/dt.

    Attributes:
        alpha: change per presynaptic spike (alone).
        beta: change per postsynaptic spike (alone).
        gamma: change per postsynaptic spike, times the presynaptic trace.
        kappa: change per presynaptic spike, times the postsynaptic trace.
        tau_pre, tau_post: trace time constants (seconds; fixed, not searched).
        learning_rate: η.

    ``rule(pre_rates, post_rates, w, reward)`` is the rate form (Hz in, weight per second
    out, batch-mean); :meth:`on_pre` / :meth:`on_post` are the spike-triggered updates.
    """

    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    gamma: Float[Array, ""]
    kappa: Float[Array, ""]
    tau_pre: float = eqx.field(static=True, default=0.02)
    tau_post: float = eqx.field(static=True, default=0.02)
    learning_rate: float = eqx.field(static=True, default=1.0)

    def __init__(self, alpha=0.0, beta=0.0, gamma=0.0, kappa=0.0, *, tau_pre=0.02, tau_post=0.02, learning_rate=1.0):
        dtype = jnp.result_type(float)  # float64 under x64, else float32 (no warning)
        self.alpha = jnp.asarray(alpha, dtype=dtype)
        self.beta = jnp.asarray(beta, dtype=dtype)
        self.gamma = jnp.asarray(gamma, dtype=dtype)
        self.kappa = jnp.asarray(kappa, dtype=dtype)
        if not (tau_pre > 0 and tau_post > 0):
            raise DiscoveryError(f"trace time constants must be positive seconds; got τ_pre={tau_pre}, τ_post={tau_post}")
        self.tau_pre = float(tau_pre)
        self.tau_post = float(tau_post)
        self.learning_rate = float(learning_rate)

    @classmethod
    def vogels(cls, target: float, *, tau: float = 0.02, learning_rate: float = 1.0) -> "TraceRule":
        """Vogels et al. 2011: symmetric Hebbian pairing (κ = γ = 1) with depression α = −2·target·τ per pre spike."""
        return cls(-2.0 * target * tau, 0.0, 1.0, 1.0, tau_pre=tau, tau_post=tau, learning_rate=learning_rate)

    def fixed_point(self, nu_pre) -> Array:
        """The analytic steady postsynaptic rate ν* = −α·ν_pre / (β + (κτ_post + γτ_pre)·ν_pre)."""
        return -self.alpha * nu_pre / (self.beta + self.pair_coefficient * nu_pre)

    def penalty(self):
        return jnp.abs(self.alpha) + jnp.abs(self.beta) + jnp.abs(self.gamma) + jnp.abs(self.kappa)

    def as_taylor(self) -> TaylorRule:
        """The rate form as a Taylor rule over x = ν_pre, y = ν_post: α·x + β·y + (κτ_post + γτ_pre)·x·y."""
        return TaylorRule.from_terms(
            {"x": float(self.alpha), "y": float(self.beta), "x*y": float(self.pair_coefficient)},
            learning_rate=self.learning_rate,
        )


def taylor_fixed_point(rule: TaylorRule, nu_pre) -> Array:
    """ν* for a rate-form Taylor rule with terms among 1, x, y, x·y: −(θ_1 + θ_x·ν_pre)/(θ_y + θ_xy·ν_pre)."""
    allowed = {"1", "x", "y", "x*y"}
    extra = [n for n, c in rule.coefficients.items() if n not in allowed and c != 0.0]
    if extra:
        raise DiscoveryError(
            f"the analytic B3 fixed point covers terms 1, x, y, x·y only; this rule also has {extra}. "
            "Simulate it instead (HomeostasisObjective.metrics)."
        )
    get = lambda n: rule.coefficient(n) if n in rule.names else jnp.zeros(())  # noqa: E731
    return -(get("1") + get("x") * nu_pre) / (get("y") + get("x*y") * nu_pre)


def fixed_point(rule, nu_pre) -> Array:
    """Analytic steady postsynaptic rate of a :class:`TraceRule` or a rate-form :class:`TaylorRule`."""
    if isinstance(rule, TraceRule):
        return rule.fixed_point(nu_pre)
    if isinstance(rule, TaylorRule):
        return taylor_fixed_point(rule, nu_pre)
    raise DiscoveryError(f"no analytic fixed point for {type(rule).__name__}; use a TraceRule or a TaylorRule")


# --------------------------------------------------------------------------------------
# Rate neuron
# --------------------------------------------------------------------------------------


def softplus_rate(u, sharpness: float = 1.0, leak: float = 0.0):
    """Smooth rectifier in Hz: log(1 + e^{k·u})/k (≈ max(u, 0) away from 0).

    With ``leak`` > 0 the value is unchanged but the gradient is at least ``leak``, so a
    search can climb out of a silenced regime (far below 0 the true gradient is e^{k·u}).
    """
    out = jax.nn.softplus(sharpness * u) / sharpness
    if leak:
        slope = jax.nn.sigmoid(sharpness * u)
        out = out + jnp.maximum(leak - slope, 0.0) * (u - jax.lax.stop_gradient(u))
    return out


def leaky_clamp(w, leak: float = 0.0):
    """max(w, 0) with gradient ``leak`` (instead of 0) where w < 0; the value is exact."""
    out = jnp.maximum(w, 0.0)
    if leak:
        out = out + leak * jnp.where(w < 0, w - jax.lax.stop_gradient(w), 0.0)
    return out


class HomeostaticRateNeuron(AbstractNetwork):
    """ν_post = [Σ w_E·ν_E − Σ w_I·ν_I]₊ (smooth), with fixed excitatory and plastic inhibitory weights.

    One step is ``dt`` seconds; the rule's rate form gives dw/dt, so Δw = dt·rule(ν_I, ν_post, w_I).
    Inhibitory weights are kept ≥ 0 (Dale's law). ``grad_leak`` lets that fraction of the
    gradient through the Dale clamp and the rectifier's silent floor (the simulated values
    are exact), so gradient search is not stuck where the neuron is silent or uninhibited.
    Trial inputs: ``exc`` (batch, n_exc) and
    ``inh`` (batch, n_inh) rates in Hz (a batch of time bins with a batch-mean update).
    Output: ν_post (batch, 1).
    """

    w_exc: Float[Array, " n_exc"]
    n_inh: int = eqx.field(static=True)
    dt: float = eqx.field(static=True, default=0.1)
    sharpness: float = eqx.field(static=True, default=1.0)
    grad_leak: float = eqx.field(static=True, default=0.01)

    @property
    def n_exc(self) -> int:
        return int(self.w_exc.shape[0])

    def weight_shapes(self):
        return {"inh": (1, self.n_inh)}

    def rate(self, w_inh, exc, inh):
        return softplus_rate(exc @ self.w_exc - inh @ w_inh[0], self.sharpness, self.grad_leak)[..., None]

    def step(self, rule, weights, state, trial):
        exc = _require(trial, "exc", "HomeostaticRateNeuron")
        inh = _require(trial, "inh", "HomeostaticRateNeuron")
        w = weights["inh"]
        post = self.rate(w, exc, inh)
        dw = _rule_for(rule, "inh")(jnp.atleast_2d(inh), jnp.atleast_2d(post), w, jnp.zeros(jnp.atleast_2d(inh).shape[0], inh.dtype))
        return {"inh": leaky_clamp(w + self.dt * dw, self.grad_leak)}, state, post


def tuned_weights(n_groups: int, per_group: int, total: float, preferred: int | None = None, width: float = 1.5) -> np.ndarray:
    """Excitatory weights tuned across input groups: 0.3 + 0.7·Gaussian(group − preferred), scaled to sum to ``total``."""
    g = np.arange(n_groups)
    pref = n_groups // 2 if preferred is None else preferred
    tuning = 0.3 + 0.7 * np.exp(-0.5 * ((g - pref) / width) ** 2)
    w = np.repeat(tuning, per_group)
    return total * w / w.sum()


class HomeostasisObjective(AbstractObjective):
    """B3, rate model: plastic inhibition must bring the neuron to ``target`` Hz (and, with correlated inputs, balance).

    ``n_groups`` input groups each hold ``exc_per_group`` excitatory inputs (fixed weights,
    tuned across groups) and ``inh_per_group`` plastic inhibitory inputs. Inputs fire at
    ``nu_exc`` / ``nu_inh`` Hz. With ``fluctuation`` σ > 0, each group's rate is multiplied
    per time bin by max(0, 1 + σ·ξ_g) shared by its excitatory and inhibitory inputs
    (correlated within a group, independent across groups); then the loss also asks for
    detailed balance: the inhibitory weights per group should mirror the excitatory tuning.

    Loss per network: the mean over steps of ((ν_t − target)/target)², with weight 1 over the
    second half of the run and ``transient_weight`` over the first (a rate that only
    passes through the target, or drifts, fails; a faster approach scores better, which
    also gives CMA-ES a signal where the final rate does not depend on the rule), plus
    ``balance_weight``·(1 − R²) with correlated inputs, where R² is the fraction of the
    variance of the excitatory drive per group that the inhibitory drive per group
    cancels. Each evaluation averages ``n_networks`` neurons with random initial inhibitory
    weights (initial rates anywhere between 0 and the uninhibited rate). Reported rates
    are means over the last ``measure_steps`` steps.
    """

    network: HomeostaticRateNeuron
    n_groups: int = eqx.field(static=True, default=8)
    nu_exc: float = eqx.field(static=True, default=10.0)
    nu_inh: float = eqx.field(static=True, default=10.0)
    target: float = eqx.field(static=True, default=5.0)
    fluctuation: float = eqx.field(static=True, default=0.0)
    n_samples: int = eqx.field(static=True, default=1)
    n_steps: int = eqx.field(static=True, default=1000)
    measure_steps: int = eqx.field(static=True, default=50)
    n_networks: int = eqx.field(static=True, default=4)
    balance_weight: float = eqx.field(static=True, default=1.0)
    learning_rate: float = eqx.field(static=True, default=1e-3)
    tau_pre: float = eqx.field(static=True, default=0.02)
    tau_post: float = eqx.field(static=True, default=0.02)
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
        drive: float = 25.0,
        fluctuation: float = 0.0,
        n_samples: int | None = None,
        dt: float = 0.1,
        n_steps: int = 1000,
        measure_steps: int = 50,
        n_networks: int = 4,
        balance_weight: float = 1.0,
        learning_rate: float = 1e-3,
        tau_pre: float = 0.02,
        tau_post: float = 0.02,
        transient_weight: float = 0.1,
    ) -> "HomeostasisObjective":
        """A B3 rate task; ``drive`` is the uninhibited rate (Hz) the tuned excitation produces.

        ``n_samples`` time bins per step (default 1 without fluctuations, 20 with).
        """
        if not 0 < target < drive:
            raise DiscoveryError(f"need 0 < target < drive (inhibition can only lower the rate); got {target}, {drive}")
        if min(nu_exc, nu_inh, dt) <= 0 or n_groups < 1 or exc_per_group < 1 or inh_per_group < 1:
            raise DiscoveryError("rates, dt and group sizes must be positive")
        if min(n_networks, n_steps) < 1 or (n_samples is not None and n_samples < 1):
            raise DiscoveryError(f"n_networks, n_steps and n_samples must be at least 1; got {n_networks}, {n_steps}, {n_samples}")
        if not 0 < measure_steps <= n_steps:
            raise DiscoveryError(f"need 0 < measure_steps ≤ n_steps; got {measure_steps}, {n_steps}")
        if fluctuation < 0:
            raise DiscoveryError(f"fluctuation is a standard deviation; got {fluctuation}")
        n_samples = (20 if fluctuation > 0 else 1) if n_samples is None else n_samples
        w_exc = tuned_weights(n_groups, exc_per_group, drive / nu_exc)
        net = HomeostaticRateNeuron(jnp.asarray(w_exc), n_groups * inh_per_group, dt)
        return cls(
            net, n_groups, float(nu_exc), float(nu_inh), float(target), float(fluctuation), int(n_samples),
            int(n_steps), int(measure_steps), int(n_networks), float(balance_weight), float(learning_rate),
            float(tau_pre), float(tau_post), float(transient_weight),
        )  # fmt: skip

    @property
    def drive(self) -> Array:
        """The uninhibited rate (Hz) the excitatory inputs produce."""
        return jnp.sum(self.network.w_exc) * self.nu_exc

    def default_rule(self) -> TraceRule:
        return TraceRule(tau_pre=self.tau_pre, tau_post=self.tau_post, learning_rate=self.learning_rate)

    def reference_rule(self) -> TraceRule:
        """Vogels et al.'s rule for this target (on the manifold for any ν_pre)."""
        return TraceRule.vogels(self.target, tau=self.tau_pre, learning_rate=self.learning_rate) if self.tau_pre == self.tau_post else None

    def with_rates(self, *, nu_inh: float | None = None, nu_exc: float | None = None) -> "HomeostasisObjective":
        """The same task at other input rates (a generalisation probe)."""
        import dataclasses

        changes = {}
        if nu_inh is not None:
            changes["nu_inh"] = float(nu_inh)
        if nu_exc is not None:
            changes["nu_exc"] = float(nu_exc)
        bad = {k: v for k, v in changes.items() if not np.isfinite(v) or v <= 0}
        if bad:
            raise DiscoveryError(f"input rates must be positive (Hz), as create requires; got {bad}")
        return dataclasses.replace(self, **changes)

    def parameter_scales(self, rule, key):
        """(α, β, γ, κ) scaled by what each multiplies at the goal: ν_pre, ν*, τ_pre·ν_pre·ν*, τ_post·ν_pre·ν*."""
        if not isinstance(rule, TraceRule):
            return None
        f = lambda v: jnp.asarray(v, dtype=rule.alpha.dtype)  # noqa: E731
        nu, tgt = self.nu_inh, self.target
        return TraceRule(f(nu), f(tgt), f(rule.tau_pre * nu * tgt), f(rule.tau_post * nu * tgt), tau_pre=rule.tau_pre, tau_post=rule.tau_post, learning_rate=rule.learning_rate)

    def sample(self, key: PRNGKeyArray) -> dict[str, Array]:
        """Initial inhibitory weights and per-bin group modulations (network, step, sample, group)."""
        k_w, k_x = jax.random.split(key)
        n_inh = self.network.n_inh
        w_full = self.drive / (n_inh * self.nu_inh)  # silences the neuron
        w0 = w_full * jax.random.uniform(k_w, (self.n_networks, 1, n_inh), self.network.w_exc.dtype)
        shape = (self.n_networks, self.n_steps, self.n_samples, self.n_groups)
        if self.fluctuation > 0:
            mod = jnp.maximum(1.0 + self.fluctuation * jax.random.normal(k_x, shape, w0.dtype), 0.0)
        else:
            mod = jnp.ones(shape, w0.dtype)
        return {"w0": w0, "mod": mod}

    def _rates(self, mod):
        exc_per = self.network.n_exc // self.n_groups
        inh_per = self.network.n_inh // self.n_groups
        return self.nu_exc * jnp.repeat(mod, exc_per, axis=-1), self.nu_inh * jnp.repeat(mod, inh_per, axis=-1)

    def run(self, rule, episode):
        """Final inhibitory weights (network, n_inh) and the post rate on every step (network, step)."""
        exc, inh = self._rates(episode["mod"])
        traj = jax.vmap(lambda w, e, i: simulate(rule, self.network, {"inh": w}, {"exc": e, "inh": i}))(episode["w0"], exc, inh)
        return traj.final_weights["inh"][:, 0, :], jnp.mean(traj.outputs[..., 0], axis=-1)

    def _parts(self, rule, episode):
        w_inh, rates = self.run(rule, episode)
        nu = jnp.mean(rates[:, -self.measure_steps :], axis=1)
        t = jnp.arange(self.n_steps)
        weights = jnp.where(t >= self.n_steps // 2, 1.0, self.transient_weight).astype(rates.dtype)
        err2 = ((rates - self.target) / self.target) ** 2
        rate_loss = jnp.sum(err2 * weights, axis=1) / jnp.sum(weights)
        inh_g = w_inh.reshape(self.n_networks, self.n_groups, -1).sum(-1) * self.nu_inh
        exc_g = self.network.w_exc.reshape(self.n_groups, -1).sum(-1) * self.nu_exc
        d = exc_g[None] - inh_g  # net drive per group
        var_e = jnp.var(exc_g)
        unbalanced = jnp.var(d, axis=1) / jnp.maximum(var_e, 1e-12)  # 1 − R² with slope 1
        return nu, rate_loss, unbalanced, w_inh

    def loss(self, rule, episode):
        _, rate_loss, unbalanced, _ = self._parts(rule, episode)
        bal = self.balance_weight * unbalanced if self.fluctuation > 0 else 0.0
        return jnp.mean(rate_loss + bal)

    def metrics(self, rule, episode):
        nu, rate_loss, unbalanced, _ = self._parts(rule, episode)
        bal = self.balance_weight * unbalanced if self.fluctuation > 0 else jnp.zeros_like(unbalanced)
        out = {
            "loss": jnp.mean(rate_loss + bal),
            "rate_hz": jnp.mean(nu),
            "rate_error_hz": jnp.max(jnp.abs(nu - self.target)),
            "unbalanced": jnp.mean(unbalanced),
        }
        if isinstance(rule, TraceRule):
            out["manifold_rate_hz"] = rule.fixed_point(self.nu_inh)
            out["stability"] = rule.beta + rule.pair_coefficient * self.nu_inh
        return out

    def success(self, metrics):
        ok = float(metrics["rate_error_hz"]) < 0.1 * self.target
        if self.fluctuation > 0:
            ok = ok and float(metrics["unbalanced"]) < 0.2
        return bool(ok)

"""A recurrent E/I network of leaky integrate-and-fire neurons with co-active plasticity on all four synapse types.

Model (voltages in mV relative to rest; current-based exponential synapses)::

    τ_m dv_i/dt = −v_i + I^E_i − I^I_i
    I^E_i ← I^E_i·e^(−dt/τ_E) + (τ_m/τ_E)·(Σ_{j∈E} W_ij s_j + J_ext·n_ext,i)
    I^I_i ← I^I_i·e^(−dt/τ_I) + (τ_m/τ_I)·Σ_{j∈I} W_ij s_j

so a weight W_ij (mV) is the voltage jump a presynaptic spike would cause through an
instantaneous synapse (the τ_m/τ_syn factor keeps the charge independent of τ_syn). At
v ≥ ``threshold`` the neuron spikes, resets to ``reset`` and is refractory (v held at
``reset``) for ``refractory`` s. Spikes reach their targets one step (``dt``) later.
External input: ``n_ext`` independent Poisson inputs of rate ν_ext (times a per-neuron,
per-segment ``drive`` factor) with weight ``J_ext``, drawn per step as one Poisson count.

Connectivity is a fixed random mask (Bernoulli ``p``, no autapses) stored densely; the
weight matrix is ``(post, pre)``. Spiking is sparse, so each step gathers the columns of
the at most ``max_spikes`` neurons that spiked in the previous step (``O(N·K)`` instead of a
dense ``O(N²)`` product) and plasticity touches only those columns (pre spikes) and rows
(post spikes). A step with more spikes than ``max_spikes`` (a population rate above
``max_spikes/(N·dt)``) is counted in ``saturated_steps``: such runs are runaway activity,
the extra spikes are not delivered, and every plausibility filter rejects them.

Plasticity: :class:`~._pair_rules.EIRules`, one pair rule per synapse type, applied spike
by spike with traces read before the step's spikes are added; weights clipped to
``[0, w_max]`` of their type; synapses absent from the mask stay absent. Within a step the
presynaptic-spike updates are applied (and clipped) first, then the postsynaptic-spike ones.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._common import DiscoveryError
from ._pair_rules import SYNAPSE_TYPES, EIRules


class SpikingState(eqx.Module):
    """Dynamic state carried between calls of :func:`simulate_network`."""

    weights: Float[Array, "post pre"]
    v: Float[Array, " n"]
    i_exc: Float[Array, " n"]
    i_inh: Float[Array, " n"]
    refractory: Int[Array, " n"]  # steps left
    spiked: Int[Array, " k"]  # indices of last step's spikes, padded with n
    x_pre: Float[Array, "4 n"]  # presynaptic trace per synapse type (ee, ei, ie, ii)
    x_post: Float[Array, "4 n"]  # postsynaptic trace per synapse type


class SpikingRun(eqx.Module):
    """Result of :func:`simulate_network`.

    Attributes:
        state: final state (pass it back as ``state=`` to continue).
        counts: spikes per segment and neuron, (segment, n).
        isi_sum, isi_sq, isi_n: per neuron, sums of inter-spike intervals (s), their squares, and their number,
            over the measured segments.
        saturated_steps: steps with more spikes than ``max_spikes``.
        spikes, v: per step (segment, step, n), only with ``record=True``.
    """

    state: SpikingState
    counts: Float[Array, "segment n"]
    isi_sum: Float[Array, " n"]
    isi_sq: Float[Array, " n"]
    isi_n: Float[Array, " n"]
    saturated_steps: Int[Array, ""]
    spikes: Array | None = None
    v: Array | None = None


class EINetwork(eqx.Module):
    """Recurrent E/I LIF network (see the module docstring). Build it with :meth:`create`."""

    weights: Float[Array, "post pre"]  # initial weights, 0 where no synapse
    mask: Bool[Array, "post pre"]
    n_exc: int = eqx.field(static=True)
    dt: float = eqx.field(static=True, default=5e-4)
    tau_m: float = eqx.field(static=True, default=0.02)
    tau_exc: float = eqx.field(static=True, default=0.005)
    tau_inh: float = eqx.field(static=True, default=0.01)
    threshold: float = eqx.field(static=True, default=20.0)
    reset: float = eqx.field(static=True, default=10.0)
    refractory: float = eqx.field(static=True, default=0.002)
    n_ext: int = eqx.field(static=True, default=100)
    nu_ext: float = eqx.field(static=True, default=20.0)
    j_ext: float = eqx.field(static=True, default=0.5)
    w_max: tuple[float, float, float, float] = eqx.field(static=True, default=(2.0, 2.0, 10.0, 10.0))
    max_spikes: int = eqx.field(static=True, default=64)

    @classmethod
    def create(
        cls,
        key: PRNGKeyArray,
        *,
        n_exc: int = 800,
        n_inh: int = 200,
        p: float = 0.1,
        j_exc: float = 0.5,
        g: float = 8.0,
        j_ext: float = 0.5,
        n_ext: int = 100,
        nu_ext: float = 20.0,
        w_max_factor: float = 4.0,
        dt: float = 5e-4,
        max_spikes: int | None = None,
        dtype=None,
        **kwargs,
    ) -> "EINetwork":
        """Random network: each ordered pair (no autapses) connected with probability ``p``.

        E→E and E→I synapses start at ``j_exc`` mV, I→E and I→I at ``g·j_exc``; each type's
        ``w_max`` is ``w_max_factor`` × its initial weight. ``max_spikes`` defaults to the
        number of spikes in one step at a 100 Hz population rate (at least 8, at most n).
        """
        n = n_exc + n_inh
        if n_exc < 1 or n_inh < 1:
            raise DiscoveryError(f"need at least one excitatory and one inhibitory neuron; got n_exc={n_exc}, n_inh={n_inh}")
        if not 0 < p <= 1:
            raise DiscoveryError(f"connection probability p must be in (0, 1]; got {p}")
        if min(j_exc, g, dt, w_max_factor) <= 0 or w_max_factor < 1:
            raise DiscoveryError("j_exc, g, dt must be positive and w_max_factor ≥ 1")
        dtype = dtype or jnp.result_type(float)
        mask = jax.random.bernoulli(key, p, (n, n)) & ~jnp.eye(n, dtype=bool)
        is_e_pre = jnp.arange(n) < n_exc
        w = jnp.where(mask, jnp.where(is_e_pre[None, :], j_exc, g * j_exc), 0.0).astype(dtype)
        if max_spikes is None:
            max_spikes = min(n, max(8, math.ceil(100.0 * n * dt)))
        w_max = tuple(float(w_max_factor * j) for j in (j_exc, j_exc, g * j_exc, g * j_exc))
        return cls(w, mask, n_exc, dt=dt, n_ext=n_ext, nu_ext=nu_ext, j_ext=j_ext, w_max=w_max, max_spikes=int(max_spikes), **kwargs)

    @property
    def n(self) -> int:
        return self.mask.shape[0]

    @property
    def refractory_steps(self) -> int:
        return int(round(self.refractory / self.dt))

    def initial_state(self, key: PRNGKeyArray | None = None) -> SpikingState:
        """Rest (or, with ``key``, voltages uniform between rest and threshold), no traces."""
        n, dt = self.n, self.weights.dtype
        z = jnp.zeros(n, dt)
        v = z if key is None else jax.random.uniform(key, (n,), dt, 0.0, self.threshold)
        return SpikingState(
            self.weights, v, z, z, jnp.zeros(n, jnp.int32), jnp.full(self.max_spikes, n, jnp.int32), jnp.zeros((4, n), dt), jnp.zeros((4, n), dt)
        )

    def external_counts(self, key: PRNGKeyArray, step, drive=None) -> Array:
        """Poisson counts of external input events of one step (``step`` is folded into ``key``)."""
        lam = self.n_ext * self.nu_ext * self.dt
        lam = lam if drive is None else lam * drive
        shape = (self.n,)
        return jax.random.poisson(jax.random.fold_in(key, step), lam, shape).astype(self.weights.dtype)

    def type_masks(self) -> dict[str, Array]:
        """Boolean (post, pre) masks of the existing synapses of each type."""
        e = jnp.arange(self.n) < self.n_exc
        pre = {"e": e[None, :], "i": ~e[None, :]}
        post = {"e": e[:, None], "i": ~e[:, None]}
        return {t: self.mask & pre[t[0]] & post[t[1]] for t in SYNAPSE_TYPES}


def _rule_arrays(rules: EIRules, dtype):
    """Per-type (4,) arrays η·α, η·κ, η·β, η·γ, τ_pre, τ_post (zeros / 1 s for static types)."""
    names = ("alpha", "kappa", "beta", "gamma")
    coef = {k: [] for k in names}
    taus = {"tau_pre": [], "tau_post": []}
    for t in SYNAPSE_TYPES:
        r = getattr(rules, t)
        for k in names:
            coef[k].append(jnp.zeros((), dtype) if r is None else (r.learning_rate * getattr(r, k)).astype(dtype))
        for k in taus:
            taus[k].append(jnp.ones((), dtype) if r is None else getattr(r, k).astype(dtype))
    return {k: jnp.stack(v) for k, v in (coef | taus).items()}


def simulate_network(
    network: EINetwork,
    rules: EIRules | None,
    key: PRNGKeyArray,
    *,
    n_segments: int | None = None,
    segment_steps: int = 200,
    drive: Float[Array, "segment n"] | None = None,
    state: SpikingState | None = None,
    measure_from: int = 0,
    record: bool = False,
) -> SpikingRun:
    """Run the network for ``n_segments`` × ``segment_steps`` steps of ``network.dt``.

    Args:
        network: the :class:`EINetwork`.
        rules: co-active rules (:class:`EIRules`), or ``None`` for plasticity off.
        key: external Poisson input (step t of the call uses ``fold_in(key, t)``).
        n_segments: number of segments (spike counts are returned per segment); or give ``drive``.
        segment_steps: steps per segment.
        drive: optional (segment, n) factors on each neuron's external rate (stimuli, patterns).
        state: initial state (default: rest, initial weights).
        measure_from: first segment counted in the inter-spike-interval statistics.
        record: also return every step's spikes and voltages (small runs and tests only).
    """
    if drive is None:
        if n_segments is None:
            raise DiscoveryError("simulate_network needs n_segments or a drive array")
        drive = None
        xs_drive = jnp.ones((n_segments, 1), network.weights.dtype)
    else:
        drive = jnp.asarray(drive, network.weights.dtype)
        if drive.ndim != 2 or drive.shape[1] != network.n:
            raise DiscoveryError(f"drive must have shape (segment, n={network.n}); got {drive.shape}")
        xs_drive = drive
        n_segments = drive.shape[0]
    state = network.initial_state() if state is None else state
    n, n_exc, K, dt = network.n, network.n_exc, network.max_spikes, network.weights.dtype
    is_e = jnp.arange(n) < n_exc
    ar = jnp.arange(n)
    decay_e = math.exp(-network.dt / network.tau_exc)
    decay_i = math.exp(-network.dt / network.tau_inh)
    gain_e, gain_i = network.tau_m / network.tau_exc, network.tau_m / network.tau_inh
    leak = network.dt / network.tau_m
    ref_steps = network.refractory_steps
    w_max = jnp.asarray(network.w_max, dt)
    # type index t = 2·(pre is I) + (post is I) in (ee, ei, ie, ii)
    t_pre_e = jnp.where(is_e, 0, 1)  # by post neuron, for an E presynaptic partner
    t_pre_i = jnp.where(is_e, 2, 3)
    t_post_e = jnp.where(is_e, 0, 2)  # by pre neuron, for an E postsynaptic partner
    t_post_i = jnp.where(is_e, 1, 3)
    if rules is not None:
        ra = _rule_arrays(rules, dt)
        d_pre, d_post = jnp.exp(-network.dt / ra["tau_pre"]), jnp.exp(-network.dt / ra["tau_post"])

    def step(carry, t, seg_drive, measuring):
        st, acc = carry
        cnt, last, isum, isq, inum, sat = acc
        ext = network.external_counts(key, t, None if drive is None else seg_drive)
        valid = st.spiked < n
        from_e = valid & (st.spiked < n_exc)
        from_i = valid & (st.spiked >= n_exc)
        cols = jnp.take(st.weights, st.spiked, axis=1, mode="fill", fill_value=0)  # (n, K)
        i_e = st.i_exc * decay_e + gain_e * (cols @ from_e.astype(dt) + network.j_ext * ext)
        i_i = st.i_inh * decay_i + gain_i * (cols @ from_i.astype(dt))
        active = st.refractory == 0
        v = jnp.where(active, st.v + leak * (i_e - i_i - st.v), network.reset)
        spike = v >= network.threshold
        v = jnp.where(spike, network.reset, v)
        refr = jnp.where(spike, ref_steps, jnp.maximum(st.refractory - 1, 0))
        n_spk = jnp.sum(spike)
        idx = jnp.nonzero(spike, size=K, fill_value=n)[0].astype(jnp.int32)
        w, x_pre, x_post = st.weights, st.x_pre, st.x_post
        if rules is not None:
            x_pre = x_pre * d_pre[:, None]
            x_post = x_post * d_post[:, None]
            ok = idx < n
            idx_e = ok & (idx < n_exc)
            u_e = ra["alpha"][t_pre_e] + ra["kappa"][t_pre_e] * x_post[t_pre_e, ar]  # by post neuron
            u_i = ra["alpha"][t_pre_i] + ra["kappa"][t_pre_i] * x_post[t_pre_i, ar]
            r_e = ra["beta"][t_post_e] + ra["gamma"][t_post_e] * x_pre[t_post_e, ar]  # by pre neuron
            r_i = ra["beta"][t_post_i] + ra["gamma"][t_post_i] * x_pre[t_post_i, ar]
            m_cols = jnp.take(network.mask, idx, axis=1, mode="fill", fill_value=False)
            m_rows = jnp.take(network.mask, idx, axis=0, mode="fill", fill_value=False)
            col_upd = jnp.where(m_cols, jnp.where(idx_e[None, :], u_e[:, None], u_i[:, None]), 0.0)
            row_upd = jnp.where(m_rows, jnp.where(idx_e[:, None], r_e[None, :], r_i[None, :]), 0.0)
            wmax_cols = jnp.where(idx_e[None, :], w_max[t_pre_e][:, None], w_max[t_pre_i][:, None])
            wmax_rows = jnp.where(idx_e[:, None], w_max[t_post_e][None, :], w_max[t_post_i][None, :])
            cols_new = jnp.clip(jnp.take(w, idx, axis=1, mode="fill", fill_value=0) + col_upd, 0, wmax_cols)
            w = w.at[:, idx].set(cols_new, mode="drop")
            rows_new = jnp.clip(jnp.take(w, idx, axis=0, mode="fill", fill_value=0) + row_upd, 0, wmax_rows)
            w = w.at[idx, :].set(rows_new, mode="drop")
            s = spike.astype(dt)[None, :]
            x_pre, x_post = x_pre + s, x_post + s
        new = SpikingState(w, v, i_e, i_i, refr, idx, x_pre, x_post)
        sf = spike.astype(dt)
        tf = t.astype(dt) * network.dt
        has_isi = spike & (last >= 0) & measuring
        isi = jnp.where(has_isi, tf - last, 0.0)
        acc = (
            cnt + sf,
            jnp.where(spike, tf, last),
            isum + isi,
            isq + isi * isi,
            inum + has_isi.astype(dt),
            sat + (n_spk > K).astype(jnp.int32),
        )
        out = (spike, v) if record else None
        return (new, acc), out

    def segment(carry, xs):
        seg, seg_drive = xs
        st, acc = carry
        acc = (jnp.zeros(n, dt),) + acc[1:]
        measuring = seg >= measure_from
        ts = seg * segment_steps + jnp.arange(segment_steps)
        (st, acc), out = jax.lax.scan(lambda c, t: step(c, t, seg_drive, measuring), (st, acc), ts)
        return (st, acc), (acc[0], out)

    z = jnp.zeros(n, dt)
    acc0 = (z, jnp.full(n, -1.0, dt), z, z, z, jnp.zeros((), jnp.int32))
    (state, acc), (counts, out) = jax.lax.scan(segment, (state, acc0), (jnp.arange(n_segments), xs_drive))
    spikes, v = (out if record else (None, None))
    return SpikingRun(state, counts, acc[2], acc[3], acc[4], acc[5], spikes, v)


def network_statistics(network: EINetwork, run: SpikingRun, *, measure_from: int = 0, segment_steps: int = 200) -> dict[str, Array]:
    """Plausibility statistics of a run (measured segments only).

    ``rate_e``, ``rate_i``: mean rates (Hz); ``cv_isi``: mean over excitatory neurons with ≥ 3
    measured ISIs of the CV of their ISIs (NaN if none); ``w_ratio_<type>``: mean final over mean
    initial weight of each synapse type; ``saturated``: fraction of saturated steps.
    """
    counts = run.counts[measure_from:]
    secs = counts.shape[0] * segment_steps * network.dt
    per_neuron = jnp.sum(counts, axis=0) / secs
    e = jnp.arange(network.n) < network.n_exc
    out = {"rate_e": jnp.sum(jnp.where(e, per_neuron, 0)) / network.n_exc, "rate_i": jnp.sum(jnp.where(e, 0, per_neuron)) / (network.n - network.n_exc)}
    k = jnp.maximum(run.isi_n, 1.0)
    mean = run.isi_sum / k
    var = jnp.maximum(run.isi_sq / k - mean**2, 0.0)
    cv = jnp.sqrt(var) / jnp.where(mean > 0, mean, 1.0)
    use = e & (run.isi_n >= 3)
    out["cv_isi"] = jnp.where(jnp.any(use), jnp.sum(jnp.where(use, cv, 0)) / jnp.maximum(jnp.sum(use), 1).astype(cv.dtype), jnp.nan)
    for t, m in network.type_masks().items():
        w0 = jnp.sum(jnp.where(m, network.weights, 0))
        out[f"w_ratio_{t}"] = jnp.sum(jnp.where(m, run.state.weights, 0)) / jnp.maximum(w0, 1e-30)
    total_steps = run.counts.shape[0] * segment_steps
    out["saturated"] = run.saturated_steps.astype(network.weights.dtype) / total_steps
    return out


__all__ = ["EINetwork", "SpikingState", "SpikingRun", "simulate_network", "network_statistics"]

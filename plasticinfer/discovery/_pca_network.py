"""Objective B2: a network with plastic feed-forward and lateral weights should span the top-M PCs."""

from __future__ import annotations

from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._networks import AbstractNetwork, _require, _rule_for
from .._rules import TaylorRule, oja
from .._simulate import simulate
from ._common import AbstractObjective, DiscoveryError, GuardedNetwork, relative_to_hebbian, scales_for, taylor_scales
from ._pca import _GaussianStreams, conditioned_angles, random_rotation, subspace_misalignment


class LateralPCANetwork(AbstractNetwork):
    """Linear outputs with lateral connections: y = W x + L y, i.e. y = (I − L)⁻¹ W x.

    Weights: ``"ff"`` W (n_out × n_in) and ``"lateral"`` L (n_out × n_out, diagonal held at
    zero). Both are plastic; give a dict of rules ``{"ff": …, "lateral": …}``. The lateral
    rule sees pre = y_j, post = y_i and w = L_ij (Földiák / Rubner–Tavan style), so
    anti-Hebbian decorrelation is θ(x·y) = −1 in its own variables.

    Trial inputs: ``x`` (n_in,) or (batch, n_in). Output: y with the same batch layout.
    """

    n_in: int = eqx.field(static=True)
    n_out: int = eqx.field(static=True)

    def __check_init__(self):
        if self.n_in < 1 or self.n_out < 1:
            raise DiscoveryError(f"LateralPCANetwork needs n_in, n_out ≥ 1; got {self.n_in}, {self.n_out}")

    def weight_shapes(self):
        return {"ff": (self.n_out, self.n_in), "lateral": (self.n_out, self.n_out)}

    def _offdiag(self, dtype):
        return 1.0 - jnp.eye(self.n_out, dtype=dtype)

    def outputs(self, weights, x):
        """y = (I − L)⁻¹ W x for x of shape (..., n_in)."""
        w, lat = weights["ff"], weights["lateral"] * self._offdiag(weights["lateral"].dtype)
        a = jnp.linalg.solve(jnp.eye(self.n_out, dtype=w.dtype) - lat, w)
        return x @ a.T

    def step(self, rule, weights, state, trial):
        x = _require(trial, "x", "LateralPCANetwork")
        w, lat = weights["ff"], weights["lateral"]
        off = self._offdiag(lat.dtype)
        y = self.outputs(weights, x)
        reward = trial.get("reward", jnp.zeros(x.shape[:-1], x.dtype))
        dw = _rule_for(rule, "ff")(x, y, w, reward)
        dl = _rule_for(rule, "lateral")(y, y, lat * off, reward) * off
        return {"ff": w + dw, "lateral": lat * off + dl}, state, y


def pca_spectrum(n_in: int, n_out: int) -> np.ndarray:
    """B2 eigenvalues: the top ``n_out`` evenly from 1 to 0.6, the rest geometric from 0.25 down to 1e-3."""
    if not 1 <= n_out < n_in:
        raise DiscoveryError(f"need 1 ≤ n_out < n_in; got n_in={n_in}, n_out={n_out}")
    top = np.linspace(1.0, 0.6, n_out) if n_out > 1 else np.array([1.0])
    m = n_in - n_out
    rest = 0.25 * (1e-3 / 0.25) ** (np.arange(m) / max(m - 1, 1))
    return np.concatenate([top, rest])


class PCANetworkObjective(AbstractObjective):
    """After learning, the outputs of a :class:`LateralPCANetwork` should span the top-M principal subspace.

    Inputs as in :class:`PC1Objective` (own rotation and covariance scale per network by
    default). Loss per network: Σ sin²(principal angles between row((I − L)⁻¹W) and the
    top-M PCs) / M + ``norm_weight``·mean_i (|W_i| − 1)², where directions carrying a
    negligible share of the rows' energy do not count (outputs that all collapsed onto
    PC1 span one dimension, not M). Reported angles likewise ignore directions with
    singular value below 10 % of the largest. The truth is Oja for W and anti-Hebbian
    θ(y_i·y_j) = −1 for L.
    """

    streams: _GaussianStreams
    n_out: int = eqx.field(static=True)
    n_steps: int = eqx.field(static=True, default=300)
    n_networks: int = eqx.field(static=True, default=2)
    init_scale: float = eqx.field(static=True, default=0.1)
    norm_weight: float = eqx.field(static=True, default=1.0)
    learning_rate: float = eqx.field(static=True, default=0.1)

    @classmethod
    def create(
        cls,
        key: PRNGKeyArray | None = None,
        n_in: int = 50,
        n_out: int = 5,
        *,
        spectrum=None,
        random_rotations: bool = True,
        scale_range: tuple[float, float] | None = (0.5, 2.0),
        n_samples: int = 100,
        n_steps: int = 300,
        n_networks: int = 2,
        init_scale: float = 0.1,
        norm_weight: float = 1.0,
        learning_rate: float = 0.1,
    ) -> "PCANetworkObjective":
        """B2 with ``n_in`` inputs and ``n_out`` outputs; :func:`pca_spectrum` by default."""
        ev = pca_spectrum(n_in, n_out) if spectrum is None else np.asarray(spectrum, dtype=float)
        if ev.shape != (n_in,):
            raise DiscoveryError(f"spectrum has {ev.shape} entries but n_in={n_in}")
        if not np.all(np.diff(ev) <= 0) or ev[n_out - 1] <= ev[n_out]:
            raise DiscoveryError(
                "list the spectrum largest first, with a gap after the top n_out eigenvalues "
                f"(λ_{n_out} > λ_{n_out + 1}), or the principal subspace is not defined"
            )
        if n_samples < 1 or n_steps < 1 or n_networks < 1:
            raise DiscoveryError("n_samples, n_steps and n_networks must all be ≥ 1")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise DiscoveryError(f"scale_range must be (lo, hi) with 0 < lo ≤ hi; got {scale_range}")
        rotation = None
        if not random_rotations:
            if key is None:
                raise DiscoveryError("a fixed rotation needs a key: PCANetworkObjective.create(jax.random.key(0), ...)")
            rotation = random_rotation(key, n_in)
        streams = _GaussianStreams(
            jnp.asarray(ev), rotation, n_samples, None if scale_range is None else tuple(map(float, scale_range))
        )
        return cls(streams, n_out, n_steps, n_networks, init_scale, norm_weight, learning_rate)

    @property
    def n_in(self) -> int:
        return int(self.streams.spectrum.shape[0])

    @property
    def network(self) -> LateralPCANetwork:
        return LateralPCANetwork(self.n_in, self.n_out)

    def default_rule(self) -> dict[str, TaylorRule]:
        """Two full degree-2 Taylor rules over (x, y, w), 27 terms each, all zero."""
        full = TaylorRule.full(("x", "y", "w"), 2, learning_rate=self.learning_rate)
        return {"ff": full, "lateral": full}

    def reference_rule(self) -> dict[str, TaylorRule]:
        """Oja for W, anti-Hebbian θ(x·y) = −1 (pre = y_j, post = y_i) for L."""
        r = oja(1.0)
        return {
            "ff": TaylorRule(r.terms, r.coeffs, learning_rate=self.learning_rate),
            "lateral": TaylorRule.from_terms({"x*y": -1.0}, learning_rate=self.learning_rate),
        }

    def sample(self, key: PRNGKeyArray) -> dict[str, Array]:
        """Initial W (lateral L starts at zero), inputs, and each network's top-M PCs as rows."""
        k_q, k_w, k_x = jax.random.split(key, 3)
        q, scale = self.streams.draw(k_q, self.n_networks)
        w0 = self.init_scale * jax.random.normal(k_w, (self.n_networks, self.n_out, self.n_in), q.dtype)
        return {"w0": w0, "x": self.streams.sample(k_x, q, scale, self.n_steps), "pcs": q[:, : self.n_out, :]}

    def parameter_scales(self, rule, key):
        """Per-sample RMS of each term at the goal state (W = top PCs, L = 0.1), relative to each rule's x·y term."""
        if not isinstance(rule, Mapping) or not all(isinstance(rule.get(k), TaylorRule) for k in ("ff", "lateral")):
            return None  # one rule for both matrices (or another kind): searched without per-term scales
        ep = self.sample(key)
        x = ep["x"][:, 0]  # (network, sample, n_in)
        u = ep["pcs"]  # (network, M, n_in)
        y = jnp.einsum("ksn,kmn->ksm", x, u)
        ff = taylor_scales(rule["ff"], x[:, :, None, :], y[:, :, :, None], u[:, None])
        lat = taylor_scales(rule["lateral"], y[:, :, None, :], y[:, :, :, None], jnp.asarray(1.0, x.dtype))
        return scales_for(
            rule, {"ff": relative_to_hebbian(rule["ff"], ff), "lateral": relative_to_hebbian(rule["lateral"], lat)}
        )

    def final_weights(self, rule, episode) -> dict[str, Array]:
        net = GuardedNetwork(self.network)

        def one(w0, x):
            w = {"ff": w0, "lateral": jnp.zeros((self.n_out, self.n_out), w0.dtype)}
            return simulate(rule, net, w, {"x": x}).final_weights

        return jax.vmap(one)(episode["w0"], episode["x"])

    def _parts(self, rule, episode):
        w = self.final_weights(rule, episode)
        eye = jnp.eye(self.n_out, dtype=w["ff"].dtype)
        a = jax.vmap(lambda ff, lat: jnp.linalg.solve(eye - lat, ff))(w["ff"], w["lateral"])
        mis = jax.vmap(subspace_misalignment)(a, episode["pcs"])
        norms = jnp.sqrt(jnp.sum(w["ff"] ** 2, axis=-1))  # (network, M)
        per_net = mis + self.norm_weight * jnp.mean((norms - 1.0) ** 2, axis=-1)
        return a, norms, per_net

    def loss(self, rule, episode):
        _, _, per_net = self._parts(rule, episode)
        return jnp.mean(per_net)

    def metrics(self, rule, episode):
        a, norms, per_net = self._parts(rule, episode)
        ang = jax.vmap(conditioned_angles)(a, episode["pcs"])  # (network, M)
        ang = jnp.where(jnp.all(jnp.isfinite(a), axis=(1, 2))[:, None], ang, 90.0)
        return {
            "loss": jnp.mean(per_net),
            "max_angle_deg": jnp.max(ang),
            "mean_angle_deg": jnp.mean(ang),
            "norm": jnp.mean(norms),
        }

    def success(self, metrics):
        return bool(metrics["max_angle_deg"] < 10.0)

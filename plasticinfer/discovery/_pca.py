"""Objective B1: one output neuron should extract the first principal component of its inputs."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._networks import FeedForward
from .._rules import TaylorRule, oja
from .._simulate import simulate
from ._common import AbstractObjective, DiscoveryError, GuardedNetwork, relative_to_hebbian, scales_for, taylor_scales


def decaying_spectrum(n: int, top: float = 1.0, second: float = 0.5, smallest: float = 1e-6) -> np.ndarray:
    """DESIGN.md B1 eigenvalues, extended to ``n`` inputs.

    λ₁ = ``top``; λ₂ … λₙ decay geometrically from ``second`` to ``smallest``. For n = 3 this is
    exactly diag(1, 0.5, 1e-6); for larger n the gap λ₁ − λ₂ = 0.5 stays the same, so the
    task is equally hard per input and only the dimension grows.
    """
    if n < 2:
        raise DiscoveryError(f"a PCA objective needs at least 2 inputs; got n={n}")
    if n == 2:
        return np.array([top, second])
    rest = second * (smallest / second) ** (np.arange(n - 1) / (n - 2))
    return np.concatenate([[top], rest])


def principal_angles(a: Array, b: Array) -> np.ndarray:
    """Principal angles (degrees, ascending) between the row spaces of ``a`` (k×n) and ``b`` (m×n).

    Cosines come from the SVD of Q_aᵀQ_b; angles below 45° are taken from the sines (SVD of the
    part of Q_b outside span(Q_a)), which stay accurate near 0° (Björck & Golub 1973).
    """
    qa, _ = np.linalg.qr(np.asarray(a, dtype=float).T)
    qb, _ = np.linalg.qr(np.asarray(b, dtype=float).T)
    cos = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)  # descending
    angles = np.arccos(cos)
    if qa.shape[1] == qb.shape[1]:
        sin = np.clip(np.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False)[::-1], 0.0, 1.0)  # ascending
        small = cos**2 > 0.5
        angles = np.where(small, np.arcsin(sin), angles)
    return np.degrees(angles)


def subspace_misalignment(w: Float[Array, "k n"], u: Float[Array, "k n"], ridge: float = 1e-3) -> Array:
    """1 − tr(U P U^T)/k with P = Wᵀ(WWᵀ + ε)⁻¹W: Σ sin²(principal angles)/k for well-spread rows (differentiable).

    ``u`` has orthonormal rows. ε = ``ridge`` × the mean eigenvalue of WWᵀ, so directions
    of W with a tiny share of its energy (rows that have all collapsed onto one vector,
    leaving numerical crumbs elsewhere) do not count as spanning anything. No QR/SVD
    enters the gradient.
    """
    k = w.shape[0]
    gram = w @ w.T
    gram = gram + ridge * jnp.trace(gram) / k * jnp.eye(k, dtype=w.dtype)
    proj_u = u @ w.T  # (k_u, k)
    captured = jnp.trace(proj_u @ jnp.linalg.solve(gram, proj_u.T))
    return 1.0 - captured / u.shape[0]


def conditioned_angles(a: Float[Array, "k n"], u: Float[Array, "k n"], min_relative_sv: float = 0.1) -> Array:
    """Principal angles (degrees) between ``u``'s rows and the directions of ``a`` with singular value ≥ ``min_relative_sv`` × the largest.

    Directions of ``a`` below that are ignored, so k outputs that all carry the same signal
    span one dimension, not k; each missing dimension counts as 90°. JAX, not differentiated.
    """
    _, sv, vt = jnp.linalg.svd(a, full_matrices=False)
    keep = (sv >= min_relative_sv * sv[0]).astype(a.dtype)
    cos = jnp.linalg.svd((vt * keep[:, None]) @ u.T, compute_uv=False)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, 0.0, 1.0)))


def random_rotation(key: PRNGKeyArray, n: int, dtype=float) -> Array:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


class _GaussianStreams(eqx.Module):
    """Zero-mean Gaussian inputs with covariance s·QᵀDQ.

    Q is fixed, or drawn afresh per network; s is 1, or drawn per network log-uniformly
    from ``scale_range``.
    """

    spectrum: Float[Array, " n"]
    rotation: Float[Array, "n n"] | None
    n_samples: int = eqx.field(static=True)
    scale_range: tuple[float, float] | None = eqx.field(static=True, default=None)

    def draw(self, key, n_networks):
        """Per-network rotations (network, n, n) and covariance scales (network,)."""
        n = self.spectrum.shape[0]
        k_q, k_s = jax.random.split(key)
        if self.rotation is not None:
            q = jnp.broadcast_to(self.rotation, (n_networks, n, n))
        else:
            q = jax.vmap(lambda k: random_rotation(k, n, self.spectrum.dtype))(jax.random.split(k_q, n_networks))
        if self.scale_range is None:
            scale = jnp.ones(n_networks, self.spectrum.dtype)
        else:
            lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
            scale = jnp.exp(jax.random.uniform(k_s, (n_networks,), self.spectrum.dtype, lo, hi))
        return q, scale

    def sample(self, key, q, scale, n_steps):
        """Inputs (network, step, sample, n): x = (z·√(sD)) Q."""
        z = jax.random.normal(key, (q.shape[0], n_steps, self.n_samples, self.spectrum.shape[0]), self.spectrum.dtype)
        z = z * jnp.sqrt(self.spectrum) * jnp.sqrt(scale)[:, None, None, None]
        return jnp.einsum("ktsn,knm->ktsm", z, q)


def _check_spectrum(ev: np.ndarray) -> None:
    """Eigenvalues the objective can score against: non-negative, finite, the first strictly largest (PC1 is axis 0)."""
    if not np.all(np.isfinite(ev)) or np.any(ev < 0):
        raise DiscoveryError(f"eigenvalues must be finite and non-negative (they are variances); got {ev.tolist()}")
    order = np.sort(ev)
    if len(ev) > 1 and order[-1] - order[-2] <= 0:
        raise DiscoveryError("the top eigenvalue must be strictly largest, or PC1 is not defined")
    if ev[0] != order[-1]:
        raise DiscoveryError(f"list the spectrum largest first (λ₁ ≥ λ₂ ≥ …); got {ev.tolist()}")


class PC1Objective(AbstractObjective):
    """One linear neuron y = w·x with a plastic input vector; after learning, w should be ±PC1 with |w| = 1.

    Setup (DESIGN.md B1): x ~ N(0, QᵀDQ), ``n_samples`` input samples per step with a
    batch-mean update, ``n_steps`` steps, w₀ ~ ``init_scale``·N(0, 1). Each loss evaluation
    averages ``n_networks`` independent networks, each with its own w₀, input stream and —
    unless a fixed rotation is given — its own random rotation Q. "Extract PC1" then means
    "for any input covariance with this spectrum", which rules out terms that only work for
    one Q (x², w², x·y·w, … are not rotation-equivariant) and leaves x·y, w and y²·w.

    Those three still leave a line of exact solutions when λ₁ is fixed: the fixed point
    w = PC1 has |w|² = −(θ_xy·λ₁ + θ_w)/(θ_y²w·λ₁), so any θ_w = −λ₁(θ_xy + θ_y²w) gives |w| = 1.
    With ``scale_range`` each network's covariance is multiplied by its own s (log-uniform),
    and only θ_w = 0, θ_y²w = −θ_xy (Oja) gives |w| = 1 for every s.

    Loss per network: sin²∠(w, PC1) + ``norm_weight``·(|w| − 1)². The task fixes the
    direction and the norm, which pins Oja's θ(y²w)/θ(x·y) = −1 but not the overall rate.
    """

    streams: _GaussianStreams
    n_steps: int = eqx.field(static=True, default=200)
    n_networks: int = eqx.field(static=True, default=4)
    init_scale: float = eqx.field(static=True, default=0.1)
    norm_weight: float = eqx.field(static=True, default=1.0)
    learning_rate: float = eqx.field(static=True, default=0.1)

    @classmethod
    def create(
        cls,
        key: PRNGKeyArray | None = None,
        n_pre: int = 3,
        *,
        spectrum=None,
        random_rotations: bool = True,
        scale_range: tuple[float, float] | None = (0.5, 2.0),
        n_samples: int = 100,
        n_steps: int = 200,
        n_networks: int = 4,
        init_scale: float = 0.1,
        norm_weight: float = 1.0,
        learning_rate: float = 0.1,
    ) -> "PC1Objective":
        """B1 with ``n_pre`` inputs and :func:`decaying_spectrum` by default.

        With ``random_rotations`` (default) every simulated network draws its own Q; otherwise
        one Q is drawn from ``key`` and kept (the literal B1 setup, which a rule can overfit).
        ``scale_range=(lo, hi)`` multiplies each network's covariance by a log-uniform scale
        (default (0.5, 2)); ``None`` keeps the spectrum exactly as given (literal B1).
        """
        ev = decaying_spectrum(n_pre) if spectrum is None else np.asarray(spectrum, dtype=float)
        if ev.shape != (n_pre,):
            raise DiscoveryError(f"spectrum has {ev.shape} entries but n_pre={n_pre}; give one eigenvalue per input")
        _check_spectrum(ev)
        if n_samples < 1 or n_steps < 1 or n_networks < 1:
            raise DiscoveryError("n_samples, n_steps and n_networks must all be ≥ 1")
        if scale_range is not None and not 0 < scale_range[0] <= scale_range[1]:
            raise DiscoveryError(f"scale_range must be (lo, hi) with 0 < lo ≤ hi; got {scale_range}")
        rotation = None
        if not random_rotations:
            if key is None:
                raise DiscoveryError("a fixed rotation needs a key: PC1Objective.create(jax.random.key(0), ...)")
            rotation = random_rotation(key, n_pre)
        streams = _GaussianStreams(jnp.asarray(ev), rotation, n_samples, None if scale_range is None else tuple(map(float, scale_range)))
        return cls(streams, n_steps, n_networks, init_scale, norm_weight, learning_rate)

    @property
    def n_pre(self) -> int:
        return int(self.streams.spectrum.shape[0])

    def default_rule(self) -> TaylorRule:
        """Full degree-2 Taylor rule over (x, y, w): 27 terms, all zero, η = ``learning_rate``."""
        return TaylorRule.full(("x", "y", "w"), 2, learning_rate=self.learning_rate)

    def reference_rule(self) -> TaylorRule:
        """Oja's rule θ(x·y) = 1, θ(y²w) = −1 at η = ``learning_rate``."""
        r = oja(1.0)
        return TaylorRule(r.terms, r.coeffs, learning_rate=self.learning_rate)

    def with_spectrum(self, spectrum) -> "PC1Objective":
        """The same task on other input statistics (a generalisation probe)."""
        ev = jnp.asarray(spectrum, dtype=self.streams.spectrum.dtype)
        if ev.shape != self.streams.spectrum.shape:
            raise DiscoveryError(f"new spectrum must have {self.n_pre} entries; got {ev.shape}")
        _check_spectrum(np.asarray(spectrum, dtype=float))  # the objective scores against the first axis: it must be PC1
        return eqx.tree_at(lambda o: o.streams.spectrum, self, ev)

    def parameter_scales(self, rule, key):
        """Each Taylor term's per-sample RMS at the goal state (w = PC1, |w| = 1, y = w·x) on one step's inputs.

        Relative to the x·y term's, so φ(Oja) ≈ (1, 0.7–0.9) whatever n_pre. (Per-sample rather
        than batch-mean size: zero-mean terms such as x then move slowly in θ, which keeps
        early search steps stable.)
        """
        if not isinstance(rule, TaylorRule):
            return None
        ep = self.sample(key)
        x = ep["x"][:, 0]  # (network, sample, pre): one step's batch per network
        pc1 = ep["pc1"][:, None, :]
        y = jnp.sum(x * pc1, axis=-1, keepdims=True)
        return scales_for(rule, relative_to_hebbian(rule, taylor_scales(rule, x, y, pc1)))

    def sample(self, key: PRNGKeyArray) -> dict[str, Array]:
        """One episode: initial weights ``w0``, inputs ``x`` (network, step, sample, pre), each network's ``pc1``."""
        k_q, k_w, k_x = jax.random.split(key, 3)
        q, scale = self.streams.draw(k_q, self.n_networks)
        w0 = self.init_scale * jax.random.normal(k_w, (self.n_networks, 1, self.n_pre), q.dtype)
        return {"w0": w0, "x": self.streams.sample(k_x, q, scale, self.n_steps), "pc1": q[:, 0, :]}

    def final_weights(self, rule, episode) -> Float[Array, "network pre"]:
        net = GuardedNetwork(FeedForward(self.n_pre, 1))
        traj = jax.vmap(lambda w, xx: simulate(rule, net, {"w": w}, {"x": xx}))(episode["w0"], episode["x"])
        return traj.final_weights["w"][:, 0, :]

    def _parts(self, rule, episode):
        w = self.final_weights(rule, episode)
        norm = jnp.sqrt(jnp.sum(w * w, axis=-1))
        cos2 = jnp.sum(w * episode["pc1"], axis=-1) ** 2 / jnp.maximum(norm**2, 1e-30)
        return norm, cos2

    def loss(self, rule, episode):
        norm, cos2 = self._parts(rule, episode)
        return jnp.mean((1.0 - cos2) + self.norm_weight * (norm - 1.0) ** 2)

    def metrics(self, rule, episode):
        norm, cos2 = self._parts(rule, episode)
        angle = jnp.degrees(jnp.arccos(jnp.sqrt(jnp.clip(cos2, 0.0, 1.0))))
        return {
            "loss": jnp.mean((1.0 - cos2) + self.norm_weight * (norm - 1.0) ** 2),
            "angle_deg": jnp.mean(angle),
            "max_angle_deg": jnp.max(angle),
            "norm": jnp.mean(norm),
        }

    def success(self, metrics):
        """Mean angle to PC1 under 10° and mean |w| within 10 % of 1 (the max angle is reported too:
        one network whose w₀ starts almost orthogonal to PC1 can lag behind)."""
        return bool(metrics["angle_deg"] < 10.0 and abs(float(metrics["norm"]) - 1.0) < 0.1)


def oja_comparison(rule: TaylorRule) -> dict[str, float]:
    """A rule's coefficients normalised by θ(x·y), next to Oja's (θ(x·y) = 1, θ(y²w) = −1).

    Returns ``rate`` (θ(x·y): the overall rate the objective leaves free), ``y2w`` (θ(y²w)/θ(x·y)),
    ``y2w_error_pct`` (its % deviation from −1), ``w`` (θ(w)/θ(x·y)) and ``largest_other``
    (largest |θ/θ(x·y)| among the remaining terms) with its term name in ``largest_other_term``.
    """
    c = rule.coefficients
    if "x*y" not in c or "y^2*w" not in c:
        raise DiscoveryError("oja_comparison needs a Taylor rule with x*y and y^2*w terms")
    s = c["x*y"]
    if s == 0:
        return {"rate": 0.0, "y2w": float("nan"), "y2w_error_pct": float("nan"), "w": float("nan"), "largest_other": float("nan"), "largest_other_term": ""}
    others = {k: abs(v / s) for k, v in c.items() if k not in ("x*y", "y^2*w")}
    top = max(others, key=others.get) if others else ""
    return {
        "rate": float(s),
        "y2w": float(c["y^2*w"] / s),
        "y2w_error_pct": float(100 * (c["y^2*w"] / s + 1.0)),
        "w": float(c.get("w", 0.0) / s),
        "largest_other": float(others.get(top, 0.0)),
        "largest_other_term": top,
    }

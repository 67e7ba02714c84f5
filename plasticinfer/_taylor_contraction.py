"""The two ways of contracting a Taylor rule's coefficient tensor with a batch of activity.

Δw_ij = (1/N) Σ_n Σ_abcd θ_abcd · x_nj^a · y_ni^b · w_ij^c · r_n^d

can be summed in two orders, and which is cheaper depends only on the shapes:

- **per synapse** (``"synapse"``): contract θ with the presynaptic and reward powers of every
  sample first, z[n, b, c, j] = Σ_ad θ_abcd x_nj^a r_n^d, then visit every synapse once with a
  polynomial in (y_i, w_ij). Cost ≈ N·B·C·pre·(A·D + post). Built for large layers with one
  (or few) samples per trial — the fitting workload.
- **moments first** (``"moments"``): average the activity over the batch first,
  M[a, b, d, i, j] = mean_n y_ni^b r_n^d x_nj^a, then contract θ with M. Cost ≈
  A·B·D·post·pre·(N + C). Built for many samples into a small layer — the discovery workload
  (PC1: 100 samples into one neuron).

:func:`choose_contraction` picks the cheaper from these two counts; both return the same Δw.

The per-synapse path is the only part of a Taylor update that touches every synapse more than
once, so it carries hand-written derivatives: a VJP for reverse mode on large layers (below; chosen
by ``"auto"`` from 2,000 synapses) and a JVP, which every JAX transformation can enter (forward mode,
``jacfwd``, Hessians). For up to 16 (sample, y-power) pairs the JVP's linear part is elementwise —
dy ⊙ ∂P/∂y, the polynomial in the coefficient tangents, dw ⊙ ∂P/∂w — so JAX's transpose of it is
one fused pass per cotangent: a row sum for y, column sums for the coefficients, an elementwise
product for w. Beyond that it is two matrix products over the (sample, y-power) axis. The
forward is a nested Horner scheme (in w, then in y): 2·(B·C − 1) flops per synapse and sample,
one read and one write of the weight matrix.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

Contraction = Literal["auto", "synapse", "moments"]
Derivative = Literal["auto", "reverse", "forward", "fused"]

# from this many synapses on, the hand-written VJP beats JAX's transpose of the JVP (gradient of a
# 240-trial log-likelihood on a 2-core CPU, per trajectory, single / vmapped over 8: JVP faster
# at 2 × 10 (0.9 vs 1.3 ms / 0.29 vs 0.34 ms); mixed at 10 × 100 (2.8 vs 3.3 ms / 2.4 vs 1.8 ms);
# the VJP faster from 10 × 200 (5.3 vs 10.1 ms) and 20 × 200 (8.0 vs 8.7 ms / 4.1 vs 6.6 ms) on,
# 7.6× at 1000 × 100 single (65 vs 495 ms))
_VJP_MIN_SYNAPSES = 2000


def choose_derivative(n_post: int, n_pre: int) -> str:
    """``"reverse"`` (the VJP) for layers of at least 2,000 synapses, else ``"forward"`` (the JVP)."""
    return "reverse" if n_post * n_pre >= _VJP_MIN_SYNAPSES else "forward"

# up to this many (sample, y-power) pairs the per-synapse path sums Horner polynomials
# elementwise; beyond it, it forms the C coefficient matrices with one matrix product
_ELEMENTWISE_MAX = 16


def _powers(v, n: int):
    """Stack v^0, …, v^(n-1) along a new axis 1 by repeated multiplication (finite gradient at 0)."""
    out = [jnp.ones_like(v)]
    for _ in range(1, n):
        out.append(out[-1] * v)
    return jnp.stack(out, axis=1)


def _horner(polys, v):
    """Σ_k polys[k] · v^k by Horner's scheme (polys broadcast against v)."""
    out = polys[-1]
    for p in reversed(polys[:-1]):
        out = out * v + p
    return out


def choose_contraction(shape: tuple[int, int, int, int], n_samples: int, n_post: int, n_pre: int) -> str:
    """``"moments"`` or ``"synapse"``, whichever needs fewer multiply-adds for these shapes.

    ``shape`` is the coefficient tensor's (A, B, C, D): one more than the highest power of
    x, y, w and r. The pre-count factors out of both estimates.
    """
    a, b, c, d = shape
    synapse = n_samples * b * c * (a * d + n_post)
    moments = a * b * d * n_post * (n_samples + c)
    return "moments" if moments < synapse else "synapse"


def taylor_update(
    theta, pre, post, weight, reward, contraction: Contraction = "auto", *, scale: float = 1.0, derivative: Derivative = "auto"
):
    """scale · mean_n Σ θ_abcd x^a y^b w^c r^d for θ (A, B, C, D), pre (N, pre), post (N, post), w (post, pre), r (N,).

    ``derivative`` picks the per-synapse path's hand-written derivative: ``"reverse"`` (a VJP;
    fastest gradients on large layers, no forward mode), ``"forward"`` (a JVP; every JAX
    transformation) or ``"auto"`` (:func:`choose_derivative`, from the layer's size).
    """
    n, n_pre = pre.shape
    n_post = post.shape[1]
    if contraction == "auto":
        contraction = choose_contraction(theta.shape, n, n_post, n_pre)
    if contraction == "moments":
        return scale * _moments_first(theta, pre, post, weight, reward)
    if derivative == "auto":
        derivative = choose_derivative(n_post, n_pre)
    if derivative == "reverse":
        return _synapse_reverse(theta, pre, post, weight, reward, float(scale))
    return scale * _synapse_poly(post, _per_sample_coefficients(theta, pre, reward), weight)


def _moments_first(theta, pre, post, weight, reward):
    a, b, c, d = theta.shape
    n = pre.shape[0]
    xp = _powers(pre, a)  # (n, A, pre)
    yr = _powers(post, b)[:, :, None, :] * _powers(reward, d)[:, None, :, None]  # (n, B, D, post)
    moments = jnp.einsum("nbdi,naj->abdij", yr, xp) / n
    g = jnp.einsum("abcd,abdij->cij", theta, moments)
    return _horner([g[k] for k in range(c)], weight)


def _per_sample_coefficients(theta, pre, reward):
    """z[n, b, c, j] = Σ_ad θ_abcd x_nj^a r_n^d: the per-sample coefficients of the (y, w) polynomial."""
    a, b, c, d = theta.shape
    n, n_pre = pre.shape
    xr = (_powers(pre, a)[:, :, None, :] * _powers(reward, d)[:, None, :, None]).reshape(n, a * d, n_pre)
    # θ as a (B·C, A·D) matrix: z comes out of one batched matrix product already in the
    # (sample, b, c, pre) row-major layout the synapse loop reads contiguously
    # (an einsum here lets XLA emit the product as (pre, B·C) and read it transposed inside the
    # synapse loop, which then cannot vectorise: 4× slower at 100 → 1000)
    t2 = jnp.transpose(theta, (1, 2, 0, 3)).reshape(b * c, a * d)
    z = jax.lax.dot_general(t2, xr, (((1,), (1,)), ((), ())))  # (B·C, n, pre)
    return jnp.moveaxis(z, 1, 0).reshape(n, b, c, n_pre)


def _coefficients(y, z):
    """The C matrices G_c[i, j] = Σ_nb y_ni^b z[n, b, c, j] (for the matrix-product branch)."""
    n, b, c, p = z.shape
    yp = _powers(y, b).reshape(n * b, -1)  # (nB, post)
    return (yp.T @ z.reshape(n * b, c * p)).reshape(-1, c, p)


def _poly(y, z, w):
    """Σ_n Σ_bc y_ni^b w_ij^c z[n, b, c, j] (not yet divided by N)."""
    n, b, c, p = z.shape
    if n * b <= _ELEMENTWISE_MAX:
        # nested Horner, all broadcast in one elementwise loop: w-polynomial per y-power, then y
        out = 0.0
        for s in range(n):
            q = [_horner([z[s, k, j][None, :] for j in range(c)], w) for k in range(b)]
            out = out + _horner(q, y[s][:, None])
        return jnp.broadcast_to(out, w.shape)  # a rule without y and w terms gives a row
    g = _coefficients(y, z)
    return _horner([g[:, j] for j in range(c)], w)


def _poly_dw(y, z, w):
    """∂/∂w of :func:`_poly`: Σ_n Σ_bc c · y^b w^(c−1) z[n, b, c, j]."""
    n, b, c, p = z.shape
    if c == 1:
        return None
    dz = jnp.stack([k * z[:, :, k] for k in range(1, c)], axis=2)  # coefficients of the w-derivative
    return _poly(y, dz, w)


@jax.custom_jvp
def _synapse_poly(y, z, w):
    """(1/N) Σ_n Σ_bc y[n, :, None]^b · w^c · z[n, b, c, None, :] for y (N, post), z (N, B, C, pre), w (post, pre)."""
    return _poly(y, z, w) / y.shape[0]


@_synapse_poly.defjvp
def _synapse_poly_jvp(primals, tangents):
    y, z, w = primals
    dy, dz, dw = tangents
    n, b, c, p = z.shape
    out = _poly(y, z, w) / n
    # tangent in (y, z): Σ_c w^c ⊙ M_c with M = ∂(Y^T Z) — two matrix products over the (n, b)
    # axis, whose transposes are the backward's input cotangents from V_c = ū ⊙ w^c
    if n * b <= _ELEMENTWISE_MAX:
        # all elementwise: the transpose is row sums (for y) and column sums (for z) of
        # polynomials XLA fuses with the cotangent, with no thin matrix products
        t = _poly(y, dz, w)
        if b > 1:
            dzy = jnp.stack([k * z[:, k] for k in range(1, b)], axis=1)  # coefficients of ∂/∂y
            for s in range(n):
                t = t + dy[s][:, None] * _poly(y[s : s + 1], dzy[s : s + 1], w)
    else:
        yp = _powers(y, b)  # (n, B, post)
        dyp = [jnp.zeros_like(dy)] + [k * yp[:, k - 1] * dy for k in range(1, b)]  # d(y^k) = k y^(k−1) dy
        dyp = jnp.stack(dyp, axis=1)
        m = dyp.reshape(n * b, -1).T @ z.reshape(n * b, c * p) + yp.reshape(n * b, -1).T @ dz.reshape(n * b, c * p)
        m = m.reshape(-1, c, p)
        t = _horner([m[:, j] for j in range(c)], w)
    deriv = _poly_dw(y, z, w)
    if deriv is not None:
        t = t + deriv * dw
    return out, t / n


# --------------------------------------------------------------------------------------
# The reverse-mode path: a hand-written VJP of the whole update
# --------------------------------------------------------------------------------------
#
# Transposing the JVP above leaves XLA with a dozen small kernels per trial. The VJP below goes
# from the update's cotangent ū straight to the cotangents of (θ, x, y, w, r), through the
# *presynaptic* side: with V_c = ū ⊙ w^c (one elementwise loop) it forms
#   M_c[i, (n, a)] = Σ_j V_c[i, j] x_nj^a      — one product (C·post × pre)·(pre × N·A) over the stacked V_c
# and everything else from these small (post × N·A) matrices:
#   θ̄_abcd = Σ_n r_n^d Σ_i y_ni^b M_c[i, n, a]
#   ȳ_ni   = Σ_b≥1 b y_ni^(b−1) Σ_ac M_c[i, n, a] Σ_d θ_abcd r_n^d
#   r̄_n    = Σ_d≥1 d r_n^(d−1) Σ_abc θ_abcd Σ_i y_ni^b M_c[i, n, a]
#   w̄      = ū ⊙ ∂P/∂w                         — one elementwise Horner pass
# The presynaptic cotangent x̄ (needed when x is itself computed, as in a recurrent layer) comes
# from one more product with the stacked V_c, transposed; XLA drops it when x is data. The former
# VJP went through the per-sample coefficients z (z̄, then θ̄ and x̄ from it) and needed both sets
# of products, as 2·C separate thin products: on XLA:CPU (2 cores, 100 → 1000) one backward step
# took 258 µs, now 131 µs, and the whole gradient is 1.8× faster (docs/core.md). One stacked
# product or C separate ones over the same planes: within noise in the whole gradient (243–261 vs
# 262–269 µs per trial at 100 → 1000); timed alone, the separate ones are faster (bench_gradient.py
# section 3); the stacked matrix stays, as x̄ uses it transposed. The learning rate and 1/N are
# applied to the small outputs, not to ū. The forward pass computes Δw directly (it
# does not call the custom_vjp function again), so forward over reverse (``jax.hessian``) works;
# plain forward mode (``jax.jvp``, ``jax.jacfwd``) does not enter a VJP.


def _weight_power_planes(u, w, c: int):
    """(C, post, pre): u ⊙ w^k for k < C, as one elementwise loop over an iota.

    A stack of the C products would be a concatenate, which XLA:CPU does not vectorise (102 instead
    of ~41 µs per trial at 100 → 1000).
    """
    plane = jax.lax.broadcasted_iota(jnp.int32, (c,) + w.shape, 0)
    out = jnp.broadcast_to(u, (c,) + w.shape)
    for j in range(1, c):
        out = out * jnp.where(plane >= j, w, jnp.ones_like(w))
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _synapse_reverse(theta, pre, post, weight, reward, scale: float):
    """scale · mean_n Σ θ_abcd x^a y^b w^c r^d by the per-synapse path (as :func:`taylor_update`), with a VJP."""
    return _synapse_reverse_fwd(theta, pre, post, weight, reward, scale)[0]


def _synapse_reverse_fwd(theta, pre, post, weight, reward, scale):
    z = _per_sample_coefficients(theta, pre, reward)
    out = _poly(post, z, weight) * (scale / pre.shape[0])
    # z is not kept: recomputed in the backward pass (one small product), it is a buffer of its own
    # there; read as a slice of the stacked residuals of a scan, its broadcasts inside the
    # elementwise w̄ loop were not vectorised by XLA:CPU (6× slower at 100 → 1000)
    return out, (theta, pre, post, weight, reward)


def _synapse_reverse_bwd(scale, residuals, u):
    theta, x, y, w, r = residuals
    a, b, c, d = theta.shape
    n, p = x.shape
    s = scale / n
    xp = _powers(x, a)  # (N, A, pre)
    yp = _powers(y, b)  # (N, B, post)
    rp = _powers(r, d)  # (N, D)
    stacked = _weight_power_planes(u, w, c).reshape(-1, p)  # the V_c one above the other: (C·post, pre)
    # M_c[i, n, a] as (C, post, N, A), from one product
    m = (stacked @ xp.reshape(n * a, p).T).reshape(c, -1, n, a)
    g = jnp.einsum("nbi,cina->nabc", yp, m)  # Σ_i y_ni^b M_c[i, n, a]
    theta_r = jnp.einsum("abcd,nd->nabc", theta, rp)  # Σ_d θ_abcd r_n^d
    theta_bar = jnp.einsum("nabc,nd->abcd", g, rp) * s
    if d > 1:
        h = jnp.einsum("abcd,nabc->nd", theta, g)
        r_bar = sum(k * rp[:, k - 1] * h[:, k] for k in range(1, d)) * s
    else:
        r_bar = jnp.zeros_like(r)
    if b > 1:
        q = jnp.einsum("cina,nabc->nbi", m, theta_r)
        y_bar = sum(k * yp[:, k - 1] * q[:, k] for k in range(1, b)) * s
    else:
        y_bar = jnp.zeros_like(y)
    if a > 1:
        # x̄_nj = Σ_a' x_nj^a' Σ_ci V_c[i, j] H[c, i, n, a'] with H = (a'+1) Σ_b y_ni^b Σ_d θ_(a'+1)bcd r_n^d:
        # one product with the stacked V_c transposed
        hx = jnp.einsum("nbi,nabc->cina", yp, theta_r[:, 1:] * jnp.arange(1, a, dtype=theta.dtype)[None, :, None, None])
        lx = jax.lax.dot_general(stacked, hx.reshape(-1, n * (a - 1)), (((0,), (0,)), ((), ())))  # (pre, N·(A−1))
        lx = lx.T.reshape(n, a - 1, p)
        x_bar = sum(xp[:, k] * lx[:, k] for k in range(a - 1)) * s
    else:
        x_bar = jnp.zeros_like(x)
    deriv = _poly_dw(y, _per_sample_coefficients(theta, x, r), w)
    w_bar = u * (deriv * s) if deriv is not None else jnp.zeros_like(w)
    # each cotangent in its primal's dtype (mixed precision would otherwise promote, e.g. float32
    # coefficients with float64 activity, and change the dtype of an optimiser's carry)
    primals = (theta, x, y, w, r)
    bars = (theta_bar, x_bar, y_bar, w_bar, r_bar)
    return tuple(g.astype(v.dtype) if jnp.issubdtype(v.dtype, jnp.floating) else g for g, v in zip(bars, primals))


_synapse_reverse.defvjp(_synapse_reverse_fwd, _synapse_reverse_bwd)

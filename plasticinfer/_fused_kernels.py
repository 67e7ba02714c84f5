"""Fused CPU kernels for one plastic layer under a Taylor rule (numba): ``TaylorRule(..., derivative="fused")``.

The layer is ``FeedForward`` with the identity activation and one sample per trial; the rule is a
polynomial in x, y, w, r with powers up to 2 (θ padded to 3 × 3 × 3 × 3). Rows of W evolve
independently (y_i depends on row i only), so each kernel takes a block of B = 16 rows — the block's
weights (16 × n_pre) in L1 — through every trial, instead of a pass over the whole W per trial as XLA's
scan does. Within a block each row's loop over its inputs is the SIMD loop: the sums over inputs (the
output, the backward's nine sums) are reductions held in registers. The gradient's forward keeps each
block's weights at the start of every segment of K trials (√T or more, checkpoints); the backward
recomputes one segment at a time into a per-thread buffer (K × 16 × n_pre, sized to stay in the core's
cache) and walks it backwards in one fused pass per trial.

Scalars are built from the data's dtype (``zero = lr - lr``, ``w + w`` for 2w): an integer or Python
float literal would promote float32 arithmetic to float64.

Imported only when a rule asks for it (numba is an optional dependency: ``pip install numba``).
``cache=True`` keeps the compiled kernels on disk beside this file (or in numba's user cache).
"""

import numba as nb
import numpy as np

B = 16  # rows per block


def coefficient_cotangent(acc_parts, R, lr):
    """θ̄[a, b, c, d] = η·Σ_t acc[t, a, b, c]·r_t^d, summed over the parts in a fixed order."""
    acc = acc_parts.sum(axis=0)
    rp = np.stack([np.ones_like(R), R, R * R], axis=-1)
    return (lr * np.einsum("tabc,td->abcd", acc, rp)).astype(acc.dtype)


@nb.njit(cache=True)
def _theta_r(theta, lr, R):
    """η·Σ_d θ[a, b, c, d] r_t^d for every trial: (T, 3, 3, 3)."""
    out = np.empty((R.shape[0], 3, 3, 3), theta.dtype)
    for t in range(R.shape[0]):
        r = R[t]
        for a in range(3):
            for b in range(3):
                for c in range(3):
                    out[t, a, b, c] = lr * (theta[a, b, c, 0] + r * (theta[a, b, c, 1] + r * theta[a, b, c, 2]))
    return out


@nb.njit(fastmath=True, inline="always")
def _coefficients(tr, y, q):
    """q[3a + c, k] = Σ_b tr[a, b, c] y_k^b: the polynomial in (x, w) of row k on this trial."""
    for a in range(3):
        for c in range(3):
            t0, t1, t2 = tr[a, 0, c], tr[a, 1, c], tr[a, 2, c]
            for k in range(B):
                q[a * 3 + c, k] = t0 + y[k] * (t1 + y[k] * t2)


@nb.njit(fastmath=True, inline="always")
def _output(w, x, y, zero):
    """y_k = Σ_j w[k, j] x_j: the block's outputs on one trial."""
    for k in range(B):
        s = zero
        for j in range(x.shape[0]):
            s += w[k, j] * x[j]
        y[k] = s


@nb.njit(fastmath=True, inline="always")
def _update(w, wn, x, q):
    """wn = w + P(x, w) with the row polynomials q of this trial (wn may be w)."""
    for k in range(B):
        q0, q1, q2, q3, q4, q5, q6, q7, q8 = q[0, k], q[1, k], q[2, k], q[3, k], q[4, k], q[5, k], q[6, k], q[7, k], q[8, k]
        for j in range(x.shape[0]):
            xj = x[j]
            wj = w[k, j]
            p0 = q0 + xj * (q3 + xj * q6)
            p1 = q1 + xj * (q4 + xj * q7)
            p2 = q2 + xj * (q5 + xj * q8)
            wn[k, j] = wj + p0 + wj * (p1 + wj * p2)


@nb.njit(fastmath=True, inline="always")
def _load_block(w, W0, i0, n):
    for k in range(n):
        w[k] = W0[i0 + k]
    for k in range(n, B):  # padding rows copy a real row: they stay finite wherever the real rows do
        w[k] = W0[i0]


@nb.njit(parallel=True, fastmath=True, cache=True)
def forward(theta, lr, W0, X, XZ, R, Y, WT, CK, K):
    """The layer's run: outputs Y (T, n_post) and final weights WT.

    ``X`` and ``XZ`` are the inputs, their columns padded (``_fused.pad``): the rule reads ``X`` (padding columns copy
    a real one), the outputs read ``XZ`` (padding columns zero), so padding columns never reach an output.

    With ``CK`` of shape (blocks, segments, B, n_pre) it also keeps each block's weights at the start of
    every segment of K trials (the backward's checkpoints); an empty ``CK`` keeps none.
    """
    T, n_pre = X.shape
    n_post = W0.shape[0]
    TR = _theta_r(theta, lr, R)
    keep = CK.shape[0] > 0
    zero = lr - lr
    for blk in nb.prange((n_post + B - 1) // B):
        w = np.empty((B, n_pre), X.dtype)
        ys = np.empty((T, B), X.dtype)
        y = np.empty(B, X.dtype)
        q = np.empty((9, B), X.dtype)
        i0 = blk * B
        n = min(B, n_post - i0)
        _load_block(w, W0, i0, n)
        for t0 in range(0, T, K):
            if keep:
                CK[blk, t0 // K] = w
            for t in range(t0, min(T, t0 + K)):
                _output(w, XZ[t], y, zero)
                _coefficients(TR[t], y, q)
                _update(w, w, X[t], q)
                ys[t] = y
        for k in range(n):
            Y[:, i0 + k] = ys[:, k]
            WT[i0 + k] = w[k]


@nb.njit(parallel=True, fastmath=True, cache=True)
def backward(theta, lr, X, XZ, R, Ybar, WTbar, CK, K, W0bar, acc_parts, store):
    """Per block of rows and per segment of K trials, last first: the segment's forward again from its checkpoint
    (``CK``, kept by :func:`forward`), storing the block's weights of every trial in a buffer that stays in cache,
    then one pass per trial backwards.

    A (B, n_pre) holds λ_{t+1}·(1 + ∂P/∂w) before ȳ_{t+1}·x_{t+1} is added (λ: the weights' adjoint,
    starting from the final weights' cotangent WTbar), so one pass per row and trial forms λ, the nine sums
    S[3a + c] = Σ_j λ_j x_j^a w_j^c of the row (for θ̄ and ȳ) and the next A together. acc_parts[p, t, a, b, c]
    gathers Σ_rows S[3a + c]·y^b of trial t; θ̄ follows by contracting with η·r_t^d
    (:func:`coefficient_cotangent`). Each part p (a fixed number, not the thread count) sums its rows in a
    fixed order, so results do not depend on the number of threads. ``store=False`` runs only the
    recomputing forwards (for timing).
    """
    T, n_pre = X.shape
    n_post = W0bar.shape[0]
    n_blocks = (n_post + B - 1) // B
    n_parts = acc_parts.shape[0]
    n_seg = CK.shape[1]
    TR = _theta_r(theta, lr, R)
    zero = lr - lr
    for part in nb.prange(n_parts):
        acc = acc_parts[part]
        ys = np.empty((K, B), X.dtype)
        buf = np.empty((K + 1, B, n_pre), X.dtype)
        y = np.empty(B, X.dtype)
        q = np.empty((9, B), X.dtype)
        A = np.zeros((B, n_pre), X.dtype)  # λ_{t+1}·(1 + ∂P/∂w), before adding ȳ_{t+1}·x_{t+1}
        S = np.empty((9, B), X.dtype)
        yb = np.empty(B, X.dtype)
        ybn = np.zeros(B, X.dtype)
        zx = np.zeros(n_pre, X.dtype)
        x2 = np.empty(n_pre, X.dtype)  # this trial's x_j²
        for blk in range(part, n_blocks, n_parts):
            i0 = blk * B
            n = min(B, n_post - i0)
            A[:] = 0
            ybn[:] = 0
            for k in range(n):  # padding rows keep a zero adjoint: they add exactly 0
                A[k] = WTbar[i0 + k]
            xn = zx
            for seg in range(n_seg - 1, -1, -1):
                t0 = seg * K
                t1 = min(T, t0 + K)
                buf[0] = CK[blk, seg]
                for t in range(t0, t1):
                    _output(buf[t - t0], XZ[t], y, zero)
                    _coefficients(TR[t], y, q)
                    _update(buf[t - t0], buf[t - t0 + 1], X[t], q)
                    ys[t - t0] = y
                if not store:
                    continue
                for t in range(t1 - 1, t0 - 1, -1):
                    x, wt, yt, tr = X[t], buf[t - t0], ys[t - t0], TR[t]
                    _coefficients(tr, yt, q)
                    for j in range(n_pre):
                        x2[j] = x[j] * x[j]
                    for k in range(B):
                        q1, q4, q7 = q[1, k], q[4, k], q[7, k]
                        q2, q5, q8 = q[2, k] + q[2, k], q[5, k] + q[5, k], q[8, k] + q[8, k]  # doubled: ∂P/∂w = p1 + w·p2
                        ybk = ybn[k]
                        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
                        Ak = A[k]
                        wk = wt[k]
                        for j in range(n_pre):
                            xj = x[j]
                            lam = Ak[j] + ybk * xn[j]
                            wj = wk[j]
                            xx = x2[j]
                            lw = lam * wj
                            lww = lw * wj
                            s0 += lam
                            s1 += lw
                            s2 += lww
                            s3 += lam * xj
                            s4 += lw * xj
                            s5 += lww * xj
                            s6 += lam * xx
                            s7 += lw * xx
                            s8 += lww * xx
                            p1 = q1 + xj * (q4 + xj * q7)
                            p2 = q2 + xj * (q5 + xj * q8)
                            Ak[j] = lam + lam * (p1 + wj * p2)  # λ·(1 + ∂P/∂w)
                        S[0, k] = s0
                        S[1, k] = s1
                        S[2, k] = s2
                        S[3, k] = s3
                        S[4, k] = s4
                        S[5, k] = s5
                        S[6, k] = s6
                        S[7, k] = s7
                        S[8, k] = s8
                    for k in range(n):
                        yb[k] = Ybar[t, i0 + k]
                    for k in range(n, B):
                        yb[k] = 0
                    a_ = acc[t]
                    for a in range(3):
                        for c in range(3):
                            c1, c2 = tr[a, 1, c], tr[a, 2, c]
                            r0 = zero
                            r1 = zero
                            r2 = zero
                            for k in range(B):
                                s = S[a * 3 + c, k]
                                yk = yt[k]
                                r0 += s
                                r1 += s * yk
                                r2 += s * yk * yk
                                yb[k] += s * (c1 + (yk + yk) * c2)
                            a_[a, 0, c] += r0
                            a_[a, 1, c] += r1
                            a_[a, 2, c] += r2
                    ybn[:] = yb
                    xn = XZ[t]  # zero in padding columns: their adjoint stays 0 and adds exactly 0 to every sum
            for k in range(n):
                W0bar[i0 + k] = A[k] + ybn[k] * xn

"""Fused CPU kernels for one plastic layer under a Taylor rule (numba): ``TaylorRule(..., derivative="fused")``.

The layer is ``FeedForward`` with the identity activation and one sample per trial; the rule is a
polynomial in x, y, w, r with powers up to 2 (θ padded to 3 × 3 × 3 × 3). Rows of W evolve
independently (y_i depends on row i only), so each kernel takes a block of B = 16 rows — the rows in the
SIMD lanes, the block's weights (n_pre × 16) in L1 — through every trial, instead of a pass over the
whole W per trial as XLA's scan does. The backward recomputes a block's trajectory into a per-thread
buffer (T × n_pre × 16) and walks it backwards in one fused pass per trial.

Imported only when a rule asks for it (numba is an optional dependency: ``pip install numba``).
``cache=True`` keeps the compiled kernels on disk beside this file (or in numba's user cache).
"""

import numba as nb
import numpy as np

B = 16  # rows per block: one AVX-512 register of float32


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
def _run_block(w, X, TR, ys, buf, store, y, q):
    T, n_pre = X.shape
    for t in range(T):
        x = X[t]
        for k in range(B):
            y[k] = 0
        for j in range(n_pre):
            xj = x[j]
            for k in range(B):
                y[k] += w[j, k] * xj
        ys[t] = y
        if store:
            buf[t] = w
        _coefficients(TR[t], y, q)
        for j in range(n_pre):
            xj = x[j]
            for k in range(B):
                wj = w[j, k]
                p0 = q[0, k] + xj * (q[3, k] + xj * q[6, k])
                p1 = q[1, k] + xj * (q[4, k] + xj * q[7, k])
                p2 = q[2, k] + xj * (q[5, k] + xj * q[8, k])
                w[j, k] = wj + p0 + wj * (p1 + wj * p2)


@nb.njit(parallel=True, fastmath=True, cache=True)
def forward(theta, lr, W0, X, R, Y, WT):
    T, n_pre = X.shape
    n_post = W0.shape[0]
    TR = _theta_r(theta, lr, R)
    for blk in nb.prange((n_post + B - 1) // B):
        w = np.zeros((n_pre, B), X.dtype)
        ys = np.empty((T, B), X.dtype)
        buf = np.empty((1, n_pre, B), X.dtype)
        y = np.empty(B, X.dtype)
        q = np.empty((9, B), X.dtype)
        i0 = blk * B
        n = min(B, n_post - i0)
        for k in range(n):
            w[:, k] = W0[i0 + k]
        for k in range(n, B):  # padding lanes copy a real row: they stay finite wherever the real rows do
            w[:, k] = W0[i0]
        _run_block(w, X, TR, ys, buf, False, y, q)
        for k in range(n):
            Y[:, i0 + k] = ys[:, k]
            WT[i0 + k] = w[:, k]


@nb.njit(parallel=True, fastmath=True, cache=True)
def backward(theta, lr, W0, X, R, Ybar, WTbar, W0bar, acc_parts, store):
    """Per block of rows: the forward again, storing the block's weights of every trial, then one pass per trial backwards.

    A (n_pre, B) holds λ_{t+1}·(1 + ∂P/∂w) before ȳ_{t+1}·x_{t+1} is added (λ: the weights' adjoint,
    starting from the final weights' cotangent WTbar), so one pass per trial forms λ, the nine sums
    S[a, c] = Σ_j λ_j x_j^a w_j^c of each row (for θ̄ and ȳ) and the next A together. acc_parts[p, t, a, b, c]
    gathers Σ_rows S[a, c]·y^b of trial t; θ̄ follows by contracting with η·r_t^d
    (:func:`coefficient_cotangent`). Each part p (a fixed number, not the thread count) sums its rows in a
    fixed order, so results do not depend on the number of threads. ``store=False`` runs only the storing
    forward (for timing).
    """
    T, n_pre = X.shape
    n_post = W0.shape[0]
    n_blocks = (n_post + B - 1) // B
    n_parts = acc_parts.shape[0]
    TR = _theta_r(theta, lr, R)
    for part in nb.prange(n_parts):
        acc = acc_parts[part]
        w = np.zeros((n_pre, B), X.dtype)
        ys = np.empty((T, B), X.dtype)
        buf = np.empty((T, n_pre, B), X.dtype)
        y = np.empty(B, X.dtype)
        q = np.empty((9, B), X.dtype)
        A = np.zeros((n_pre, B), X.dtype)  # λ_{t+1}·(1 + ∂P/∂w), before adding ȳ_{t+1}·x_{t+1}
        S = np.empty((9, B), X.dtype)
        yb = np.empty(B, X.dtype)
        ybn = np.zeros(B, X.dtype)
        zx = np.zeros(n_pre, X.dtype)
        for blk in range(part, n_blocks, n_parts):
            i0 = blk * B
            n = min(B, n_post - i0)
            w[:] = 0
            A[:] = 0
            ybn[:] = 0
            for k in range(n):
                w[:, k] = W0[i0 + k]
                A[:, k] = WTbar[i0 + k]
            for k in range(n, B):  # a copy of a real row with a zero adjoint: finite, and adds exactly 0
                w[:, k] = W0[i0]
            _run_block(w, X, TR, ys, buf, True, y, q)
            if not store:
                continue
            xn = zx
            for t in range(T - 1, -1, -1):
                x, wt, yt, tr = X[t], buf[t], ys[t], TR[t]
                _coefficients(tr, yt, q)
                S[:] = 0
                for j in range(n_pre):
                    xj = x[j]
                    xx = xj * xj
                    xnj = xn[j]
                    for k in range(B):
                        lam = A[j, k] + ybn[k] * xnj
                        wj = wt[j, k]
                        lw = lam * wj
                        lww = lw * wj
                        S[0, k] += lam
                        S[1, k] += lw
                        S[2, k] += lww
                        S[3, k] += lam * xj
                        S[4, k] += lw * xj
                        S[5, k] += lww * xj
                        S[6, k] += lam * xx
                        S[7, k] += lw * xx
                        S[8, k] += lww * xx
                        p1 = q[1, k] + xj * (q[4, k] + xj * q[7, k])
                        p2 = q[2, k] + xj * (q[5, k] + xj * q[8, k])
                        A[j, k] = lam * (1 + p1 + 2 * wj * p2)
                for k in range(n):
                    yb[k] = Ybar[t, i0 + k]
                for k in range(n, B):
                    yb[k] = 0
                a_ = acc[t]
                for a in range(3):
                    for c in range(3):
                        t1, t2 = tr[a, 1, c], tr[a, 2, c]
                        s0 = 0 * t1
                        s1 = s0
                        s2 = s0
                        for k in range(B):
                            s = S[a * 3 + c, k]
                            yk = yt[k]
                            s0 += s
                            s1 += s * yk
                            s2 += s * yk * yk
                            yb[k] += s * (t1 + 2 * yk * t2)
                        a_[a, 0, c] += s0
                        a_[a, 1, c] += s1
                        a_[a, 2, c] += s2
                ybn[:] = yb
                xn = x
            for k in range(n):
                W0bar[i0 + k] = A[:, k] + ybn[k] * xn


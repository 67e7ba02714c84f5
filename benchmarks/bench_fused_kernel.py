"""Would a fused kernel outside XLA bring the gradient within 4× of the forward? (issue: scale, item 1)

An experiment, not a mode of the package. The 100 → 1000 layer × 2,000 trials of
``bench_gradient.py`` section 2 (81-term Taylor rule over x, y, w, r; FeedForward, identity
activation; float32), computed three ways in one run:

1. the package (XLA): forward and gradient of Σ outputs with respect to the rule and the initial weights;
2. hand-written kernels compiled by numba, each one pass over a block of 16 rows per trial
   (the rows in the SIMD lanes, W's block in L1 for all trials, no per-trial kernel launches):
   - forward: y = W·x and W + η·P(x, y, w, r) fused, rows independent so each block runs all trials;
   - gradient as a ``jax.custom_vjp`` would run it: the forward, then per block a forward that stores
     the block's weights of every trial, then one backward pass per trial that forms the adjoint,
     the nine sums Σ_j λ x^a w^c per row (for θ̄ and ȳ) and the next adjoint together;
   checked against the package's gradient in the same run;
3. a backward that stores nothing and rebuilds w_t from w_{t+1} (a fixed-point solve of the update),
   on a decaying rule: how far the rebuilt w_0 lands from the true one.

Needs numba (``pip install numba``; not a dependency of plasticinfer). Process CPU time counts every
thread. Run:  python benchmarks/bench_fused_kernel.py [--trials 2000]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

B = 16  # rows per block: one AVX-512 register of float32


def _kernels():
    import numba as nb

    @nb.njit(cache=False)
    def theta_r(theta, lr, R):
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
    def coefficients(tr, y, q):
        """q[3a + c, k] = Σ_b tr[a, b, c] y_k^b: the polynomial in (x, w) of row k on this trial."""
        for a in range(3):
            for c in range(3):
                t0, t1, t2 = tr[a, 0, c], tr[a, 1, c], tr[a, 2, c]
                for k in range(B):
                    q[a * 3 + c, k] = t0 + y[k] * (t1 + y[k] * t2)

    @nb.njit(fastmath=True, inline="always")
    def run_block(w, X, TR, ys, buf, store, y, q):
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
            coefficients(TR[t], y, q)
            for j in range(n_pre):
                xj = x[j]
                for k in range(B):
                    wj = w[j, k]
                    p0 = q[0, k] + xj * (q[3, k] + xj * q[6, k])
                    p1 = q[1, k] + xj * (q[4, k] + xj * q[7, k])
                    p2 = q[2, k] + xj * (q[5, k] + xj * q[8, k])
                    w[j, k] = wj + p0 + wj * (p1 + wj * p2)

    @nb.njit(parallel=True, fastmath=True, cache=False)
    def forward(theta, lr, W0, X, R, Y, WT):
        T, n_pre = X.shape
        n_post = W0.shape[0]
        TR = theta_r(theta, lr, R)
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
            run_block(w, X, TR, ys, buf, False, y, q)
            for k in range(n):
                Y[:, i0 + k] = ys[:, k]
                WT[i0 + k] = w[:, k]

    @nb.njit(parallel=True, fastmath=True, cache=False)
    def backward(theta, lr, W0, X, R, Ybar, W0bar, acc_parts, store):
        """Per block: the forward again (storing the block's weights of every trial), then one pass per trial backwards.

        acc_parts[p, t, a, b, c] gathers Σ_rows S[a, c]·y^b of trial t (θ̄ follows by contracting with r_t^d).
        ``store=False`` skips the backward (times the storing forward alone).
        """
        T, n_pre = X.shape
        n_post = W0.shape[0]
        n_blocks = (n_post + B - 1) // B
        n_parts = acc_parts.shape[0]
        TR = theta_r(theta, lr, R)
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
                run_block(w, X, TR, ys, buf, True, y, q)
                if not store:
                    continue
                xn = zx
                for t in range(T - 1, -1, -1):
                    x, wt, yt, tr = X[t], buf[t], ys[t], TR[t]
                    coefficients(tr, yt, q)
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

    @nb.njit(fastmath=False, cache=False)
    def rebuild_error(theta, lr, W0, WT, X, R, Y, n_iter):
        """Rebuild w_0 from w_T backwards (w_t = w_{t+1} − η·P(w_t), n_iter fixed-point steps); max |w_0 − W0|."""
        T, n_pre = X.shape
        TR = theta_r(theta, lr, R)
        err = 0.0
        for i in range(W0.shape[0]):
            w = WT[i].copy()
            for t in range(T - 1, -1, -1):
                x, y, tr = X[t], Y[t, i], TR[t]
                for j in range(n_pre):
                    xj = x[j]
                    p = np.zeros(3, X.dtype)
                    for c in range(3):
                        for a in range(3):
                            p[c] += xj**a * (tr[a, 0, c] + y * (tr[a, 1, c] + y * tr[a, 2, c]))
                    wn = w[j]
                    wj = wn
                    for _ in range(n_iter):
                        wj = wn - (p[0] + wj * (p[1] + wj * p[2]))
                    w[j] = wj
            err = max(err, np.max(np.abs(w - W0[i])))
        return err

    return forward, backward, rebuild_error


def _timed(fn, repeat=5):
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=2000)
    args = p.parse_args()
    try:
        import numba
    except ImportError:
        raise SystemExit("bench_fused_kernel.py needs numba (pip install numba); it is not a dependency of plasticinfer")
    import plasticinfer as pi
    from bench_gradient import _problem

    T, n_pre, n_post, dtype = args.trials, 100, 1000, jnp.float32
    model, data = _problem(n_pre, n_post, T, 1, dtype, jax.random.key(0))
    w0 = {"w": model.initial_weights["w"][0]}
    trials = {"x": data.inputs["x"][0], "reward": data.inputs["reward"][0]}
    rule = model.rule
    print(f"jax {jax.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads), float32, "
          f"{n_post} × {n_pre} layer, {T} trials, 81-term rule; median of 5 (wall, process CPU)")

    fwd_x = jax.jit(lambda r, w: pi.simulate(r, model.network, w, trials, checkpoint=False).outputs.sum())
    grad_x = jax.jit(jax.grad(lambda r, w: pi.simulate(r, model.network, w, trials).outputs.sum(), argnums=(0, 1)))

    forward, backward, rebuild_error = _kernels()
    theta = np.asarray(rule._dense(), np.float32)
    lr = np.float32(rule.learning_rate)
    W0, X, R = (np.asarray(a, np.float32) for a in (w0["w"], trials["x"], trials["reward"]))
    Y, WT = np.empty((T, n_post), np.float32), np.empty_like(W0)
    W0bar, acc = np.empty_like(W0), np.zeros((2, T, 3, 3, 3), np.float32)
    Ybar = np.ones((T, n_post), np.float32)  # the cotangent of Σ outputs

    def fwd_n():
        forward(theta, lr, W0, X, R, Y, WT)
        return Y

    def bwd_n(store=True):
        acc[:] = 0
        backward(theta, lr, W0, X, R, Ybar, W0bar, acc, store)
        return W0bar

    def grad_n():
        fwd_n()  # the primal pass a custom_vjp's forward rule runs
        return bwd_n()

    rows = [
        ("package (XLA): forward", lambda: fwd_x(rule, w0)),
        ("package (XLA): gradient", lambda: grad_x(rule, w0)),
        ("fused kernels: forward", fwd_n),
        ("fused kernels: forward storing every trial's W", lambda: bwd_n(store=False)),
        ("fused kernels: gradient (forward + storing forward + backward)", grad_n),
    ]
    t = {}
    for name, fn in rows:
        t[name] = _timed(fn)
        print(f"   {name:<64} {t[name][0]:.3f} s  ({t[name][1]:.3f} s CPU)")
    for label, f, g in [("package (XLA)", rows[0][0], rows[1][0]), ("fused kernels", rows[2][0], rows[4][0])]:
        print(f"   {label:<14} gradient / forward: {t[g][0] / t[f][0]:.2f}× wall, {t[g][1] / t[f][1]:.2f}× CPU (target ≤ 4)")
    print(f"   fused gradient vs the package's: {t[rows[1][0]][0] / t[rows[4][0]][0]:.2f}× faster wall, "
          f"{t[rows[1][0]][1] / t[rows[4][0]][1]:.2f}× CPU")

    # the kernels' gradient against the package's, in this run
    g_rule, g_w = grad_x(rule, w0)
    grad_n()
    rp = np.stack([np.ones_like(R), R, R * R], -1)
    theta_bar = lr * np.einsum("ptabc,td->abcd", acc, rp)
    flat = np.ravel_multi_index(tuple(np.asarray([m.powers[i] for m in rule.terms]) for i in range(4)), theta.shape)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    print(f"   check against the package: outputs {rel(fwd_n(), np.asarray(pi.simulate(rule, model.network, w0, trials).outputs)):.1e}, "
          f"∂/∂θ {rel(theta_bar.ravel()[flat], np.asarray(g_rule.coeffs)):.1e}, ∂/∂W0 {rel(W0bar, np.asarray(g_w['w'])):.1e} (max relative error)")

    print("\n   a backward that rebuilds w_t from w_{t+1} instead of storing or recomputing (float32, 20 × 100 layer):")
    rng = np.random.default_rng(0)
    for label, decay in [("the benchmark's random rule", 0.0), ("with a decay term −w", 1.0), ("with a decay term −5·w", 5.0)]:
        th = 0.01 * rng.normal(size=(3, 3, 3, 3)).astype(np.float32)
        th[0, 0, 1, 0] -= decay
        Wn0, Xn = (0.1 * rng.normal(size=(20, n_pre))).astype(np.float32), rng.normal(size=(T, n_pre)).astype(np.float32)
        Rn = rng.integers(0, 2, T).astype(np.float32)
        Yn, WTn = np.empty((T, 20), np.float32), np.empty_like(Wn0)
        forward(th, lr, Wn0, Xn, Rn, Yn, WTn)
        errs = ", ".join(f"{n} steps {rebuild_error(th, lr, Wn0, WTn, Xn, Rn, Yn, n):.1e}" for n in (2, 4))
        print(f"   {label:<30} max |rebuilt w_0 − w_0| (|w_0| ~ 0.1): {errs}")


if __name__ == "__main__":
    main()

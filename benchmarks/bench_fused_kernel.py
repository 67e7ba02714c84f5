"""The fused kernels (``TaylorRule(..., derivative="fused")``) against the default path (issue: scale, item 1).

The 100 → 1000 layer × 2,000 trials of ``bench_gradient.py`` section 2 (81-term Taylor rule over
x, y, w, r; FeedForward, identity activation; float32), in one run:

1. the package's default (XLA scan, the rule's hand-written VJP, √T checkpointing) and the package
   with ``derivative="fused"`` (numba kernels through ``jax.pure_callback``; each row's inputs the SIMD loop,
   a block of 16 rows taken through every trial in L1, a fused single-pass backward): forward and
   gradient of a squared error Σ (y − y_target)² with respect to the rule and the initial weights, the
   gradient / forward ratio (target ≤ 4), and the fused gradient checked against the default one.
   The loss needs the outputs' values, as a fit's does: the gradient of Σ y does not (ȳ = 1), and XLA
   then drops the fused forward from the gradient, which flattered the ratio this benchmark printed
   before (figures up to 0c67411);
2. the kernels alone: the forward, the gradient's forward keeping checkpoints, the backward's
   recomputing forwards (segment by segment, into a buffer that stays in cache) and the whole backward;
3. a backward that stores nothing and rebuilds w_t from w_{t+1} (a fixed-point solve of the update),
   on rules with a decay term: how far the rebuilt w_0 lands from the true one — why the kernels
   recompute instead.

Needs numba (``pip install "plasticinfer[fast]"``). Process CPU time counts every thread. Run:
python benchmarks/bench_fused_kernel.py [--trials 2000]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from _timing import timed


def _rebuild_error():
    import numba as nb

    from plasticinfer._fused_kernels import _theta_r

    @nb.njit(cache=False)
    def rebuild_error(theta, lr, W0, WT, X, R, Y, n_iter):
        """Rebuild w_0 from w_T backwards (w_t = w_{t+1} − η·P(w_t), n_iter fixed-point steps); max |w_0 − W0|."""
        T, n_pre = X.shape
        TR = _theta_r(theta, lr, R)
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

    return rebuild_error


def _timed(fn):
    """(median wall, median process CPU) seconds of ``fn()`` over 5 calls after a first one (``_timing.timed``)."""
    t = timed(fn)
    return t["median"], t["cpu_median"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=2000)
    args = p.parse_args()
    try:
        import numba
    except ImportError:
        raise SystemExit('bench_fused_kernel.py needs numba: pip install "plasticinfer[fast]"')
    import plasticinfer as pi
    from bench_gradient import _machine_rates, _problem
    from plasticinfer import _fused_kernels as kern

    T, n_pre, n_post, dtype = args.trials, 100, 1000, jnp.float32
    model, data = _problem(n_pre, n_post, T, 1, dtype, jax.random.key(0))
    w0 = {"w": model.initial_weights["w"][0]}
    trials = {"x": data.inputs["x"][0], "reward": data.inputs["reward"][0]}
    print(f"jax {jax.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads), float32, "
          f"{n_post} × {n_pre} layer, {T} trials, 81-term rule; median of 5 (wall, process CPU)")

    target = jax.random.normal(jax.random.key(1), (T, n_post), dtype)
    loss = lambda r, w: jnp.sum((pi.simulate(r, model.network, w, trials).outputs - target) ** 2)  # noqa: E731
    forward, gradient = jax.jit(loss), jax.jit(jax.grad(loss, argnums=(0, 1)))
    default, fused = model.rule, model.rule.with_derivative("fused")
    t = {}
    print("\n1. the package, default and derivative=\"fused\"")
    for label, rule in (("default", default), ("fused", fused)):
        for what, fn in (("forward", forward), ("gradient", gradient)):
            t[label, what] = _timed(lambda: fn(rule, w0))
            print(f"   {label:<8} {what:<9} {t[label, what][0]:.3f} s  ({t[label, what][1]:.3f} s CPU)")
    for label in ("default", "fused"):
        (fw, fc), (gw, gc) = t[label, "forward"], t[label, "gradient"]
        verdict = "met" if gw / fw <= 4 else "MISSED"
        print(f"   {label:<8} gradient / forward: {gw / fw:.2f}× wall, {gc / fc:.2f}× CPU (target ≤ 4, wall: {verdict})")
    print(f"   fused vs default: gradient {t['default', 'gradient'][0] / t['fused', 'gradient'][0]:.2f}× faster wall "
          f"({t['default', 'gradient'][1] / t['fused', 'gradient'][1]:.2f}× CPU), forward "
          f"{t['default', 'forward'][0] / t['fused', 'forward'][0]:.2f}× wall")
    # the floor of bench_gradient.py section 2, derived the same way in this run
    n_w = n_pre * n_post
    flops = T * (n_w * (2 + 2 * (3 * 3 - 1) + 1) + 2 * 3 * 3 * 3 * 3 * n_pre)
    bytes_ = T * 3 * n_w * jnp.dtype(dtype).itemsize
    rate_flops, rate_bytes = _machine_rates(dtype, n_w, T)
    floor = max(flops / rate_flops, bytes_ / rate_bytes)
    print(f"   floor (bench_gradient.py's): max({flops / 1e9:.2f} GFLOP at {rate_flops / 1e9:.1f} GFLOP/s, {bytes_ / 1e9:.2f} GB at "
          f"{rate_bytes / 1e9:.1f} GB/s) = {floor:.3f} s; forward / floor: default {t['default', 'forward'][0] / floor:.2f}×, "
          f"fused {t['fused', 'forward'][0] / floor:.2f}× (target ≤ 2)")
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))  # noqa: E731
    g_d, g_f = gradient(default, w0), gradient(fused, w0)
    out_d = pi.simulate(default, model.network, w0, trials).outputs
    out_f = pi.simulate(fused, model.network, w0, trials).outputs
    print(f"   fused against default (max relative difference, float32): outputs {rel(out_f, out_d):.1e}, "
          f"∂/∂θ {rel(g_f[0].coeffs, g_d[0].coeffs):.1e}, ∂/∂W0 {rel(g_f[1]['w'], g_d[1]['w']):.1e}")

    print("\n2. the kernels alone")
    from plasticinfer import _fused

    theta = np.asarray(default._dense(), np.float32)
    lr = np.float32(default.learning_rate)
    W0, X, R = (np.ascontiguousarray(np.asarray(a, np.float32)) for a in (w0["w"], trials["x"], trials["reward"]))
    X, XZ, W0 = _fused.pad(X, W0)  # rows padded to whole vectors, as the package does
    m = X.shape[1]
    Y, WT = np.empty((T, n_post), np.float32), np.empty_like(W0)
    W0bar, acc, zero = np.empty_like(W0), np.zeros((_fused.N_PARTS, T, 3, 3, 3), np.float32), np.zeros_like(W0)
    ones = np.ones((T, n_post), np.float32)
    none = np.empty((0, 0, kern.B, m), np.float32)
    K = _fused.segment_length(T, m, 4)
    CK = np.empty((-(-n_post // kern.B), -(-T // K), kern.B, m), np.float32)
    print(f"   {n_pre} inputs padded to {m}; segments of K = {K} trials ({K * m * kern.B * 4 / 2**10:.0f} KiB buffer per thread), "
          f"{CK.shape[1]} checkpoints ({CK.nbytes / 2**20:.1f} MiB)")
    for label, fn in (
        ("forward", lambda: kern.forward(theta, lr, W0, X, XZ, R, Y, WT, none, T)),
        ("forward keeping the checkpoints (the gradient's)", lambda: kern.forward(theta, lr, W0, X, XZ, R, Y, WT, CK, K)),
        ("the backward's segment forwards, storing every W", lambda: kern.backward(theta, lr, X, XZ, R, ones, zero, CK, K, W0bar, acc, False)),
        ("backward (those forwards + the pass back)", lambda: kern.backward(theta, lr, X, XZ, R, ones, zero, CK, K, W0bar, acc, True)),
    ):
        wall, cpu = _timed(fn)
        print(f"   {label:<50} {wall:.3f} s  ({cpu:.3f} s CPU)")

    print("\n3. a backward that rebuilds w_t from w_{t+1} instead of storing or recomputing (float32, 20 × 100 layer):")
    rebuild_error = _rebuild_error()
    rng = np.random.default_rng(0)
    for label, decay in [("the benchmark's random rule", 0.0), ("with a decay term −w", 1.0), ("with a decay term −5·w", 5.0)]:
        th = 0.01 * rng.normal(size=(3, 3, 3, 3)).astype(np.float32)
        th[0, 0, 1, 0] -= decay
        Wn0, Xn = (0.1 * rng.normal(size=(20, n_pre))).astype(np.float32), rng.normal(size=(T, n_pre)).astype(np.float32)
        Rn = rng.integers(0, 2, T).astype(np.float32)
        Yn, WTn = np.empty((T, 20), np.float32), np.empty_like(Wn0)
        kern.forward(th, lr, Wn0, Xn, Xn, Rn, Yn, WTn, np.empty((0, 0, kern.B, n_pre), np.float32), T)  # unpadded (padding only saves time): X serves as both
        errs = ", ".join(f"{n} steps {rebuild_error(th, lr, Wn0, WTn, Xn, Rn, Yn, n):.1e}" for n in (2, 4))
        print(f"   {label:<30} max |rebuilt w_0 − w_0| (|w_0| ~ 0.1): {errs}")


if __name__ == "__main__":
    main()

"""Speed and memory of the core engine (issue: core engine, benchmarks).

1. One gradient of the log-likelihood of a full 81-term Taylor rule (x, y, w, r up to power 2) over
   240 trials, for plastic layers of 2×10 and 20×200 (post × pre), per trajectory: single trajectory
   and vmapped over a batch of trajectories — beside a *peer* run in the same process: the same model
   written in plain JAX the way research code does it (per trial, the powers of x, y, w and r stacked
   and contracted with the 3×3×3×3 coefficient tensor by one einsum; jax.grad through lax.scan).
   The published research code itself is not installed here; the peer stands in for it.
2. Scale: a 100 → 1000 layer over 2,000 trials: forward and gradient time (median and min of 5
   calls, wall clock and process CPU time) with the Taylor rule's hand-written VJP (the default,
   ``derivative="reverse"``) and with its JVP (``derivative="forward"``, what every gradient used
   before the VJP), gradient / forward (target ≤ 4), compiled memory of the
   gradient (target < 2 GB), and the forward against a floor derived on this machine in this run:
   the rule's flops per trial at the measured matmul rate, and the weight matrix's bytes per trial
   at the measured rate of a scan that only streams the matrix (roofline: the larger of the two).
3. Where the gradient's time goes at 100 → 1000: per trial, the forward step, one backward step (the VJP
   of a trial's update) and the kernels that step is made of on XLA:CPU — one elementwise pass over W,
   y = W·x, and the rule's VJP product (C·post × pre)·(pre × A) over the stacked V_c = ū ⊙ w^c, beside
   the same product as C separate ones (post × pre)·(pre × A) — each timed alone in a scan of the same
   length.

Process CPU time counts every thread of this process; on a shared machine it moves much less than
wall time, so compare old and new on it. Run:  python benchmarks/bench_gradient.py [--float64] [--quick]
"""

from __future__ import annotations

import argparse
import resource

import jax
import jax.numpy as jnp
from _timing import timed as _time


def _machine_rates(dtype, n_w, n_trials):
    """Measured here, now: matmul FLOP/s (1024³) and the rate of a scan that reads and writes an n_w matrix per step."""
    a = jnp.ones((1024, 1024), dtype)
    mm = jax.jit(lambda a: a @ a)
    t_mm = _time(mm, a)["min"]
    flops = 2 * 1024**3 / t_mm
    w = jnp.ones((n_w,), dtype)
    xs = jnp.ones((n_trials,), dtype)
    stream = jax.jit(lambda w: jax.lax.scan(lambda w, x: (w * 0.999 + x, None), w, xs)[0])
    t_st = _time(stream, w)["min"]
    bandwidth = 2 * n_w * jnp.dtype(dtype).itemsize * n_trials / t_st
    return flops, bandwidth

def _problem(n_pre, n_post, n_trials, n_traj, dtype, key):
    import plasticinfer as pi

    rule = pi.TaylorRule.full(("x", "y", "w", "r"), 2, learning_rate=1e-3)
    rule = pi.TaylorRule(rule.terms, 0.01 * jax.random.normal(key, (81,), dtype), learning_rate=1e-3)
    net = pi.FeedForward(n_pre, n_post)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.normal(k1, (n_traj, n_trials, n_pre), dtype)
    r = jax.random.bernoulli(k2, 0.5, (n_traj, n_trials)).astype(dtype)
    y = jax.random.normal(k3, (n_traj, n_trials, n_post), dtype)
    data = pi.TrialData({"x": x, "reward": r}, y, jnp.ones((n_traj, n_trials, n_post), bool))
    w0 = {"w": 0.1 * jax.random.normal(k4, (n_traj, n_post, n_pre), dtype)}
    model = pi.PlasticityModel(rule, net, pi.GaussianActivity(jnp.asarray(1.0, dtype)), w0)
    return model, data


def _peer_loss(theta, w0, x, r, y_obs, lr):
    """The peer: plain JAX, one einsum over the coefficient tensor per trial, Gaussian log-likelihood."""

    def step(w, inp):
        xt, rt, yt = inp
        y = w @ xt
        ones = jnp.ones_like(w)
        xp = jnp.stack([ones, ones * xt[None, :], ones * xt[None, :] ** 2])
        yp = jnp.stack([ones, ones * y[:, None], ones * y[:, None] ** 2])
        wp = jnp.stack([ones, w, w**2])
        rp = jnp.stack([jnp.ones_like(rt), rt, rt**2])
        dw = jnp.einsum("abcd,aij,bij,cij,d->ij", theta, xp, yp, wp, rp)
        return w + lr * dw, jnp.sum((yt - y) ** 2)

    _, sq = jax.lax.scan(step, w0, (x, r, y_obs))
    return 0.5 * jnp.sum(sq)


def gradient_per_trajectory(n_pre, n_post, dtype, batch, key):
    import equinox as eqx

    model, data = _problem(n_pre, n_post, 240, batch, dtype, key)

    def loss(m, d):
        return -m.log_likelihood(d).sum()

    grad1 = eqx.filter_jit(eqx.filter_grad(loss))
    single_model = eqx.tree_at(lambda m: m.initial_weights, model, {"w": model.initial_weights["w"][:1]})
    single_data = data.trajectory(0)
    t_single = _time(grad1, single_model, single_data)["min"]
    t_batch = _time(grad1, model, data)["min"] / batch
    # the peer, on the same data
    theta = model.rule._dense()
    lr = model.rule.learning_rate
    x, r, y = data.inputs["x"], data.inputs["reward"], data.observations
    w0 = model.initial_weights["w"]
    peer = jax.jit(jax.grad(_peer_loss, argnums=(0, 1)), static_argnums=5)
    peer_b = jax.jit(jax.vmap(jax.grad(_peer_loss, argnums=(0, 1)), in_axes=(None, 0, 0, 0, 0, None)), static_argnums=5)
    p_single = _time(peer, theta, w0[0], x[0], r[0], y[0], lr)["min"]
    p_batch = _time(peer_b, theta, w0, x, r, y, lr)["min"] / batch
    return t_single, t_batch, p_single, p_batch


def scale(dtype, n_trials, key):

    import plasticinfer as pi

    n_pre, n_post = 100, 1000
    model, data = _problem(n_pre, n_post, n_trials, 1, dtype, key)
    w0 = {"w": model.initial_weights["w"][0]}
    trials = {"x": data.inputs["x"][0], "reward": data.inputs["reward"][0]}

    @jax.jit
    def forward(rule, w0):
        return pi.simulate(rule, model.network, w0, trials, checkpoint=False).outputs.sum()

    @jax.jit
    def grad(rule, w0):
        return jax.grad(lambda r, w: pi.simulate(r, model.network, w, trials, checkpoint=True).outputs.sum(), argnums=(0, 1))(rule, w0)

    t_fwd = _time(forward, model.rule, w0)
    t_grad = _time(grad, model.rule, w0)
    t_grad_jvp = _time(grad, model.rule.with_derivative("forward"), w0)
    mem = grad.lower(model.rule, w0).compile().memory_analysis()
    peak_compiled = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    mem_plain = (
        jax.jit(jax.grad(lambda r: pi.simulate(r, model.network, w0, trials, checkpoint=False).outputs.sum()))
        .lower(model.rule)
        .compile()
        .memory_analysis()
        .temp_size_in_bytes
    )
    itemsize = jnp.dtype(dtype).itemsize
    n_w = n_pre * n_post
    a, b, c, d = model.rule._dense().shape
    # per trial: y = Wx (2 flops per weight), the nested Horner polynomial in (w, y) per synapse
    # (2·(B·C − 1)), the update w + Δw (1); plus the per-sample coefficients z (2·B·C·A·D per input)
    flops_per_trial = n_w * (2 + 2 * (b * c - 1) + 1) + 2 * b * c * a * d * n_pre
    # W is read for y = Wx, then read and written by the update: 3 passes over the matrix
    bytes_per_trial = 3 * n_w * itemsize
    rate_flops, rate_bytes = _machine_rates(dtype, n_w, n_trials)
    return dict(
        t_fwd=t_fwd,
        t_grad=t_grad,
        t_grad_jvp=t_grad_jvp,
        peak_compiled=peak_compiled,
        temp_plain=mem_plain,
        flops=flops_per_trial * n_trials,
        bytes=bytes_per_trial * n_trials,
        rate_flops=rate_flops,
        rate_bytes=rate_bytes,
        n_w=n_w,
    )


def checkpointing_only(dtype, n_trials, key):
    """The gradient with the rule's backward replaced by one elementwise pass that still reads every stored input.

    What is left is the cost of √T checkpointing as JAX's scan autodiff runs it: the forward twice, each
    trial's W written to and read from the segment's residual stack, the carries. An experiment, not a
    mode of the package: the VJP's backward is swapped on the shared function and put back afterwards.
    """
    import plasticinfer as pi
    from plasticinfer import _taylor_contraction as tc

    model, data = _problem(100, 1000, n_trials, 1, dtype, key)
    w0 = {"w": model.initial_weights["w"][0]}
    trials = {"x": data.inputs["x"][0], "reward": data.inputs["reward"][0]}

    def trivial_bwd(scale, residuals, u):
        theta, x, y, w, r = residuals
        return theta * r.sum(), jnp.zeros_like(x), 1e-3 * y, u * (1 + 1e-3 * w), jnp.zeros_like(r)

    grad = jax.jit(lambda r, w: jax.grad(lambda r, w: pi.simulate(r, model.network, w, trials).outputs.sum(), argnums=(0, 1))(r, w))
    tc._synapse_reverse.defvjp(tc._synapse_reverse_fwd, trivial_bwd)
    try:
        return _time(grad, model.rule, w0)["median"] / n_trials
    finally:
        tc._synapse_reverse.defvjp(tc._synapse_reverse_fwd, tc._synapse_reverse_bwd)


def breakdown(dtype, n_trials, key):
    """Per-trial wall seconds (median of 5) of the backward step and of the kernels it is built from."""
    import plasticinfer as pi

    model, data = _problem(100, 1000, n_trials, 1, dtype, key)
    net, rule = model.network, model.rule
    w = model.initial_weights["w"][0]
    x, r = data.inputs["x"][0, 0], data.inputs["reward"][0, 0]
    n_post, n_pre = w.shape
    from plasticinfer._taylor_contraction import _weight_power_planes

    a, _, c, _ = rule._dense().shape
    xp = jax.random.normal(key, (n_pre, a), dtype)
    u = jax.random.normal(key, w.shape, dtype)  # a stand-in cotangent

    def per_trial(f):
        run = jax.jit(lambda c: jax.lax.scan(lambda c, _: (f(c), None), c, None, length=n_trials)[0])
        return _time(run, w)["median"] / n_trials

    def step(rl, ww):
        new, _, y = net.step(rl, {"w": ww}, None, {"x": x, "reward": r})
        return new["w"], y

    def backward(c):
        # the weights move every trial too (one cheap elementwise pass), so XLA cannot hoist the
        # recomputed forward quantities (y, z, ∂P/∂w) out of the loop as it would for fixed weights
        u, ww = c
        _, vjp = jax.vjp(step, rule, ww)
        return 0.5 * vjp((u, jnp.ones((n_post,), dtype)))[1], ww * 0.999 + 1e-4

    def per_trial_pair(f):
        run = jax.jit(lambda c: jax.lax.scan(lambda c, _: (f(c), None), c, None, length=n_trials)[0])
        return _time(run, (w, w))["median"] / n_trials

    return dict(
        forward=per_trial(lambda c: step(rule, c)[0]),
        backward=per_trial_pair(backward),
        elementwise=per_trial(lambda c: c * 0.999 + 1e-3),
        matvec=per_trial(lambda c: c * 0.999 + 1e-3 * (c @ x)[:, None]),
        stacked_product=per_trial(lambda ww: ww * 0.999 + 1e-3 * (_weight_power_planes(u, ww, c).reshape(-1, n_pre) @ xp).sum()),
        separate_products=per_trial(lambda ww: ww * 0.999 + 1e-3 * sum((v @ xp).sum() for v in _weight_power_planes(u, ww, c))),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--float64", action="store_true", help="use float64 (default float32)")
    p.add_argument("--quick", action="store_true", help="200 trials instead of 2,000 for the scale test")
    p.add_argument("--batch", type=int, default=32, help="trajectories per vmapped gradient")
    args = p.parse_args()
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.float64 else jnp.float32
    key = jax.random.key(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s), dtype {jnp.dtype(dtype).name}")
    print("\n1. gradient of an 81-term Taylor rule's log-likelihood over 240 trials, per trajectory (min of 5)")
    print(f"{'layer (post×pre)':>18} {'single traj':>12} {'peer':>10} {'speed-up':>9}   {'vmapped /traj':>14} {'peer':>10} {'speed-up':>9}")
    for n_post, n_pre in [(2, 10), (20, 200)]:
        t1, tb, p1, pb = gradient_per_trajectory(n_pre, n_post, dtype, args.batch, key)
        print(
            f"{f'{n_post}×{n_pre}':>18} {t1 * 1e3:10.2f}ms {p1 * 1e3:8.2f}ms {p1 / t1:8.1f}×   "
            f"{tb * 1e3:12.3f}ms {pb * 1e3:8.3f}ms {pb / tb:8.1f}×"
        )
    n_trials = 200 if args.quick else 2000
    print(f"\n2. scale: 100 → 1000 plastic layer (1e5 weights), 81-term rule, {n_trials} trials")
    s = scale(dtype, n_trials, key)
    f, g = s["t_fwd"], s["t_grad"]
    fmt = lambda t: f"median {t['median']:.3f} s, min {t['min']:.3f} s (CPU median {t['cpu_median']:.3f} s)"  # noqa: E731
    print(f"   forward simulation        {fmt(f)}")
    print(f"   gradient, VJP (√T ckpt)   {fmt(g)}")
    gj = s["t_grad_jvp"]
    print(f"   gradient, JVP (√T ckpt)   {fmt(gj)}")
    ratio, ratio_cpu = g["median"] / f["median"], g["cpu_median"] / f["cpu_median"]
    print(f"   gradient / forward        {ratio:.2f}× wall, {ratio_cpu:.2f}× CPU (target ≤ 4: {'met' if max(ratio, ratio_cpu) <= 4 else 'MISSED'})")
    print(
        f"   with the JVP instead      {gj['median'] / f['median']:.2f}× wall, {gj['cpu_median'] / f['cpu_median']:.2f}× CPU "
        f"(the VJP is {gj['cpu_median'] / g['cpu_median']:.2f}× faster in CPU time)"
    )
    print(
        f"   compiled gradient memory {s['peak_compiled'] / 2**20:.0f} MiB (target < 2048 MiB: "
        f"{'met' if s['peak_compiled'] < 2**31 else 'MISSED'}); without checkpointing the gradient's temporaries "
        f"would be {s['temp_plain'] / 2**20:.0f} MiB"
    )
    t_flops, t_bytes = s["flops"] / s["rate_flops"], s["bytes"] / s["rate_bytes"]
    floor = max(t_flops, t_bytes)
    print(
        f"   floor: {s['flops'] / 1e9:.2f} GFLOP at the measured matmul rate {s['rate_flops'] / 1e9:.1f} GFLOP/s = {t_flops:.3f} s; "
        f"{s['bytes'] / 1e9:.2f} GB (3 passes over W per trial) at the measured streaming rate {s['rate_bytes'] / 1e9:.1f} GB/s "
        f"= {t_bytes:.3f} s → floor {floor:.3f} s"
    )
    print(f"   forward / floor           {f['median'] / floor:.2f}× (median), {f['min'] / floor:.2f}× (min) (target ≤ 2)")
    print(f"\n3. where the gradient's time goes, 100 → 1000, per trial (median of 5 scans of {n_trials} trials)")
    bd = breakdown(dtype, n_trials, key)
    us = lambda t: f"{t * 1e6:7.1f} µs"  # noqa: E731
    base = bd["elementwise"]
    per_grad = g["median"] / n_trials
    backward = bd["backward"] - base  # less the pass that moves the weights
    print(f"   gradient (section 2), per trial                 {us(per_grad)}")
    machinery = checkpointing_only(dtype, n_trials, key)
    print(
        f"   the same with the rule's backward replaced by one elementwise pass: {us(machinery)} "
        f"= {machinery / (f['median'] / n_trials):.1f}× the forward (what √T checkpointing itself costs)"
    )
    print(f"   forward step (y = W·x, the rule, W + ΔW)        {us(bd['forward'])}")
    print(f"   backward step (the VJP of one trial)            {us(backward)} = {backward / bd['forward']:.1f}× the forward step")
    rest = per_grad - 2 * bd["forward"] - backward
    print(f"   the rest: gradient − forward − recomputed forward − backward step = {us(rest)} (around the steps: residuals and carries)")
    print(f"   one elementwise pass over W (the scan's floor)  {us(base)}")
    print(f"   y = W·x, beyond that pass                       {us(bd['matvec'] - base)}")
    print("   the VJP's product over the stacked V_c (with forming them), timed alone beyond that pass:")
    print(f"     one (C·post×pre)·(pre×A), as the VJP does it      {us(bd['stacked_product'] - base)}")
    print(f"     C separate (post×pre)·(pre×A), for comparison     {us(bd['separate_products'] - base)}")
    print(f"   process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()

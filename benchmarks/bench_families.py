"""Families of co-active rules in a recurrent E/I spiking network: speed, SBI round, coverage, predictive rates, memory table.

    PYTHONPATH=. python benchmarks/bench_families.py [--simulations 256] [--memory 8] [--sbc 0] [--n-exc 160 --n-inh 40] [--delays 10 60]

Prints: (1) simulated seconds per wall second of the 800/200 network (static, plastic), and the
same network stepped with a dense (post, pre) matrix product in the same script; (2) NPE
coverage on a linear-Gaussian simulator with a known posterior; (3) the SBI round on the
network task (simulations per minute, posterior vs prior fraction meeting every constraint);
(4) the familiarity table with its nulls (and again after each of ``--delays``). Figures depend on the machine's load: the script
prints the 1-minute load average next to them.
"""

import argparse
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from plasticinfer.discovery import (
    EINetwork,
    EIRules,
    FamilyTask,
    FamiliarityProtocol,
    GaussianPrior,
    PairRule,
    memory_study,
    network_statistics,
    run_families,
    run_npe,
    sbc,
    simulate_network,
)


def timed(f, *a):
    jax.block_until_ready(f(*a))  # compile
    t = time.perf_counter()
    out = jax.block_until_ready(f(*a))
    return out, time.perf_counter() - t


def dense_static(net, key, n_steps):
    """The same static dynamics with a dense W @ s product per step (peer for the sparse-gather step)."""
    n, ne = net.n, net.n_exc
    is_e = (jnp.arange(n) < ne).astype(net.weights.dtype)
    de, di = math.exp(-net.dt / net.tau_exc), math.exp(-net.dt / net.tau_inh)

    def step(c, t):
        v, ie, ii, refr, s = c
        ext = net.external_counts(key, t)
        ie = ie * de + net.tau_m / net.tau_exc * (net.weights @ (s * is_e) + net.j_ext * ext)
        ii = ii * di + net.tau_m / net.tau_inh * (net.weights @ (s * (1 - is_e)))
        v = jnp.where(refr == 0, v + net.dt / net.tau_m * (ie - ii - v), net.reset)
        sp = v >= net.threshold
        v = jnp.where(sp, net.reset, v)
        refr = jnp.where(sp, net.refractory_steps, jnp.maximum(refr - 1, 0))
        return (v, ie, ii, refr, sp.astype(v.dtype)), jnp.sum(sp)

    z = jnp.zeros(n, net.weights.dtype)
    return jax.lax.scan(step, (z, z, z, jnp.zeros(n, jnp.int32), z), jnp.arange(n_steps))[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--simulations", type=int, default=256)
    ap.add_argument("--predictive", type=int, default=64)
    ap.add_argument("--memory", type=int, default=8)
    ap.add_argument("--sbc", type=int, default=0)
    ap.add_argument("--n-exc", type=int, default=160)
    ap.add_argument("--n-inh", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--delays", type=float, nargs="*", default=[],
                    help="also the memory table after these delays (s) between familiarisation and test, on the same posterior, as one series with the default delay first (one key: the same patterns at every delay)")
    args = ap.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; devices: {jax.devices()}")

    # (1) speed at 1,000 neurons
    net = EINetwork.create(jax.random.key(0), dtype=jnp.float32)
    segs = int(round(args.seconds / 0.1))
    rule = PairRule(-0.01, 0.0, 0.1, 0.1, 0.02, 0.02, learning_rate=0.005)
    rules = EIRules(rule, rule, rule, rule)
    static = jax.jit(lambda k: simulate_network(net, None, k, n_segments=segs, segment_steps=200))
    plastic = jax.jit(lambda k: simulate_network(net, rules, k, n_segments=segs, segment_steps=200))
    dense = jax.jit(lambda k: dense_static(net, k, segs * 200))
    r, t_s = timed(static, jax.random.key(1))
    st = network_statistics(net, r, measure_from=2)
    _, t_p = timed(plastic, jax.random.key(1))
    _, t_d = timed(dense, jax.random.key(1))
    print(f"\n[1] 800 E / 200 I, p = 0.1, dt = 0.5 ms, {args.seconds:g} s simulated (float32, one process)")
    print(f"    rates E {float(st['rate_e']):.1f} Hz, I {float(st['rate_i']):.1f} Hz, CV ISI {float(st['cv_isi']):.2f}")
    print(f"    static,  sparse gather: {args.seconds / t_s:.2f} simulated s per wall s")
    print(f"    static,  dense W @ s  : {args.seconds / t_d:.2f} simulated s per wall s  (gather/dense = {t_d / t_s:.2f}x)")
    print(f"    plastic (4 rules)     : {args.seconds / t_p:.2f} simulated s per wall s")

    # (2) coverage where the posterior is known
    A = jnp.asarray([[1.0, 0.5], [0.0, 1.0], [0.3, -0.4]])
    lin = lambda th, k: A @ th + 0.5 * jax.random.normal(k, (3,), th.dtype)  # noqa: E731
    res = run_npe(jax.random.key(2), lin, GaussianPrior(("a", "b"), [0.0, 0.0], [1.0, 1.0]), n_simulations=4000, batch_size=1000, flow_layers=3, nn_width=32)
    cov = sbc(jax.random.key(3), res.posterior, lin, n_tests=300, n_samples=100, batch_size=300)
    print("\n[2] NPE calibration on a linear-Gaussian simulator (300 SBC draws)")
    print(f"    90 % interval coverage {np.round(cov.coverage[0.9], 3)}, 50 %: {np.round(cov.coverage[0.5], 3)}; rank-uniformity p {np.round(cov.uniformity_pvalues(), 3)}")

    # (3)+(4) the network study
    task = FamilyTask.create(jax.random.key(4), n_exc=args.n_exc, n_inh=args.n_inh, duration=1.0, dtype=jnp.float32)
    t0 = time.perf_counter()
    out = run_families(
        jax.random.key(5), task, n_simulations=args.simulations, n_predictive=args.predictive, n_sbc=args.sbc,
        memory=args.memory > 0, n_memory=max(args.memory, 2), protocol=FamiliarityProtocol(), batch_size=32,
    )  # fmt: skip
    print(f"\n[3] SBI round: {args.n_exc} E / {args.n_inh} I, 24 rule parameters, {args.simulations} simulations of 1 s")
    print(f"    {out.npe.simulations_per_minute:.1f} simulations per minute ({out.simulated_seconds_per_wall_second:.2f} simulated s per wall s, batched 32); NPE training {out.npe.training_seconds:.1f} s")
    print(f"    meet every constraint: posterior {out.check.posterior_fraction:.2f} {np.round(out.check.posterior_interval, 2)} vs prior {out.check.prior_fraction:.2f} {np.round(out.check.prior_interval, 2)} (n = {out.check.n} each)")
    print(f"    accepted among the training simulations (prior draws): {out.to_dataset()['accepted'].values.mean():.3f}")
    if out.sbc is not None:
        pv = out.sbc.uniformity_pvalues()
        print(f"    network SBC ({len(out.sbc.ranks)} draws): 90 % coverage mean {out.sbc.coverage[0.9].mean():.2f}, min {out.sbc.coverage[0.9].min():.2f}; "
              f"50 % coverage mean {out.sbc.coverage[0.5].mean():.2f}, min {out.sbc.coverage[0.5].min():.2f}; "
              f"rank-uniformity p < 0.05 for {int((pv < 0.05).sum())} of {pv.size} parameters (≈ {0.05 * pv.size:.1f} expected by chance)")
    if out.memory is not None:
        print(f"\n[4] familiarity (readout on after-familiarisation responses only), delay {FamiliarityProtocol().delay:g} s")
        print(out.memory.markdown())
    # the delay series shares one key (the same patterns, draws and input noise at every delay), starting
    # again at the default delay so that its first row pairs with the others
    for delay in ([FamiliarityProtocol().delay] + [d for d in args.delays if d != FamiliarityProtocol().delay]) if args.delays else []:
        t1 = time.perf_counter()
        report, _ = memory_study(jax.random.key(6), task, out.check, FamiliarityProtocol(delay=delay), n_memory=max(args.memory, 2))
        print(f"\n[4] familiarity after a delay of {delay:g} s (same posterior; {time.perf_counter() - t1:.0f} s)")
        print(report.markdown())
    print(f"study wall time {time.perf_counter() - t0:.0f} s; load average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

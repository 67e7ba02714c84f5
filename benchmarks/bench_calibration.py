"""Simulation-based calibration of `sample` (NUTS) on a small choice rule.

For each of N datasets (default 60): draw θ(x·r), θ(w) and the bias from the prior, simulate two
flies × 240 trials of the baited two-odour task, sample the posterior (2 chains), and rank the truth
among 99 thinned draws. Prints 90 % interval coverage (target 80–97 %), a χ² and a KS test of rank
uniformity, and writes the rank histograms to a PNG.

    python benchmarks/bench_calibration.py [--datasets 60] [--out sbc.png]
"""

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

import plasticinfer as pi  # noqa: E402
from plasticinfer import bayes  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=60)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warm-start", type=int, default=0, help="L-BFGS steps of a MAP fit per dataset before sampling (0: start at the prior mean)")
    parser.add_argument("--out", default="sbc_ranks.png")
    args = parser.parse_args()
    n = args.subjects
    model = pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({"x*r": 0.3, "w": -0.1}),
        pi.ChoiceCircuit(2),
        pi.BernoulliChoice(1.0, 0.0, learn_temperature=False),
        n_trajectories=n,
        initial_weights={"w": jnp.zeros((1, 2))},
    )
    p, _ = pi.data.block_schedule(((0.2, 0.8), (0.8, 0.2), (0.5, 0.5)), 80)
    p = jnp.broadcast_to(p, (n,) + p.shape)
    cues = pi.one_hot_cues(2)
    priors = bayes.Priors(
        coefficients=bayes.Normal(scale={"x*r": 0.15, "w": 0.04}, loc={"x*r": 0.3, "w": -0.1}),
        observation=bayes.Normal(0.5),
    )
    print(f"SBC: {args.datasets} datasets × {n} flies × 240 trials; parameters θ(x·r), θ(w), bias; priors {priors.coefficients}, "
          f"bias ~ {priors.observation}; NUTS {args.warmup} warmup + {args.samples} draws × 2 chains; "
          f"{jax.local_device_count()} JAX devices; start: {args.warm_start}-step MAP fit per dataset")
    t0 = time.perf_counter()

    def progress(i, total):
        if i % 10 == 0 or i == total:
            print(f"  {i}/{total} datasets, {time.perf_counter() - t0:.0f} s", flush=True)

    res = bayes.simulation_based_calibration(
        model,
        lambda k, m: pi.data.simulate_choices(m, cues, p, key=k)[0],
        key=jax.random.key(args.seed),
        n_datasets=args.datasets,
        priors=priors,
        method=bayes.NUTS(warmup=args.warmup, samples=args.samples),
        warm_start=args.warm_start,
        progress=progress,
    )
    print(res.summary())
    print(res.uniformity().round(4).to_string())
    fig = res.plot()
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"rank histograms written to {args.out}")


if __name__ == "__main__":
    main()

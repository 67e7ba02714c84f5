"""NUTS at fly scale: a 5-term rule over 18 subjects × 240 trials of synthetic two-odour choices.

Prints wall time, ESS per second and R-hat, for a shared rule and for a hierarchical fit
(per-subject coefficients and biases drawn from a population, non-centred).

    python benchmarks/bench_nuts_fly_scale.py [--warmup 500] [--samples 500] [--only shared|hierarchical]

Two chains run in parallel on two CPU cores: the XLA flag that gives JAX two host devices is
set below, before JAX is imported (a library cannot do that safely; see docs/bayes.md).
"""

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import plasticinfer as pi  # noqa: E402
from plasticinfer import bayes  # noqa: E402

TERMS = ("x*r", "w", "x", "x*w", "w*r")


def make_data(key, n_subjects=18):
    """Each fly has its own x·r and decay coefficients and bias (population ± spread)."""
    k_coef, k_bias, k_data = jax.random.split(key, 3)
    xr = 0.5 + 0.1 * np.asarray(jax.random.normal(k_coef, (n_subjects,)))
    decay = -0.05 + 0.01 * np.asarray(jax.random.normal(jax.random.fold_in(k_coef, 1), (n_subjects,)))
    bias = 0.2 * np.asarray(jax.random.normal(k_bias, (n_subjects,)))
    parts = []
    for s, k in enumerate(jax.random.split(k_data, n_subjects)):
        rule = pi.TaylorRule.from_terms({"x*r": float(xr[s]), "w": float(decay[s])})
        parts.append(pi.make_choice_data(rule, key=k, n_subjects=1, inverse_temperature=1.0, bias=float(bias[s])).data)
    data = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)
    return data, {"x*r": xr, "w": decay, "bias": bias}


def make_model(n_subjects):
    """The TERMS rule (all 0) in a two-odour choice circuit, inverse temperature 1 (held), initial weights 0."""
    return pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({t: 0.0 for t in TERMS}),
        pi.ChoiceCircuit(2),
        pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=n_subjects,
        initial_weights={"w": jnp.zeros((1, 2))},
    )


PRIORS = bayes.Priors(coefficients=bayes.Laplace(0.5), observation=bayes.Normal(1.0), population_scale=bayes.HalfNormal(0.2))


def report(name, post, truth, extra_seconds):
    table = post.summary()
    print(f"\n== {name}: {post.n_chains} chains × {post.n_draws} draws, {post.method.warmup} warmup, chain method "
          f"{post.method.resolved_chain_method()} on {jax.local_device_count()} devices")
    print(f"NUTS wall time {post.seconds:.1f} s (compilation included; MAP warm start took {extra_seconds:.1f} s more)")
    ess = table["ess_bulk"]
    print(f"bulk ESS: min {ess.min():.0f}, median {ess.median():.0f}; ESS/s: min {ess.min() / post.seconds:.2f}, "
          f"median {ess.median() / post.seconds:.2f}")
    print(f"R-hat: max {table['r_hat'].max():.4f}")
    stats = post.idata.sample_stats
    print(f"divergences {int(stats['diverging'].sum())}, mean leapfrog steps per draw {float(stats['n_steps'].mean()):.1f}")
    pooled = any(i.startswith("theta_mu") for i in table.index)
    rows = [i for i in table.index if i.startswith(("theta_mu", "theta_tau"))] if pooled else [i for i in table.index if i.startswith("theta[")]
    print(table.loc[rows, ["mean", "sd", "q5%", "q95%", "ess_bulk", "r_hat"]].round(4).to_string())
    print(f"true population: x*r 0.5 (sd 0.1 across flies), w −0.05 (sd 0.01), others 0; "
          f"sample mean of the flies' values: x*r {truth['x*r'].mean():.3f}, w {truth['w'].mean():.4f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--only", choices=["shared", "hierarchical"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k_data, k_shared, k_hier = jax.random.split(jax.random.key(args.seed), 3)
    data, truth = make_data(k_data)
    model = make_model(data.n_trajectories)
    priors = PRIORS
    nuts = bayes.NUTS(warmup=args.warmup, samples=args.samples, chains=2)
    print(f"data: {data.n_trajectories} subjects × {data.n_trials} trials; rule terms {TERMS}; {jax.local_device_count()} JAX devices")
    t0 = time.perf_counter()
    start = pi.fit(model, data, steps=200, progress=False, fit_initial_weights=False, devices=jax.devices()[:1])
    t_fit = time.perf_counter() - t0
    print(f"MAP (shared rule, L-BFGS 200 steps): {start.model.rule}  [{t_fit:.1f} s]")
    if args.only in (None, "shared"):
        post = bayes.sample(start.model, data, key=k_shared, priors=priors, method=nuts)
        report("shared rule", post, truth, t_fit)
    if args.only in (None, "hierarchical"):
        post = bayes.sample(start.model, data, key=k_hier, priors=priors, method=nuts, hierarchical=bayes.Hierarchical())
        report("hierarchical (per-subject coefficients and bias)", post, truth, t_fit)


if __name__ == "__main__":
    main()

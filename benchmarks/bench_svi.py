"""SVI against NUTS on a hierarchical fit: 12 synthetic flies × 240 trials, a 5-term rule per fly.

Side by side in one run, from the same MAP warm start:

- NUTS (2 chains × 500 draws): the reference spreads;
- SVI as it runs by default (AutoNormal started at the Hessian's diagonal, gradients clipped to norm 10);
- the same without the clip (``clip_norm=inf``, which removes the clip's bias on narrow posteriors);
- SVI started at AutoNormal's 0.1 (the start above ``SVI_HESSIAN_MAX_DIMENSION`` scalars), with and
  without the clip;
- SVI with a full-covariance guide (``AutoMultivariateNormal``; its start is the inverse Hessian where that is
  positive definite, the diagonal start otherwise), with and without the clip.

For each SVI run: wall time (the Hessian start and the optimum check included), the ratio of its
posterior sd to NUTS's for every sampled scalar (median and the 5–95 % range), and what its optimum
check (``Posterior.svi_check``) flagged.

    python benchmarks/bench_svi.py [--subjects 12] [--steps 3000]
"""

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal  # noqa: E402

jax.config.update("jax_enable_x64", True)

import plasticinfer as pi  # noqa: E402
import plasticinfer.bayes._nuts as _nuts  # noqa: E402
from plasticinfer import bayes  # noqa: E402
from bench_nuts_fly_scale import PRIORS, TERMS, make_data, make_model  # noqa: E402


def sds(post) -> np.ndarray:
    """Posterior sd of every scalar of every reported variable, flattened in one order."""
    return np.concatenate([np.asarray(post.draws(v)).reshape(-1, *np.shape(post.draws(v))[2:]).std(0).ravel()
                           for v in post.spec.reported_variables()])  # fmt: skip


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    k_data, k_nuts, k_svi = jax.random.split(jax.random.key(args.seed), 3)
    data, _ = make_data(k_data, args.subjects)
    model = make_model(data.n_trajectories)
    priors = PRIORS
    hier = bayes.Hierarchical()
    start = pi.fit(model, data, steps=200, progress=False, fit_initial_weights=False, devices=jax.devices()[:1]).model
    print(f"data: {data.n_trajectories} subjects × {data.n_trials} trials; rule terms {TERMS}; hierarchical (per-subject "
          f"coefficients and bias); {args.steps} SVI steps; {jax.local_device_count()} JAX devices")
    t0 = time.perf_counter()
    ref = bayes.sample(start, data, key=k_nuts, priors=priors, hierarchical=hier, method=bayes.NUTS(), warn=False)
    print(f"NUTS 2 × 500 draws: {time.perf_counter() - t0:.1f} s; problems: {len(ref.diagnostics())} "
          f"({'; '.join(m[:60] for m in ref.diagnostics())})")
    ref_sd = sds(ref)
    runs = [("default (Hessian start, clip 10)", None, 10.0, AutoNormal), ("Hessian start, no clip", None, np.inf, AutoNormal),
            ("start 0.1, clip 10", 0, 10.0, AutoNormal), ("start 0.1, no clip", 0, np.inf, AutoNormal),
            ("AutoMultivariateNormal, clip 10", None, 10.0, AutoMultivariateNormal),
            ("AutoMultivariateNormal, no clip", None, np.inf, AutoMultivariateNormal)]
    cap = _nuts.SVI_HESSIAN_MAX_DIMENSION
    for name, override, clip, guide in runs:
        _nuts.SVI_HESSIAN_MAX_DIMENSION = cap if override is None else override
        try:
            t0 = time.perf_counter()
            post = bayes.sample(start, data, key=k_svi, priors=priors, hierarchical=hier, warn=False,
                                method=bayes.SVI(guide=guide, steps=args.steps, clip_norm=clip))  # fmt: skip
            seconds = time.perf_counter() - t0
        finally:
            _nuts.SVI_HESSIAN_MAX_DIMENSION = cap
        r = sds(post) / ref_sd
        check = post.svi_check()
        verdict = (f"start: {check['initial_spread']}; check flagged {check['n_spread']} spreads (worst {check['spread'][:1]}), {check['n_location']} means and {check['n_pairs']} pairs (worst {check['pairs'][:1]}) of "
                   f"{check['scalars']} guide scalars" if check is not None
                   else f"no optimum check; warnings: {[m[:60] for m in post.diagnostics()]}")
        print(f"SVI {name}: {seconds:.1f} s; sd / NUTS sd over {r.size} scalars: median {np.median(r):.2f}, "
              f"5–95 % {np.percentile(r, 5):.2f}–{np.percentile(r, 95):.2f}; {verdict}")


if __name__ == "__main__":
    main()

"""Rule-discovery benchmarks (issue 6): what is recovered, and how long it takes.

0. Speed of one PC1 objective gradient (4 vmapped restarts) at n_pre = 3, 39, 100 with each of the
   Taylor rule's two contractions forced and with the automatic choice (section ``pc1grad``).
1. PC1 / Oja (B1) at n_pre = 3, 39, 100: full 27-term degree-2 Taylor rule over (x, y, w), L1 and
   pruning; per restart θ(y²w)/θ(x·y) (target −1 ± 10 %) and θ(w)/θ(x·y); wall time.
2. PCA network (B2) 50 → 5: principal angles of the solutions (target: all < 10°); wall time.
3. B3 rate model: gradient descent and CMA-ES families; manifold residuals; agreement of the
   optimisers; spread along the manifold; generalisation; familiarity against its null, no plasticity and
   speed-matched Vogels rules.
4. B3 LIF: CMA-ES wall time; residual of the spiking steady state against the rate manifold.

Timings are wall-clock on whatever machine runs this (the shared 2-core CPU inflates them).
Results are printed and written as JSON to --out (a temporary folder by default).

Run:  python benchmarks/bench_discovery.py [--only pc1grad,pc1,pca,b3,lif] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax

jax.config.update("jax_enable_x64", True)

from plasticinfer import TaylorRule  # noqa: E402
from plasticinfer import discovery as dsc  # noqa: E402
from _timing import timed  # noqa: E402


def adam(lr, steps):
    return optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))


def bench_pc1_gradient(key, quick):
    """One gradient of the PC1 loss over 4 vmapped restarts, per contraction (same rule, same episode)."""
    import equinox as eqx

    out = {}
    for n_pre in (3, 39, 100):
        obj = dsc.PC1Objective.create(None, n_pre, n_steps=50 if quick else 200)
        base = obj.default_rule()
        k_ep, k_c = jax.random.split(jax.random.fold_in(key, n_pre))
        episode = obj.sample(k_ep)
        coeffs = 0.01 * jax.random.normal(k_c, (4, len(base.terms)))
        row = {}
        for contraction in ("auto", "synapse", "moments"):
            rule = TaylorRule(base.terms, base.coeffs, learning_rate=base.learning_rate, contraction=contraction)
            grad = eqx.filter_jit(jax.vmap(lambda c, r=rule: jax.grad(lambda cc: obj.loss(eqx.tree_at(lambda q: q.coeffs, r, cc), episode))(c)))
            row[contraction] = timed(grad, coeffs)
        out[n_pre] = row
        print(
            f"PC1 gradient, n_pre={n_pre:3d}, 4 restarts (median of 5, wall / process CPU): "
            + "; ".join(f"{c} {t['median'] * 1e3:.0f} / {t['cpu_median'] * 1e3:.0f} ms" for c, t in row.items()),
            flush=True,
        )
    return out


def bench_pc1(key, quick):
    out = {}
    for n_pre, restarts, steps, networks in ((3, 4, 600, 6), (39, 4, 300, 4), (100, 4, 300, 4)):
        if quick:
            restarts, steps = 2, 100
        obj = dsc.PC1Objective.create(None, n_pre, n_networks=networks)
        key, k = jax.random.split(key)
        res = dsc.gradient_search(
            obj, key=k, restarts=restarts, steps=steps, l1=3e-4, prune=0.25, init_scale=0.01,
            optimiser=adam(3e-2, steps), progress=False,
        )  # fmt: skip
        comp = [dsc.oja_comparison(res.rule(i)) for i in range(res.n_restarts)]
        y2w = np.array([c["y2w"] for c in comp])
        within = np.abs(y2w + 1) < 0.1
        out[n_pre] = dict(
            wall_time_s=res.wall_time,
            restarts=res.n_restarts,
            steps=steps,
            successes=int(res.success.sum()),
            within_10pct=int(within.sum()),
            y2w_over_xy=y2w.round(4).tolist(),
            w_over_xy=[round(c["w"], 4) for c in comp],
            rate_xy=[round(c["rate"], 3) for c in comp],
            largest_other=[f"{c['largest_other_term']}={c['largest_other']:.3f}" for c in comp],
            max_angle_deg=np.round(res.metrics["max_angle_deg"], 2).tolist(),
            families=[f"{f.count}× {f.label}" for f in dsc.find_families(res, reference="x*y")],
            oja_loss=float(obj.evaluate(obj.reference_rule(), k)["loss"]),
            best_loss=float(np.nanmin(res.losses)),
        )
        print(f"PC1 n_pre={n_pre}: {out[n_pre]}", flush=True)
    return out


def bench_pca(key, quick):
    obj = dsc.PCANetworkObjective.create(None, 50, 5)
    restarts, steps = (2, 60) if quick else (8, 250)
    rule = {k: TaylorRule.full(("x", "y", "w"), 2, max_degree=3, learning_rate=0.1) for k in ("ff", "lateral")}
    res = dsc.gradient_search(
        obj, rule, key=key, restarts=restarts, steps=steps, l1=3e-4, prune=0.25, init_scale=0.01,
        optimiser=adam(1e-2, steps), progress=False,
    )  # fmt: skip
    ok = res.success
    fams = dsc.find_families(res, reference="x*y")
    out = dict(
        wall_time_s=res.wall_time,
        restarts=restarts,
        steps=steps,
        successes=int(ok.sum()),
        max_angle_deg=np.round(res.metrics["max_angle_deg"], 2).tolist(),
        mean_angle_deg=np.round(res.metrics["mean_angle_deg"], 2).tolist(),
        reference_max_angle_deg=float(obj.evaluate(obj.reference_rule(), key)["max_angle_deg"]),
        families=[f"{f.count}× {f.label}" for f in fams],
        family_equations=[f.equation for f in fams],
    )
    if ok.any():
        best = res.rule(int(np.flatnonzero(ok)[np.argmin(res.losses[ok])]))
        ff, lat = best["ff"].coefficients, best["lateral"].coefficients
        out["best_ff_y2w_over_xy"] = ff["y^2*w"] / ff["x*y"]
        out["best_lateral_xy_sign"] = float(np.sign(lat["x*y"]))
    print(f"PCA network 50→5: {out}", flush=True)
    return out


def bench_b3(key, quick):
    obj = dsc.HomeostasisObjective.create()
    kg, kc, ka = jax.random.split(key, 3)
    steps = 60 if quick else 300
    grad = dsc.gradient_search(obj, key=kg, restarts=4 if quick else 16, steps=steps, l1=1e-3, init_scale=1.0,
                               optimiser=adam(0.1, steps), progress=False)  # fmt: skip
    cma = dsc.cma_search(obj, key=kc, restarts=2 if quick else 8, generations=10 if quick else 60, l1=1e-3,
                         init_scale=1.0, progress=False)  # fmt: skip
    analysis = dsc.analyse_homeostasis({"gradient": grad, "cma-es": cma}, obj, key=ka)
    out = {"summary": analysis.summary(), "agreement": analysis.agreement()}
    out["families"] = {m: [f"{f.count}× {f.label}" for f in dsc.find_families(r, reference="alpha")] for m, r in (("gradient", grad), ("cma-es", cma))}
    print("B3 rate model:\n" + analysis.markdown(), flush=True)
    return out, analysis


def bench_lif(key, quick):
    obj = dsc.LIFHomeostasisObjective.create(duration=5.0 if quick else 30.0, measure=2.0 if quick else 10.0)
    res = dsc.cma_search(obj, key=key, restarts=1 if quick else 4, generations=3 if quick else 40, popsize=8,
                         l1=1e-3, init_scale=1.0, progress=False)  # fmt: skip
    t = dsc.manifold_table(res, obj.nu_inh, obj.target)
    k_ref = jax.random.fold_in(key, 1)
    vogels = obj.evaluate(obj.reference_rule(), k_ref)
    out = dict(
        wall_time_s=res.wall_time,
        evaluations=res.settings["evaluations"],
        seconds_per_generation=res.wall_time / max(1, res.settings["generations"]),
        successes=int(res.success.sum()),
        simulated_rate_hz=np.round(t["rate"], 3).tolist(),
        analytic_nu_star_hz=np.round(t["nu_star"], 3).tolist(),
        residual_hz=np.round(t["residual"], 3).tolist(),
        vogels_simulated_hz=vogels["rate_hz"],
        equations=[res.equation(i) for i in range(res.n_restarts)],
    )
    print(f"LIF B3 (CMA-ES): {out}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="pc1grad,pc1,pca,b3,lif", help="comma-separated sections")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not the benchmark)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json and figures (default: a temp folder)")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench-discovery-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = dict(zip(("pc1", "pca", "b3", "lif", "pc1grad"), jax.random.split(jax.random.key(args.seed), 5)))
    results = {}
    t0 = time.perf_counter()
    for section in args.only.split(","):
        if section == "pc1grad":
            results["pc1grad"] = bench_pc1_gradient(keys["pc1grad"], args.quick)
        elif section == "pc1":
            results["pc1"] = bench_pc1(keys["pc1"], args.quick)
        elif section == "pca":
            results["pca"] = bench_pca(keys["pca"], args.quick)
        elif section == "b3":
            results["b3"], analysis = bench_b3(keys["b3"], args.quick)
            fig = analysis.figure()
            fig.savefig(out_dir / "b3_manifold.png", dpi=120)
        elif section == "lif":
            results["lif"] = bench_lif(keys["lif"], args.quick)
        else:
            raise SystemExit(f"unknown section {section!r}; choose from pc1grad, pc1, pca, b3, lif")
    results["total_wall_time_s"] = time.perf_counter() - t0
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"\ntotal {results['total_wall_time_s']:.0f} s; results in {out_dir}")


if __name__ == "__main__":
    main()

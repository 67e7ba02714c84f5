"""The fly MAP analysis (every standard hypothesis × every fly, held-out and in-sample) timed end to end,
with the figures the issue measured: the ranking, where x·r + w sits against the base rate, θ(w)'s sign.

    PYTHONPATH=$PWD python benchmarks/bench_fly_compare.py [rajagopalan2023|mohanta2022] [--steps 50] [--restarts 4]

Prints wall time and figures; not a pass/fail test.
"""

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import plasticinfer as pi  # noqa: E402
from plasticinfer.fly import analyse_choices, decay_summary  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default="rajagopalan2023")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = pi.datasets.load(args.dataset)
    t0 = time.perf_counter()
    a = analyse_choices(ds, key=jax.random.key(args.seed), steps=args.steps, restarts=args.restarts, in_sample=True)
    wall = time.perf_counter() - t0
    t = a.table()
    print(f"{args.dataset}: {ds.sizes['subject']} subjects × {len(a.hypotheses)} hypotheses + baselines, "
          f"{args.steps} steps × {args.restarts} starts, held-out + in-sample: {wall:.0f} s "
          f"(held-out {a.timings['held-out']:.0f} s, in-sample {a.timings['in-sample']:.0f} s)")
    cols = ["heldout_ll", "mean_normalized_likelihood", "se_normalized_likelihood", "median_dev_explained_vs_base_rate",
            "median_dev_explained_vs_coin_in_sample", "subjects_better_than_base"]
    print(t[cols].round(4).to_string())
    rank = list(t.index)
    print(f"x·r + w rank {rank.index('x·r + w') + 1}, base rate rank {rank.index('base rate') + 1}")
    for which in (False, True):
        d = decay_summary(a, "x·r + w", all_trials=which)
        print(f"θ(w) of x·r + w ({'all trials' if which else 'held-out fit'}): negative in {d['negative']}/{d['n']}, median {d['median']:.3f}")
    print(a.paired("x·r", "x·r + w"))


if __name__ == "__main__":
    main()

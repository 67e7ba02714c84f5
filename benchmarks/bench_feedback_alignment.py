"""Feedback-alignment meta-learning benchmark (issue 7): the documented full-size run, timed.

Meta-trains a sparse local rule for a 64 → 100 → 80 → 5 network with fixed random feedback on
5-way, 10-shot online digit episodes (digits 0–4), then evaluates online backprop, plain feedback
alignment and the meta-learned rule on 200 episodes of the held-out digits 5–9. Prints wall times,
accuracies (mean ± s.e.), paired differences, the surviving equation and a one-term-out ablation.

    python benchmarks/bench_feedback_alignment.py [--steps 300] [--seed 0] [--out DIR]

Timings on a shared machine are upper bounds: other processes compete for the same cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--meta-batch", type=int, default=16)
    p.add_argument("--l1", type=float, default=0.03)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="folder for results.nc, summary.md, learning_curves.png")
    args = p.parse_args()

    import plasticinfer as pi

    out = args.out or Path(tempfile.mkdtemp(prefix="plasticinfer-bench-fa-"))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPU cores visible")
    k_run, k_ablation = jax.random.split(jax.random.key(args.seed))
    t0 = time.perf_counter()
    report = pi.metalearn.feedback_alignment_experiment(
        key=k_run,
        hidden=(100, 80),
        n_way=5,
        k_shot=10,
        n_query=10,
        steps=args.steps,
        meta_batch=args.meta_batch,
        l1=args.l1,
        eval_episodes=args.eval_episodes,
        progress=False,
    )
    total = time.perf_counter() - t0
    print(f"\nwall time: total {total:.1f} s; " + ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items()))
    print(f"meta-training: {report.meta.steps_run} steps × {args.meta_batch} episodes, {report.meta.wall_time:.1f} s "
          f"({report.meta.wall_time / report.meta.steps_run:.3f} s/step incl. compilation)\n")
    print(report.summary())

    rule = report.rule.pruned(report.threshold)
    net = report.networks["meta-learned"]
    learners = {"all surviving terms": (rule, net)}
    for name in rule.names:
        mask = jnp.asarray([n == name for n in rule.names])
        learners[f"without {name}"] = (rule.with_coeffs(jnp.where(mask, 0.0, rule.coeffs)), net)
    _, heldout = pi.metalearn.digits_split(n_way=5, k_shot=10, n_query=10)
    ablation = pi.metalearn.evaluate_learners(learners, heldout, key=k_ablation, n_episodes=args.eval_episodes)
    print("\none-term-out ablation of the surviving rule (fresh held-out episodes):")
    print(ablation.table()[["accuracy", "accuracy_se"]].to_string(float_format=lambda v: f"{v:.3f}"))
    paths = report.save(out)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()

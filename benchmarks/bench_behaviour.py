"""Behavioural model comparison on fly choice data: classical agents, rules found from data, a tiny GRU.

Protocol (FlYMazeRL / CogFunSearch / SPICE): one shared parameter set is fitted on the training
animals; held-out animals are scored from naive by their normalized likelihood, exp(mean
log-likelihood per choice), averaged over animals (± SE); a paired Wilcoxon signed-rank test across
held-out animals compares each model with the best classical agent.

- mohanta2022: the dataset's own split (88 training, 44 test flies).
- rajagopalan2023: k folds over flies (each fly held out once).

The rule found from data is the option-signal Taylor family of degree ``--max-power`` in the two
values (default 1: linear in the values, so its dynamics cannot run away; at degree 2 the selected
rule's q² and o² terms blow up on some held-out flies and the score is not finite).

Every hypothesis goes through ``compare`` (same likelihood, same splits); each is run on its own so
its fit time can be printed. Usage:

    PYTHONPATH=$PWD python benchmarks/bench_behaviour.py [--steps 150] [--k 3] [--quick]
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import plasticinfer as pi  # noqa: E402
from plasticinfer.compare import (  # noqa: E402
    ComparisonResult,
    GRUHypothesis,
    PopulationModel,
    SparseRuleHypothesis,
    accept_reject_policy,
    agent_model,
    classical_rules,
    option_taylor_rule,
    softmax_policy,
)
from plasticinfer.compare._stats import wilcoxon_signed_rank  # noqa: E402



def dataset_split(ds):
    return pi.compare.DatasetSplit(labels=tuple(str(v) for v in ds["split"].values)), "compare.DatasetSplit"


def subject_kfold(k, seed):
    return pi.compare.SubjectKFold(k=k, seed=seed), "compare.SubjectKFold"


def hypotheses(data, args):
    rules = classical_rules()
    ar = ["Q (RW)", "Q, forget unchosen (F)", "Q, diff. forget unchosen (DF)", "Q, forget all (κ)", "Q, omission (OS)",
          "Q, long-term (LT)", "DF + LT + OS", "expected SARSA"]
    sm = ["Q (RW)", "DF + LT + OS"]
    if args.quick:
        ar, sm = ["Q, forget unchosen (F)", "DF + LT + OS"], ["Q (RW)"]
    elif args.reduced:
        ar, sm = ["Q, forget unchosen (F)", "Q, diff. forget unchosen (DF)", "DF + LT + OS"], ["Q (RW)"]
    out = {}
    for name in ar:
        out[f"{name} · AR"] = ("agent", agent_model(rules[name], accept_reject_policy(), data))
    for name in sm:
        out[f"{name} · softmax"] = ("agent", agent_model(rules[name], softmax_policy(), data))
    out["x·r + w (Taylor, local)"] = ("rule", pi.TaylorRule.from_terms({"x*r": 0.5, "w": -0.05}))
    path = (0.0, 3e-3) if args.quick else (0.0, 1e-3, 3e-3, 1e-2)
    if args.both_policies:
        out["option Taylor, L1 path · softmax"] = (
            "found", SparseRuleHypothesis("option Taylor, L1 path · softmax", option_taylor_rule(args.max_power), l1_path=path))
    out["option Taylor, L1 path · AR"] = (
        "found", SparseRuleHypothesis("option Taylor, L1 path · AR", option_taylor_rule(args.max_power),
                                      policy=pi.compare.AcceptReject(1.0, 0.0, learn_weight=False), l1_path=path))
    if args.population:  # the same agents with their parameters varying between flies, and the found rule's population refit
        pops = [(name, "softmax", softmax_policy) for name in sm] + [("DF + LT + OS", "AR", accept_reject_policy)]
        for name, pname, policy in pops:
            shared = agent_model(rules[name], policy(), data)
            out[f"{name} · {pname}, population"] = ("population", PopulationModel.from_model(shared, n_draws=args.population))
        out["option Taylor, L1 path · AR, population"] = (
            "found", SparseRuleHypothesis("option Taylor, L1 path · AR, population", option_taylor_rule(args.max_power),
                                          policy=pi.compare.AcceptReject(1.0, 0.0, learn_weight=False), l1_path=path,
                                          population=args.population))
    for h in args.hidden:
        out[f"GRU ({h} units)"] = ("gru", GRUHypothesis(f"GRU ({h} units)", hidden=h, steps=args.gru_steps))
    if args.only:
        out = {k: v for k, v in out.items() if any(s in k for s in args.only)}
    return out


def run(name, data, split, args, key):
    hyps = hypotheses(data, args)
    rows, scores = [], []
    for label, (kind, h) in hyps.items():
        t0 = time.perf_counter()
        try:
            res = pi.compare.compare({label: h}, data, split=split, per_subject=False, baselines=label == next(iter(hyps)),
                                     steps=args.steps, restarts=args.restarts, key=key)
        except Exception as err:  # a benchmark reports a failure and goes on
            print(f"  {label:<40s} FAILED: {type(err).__name__}: {err}", flush=True)
            continue
        dt = time.perf_counter() - t0
        scores.append(res.scores)
        rows.append((label, kind, dt, h))
        print(f"  {label:<40s} fitted in {dt:6.1f} s", flush=True)
    allscores = pd.concat(scores, ignore_index=True)
    baselines = sorted(set(allscores["hypothesis"]) - set(hyps))
    result = ComparisonResult(allscores, list(hyps), baselines, split, res.settings)
    ps = result.per_subject()
    ps["nlik"] = np.exp(ps["heldout_ll"] / ps["n_heldout"])
    kinds = {label: kind for label, kind, _, _ in rows} | {b: "baseline" for b in baselines}
    times = {label: dt for label, _, dt, _ in rows}
    summary = ps.groupby("hypothesis", sort=False).agg(
        nlik=("nlik", "mean"), se=("nlik", lambda x: x.std(ddof=1) / np.sqrt(len(x))), n=("nlik", "size"),
        params=("n_params", "max"))
    classical = [h for h in summary.index if kinds[h] in ("agent", "population")]  # shared or population
    best_classical = summary.loc[classical, "nlik"].idxmax() if classical else None  # none under --only without an agent
    table = []
    for h, r in summary.sort_values("nlik", ascending=False).iterrows():
        p = np.nan
        if best_classical is not None and h != best_classical:
            a = ps[ps.hypothesis == h].set_index("subject")["heldout_ll_per_obs"]
            b = ps[ps.hypothesis == best_classical].set_index("subject")["heldout_ll_per_obs"]
            common = a.index.intersection(b.index)
            p = wilcoxon_signed_rank(a.loc[common].to_numpy(), b.loc[common].to_numpy(), alternative="two-sided").p_value
        table.append({"model": h, "kind": kinds[h], "params": int(r.params), "norm. lik.": f"{r.nlik:.4f} ± {r.se:.4f}",
                      "p vs best classical": p, "fit s": times.get(h, np.nan)})
    print(f"\n{name}: {summary['n'].iloc[0]} held-out animals; best classical agent = {best_classical or 'none in this run (no p)'}")
    print(pd.DataFrame(table).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for label, kind, _, h in rows:
        if kind == "found":
            for sel in h.selection:
                print(f"  {label} [{sel['fold']}]: L1 = {sel['chosen_l1']:g} (validation ll {np.round(sel['validation_ll'], 1).tolist()}); "
                      f"{sel['equation']}  ({sel['equation_from']})")
    s = summary["nlik"]
    gru = [h for h in s.index if kinds[h] == "gru"]
    found = [h for h in s.index if kinds[h] == "found"]
    if gru and found and best_classical is not None:
        g, f, c = s[gru].max(), s[found].max(), s[best_classical]
        gap = g - c
        print(f"  gap GRU − best classical = {gap:+.4f}; best found rule closes "
              f"{(f - c) / gap * 100 if gap > 0 else float('nan'):.0f} % of it" + ("" if gap > 0 else " (the GRU is not better: no gap to close)"))
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100, help="L-BFGS steps per fit (a multiple of 25: one compilation)")
    ap.add_argument("--both-policies", action="store_true", help="also the option Taylor rule with the softmax policy")
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--k", type=int, default=3, help="folds over flies for rajagopalan2023")
    ap.add_argument("--hidden", type=int, nargs="+", default=[4])
    ap.add_argument("--gru-steps", type=int, default=3000)
    ap.add_argument("--max-power", type=int, default=1,
                    help="degree of the found rule in the two values (2 blows up on held-out flies: q² feeds back on itself)")
    ap.add_argument("--population", type=int, default=0, metavar="DRAWS",
                    help="also the softmax agents as populations (rule parameters vary between flies; unseen flies "
                         "predicted by the marginal likelihood over DRAWS draws)")
    ap.add_argument("--only", nargs="+", default=None, help="run only the hypotheses whose name contains one of these")
    ap.add_argument("--quick", action="store_true", help="a few hypotheses only (smoke run)")
    ap.add_argument("--reduced", action="store_true", help="four classical agents instead of ten (a busy machine)")
    ap.add_argument("--datasets", nargs="+", default=["mohanta2022", "rajagopalan2023"])
    args = ap.parse_args()
    key = jax.random.key(0)
    t_all = time.perf_counter()
    for name in args.datasets:
        ds = pi.datasets.load(name)
        data = pi.TrialData.from_dataset(ds)
        if name == "mohanta2022":
            split, how = dataset_split(ds)
        else:
            split, how = subject_kfold(args.k, 0)
        print(f"\n=== {name}: {data.n_trajectories} flies × {data.n_trials} trials; split: {how}; "
              f"{args.steps} L-BFGS steps × {args.restarts} start(s) per fit", flush=True)
        t0 = time.perf_counter()
        run(name, data, split, args, key)
        print(f"  {name} total: {time.perf_counter() - t0:.0f} s")
    print(f"\nwhole benchmark: {time.perf_counter() - t_all:.0f} s on {jax.device_count()} {jax.default_backend()} device(s)")


if __name__ == "__main__":
    main()

# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 9 · Classical agents, a rule found from data, and a tiny-GRU ceiling on fly choices
#
# Behavioural models are ranked by how well they predict **held-out flies' choices**. Here, on the
# FlYMazeRL Y-maze flies (mohanta2022), we
#
# 1. build classical agents as *a rule plus a policy* (Q-learning with forgetting of the unchosen
#    option; with the accept–reject policy FlYMazeRL's best agents use);
# 2. let a sparse **option-signal Taylor rule** be selected along an L1 path on a validation part of
#    the training flies;
# 3. fit a **tiny GRU** as the flexible reference;
# 4. score everything on the dataset's test flies from naive, by normalized likelihood
#    (exp of the mean log-likelihood per choice) with a paired signed-rank test.
#
# Set `PLASTICINFER_TUTORIAL_SMALL=1` to run it at a tiny size (the test suite does): a subset of
# flies and few fitting steps, so the numbers are illustrative only. See `docs/behaviour.md`.

# %%
import os
import tempfile
from pathlib import Path

import jax
import numpy as np

import plasticinfer as pi
from plasticinfer.compare import (
    GRUHypothesis,
    QAgentRule,
    SparseRuleHypothesis,
    accept_reject_policy,
    agent_model,
    option_taylor_rule,
)

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT", tempfile.mkdtemp(prefix="plasticinfer-tutorial09-")))
N_TRAIN, N_TEST, N_TRIALS, STEPS, GRU_STEPS = (9, 6, 50, 25, 200) if SMALL else (88, 44, 160, 100, 3000)

# %% [markdown]
# ## The data and the split
#
# mohanta2022 comes as 88 training and 44 test flies (coordinate `split`). We fit one shared parameter
# set on training flies and score test flies from naive: `plasticinfer.compare.DatasetSplit`.

# %%
ds = pi.datasets.load("mohanta2022")
labels = np.asarray(ds["split"].values, dtype=object)
keep = np.concatenate([np.flatnonzero(labels == "training")[:N_TRAIN], np.flatnonzero(labels == "test")[:N_TEST]])
ds = ds.isel(subject=keep, trial=slice(0, N_TRIALS))
data = pi.TrialData.from_dataset(ds)
split = pi.compare.DatasetSplit(labels=tuple(labels[keep]))
print(f"{N_TRAIN} training and {N_TEST} test flies × {N_TRIALS} trials")

# %% [markdown]
# ## Hypotheses
#
# An agent is a `QAgentRule` (the value update: here forgetting of the unchosen option, κ tied to α —
# FlYMazeRL's "forgetting" agent — and the differential version with its own κ) inside the choice
# circuit, whose one weight per option *is* the value table, plus a policy. The accept–reject policy
# accepts an option with probability sigmoid(weight·Q + intercept); the two-option choice probability
# is a₁(3 − a₀)/(3a₀ + 3a₁ − 2a₀a₁).

# %%
hyps = {
    "F · AR": agent_model(QAgentRule(0.2, forget_unchosen=True), accept_reject_policy(), data),
    "DF · AR": agent_model(QAgentRule(0.2, forget_unchosen=True, kappa=0.1), accept_reject_policy(), data),
    "rule from data": SparseRuleHypothesis(  # softmax with β fixed at 1: the rule's scale is free
        "rule from data", option_taylor_rule(), l1_path=(0.0, 3e-3) if SMALL else (0.0, 1e-3, 3e-3, 1e-2),
    ),
    "GRU (2 units)": GRUHypothesis("GRU (2 units)", hidden=2, steps=GRU_STEPS),
}
result = pi.compare.compare(hyps, data, split=split, per_subject=False, steps=STEPS, restarts=1, key=jax.random.key(0))

# %% [markdown]
# ## Normalized likelihood of the test flies, and a paired test

# %%
ps = result.per_subject()
ps["normalized_likelihood"] = np.exp(ps["heldout_ll"] / ps["n_heldout"])
table = ps.groupby("hypothesis")["normalized_likelihood"].agg(["mean", "sem"]).sort_values("mean", ascending=False)
print(table.round(4).to_string())
test = result.paired_test("DF · AR", "F · AR", alternative="two-sided")
print(f"DF vs F across test flies: signed-rank p = {test.p_value:.3g}")
sel = hyps["rule from data"].selection[0]
print(f"rule from data: L1 = {sel['chosen_l1']:g}, {sel['equation']}")
table.to_csv(OUT / "normalized_likelihood.csv")
result.save(OUT)
assert np.isclose(table.loc["coin flip", "mean"], 0.5)

# %% [markdown]
# ## Unseen flies from a population
#
# A shared fit gives every fly one value update. `as_populations` turns a model into a
# `PopulationModel`: its parameters vary between flies as N(μ, σ²), the fit maximises the training
# flies' marginal likelihood over fixed Monte Carlo draws, and a test fly is predicted from the fitted
# population by the same integral. The control is the shared model in the same comparison: a
# population earns its extra parameters (the spreads σ) only if the test flies are predicted better.

# %%
shared = {"DF · softmax": agent_model(QAgentRule(0.2, forget_unchosen=True, kappa=0.1), pi.compare.softmax_policy(), data)}
pop = pi.compare.compare(
    {**shared, **pi.compare.as_populations(shared, data, n_draws=8 if SMALL else 64)},
    data, split=split, per_subject=False, baselines=False, steps=STEPS, restarts=1, key=jax.random.key(1),
)  # fmt: skip
pps = pop.per_subject()
pps["normalized_likelihood"] = np.exp(pps["heldout_ll"] / pps["n_heldout"])
print(pps.groupby("hypothesis")[["normalized_likelihood", "n_params"]].mean().round(4).to_string())
fitted = next(m for (h, _), m in pop.fitted.items() if h.endswith("(population)"))
print("fitted spread σ across flies (logits of α and κ):", np.round(np.asarray(fitted.scale), 3))
assert pps.groupby("hypothesis")["subject"].nunique().eq(N_TEST).all()

# %% [markdown]
# The same rows from the command line (add `--gru 4` for the ceiling):
#
# ```bash
# plasticinfer compare mohanta2022 --split dataset --agent "Q, diff. forget unchosen (DF)" --policy softmax --population 64
# ```

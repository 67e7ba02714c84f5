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
# # 4 · Drosophila reward learning: which plasticity rule do flies use?
#
# The flies of Rajagopalan et al. (PNAS 2023) chose between two odours for up to 240 trials in three
# blocks with different (baited) reward probabilities. We model each fly as a two-odour choice circuit:
# an output neuron's drive for each odour is w·x, the choice probability is a logistic of the drive
# difference plus a bias, and after every trial a plasticity rule updates w from the chosen odour's
# input x, the weights w and the reward r (or r − E[r]).
#
# The fly analysis *is* a model comparison (`plasticinfer.compare`): we fit several named rule
# hypotheses to every fly (MAP, 4 starts per fit, all flies in one vmapped computation), score them on
# held-out trials (the last 20 % of each block), and compare against compare's baselines — a coin flip
# (the published metric), each fly's base rate (a fair null) and Rescorla–Wagner.
#
# Set `PLASTICINFER_TUTORIAL_SMALL=1` to run on 4 flies with 3 hypotheses.

# %%
import os
import tempfile
import warnings
from pathlib import Path

import jax

import plasticinfer as pi
from plasticinfer.compare import DatasetSplit, parse_hypothesis
from plasticinfer.fly import analyse_choices, decay_summary, standard_hypotheses
from plasticinfer.fly import write_report

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT", tempfile.mkdtemp(prefix="plasticinfer-tutorial04-")))

# %% [markdown]
# ## The data
# `pi.datasets.load` finds the data folder (`PLASTICINFER_DATA_DIR`, or `../shared/data`), checks it, and
# returns the validated behaviour schema with licence and citation in its attributes.

# %%
ds = pi.datasets.load("rajagopalan2023")
print(ds.attrs["citation"])
if SMALL:
    ds = ds.isel(subject=slice(0, 4))
print(ds.sizes)

# %% [markdown]
# ## The hypotheses
# Each is a named Taylor rule (or an MLP) in the chosen odour's input x, the weight w and the reward r.
# Rescorla–Wagner is itself a Taylor rule (θ(x·r) = α, θ(x·w) = −α), so it is fitted with the same machinery.
# Hypotheses are written in one syntax, ASCII or Unicode: `"x*(r-E[r]) + w"` and `"x·(r−E[r]) + w"` are
# the same hypothesis — a rule that sees the reward-prediction error r − E[r].

# %%
for name, h in standard_hypotheses().items():
    print(f"{name:30s} {h.description}")
h = parse_hypothesis("x*(r-E[r]) + w")
print(h.rule.names, "reward-prediction error:", h.reward_expectation)
names = ["x*r", "x·r + w", "x*(r-E[r]) + w"] if SMALL else None

# %% [markdown]
# ## Fit every hypothesis to every fly and score it on held-out trials

# %%
analysis = analyse_choices(ds, names, key=jax.random.key(0), steps=30 if SMALL else 50, restarts=2 if SMALL else 4,
                           in_sample=not SMALL)
result = analysis.heldout  # a plasticinfer.compare.ComparisonResult
print(result.summary())
cols = ["loglik_per_trial", "normalized_likelihood", "dev_explained_vs_base_rate"]
print(result.per_subject().query("hypothesis == 'x·r + w'").set_index("subject_name")[cols].round(3))

# %% [markdown]
# ## Does forgetting help? A paired comparison across flies
# Held-out log-likelihood with vs without the pure-w (decay) term, fly by fly, and the fitted decay rate.

# %%
print(analysis.paired("x·r", "x·r + w"))
d = decay_summary(analysis, "x·r + w")
print(f"θ(w): median {d['median']:.3f}, negative in {d['negative']} of {d['n']} flies")
print(result.equation("x·(r−E[r]) + w", subject=0))

# %% [markdown]
# ## A control: the same comparison with each fly's rewards shuffled
# Choices are autocorrelated (flies repeat themselves), and a decay term can fit that alone. So
# `analyse_choices` also runs the held-out comparison of the decay pairs and the best rule on the same
# choices with each fly's rewards permuted among its trials (`control=True`, the default). A claim about
# reward learning should hold with the real rewards and fail here; the report puts each claim beside it.

# %%
for label, res in (("real rewards", result), ("shuffled rewards", analysis.control)):
    t = res.table()
    gain = t["heldout_ll"] - t.loc["base rate", "heldout_ll"]
    print(f"{label:17s}", {h: round(float(gain[h]), 2) for h in analysis.control.hypotheses}, "nats vs the base rate")
print("decay term, shuffled rewards:", analysis.control.paired_test("x·r + w", "x·r", alternative="greater"))

# %% [markdown]
# ## Uncertainty of a population-level rule
# A rule shared by all flies, with 95 % intervals from the curvature of the likelihood (conditional
# Laplace approximation; the Bayesian module gives full and hierarchical posteriors).

# %%
data = pi.TrialData.from_dataset(ds)  # the validated dataset as the arrays a model consumes
h = standard_hypotheses()["x·r + w"]
shared = pi.fit(h.model(data), data, steps=40, fit_initial_weights=False, progress=False)
print(pi.laplace_intervals(shared.model, data).round(3))

# %% [markdown]
# ## Predicting new flies: the dataset's own train/test flies
# The Mohanta et al. Y-maze data come as 88 training and 44 test flies (coordinate `split`). `DatasetSplit()`
# fits one rule shared by the training flies and scores every trial of the test flies, which start naive
# (weights 0). Here a small slice of each part.

# %%
ym = pi.datasets.load("mohanta2022")
pick = [*range(0, 8 if SMALL else 88, 1)] + [*range(88, 92 if SMALL else 132)]
ym = ym.isel(subject=pick, trial=slice(0, 60 if SMALL else 160))
population = analyse_choices(ym, ["x·r", "x·r + w"], key=jax.random.key(3), split=DatasetSplit(), steps=20 if SMALL else 100,
                             restarts=2 if SMALL else 4, in_sample=False, control=False)  # the control: as above
print(population.heldout.table(reference="base rate")[["heldout_ll", "mean_normalized_likelihood", "se_normalized_likelihood",
                                                      "aic", "p_better_than_reference"]].round(4))
print(population.heldout.equation("x·r + w"))

# %% [markdown]
# ## Flies in general, and fly by fly: a hierarchical posterior
# Each fly's x·r and decay coefficients (and its bias) are drawn from a population; NUTS samples the
# population mean μ and spread τ together with every fly's own values. The question "do flies forget?"
# becomes P(μ(w) < 0), and "does this fly forget?" P(θ_fly(w) < 0). The full run (18 flies, 500 + 500
# draws × 2 chains, dense mass matrix) takes about 4 minutes on 2 cores; here a short run.

# %%
from plasticinfer import bayes
from plasticinfer.fly import hierarchical_fit

with warnings.catch_warnings():
    warnings.simplefilter("ignore", bayes.PosteriorWarning)  # short runs warn about ESS and R-hat; full runs should not
    hierarchy = hierarchical_fit(
        ds, "x·r + w", key=jax.random.key(2),
        # the small run also caps each draw at 2^6 leapfrog steps: its short warmup leaves trees of 2^10 (5× the time)
        method=bayes.NUTS(warmup=100, samples=100, max_tree_depth=6) if SMALL else None,
        start_steps=30 if SMALL else 100,
    )
print(hierarchy)
print(hierarchy.per_subject().round(3))
fig = hierarchy.plot()
fig.savefig(OUT / "population.png", dpi=100)

# %% [markdown]
# ## The report
# Markdown with the per-hypothesis table, the paired comparisons, the comparison with the published
# analysis (for this dataset only), figures (choice-probability traces with block boundaries, deviance
# explained per fly, decay coefficients), and the comparison's files (`scores.csv`, `coefficients.csv`, …;
# `plasticinfer.compare.ComparisonResult.load(OUT)` reads them back). `plasticinfer fly rajagopalan2023
# --out fly-report` writes the same from the shell.

# %%
paths = write_report(analysis, OUT, title="Rajagopalan et al. 2023 flies", posterior=hierarchy)
print(paths["report"].read_text()[:1500])

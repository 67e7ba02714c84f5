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
# # 3 · Uncertainty, identifiability and model comparison
#
# A point estimate says nothing about how sure we are, or whether the data could have told two
# terms apart at all. This tutorial, on synthetic two-odour choice data (3 blocks × 80 trials of a
# fly-like task, true rule Δw = 0.3·x·r − 0.1·w):
#
# 1. fits the rule (MAP) and samples its **posterior** with NUTS, warm-started at the MAP fit;
# 2. reads the **summary table** (mean, 90 % interval, R-hat, ESS) and checks the posterior covers the truth;
# 3. asks an **identifiability report** about a rule with a term the data cannot separate
#    (x·r² when rewards are 0/1) and plots the pairwise posterior;
# 4. fits a **hierarchical** model: per-fly coefficients drawn from a population;
# 5. **compares** three hypotheses by held-out likelihood against a coin flip, a base rate and
#    Rescorla–Wagner, with a paired test for "does the decay term help".
#
# Set `PLASTICINFER_TUTORIAL_SMALL=1` to run it at a tiny size (the test suite does).

# %%
import os
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import plasticinfer as pi
from plasticinfer import bayes

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT", tempfile.mkdtemp(prefix="plasticinfer-tutorial03-")))
N_SUBJECTS, TRIALS_PER_BLOCK = (3, 60) if SMALL else (12, 80)
NUTS = bayes.NUTS(warmup=100, samples=100, max_tree_depth=6) if SMALL else bayes.NUTS(warmup=500, samples=500)
STEPS, RESTARTS = (30, 2) if SMALL else (200, 4)
SVI_STEPS = 500 if SMALL else 3000
root = jax.random.key(2024)
k_data, k_fit, k_post, k_id, k_hier, k_cmp = jax.random.split(root, 6)

# %% [markdown]
# ## Synthetic flies
# `make_choice_data` lets a known rule play the baited two-odour task. The inverse temperature is 1
# (it is confounded with the scale of the x·r term, so the models below fix it at 1).

# %%
TRUTH = {"x*r": 0.3, "w": -0.1}
syn = pi.make_choice_data(
    pi.TaylorRule.from_terms(TRUTH), key=k_data, n_subjects=N_SUBJECTS, trials_per_block=TRIALS_PER_BLOCK, inverse_temperature=1.0
)
data = syn.data
print(f"{data.n_trajectories} flies × {data.n_trials} trials; P(choice = 1) overall {float(data.observations.mean()):.2f}")


def choice_model(terms):
    return pi.PlasticityModel.create(
        pi.TaylorRule.from_terms({t: 0.0 for t in terms}),
        pi.ChoiceCircuit(2),
        pi.BernoulliChoice(1.0, learn_temperature=False),
        n_trajectories=data.n_trajectories,
        initial_weights={"w": jnp.zeros((1, 2))},
    )


# %% [markdown]
# ## 1 · MAP fit, then the posterior
# `fit` gives the maximum a-posteriori start; `sample` runs NUTS on the *same* likelihood
# (`model.log_likelihood`, the same `simulate`) with priors: Laplace on the coefficients (the
# Bayesian L1), Normal on the bias. Initial weights stay at 0 (naive flies).

# %%
model = choice_model(["x*r", "w"])
start = pi.fit(model, data, steps=STEPS, restarts=RESTARTS, key=k_fit, fit_initial_weights=False, progress=False)
print("MAP:", start.model.rule)
priors = bayes.Priors(coefficients=bayes.Laplace(1.0), observation=bayes.Normal(2.0))
post = bayes.sample(start.model, data, key=k_post, priors=priors, method=NUTS)
print(post)
table = post.summary(interval=0.9)
print(table[["mean", "sd", "q5%", "q95%", "ess_bulk", "r_hat"]].round(4).to_string())
for term, value in TRUTH.items():
    lo, hi = table.loc[f"theta[{term}]", ["q5%", "q95%"]]
    print(f"truth {term} = {value:+.3f} {'inside' if lo <= value <= hi else 'OUTSIDE'} the 90 % interval [{lo:+.3f}, {hi:+.3f}]")
print(f"ESS per second (slowest parameter): {post.ess_per_second().min():.1f}")
post.save(OUT / "posterior.nc")  # an ArviZ InferenceData: posterior, sample_stats, log_likelihood, observed/constant data

# %% [markdown]
# Convergence problems are not silent: `sample` warns (`PosteriorWarning`) when R-hat > 1.01, when
# transitions diverge or ESS is low, and says what to do; `post.diagnostics()` returns the same messages.

# %%
print("diagnostics:", post.diagnostics() or "none")

# %% [markdown]
# For large rules (above 400 sampled scalars) `sample` uses SVI instead: a Gaussian per scalar fitted by
# stochastic optimisation. Its spreads start at the curvature of the posterior at the start, and after
# the run the posterior's gradients at draws from the guide say how far each spread and mean still is from the guide's own optimum
# (`svi_check()`, warned about beyond 1.2× or half a spread). It cannot see what a mean-field Gaussian
# gets wrong by itself (correlated terms): compare its spreads with NUTS's on a small version.

# %%
svi = bayes.sample(start.model, data, key=k_post, priors=priors, method=bayes.SVI(steps=SVI_STEPS, draws=500), warn=False)
check = svi.svi_check()
print(f"SVI optimum check: {check['n_spread']} of {check['scalars']} spreads and {check['n_location']} means off "
      f"({check['particles']} draws; spreads started at the {check['initial_spread']})")
print("sd, SVI / NUTS:", (svi.summary()["sd"] / table["sd"]).loc[["theta[x*r]", "theta[w]"]].round(2).to_dict())

# %% [markdown]
# ## 2 · Identifiability: a term the data cannot see
# With 0/1 rewards r² = r, so x·r and x·r² are the same function of these data. Give the model both
# (a tighter Normal prior keeps the unidentified direction finite) and ask the report.

# %%
alias_model = choice_model(["x*r", "x*r^2", "w"])
alias_post = bayes.sample(
    alias_model, data, key=k_id, priors=bayes.Priors(coefficients=bayes.Normal(0.5), observation=bayes.Normal(2.0)),
    method=NUTS, warn=False,
)
report = alias_post.identifiability(data, directions={"x·r − x·r²": {"x*r": 1.0, "x*r^2": -1.0}})
print(report.summary())
fig = report.plot(truth=TRUTH)
fig.savefig(OUT / "pairs.png", dpi=100)
plt.close(fig)

# %% [markdown]
# The report finds the alias from the data (rewards are 0/1), a zero-information direction of the
# Fisher information (x·r − x·r²), a posterior correlation near −1 between the two terms, and a
# posterior spread along that direction equal to the prior's: the data constrain θ(x·r) + θ(x·r²) only.

# %% [markdown]
# ## 3 · Hierarchical: flies in general, and each fly
# Per-fly coefficients θ_s = μ + τ·z_s (non-centred). `theta_mu` answers "what do flies do in general",
# `theta[s]` "how does fly s differ".

# %%
hier = bayes.sample(
    start.model, data, key=k_hier, priors=bayes.Priors(coefficients=bayes.Laplace(1.0), observation=bayes.Normal(2.0),
                                                        population_scale=bayes.HalfNormal(0.2)),
    hierarchical=bayes.Hierarchical(), method=NUTS, warn=False,
)
ht = hier.summary()
print(ht.loc[[i for i in ht.index if i.startswith(("theta_mu", "theta_tau"))], ["mean", "q5%", "q95%", "r_hat"]].round(4).to_string())
print("fly 0:", hier.subject_model(0).rule)

# %% [markdown]
# ## 4 · Which hypothesis predicts held-out trials best?
# `compare` fits every hypothesis per fly on the first three quarters of each block and scores the
# last quarter (time-respecting: the model still *learns* from held-out trials' inputs but is never
# fitted to their choices). Baselines: coin flip (the null of published numbers), the fly's base
# rate, and Rescorla–Wagner.

# %%
hypotheses = ["x·r", "x·r + w", "x*r + x"]  # one syntax, ASCII or Unicode (plasticinfer.compare.parse_hypothesis)
result = pi.compare.compare(hypotheses, data, split=pi.compare.HeldOutTrials(0.25), blocks=syn.block, steps=STEPS, restarts=RESTARTS, key=k_cmp)
print(result.summary())
print("\ndoes adding the decay term help?", result.paired_test("x·r + w", "x·r"))
print(result.table(reference="base rate")[["mean_normalized_likelihood", "se_normalized_likelihood", "aic", "p_better_than_reference"]].round(4))
print(result.coefficient_table("x·r + w").round(3))
paths = result.save(OUT / "comparison")  # also scores.csv and coefficients.csv; pi.compare.ComparisonResult.load reads it back
print("ranking:", " > ".join(result.ranking()))

# %% [markdown]
# A training fit whose loss was still falling at the step limit may not have reached its best score:
# the summary names it, `fits.csv` marks it (column `converged`) and `unconverged_fits()` lists it
# (hypothesis, fold, subject). Raise `steps=` before trusting a close ranking.

# %%
late = result.unconverged_fits()
print(f"{len(late)} of {len(result.fits)} training fits had not converged")
print(late[["hypothesis", "fold", "subject"]].to_string() if len(late) else "")

# %% [markdown]
# Held-out *subjects* instead of held-out trials: `SubjectKFold(k)` fits one rule shared by the other
# flies and scores every trial of each held-out fly, which starts naive (weights 0) — does the rule
# predict a fly it has never seen? (`DatasetSplit()` uses a dataset's own train/test flies instead.)

# %%
from plasticinfer.compare import SubjectKFold

population = pi.compare.compare(["x·r + w"], data, split=SubjectKFold(3, seed=0), per_subject=False, baselines=False, steps=STEPS,
                                restarts=RESTARTS, key=k_cmp)
print(population.summary())
for fold in population.scores["fold"].unique():  # each fold fits its own shared rule
    print(f"{fold}: {population.equation('x·r + w', fold=fold)}")

# %% [markdown]
# PSIS-LOO is available (`post.loo()`), but on learning data it is optimistic: leaving trial t out
# removes its likelihood term, not its influence on later weights. It warns so.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", bayes.PosteriorWarning)
    loo = post.loo()
ps = result.per_subject()
heldout = ps[ps["hypothesis"] == "x·r + w"]["heldout_ll"].sum()
print(f"PSIS-LOO elpd = {loo.elpd_loo:.1f} over all trials; held-out log-lik {heldout:.1f} over the last quarter of each block")
print(f"outputs in {OUT}: posterior.nc, pairs.png, comparison/")

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
# # 1 · Simulate a plasticity rule, then fit it back
#
# This tutorial walks through the core loop of plasticinfer:
#
# 1. pick a **rule** (Oja's rule, Δw = η·(x·y − y²·w)) and a **network** (a 20 → 5 linear layer);
# 2. **simulate** learning and record noisy activity of half the output neurons;
# 3. **fit** a full Taylor rule with every monomial of (x, y, w) up to power 2 — 27 named terms —
#    by gradient through the whole learning trajectory, with the initial weights unknown;
# 4. check the **recovery**: coefficients, and R² on held-out trajectories with new inputs and new
#    initial weights.
#
# Set `PLASTICINFER_TUTORIAL_SMALL=1` to run it at a tiny size (the test suite does).

# %%
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import plasticinfer as pi

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT", tempfile.mkdtemp(prefix="plasticinfer-tutorial01-")))
N_PRE, N_POST = (6, 2) if SMALL else (20, 5)
N_TRAJ, N_TRIALS, STEPS = (3, 120, 40) if SMALL else (8, 300, 300)

# %% [markdown]
# ## Rules are named polynomials
# A `TaylorRule` holds one coefficient per named monomial. Classic rules are ready-made, and any rule
# prints as an equation. Keys are explicit: split them, never reuse them.

# %%
eta = 0.005
true_rule = pi.TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=eta)
print(true_rule)
print(pi.TaylorRule.from_equation("0.5·x·r − 0.05·w"))
full = pi.TaylorRule.full(("x", "y", "w"), max_power=2, learning_rate=eta)
print(len(full.terms), "terms:", ", ".join(full.names))

root = jax.random.key(0)
k_inputs, k_data, k_model, k_eval = jax.random.split(root, 4)

# %% [markdown]
# ## Simulate recordings
# Inputs are Gaussian with a decaying spectrum (so there is a first principal component to find).
# `make_activity_data` simulates the true rule from random initial weights and records half the
# output neurons with noise at 10 % of the activity's standard deviation.

# %%
inputs = pi.GaussianInputs.with_spectrum(k_inputs, jnp.linspace(2.0, 0.2, N_PRE))
network = pi.FeedForward(N_PRE, N_POST)
syn = pi.make_activity_data(
    true_rule, network, inputs, key=k_data, n_trajectories=N_TRAJ, n_trials=N_TRIALS,
    noise=0.1, recorded_fraction=0.5, init_scale=0.3,
)
print("observations:", syn.data.observations.shape, "— observed values:", syn.data.n_observed)

# %% [markdown]
# `simulate` is a pure function over `jax.lax.scan`; here it returns the true weights on every trial.

# %%
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(syn.weights["w"][0, :, 0, :4])
ax.set(xlabel="trial", ylabel="weight", title="true weights of one neuron (trajectory 0)")
fig.savefig(OUT / "true_weights.png", dpi=100)

# %% [markdown]
# ## Fit a 27-term rule with unknown initial weights
# The model pairs the rule with the network, a Gaussian observation model (its noise scale is fitted)
# and one set of initial weights per trajectory (fitted too — otherwise the true rule would not be
# the maximum-likelihood rule). The objective is the negative log-likelihood per observation plus an
# L1 penalty; the default optimiser is L-BFGS with a line search.

# %%
model = pi.PlasticityModel.create(full, network, pi.GaussianActivity(0.5), n_trajectories=N_TRAJ, key=k_model)
result = pi.fit(model, syn.data, steps=STEPS, l1=0.01, progress=False)
print(result.model.rule.equation(threshold=0.01))
print(result.coefficients.T.loc[["x*y", "y^2*w"]])

# %% [markdown]
# ## Check the recovery on held-out trajectories
# New inputs and new initial weights from a key never used in training; both rules run from the
# same start, and we compare the weight and activity trajectories.

# %%
score = pi.compare.heldout_r2(result.model.rule, true_rule, network, inputs, key=k_eval, n_trajectories=5, n_trials=N_TRIALS, init_scale=0.3)
print(f"held-out R²: weights {score.r2_weights:.4f}, activity {score.r2_activity:.4f}")
print(f"cosine to the true rule: {pi.compare.cosine_similarity(result.model.rule, true_rule):.4f}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.semilogy(result.loss_history[0] - result.loss_history[0].min() + 1e-6)
ax.set(xlabel="L-BFGS step", ylabel="objective − min", title="fit")
fig.savefig(OUT / "loss.png", dpi=100)

# %% [markdown]
# ## Save and reload
# Results are written atomically as a self-describing netCDF file (coefficients by term, every parameter
# by name, the model configuration); `FitResult.load(path, like=model)` checks the file against `model`,
# `FitResult.load(path)` rebuilds the model from the file (tutorial 7 shows the file and resuming a fit).

# %%
result.save(OUT / "fit.nc")
back = pi.FitResult.load(OUT / "fit.nc", like=model)
print("reloaded:", back.model.rule.equation(threshold=0.01))

# %% [markdown]
# ## Closed loop: a task that answers the network
# `simulate` can also let a task make each trial's inputs from the network as it is. Here a choice
# circuit plays a baited two-armed bandit (option 1 pays out with probability 0.8): with a
# reward-modulated rule it learns to prefer that option. `Trajectory.records` holds each trial's
# choice, reward and P(choice = 1); `pi.data.simulate_choices` is this, one trajectory per subject.

# %%
bandit = pi.data.BaitedBandit(pi.one_hot_cues(2), pi.BernoulliChoice(2.0))
p_reward = jnp.tile(jnp.array([[0.2, 0.8]]), (200, 1))
played = pi.simulate(pi.TaylorRule.from_terms({"x*r": 0.01}), pi.ChoiceCircuit(2), {"w": jnp.zeros((1, 2))},
                     p_reward, environment=bandit, key=jax.random.key(3))
choice, reward, p_choice = played.records
print(f"bandit: P(choice = 1) {float(p_choice[0]):.2f} on the first trial, {float(p_choice[-1]):.2f} after 200; "
      f"rewarded on {float(reward.mean()):.2f} of the trials")
print("outputs in", OUT)

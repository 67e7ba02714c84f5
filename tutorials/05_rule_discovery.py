# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5 · Discovering plasticity rules from a function
#
# Instead of fitting recorded activity, we ask: **which rules make an initially random network
# acquire a function?** An *objective* is a simulation setup plus a loss on the network after
# learning; an *optimiser* searches rule space for low loss; many restarts give a *family* of
# solutions, not one point; *probes* test what else the rules do.
#
# 1. **PC1 extraction** (B1): rediscover Oja's rule from all 27 terms of a degree-2 Taylor rule.
# 2. **Several PCs** (B2): a feed-forward and a lateral rule, learned jointly.
# 3. **Homeostatic inhibition** (B3): gradient descent and CMA-ES find a whole manifold of rules;
#    we check it against the analytic ν* = −α·ν_pre/(β + (κτ_post + γτ_pre)·ν_pre), probe
#    familiarity detection and generalisation, and finish with a spiking neuron (CMA-ES only).
#
# At full size this takes several minutes on 2 CPU cores. `PLASTICINFER_TUTORIAL_SMALL=1`
# shrinks everything to well under a minute (the test suite runs it that way; small runs are
# too short to find good rules, so read their numbers as a smoke test).

# %%
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
import optax

import plasticinfer as pi
from plasticinfer import discovery as dsc

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="plasticinfer-tutorial05-"))
keys = iter(jax.random.split(jax.random.key(2026), 32))  # every use gets its own key
print("small run" if SMALL else "full run", "→ writing to", OUT)


def adam(lr, steps):
    return optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))


# %% [markdown]
# ## 1 · PC1 extraction: rediscovering Oja's rule
#
# One linear neuron y = w·x sees inputs x ~ N(0, QᵀDQ) (DESIGN.md B1: 100 samples per step,
# batch-mean update, η = 0.1, 200 steps, w₀ ~ 0.1·N(0, 1)). The loss after learning is
# sin²∠(w, PC1) + (|w| − 1)². Two choices make the task pin Oja's rule:
#
# - each simulated network draws its **own rotation Q** — "extract PC1" of *any* input, so
#   terms that only work for one Q (x², w², x·y·w, …) are useless;
# - each network's covariance is multiplied by its **own scale s ∈ [0.5, 2]**: the fixed point
#   w = PC1 has |w|² = −(θ_xy·λ₁ + θ_w)/(θ_y²w·λ₁), so only θ_w = 0, θ_y²w = −θ_xy keeps |w| = 1
#   for every s.
#
# The overall rate stays free (any multiple of Oja works), so coefficients are compared after
# dividing by θ(x·y). First, the oracle: the loss is tiny for Oja and large for anti-Oja.

# %%
n_pre = 3 if SMALL else 39
pc1 = dsc.PC1Objective.create(None, n_pre)
episode = pc1.sample(next(keys))
oja = pc1.reference_rule()
anti = oja.with_coefficients({"x*y": -1.0, "y^2*w": 1.0})
for name, rule in [("Oja", oja), ("anti-Oja", anti), ("no learning", pc1.default_rule())]:
    print(f"{name:12s} loss = {float(pc1.loss(rule, episode)):.4f}")

# %% [markdown]
# Now search all 27 terms. `gradient_search` runs the restarts as one vmapped computation,
# differentiating through the whole learning trajectory. It searches φ = θ·s, where s is each
# term's typical size at the goal state (so x²·w², 100× smaller than x·y at 100 inputs, moves
# at the same pace), adds an L1 penalty on φ, and after 60 % of the steps prunes terms below
# 25 % of the largest and re-fits the survivors (sequential thresholding).

# %%
steps = 60 if SMALL else 300
res = dsc.gradient_search(
    pc1, key=next(keys), restarts=2 if SMALL else 4, steps=steps, l1=3e-4, prune=0.25,
    init_scale=0.01, optimiser=adam(3e-2, steps), progress=False,
)  # fmt: skip
print(res.summary())
for i in range(res.n_restarts):
    c = dsc.oja_comparison(res.rule(i))
    print(f"restart {i}: θ(x·y) = {c['rate']:.3f}, θ(y²w)/θ(x·y) = {c['y2w']:+.3f} ({c['y2w_error_pct']:+.1f} % from −1), "
          f"largest other term {c['largest_other_term']} at {c['largest_other']:.3f}")  # fmt: skip

# %% [markdown]
# Every restart's rule, its losses, histories and convergence (`res.converged`: a noisy loss still
# falling at the step limit gets a `ConvergenceWarning`) go to one self-describing file, read back
# without a template:

# %%
saved = res.save(OUT / "pc1_search.nc")
again = dsc.SearchResult.load(saved)
print("reloaded:", again.method, again.n_restarts, "restarts, converged", again.converged.tolist(), "→", again.equation(threshold=1e-3) == res.equation(threshold=1e-3))

# %% [markdown]
# Solutions that meet the objective are grouped into **families** by the sign pattern of their
# normalised coefficients:

# %%
for fam in dsc.find_families(res, reference="x*y"):
    print(f"{fam.count} × {fam.label}\n    {fam.equation}")

# %% [markdown]
# Generalisation: does a discovered rule still extract PC1 when the input spectrum changes
# (here: a much smaller eigen-gap, λ₂ = 0.8)?

# %%
flat = dsc.decaying_spectrum(n_pre, second=0.8)
gen = dsc.generalisation({"λ₂ = 0.8": pc1.with_spectrum(flat)}, res.rules, key=next(keys))
print("mean angle to PC1 (deg) per restart:", np.round(gen["λ₂ = 0.8"]["angle_deg"], 2))

# %% [markdown]
# ## 2 · Several PCs: a feed-forward and a lateral rule, learned jointly
#
# `LateralPCANetwork` computes y = W x + L y, i.e. y = (I − L)⁻¹ W x. Both W and L are plastic,
# each under its own rule (a dict of rules); the lateral rule sees pre = y_j, post = y_i. The
# known solution is Oja for W and anti-Hebbian θ(x·y) = −1 for L. The loss is the mean sin² of
# the principal angles between the output subspace and the top-M PCs, plus the row norms.

# %%
n_in, n_out = (8, 3) if SMALL else (50, 5)
pca = dsc.PCANetworkObjective.create(None, n_in, n_out)
print("reference rules:", pca.evaluate(pca.reference_rule(), next(keys)))
rules0 = {k: pi.TaylorRule.full(("x", "y", "w"), 2, max_degree=3, learning_rate=0.1) for k in ("ff", "lateral")}
steps = 30 if SMALL else 250
res_pca = dsc.gradient_search(
    pca, rules0, key=next(keys), restarts=2 if SMALL else 8, steps=steps, l1=3e-4, prune=0.25,
    init_scale=0.01, optimiser=adam(1e-2, steps), progress=False,
)  # fmt: skip
print(res_pca.summary())
print("largest principal angle per restart (deg):", np.round(res_pca.metrics["max_angle_deg"], 1))

# %% [markdown]
# ## 3 · Homeostatic inhibition and the B3 manifold
#
# A rate neuron with tuned, fixed excitation and plastic inhibition must settle at 5 Hz. The rule
# is the pair-based trace rule: at a presynaptic spike Δw = η(α + κ·x_post), at a postsynaptic
# spike Δw = η(β + γ·x_pre). Averaged over independent spikes it drifts at
# η[α·ν_pre + β·ν_post + (κτ_post + γτ_pre)·ν_pre·ν_post], which vanishes on the manifold
# ν* = −α·ν_pre/(β + (κτ_post + γτ_pre)·ν_pre). Every rule on it (with a stable fixed point)
# solves the task — so a search should return a *family*. We run both optimisers.

# %%
b3 = dsc.HomeostasisObjective.create(n_steps=400 if SMALL else 1000)
steps = 40 if SMALL else 300
grad = dsc.gradient_search(b3, key=next(keys), restarts=4 if SMALL else 16, steps=steps, l1=1e-3,
                           init_scale=1.0, optimiser=adam(0.1, steps), progress=False)  # fmt: skip
cma = dsc.cma_search(b3, key=next(keys), restarts=2 if SMALL else 4, generations=5 if SMALL else 60,
                     l1=1e-3, init_scale=1.0, progress=False)  # fmt: skip
for r in (grad, cma):
    print(r.summary(), "\n")

# %% [markdown]
# The analysis puts every solution against the analytic manifold (its own ν* and the simulated
# rate), measures where along the manifold each sits (`position` = β/(β + c·ν_pre): 0 is
# Vogels-like pure pairing, 1 purely postsynaptic), re-runs the rules at other input rates, and
# runs the **familiarity probe**: after learning, 24 input patterns are presented repeatedly,
# and the responses after familiarisation alone must tell these familiar patterns from 24 novel
# ones (ROC AUC of the distance from the neuron's baseline). Each solution's AUC is read against
# its shuffled-label null, against no plasticity, and against Vogels' rule at the same *speed*:
# the AUC grows with how fast a rule moves the weights, which the homeostasis task leaves free.

# %%
analysis = dsc.analyse_homeostasis({"gradient": grad, "cma-es": cma}, b3, key=next(keys))
print(analysis.markdown())

# %% [markdown]
# Only solutions with β ≈ 0 keep ν* = target when ν_pre changes (ν* then equals −α/(κτ_post +
# γτ_pre)): rules selected only for stability differ in what else they do. Familiarity is another
# matter: at full size (docs/discovery.md) the solutions are no better than Vogels' rule at their own
# speed, so the controls leave no "familiarity for free" to claim.

# %%
fig = analysis.figure()
searches = {"b3_gradient": grad, "b3_cma": cma}
paths = dsc.save_report(
    OUT,
    markdown="# Tutorial 05\n\n" + analysis.markdown(),
    searches=searches,
    families={m: dsc.find_families(r, reference="alpha") for m, r in searches.items()},
    reference="alpha",
    figures={"manifold": fig},
)
print({k: str(v) for k, v in paths.items()})

# %% [markdown]
# ## 4 · A spiking neuron: CMA-ES only
#
# With a leaky integrate-and-fire neuron the rule acts spike by spike on the traces, and the loss
# (a spike count) is piecewise constant in the rule: gradients are useless, CMA-ES is not. The
# population of each generation is simulated in one vmapped call. Spike-timing correlations make
# the spiking steady state deviate from the rate manifold (an inhibitory spike makes a
# postsynaptic spike less likely right after it, so x_pre is below its mean at postsynaptic spikes);
# the residual says by how much.

# %%
lif = dsc.LIFHomeostasisObjective.create(duration=2.0 if SMALL else 30.0, measure=1.0 if SMALL else 10.0)
res_lif = dsc.cma_search(lif, key=next(keys), restarts=1 if SMALL else 2, generations=2 if SMALL else 30,
                         popsize=6 if SMALL else 8, l1=1e-3, init_scale=1.0, progress=False)  # fmt: skip
print(res_lif.summary())
t = dsc.manifold_table(res_lif, lif.nu_inh, lif.target)
for i in range(res_lif.n_restarts):
    print(f"run {i}: simulated {t['rate'][i]:.2f} Hz, analytic ν* {t['nu_star'][i]:.2f} Hz")

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
# # 6 · Meta-learning a local rule for learning with random feedback
#
# Backprop tells every layer its error through the *transposed* forward weights, a symmetry that
# synapses cannot plausibly maintain. **Feedback alignment** sends the error back through a fixed
# random matrix B instead — and learns, but slowly, above all when examples arrive one at a time.
# Following Shervani-Tabar & Rosenbaum (2023), we let each layer update its weights with a sparse
# combination of local terms and **meta-learn** the combination by differentiating through whole
# online learning episodes.
#
# In this tutorial we
#
# 1. meet the pool of candidate terms, each an equation in the layer's input y_l, output y_{l+1},
#    weight W, and the errors e_l, e_{l+1} that the feedback pathway delivers;
# 2. check the key identity: with B = Wᵀ, the pseudo-gradient term *is* backprop's gradient;
# 3. build few-shot episodes from scikit-learn's bundled 8×8 digits (no download) — 5 digits for
#    meta-training, the other 5 held out;
# 4. run the whole experiment: tune online backprop and plain feedback alignment, meta-learn the
#    rule with an L1 penalty, and evaluate all three on held-out digits (mean ± s.e., learning curves);
# 5. ask which surviving terms matter, by removing them one at a time.
#
# At full size (the documented run) meta-training takes a few minutes on 2 CPU cores. Set
# `PLASTICINFER_TUTORIAL_SMALL=1` to run everything at a tiny size (the test suite does).

# %%
import os
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import plasticinfer as pi
from plasticinfer.metalearn import TERM_POOL

SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT", tempfile.mkdtemp(prefix="plasticinfer-tutorial06-")))
if SMALL:
    SIZES = dict(hidden=(12,), n_way=3, k_shot=3, n_query=3, steps=6, meta_batch=2, eval_every=3,
                 eval_episodes=8, tune_episodes=8, validation_episodes=8)
else:  # the documented run: 64 → 100 → 80 → 5, 10 online examples per class, 300 meta-steps of 16 episodes
    SIZES = dict(hidden=(100, 80), n_way=5, k_shot=10, n_query=10, steps=300, meta_batch=16, eval_every=25,
                 eval_episodes=200, tune_episodes=128, validation_episodes=64)
root = jax.random.key(2024)
k_check, k_episode, k_experiment, k_ablation = jax.random.split(root, 4)  # split once, never reuse

# %% [markdown]
# ## The candidate terms
# Each term is a matrix shaped like the layer's weights. Errors point *downhill*: at the output
# e_L = onehot(label) − softmax(z_L), and a hidden layer receives e_l = (B_l·e_{l+1}) ⊙ f′(z_l).
# The rule is ΔW_l = η·Σ_k θ_k·F_k, with the same θ for every layer.

# %%
for t in TERM_POOL:
    print(f"{t.alias:<24} {t.name:<34} {t.description}")

# %% [markdown]
# ## With symmetric feedback, the pseudo-gradient is backprop
# `SymmetricFeedback` sets B = Wᵀ; then e_{l+1}·y_lᵀ equals −∂(cross-entropy)/∂W_l in every layer.
# `RandomFeedback` draws a fixed B per network instead (feedback alignment).

# %%
net_bp = pi.metalearn.FeedbackNetwork((64, 100, 80, 5), pi.metalearn.SymmetricFeedback())
state = net_bp.init(k_check)
x, label = jnp.linspace(0.0, 1.0, 64), jnp.asarray(3)
grads = jax.grad(net_bp.loss)(state.weights, x, label)
pg = pi.metalearn.LocalRule.feedback_alignment(1.0, learning_rate=1.0)
for l, (s, g) in enumerate(zip(net_bp.signals(state, x, label), grads)):
    print(f"layer {l}: max |pseudo-gradient + ∂L/∂W| = {float(jnp.max(jnp.abs(pg(s) + g))):.2e}")

# %% [markdown]
# ## Few-shot episodes from the digits
# `digits_split` holds digits 5–9 out of meta-training. With 10 digits and 5-way episodes this is the
# only way to keep ≥ 5 classes on each side; every meta-training episode uses digits 0–4 under a
# fresh random label assignment, so the rule cannot learn *which* output means which digit — only
# how to learn. Each episode shows K images per class one at a time, then scores query images.

# %%
train, heldout = pi.metalearn.digits_split(n_way=SIZES["n_way"], k_shot=SIZES["k_shot"], n_query=SIZES["n_query"])
episode = heldout.sample(k_episode)
fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))
for ax, img, lab in zip(axes, episode.support_x, episode.support_y):
    ax.imshow(np.asarray(img).reshape(8, 8), cmap="gray_r")
    ax.set_title(f"label {int(lab)}", fontsize=8)
    ax.axis("off")
fig.suptitle("the first online examples of a held-out episode")
fig.savefig(OUT / "episode.png", dpi=90)
plt.close(fig)
print(f"{episode.support_x.shape[0]} online examples, {episode.query_x.shape[0]} query images")

# %% [markdown]
# ## The experiment
# `feedback_alignment_experiment` does four things with keys split from one root key:
#
# 1. tunes the single coefficient (the learning rate) of online backprop and of plain feedback
#    alignment on meta-training episodes — fair baselines;
# 2. meta-learns every term's θ with random feedback (`meta_learn`): Adam on the meta-gradient of
#    query cross-entropy + L1, differentiated through each whole online episode (`lax.scan`,
#    checkpointed), vmapped over a meta-batch, starting from the tuned feedback-alignment rule, and
#    keeping the coefficients with the best validation meta-loss;
# 3. evaluates all learners on the *same* held-out episodes and initial weights (paired);
# 4. also evaluates the rule pruned to its surviving terms, |θ| > threshold.

# %%
t0 = time.perf_counter()
report = pi.metalearn.feedback_alignment_experiment(key=k_experiment, progress=not SMALL, **SIZES)
print(f"total {time.perf_counter() - t0:.0f} s, of which meta-training {report.meta.wall_time:.0f} s\n")
print(report.summary())

# %% [markdown]
# The learning curves show query accuracy on held-out digits after each online example; the bars,
# the meta-learned coefficients (grey: pruned by the threshold).

# %%
paths = report.save(OUT)
for name, p in paths.items():
    print(f"{name:<8} {p}")

# %% [markdown]
# ## Which surviving terms matter?
# Remove one surviving term at a time (keeping the other coefficients) and evaluate on fresh
# held-out episodes. This uses `evaluate_learners`, which scores any dict of (rule, network) pairs
# on the same episodes.

# %%
rule = report.rule.pruned(report.threshold)
fa_net = report.networks["meta-learned"]
learners = {"all surviving terms": (rule, fa_net)}
for name in rule.names:
    learners[f"without {name}"] = (rule.with_coeffs(jnp.where(jnp.asarray([n == name for n in rule.names]), 0.0, rule.coeffs)), fa_net)
ablation = pi.metalearn.evaluate_learners(learners, heldout, key=k_ablation, n_episodes=SIZES["eval_episodes"])
print(ablation.table()[["accuracy", "accuracy_se"]].to_string(float_format=lambda v: f"{v:.3f}"))

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
# # 10 · Families of co-active rules in a recurrent E/I spiking network
#
# Which sets of plasticity rules — one for each of E→E, E→I, I→E, I→I — keep a recurrent
# spiking network *plausible* (moderate rates, irregular firing, no weight blow-up)? Rather
# than one optimum we want the whole family: a posterior over the 24 rule parameters, found
# by simulation-based inference. Then we ask whether rules chosen only for plausibility also
# give the network a memory of familiar stimuli — and test that claim against nulls.
#
# 1. Build the network and check it against its plain-loop definition (see the tests).
# 2. Co-active pair rules, one per synapse type.
# 3. Neural posterior estimation over the rules; posterior vs prior predictive rates.
# 4. The familiarity probe with controls.
#
# At full size this takes tens of minutes on 2 CPU cores; `PLASTICINFER_TUTORIAL_SMALL=1`
# shrinks it to a smoke test whose numbers mean little.

# %%
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from plasticinfer.discovery import (
    EIRules,
    FamiliarityProtocol,
    FamilyTask,
    PairRule,
    PlausibilityConstraints,
    network_statistics,
    run_families,
    simulate_network,
)

SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="tutorial10-"))
key = jax.random.key(0)

# %% [markdown]
# ## 1 · The network
#
# Current-based LIF neurons with exponential synapses, a fixed random connectivity mask and
# Poisson external input. `FamilyTask.create` scales the weights so that a neuron's mean
# recurrent input matches an 800/200 network at p = 0.1.

# %%
size = dict(n_exc=16, n_inh=4, p=0.5, duration=0.2, transient=0.05, segment=0.05) if SMALL else dict(n_exc=160, n_inh=40, p=0.2, duration=1.0)
task = FamilyTask.create(jax.random.key(1), dtype=jnp.float32, **size)
net = task.network
run = simulate_network(net, None, jax.random.key(2), n_segments=task.n_segments, segment_steps=task.segment_steps, state=net.initial_state(jax.random.key(3)))
stats = network_statistics(net, run, measure_from=task.measure_from, segment_steps=task.segment_steps)
print(f"static network: E {float(stats['rate_e']):.1f} Hz, I {float(stats['rate_i']):.1f} Hz, CV ISI {float(stats['cv_isi']):.2f}")

# %% [markdown]
# ## 2 · Co-active rules
#
# Each synapse type gets its own pair rule: Δw = η(α + κ·x_post) at a presynaptic spike and
# η(β + γ·x_pre) at a postsynaptic spike, with learnable τ_pre, τ_post. Here: Vogels'
# inhibitory rule on I→E, all other types static.

# %%
vogels = PairRule.vogels(5.0, learning_rate=task.learning_rates[task.plastic.index("ie")])
rules = EIRules(ie=vogels)
print(rules)
run = simulate_network(net, rules, jax.random.key(2), n_segments=task.n_segments, segment_steps=task.segment_steps, state=net.initial_state(jax.random.key(3)))
stats = network_statistics(net, run, measure_from=task.measure_from, segment_steps=task.segment_steps)
print(f"with Vogels' rule on I→E: E {float(stats['rate_e']):.1f} Hz; I→E weights ×{float(stats['w_ratio_ie']):.3f}")

# %% [markdown]
# ## 3 · The family: neural posterior estimation
#
# Prior draws of all 24 parameters are simulated (batched with `vmap`), a normalizing flow
# learns q(θ | summaries), and we read it off at plausible target summaries. The predictive
# check then simulates posterior and prior draws: the family should meet the constraints far
# more often than the prior does.

# %%
if SMALL:
    res = run_families(
        jax.random.key(4), task, n_simulations=24, n_predictive=8, n_memory=2, batch_size=8, n_shuffles=5,
        protocol=FamiliarityProtocol(n_patterns=4, repeats=1, warmup=0.05, delay=0.05, test_repeats=2), max_epochs=3,
    )  # fmt: skip
else:
    res = run_families(jax.random.key(4), task, n_simulations=512, n_predictive=64, n_memory=8)
print(res.check.markdown())
print(f"{res.npe.simulations_per_minute:.0f} simulations per minute")

# %% [markdown]
# ## 4 · Memory "by accident"? Only against nulls
#
# A linear readout is trained on responses *after* familiarisation only, and scored on
# held-out patterns. The table compares plausible posterior rules with shuffled labels, no
# plasticity, prior rules and speed-matched hand-written rules; the verdict makes the claim
# only if every confidence interval allows it.

# %%
print(res.memory.markdown())
(OUT / "summary.md").write_text(res.markdown())
res.save(OUT / "families.nc")  # dsc.FamiliesResult.load reads it back
print("wrote", OUT / "summary.md")

# ---
# jupyter:
#   jupytext:
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
# # 08 — Fitting every animal across processes and machines
#
# A lab with hundreds of animals fits each one separately (`fit_independent`). On one machine
# those fits already run as one vmapped batch over the machine's devices; with
# `plasticinfer.distributed` the same script runs as several processes — on one machine, or one per
# node of a cluster — each fitting its share of the animals, with every result gathered and written
# once.
#
# In this tutorial we
#
# 1. write the analysis as a script that works for any number of processes,
# 2. run it as one process, then as two processes on this machine,
# 3. check the two runs agree, animal by animal,
# 4. speed up the gradient of one large layer on one machine with fused CPU kernels.
#
# See `docs/distributed.md` for Slurm (`srun`) and the details.

# %%
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="plasticinfer-tutorial08-"))
OUT.mkdir(parents=True, exist_ok=True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
N_ANIMALS, STEPS = (4, 20) if SMALL else (16, 200)

# %% [markdown]
# ## 1. The analysis script
#
# `dist.initialize()` comes first, before any JAX computation: it reads the process layout from
# `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID` or from Slurm, and does nothing
# when there is one process. Every process then builds the same data and model; `dist.fit_independent`
# fits this process's block of animals and gathers everyone's, and `dist.write_once` lets process 0
# alone write the file (atomically). Here the animals are simulated flies in the two-odour task,
# learning with a reward-modulated rule and forgetting (x·r = 0.6, w = −0.1).

# %%
SCRIPT = f'''
import sys
import plasticinfer.distributed as dist

dist.initialize()

import jax, jax.numpy as jnp, optax
jax.config.update("jax_enable_x64", True)
import plasticinfer as pi

syn = pi.make_choice_data(pi.TaylorRule.from_terms({{"x*r": 0.6, "w": -0.1}}), key=jax.random.key(0),
                          n_subjects={N_ANIMALS}, trials_per_block=40, inverse_temperature=2.0)
model = pi.PlasticityModel.create(
    pi.TaylorRule.from_terms({{"x*r": 0.0, "w": 0.0}}), pi.ChoiceCircuit(2),
    pi.BernoulliChoice(2.0, learn_temperature=False),
    n_trajectories={N_ANIMALS}, initial_weights={{"w": jnp.zeros((1, 2))}},
)
fits = dist.fit_independent(model, syn.data, optimiser=optax.adam(0.05), steps={STEPS},
                            progress=False, fit_initial_weights=False)
dist.write_once(lambda: fits.save(sys.argv[1]))
if dist.is_main():
    print(f"{{dist.process_count()}} process(es) fitted {{fits.n_subjects}} animals")
'''
script = OUT / "fit_animals.py"
script.write_text(SCRIPT)

# %% [markdown]
# ## 2. One process, then two
#
# One process is the ordinary run. For two processes on this machine we start the script twice
# with the same coordinator address (a free local port) and process ids 0 and 1. On a cluster,
# `srun python fit_animals.py out.nc` does the same on every node, and Slurm supplies these values.


# %%
def run(n_processes: int, out: Path) -> None:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS_ID"))}
    layout = lambda i: {} if n_processes == 1 else {  # noqa: E731
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": str(n_processes), "JAX_PROCESS_ID": str(i)
    }
    procs = [subprocess.Popen([sys.executable, str(script), str(out)], env={**env, **layout(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n_processes)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-2000:]
        print(stdout.strip()) if stdout.strip() else None


run(1, OUT / "fits_1_process.nc")
run(2, OUT / "fits_2_processes.nc")

# %% [markdown]
# ## 3. The two runs agree
#
# Each animal's fit is independent of the others, so splitting the animals over processes changes
# nothing but where each fit ran: the coefficients agree to rounding.

# %%
one = xr.load_dataset(OUT / "fits_1_process.nc", engine="h5netcdf")["coefficient"]
two = xr.load_dataset(OUT / "fits_2_processes.nc", engine="h5netcdf")["coefficient"]
print(two.to_pandas().round(4))
difference = float(np.abs(one.values - two.values).max())
print(f"largest difference between the runs: {difference:.1e}")
assert difference < 1e-10

# %% [markdown]
# ## 4. One large layer on one machine: `derivative="fused"`
#
# Processes help with many animals. With one large recorded layer, what each fit step waits for is the
# gradient through the whole session. `TaylorRule(..., derivative="fused")` runs the trajectory of a
# feed-forward layer (identity activation, one input sample per trial, a rule over x, y, w, r with
# powers up to 2) in compiled CPU kernels, with the same numbers as the default. It needs numba
# (`pip install "plasticinfer[fast]"`); the first call compiles the kernels (seconds, then cached on
# disk). At 100 → 1000 over 2,000 trials its gradient is about 5× faster (docs/core.md, "The fused
# kernels"); here we time both on a smaller layer.

# %%
import time

import jax
import jax.numpy as jnp

import plasticinfer as pi

N_PRE, N_POST, N_TRIALS = (20, 64, 200) if SMALL else (100, 1000, 2000)
k_rule, k_x, k_r, k_w, k_y = jax.random.split(jax.random.key(0), 5)
full = pi.TaylorRule.full(("x", "y", "w", "r"), 2)
rule = pi.TaylorRule(full.terms, 0.01 * jax.random.normal(k_rule, (len(full.terms),)), learning_rate=1e-3)
layer = pi.FeedForward(N_PRE, N_POST)
trials = {"x": jax.random.normal(k_x, (N_TRIALS, N_PRE)), "reward": jax.random.bernoulli(k_r, 0.5, (N_TRIALS,)).astype(float)}
w0 = {"w": 0.1 * jax.random.normal(k_w, (N_POST, N_PRE))}
recorded = jax.random.normal(k_y, (N_TRIALS, N_POST))


def squared_error(rule, w0):
    return ((pi.simulate(rule, layer, w0, trials).outputs - recorded) ** 2).sum()


gradient = jax.jit(jax.grad(squared_error, argnums=(0, 1)))
results = {}
for label, r in (("default", rule), ("fused", rule.with_derivative("fused"))):
    jax.block_until_ready(gradient(r, w0))  # compile (and, for the kernels, load or build them)
    start = time.perf_counter()
    for _ in range(3):
        results[label] = jax.block_until_ready(gradient(r, w0))
    print(f"{label:>8}: {(time.perf_counter() - start) / 3 * 1e3:7.1f} ms per gradient")

coefficient_gradients = [np.asarray(results[k][0].coeffs) for k in ("default", "fused")]
agreement = float(np.abs(coefficient_gradients[0] - coefficient_gradients[1]).max() / np.abs(coefficient_gradients[0]).max())
print(f"largest relative difference of the coefficient gradients: {agreement:.1e}")
assert agreement < 1e-3  # float32: the same sums in another order

# %% [markdown]
# A model takes the fused rule like any other, e.g.
# `pi.PlasticityModel.create(rule.with_derivative("fused"), layer, pi.GaussianActivity(0.1), ...)`,
# and `pi.fit` then runs every step through the kernels. They give first-order gradients for the
# rule and the initial weights only; the library switches to the default where it needs more
# (Laplace intervals, NUTS's starting mass matrix), and anything the kernels cannot run is refused
# with a message naming what is missing.
#
# Next: write your own analysis the same way — `dist.map(fn, items)` splits any list of independent
# jobs (comparison folds, hypotheses, simulation-based calibration replicates), and `dist.sample`
# splits NUTS chains over processes.

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
# # 7 · Results files, checkpoints and resuming a long fit
#
# Fits of real data can run for hours. This tutorial shows how plasticinfer keeps that work safe:
#
# 1. fit a **dataset straight from a loader** (an xarray Dataset) — no conversion code;
# 2. write a **checkpoint** while fitting, stop, and **resume** to exactly the numbers of an uninterrupted run;
# 3. read the **convergence diagnostics** (`result.converged`, `result.convergence_message`);
# 4. open the **self-describing results file** with plain xarray, and load it back without the model.
#
# Set `PLASTICINFER_TUTORIAL_SMALL=1` to run it at a tiny size (the test suite does).

# %%
import os
import tempfile
import warnings
from pathlib import Path

import jax
import numpy as np
import optax
import xarray as xr

import plasticinfer as pi

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("PLASTICINFER_TUTORIAL_SMALL") == "1"
OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT") or tempfile.mkdtemp())
N_TRIALS, STEPS = (40, 20) if SMALL else (200, 400)

# %% [markdown]
# ## A dataset as the loaders return it
# Here we simulate Oja's rule in a 4 → 2 layer and store it in the neural-data schema, exactly what
# `pi.load("recordings.nc")` would give for your own recordings.

# %%
syn = pi.make_activity_data(
    pi.oja(0.05), pi.FeedForward(4, 2), pi.GaussianInputs.isotropic(4), key=jax.random.key(0),
    n_trajectories=2, n_trials=N_TRIALS, init_scale=0.3,
)
x, y = np.asarray(syn.data.inputs["x"]), np.asarray(syn.data.observations)
ds = pi.neural_dataset(list(x), list(y), attrs={"units_activity": "a.u.", "source": "simulated Oja layer"})
pi.save_netcdf(ds, OUT / "recordings.nc")
ds = pi.data.load_netcdf(OUT / "recordings.nc")
print(ds)

# %% [markdown]
# ## Fit with a checkpoint, stop half-way, resume
# `fit` accepts the Dataset directly. With `checkpoint=`, the whole optimiser state is written every
# `checkpoint_every` steps (and on Ctrl-C). A second call with `resume=True` continues from it.

# %%
rule = pi.TaylorRule(["x*y", "y^2*w", "w"], learning_rate=0.05)
model = pi.PlasticityModel.create(rule, pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(1))
settings = dict(optimiser=optax.adam(2e-2), eval_every=10, progress=False)
checkpoint = OUT / "fit.ckpt"

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the first half is, of course, not converged
    half = pi.fit(model, ds, steps=STEPS // 2, checkpoint=checkpoint, checkpoint_every=10, **settings)
print("after the first half:", half.steps_run, "steps; converged:", half.converged)
print("  ", half.convergence_message)

resumed = pi.fit(model, ds, steps=STEPS, checkpoint=checkpoint, checkpoint_every=10, resume=True, **settings)
straight = pi.fit(model, ds, steps=STEPS, **settings)
print("resumed == uninterrupted:", np.allclose(resumed.loss_history, straight.loss_history, rtol=1e-12, atol=0))
print("fitted:", resumed.equation())
print("converged:", resumed.converged, resumed.convergence_message)

# %% [markdown]
# ## The results file
# Coefficients are indexed by term name; every parameter is stored under its path in the model; the
# model configuration and the diagnostics are attributes. Any netCDF reader can open it.

# %%
path = resumed.save(OUT / "fit.nc")
f = xr.load_dataset(path)
print(f["coefficient"].to_series())
print({k: f.attrs[k] for k in ("rule_terms", "network", "observation", "converged", "steps_run")})
print("parameters:", [v for v in f.data_vars if not v.startswith("restarts.")])

# %% [markdown]
# `FitResult.load(path)` rebuilds the model from the file; `like=model` additionally checks that the
# file matches the model you expect (same terms, same shapes) and refuses it with a clear message if not.

# %%
back = pi.FitResult.load(path)
print("rebuilt:", back.model.rule, "| network:", back.model.network)
try:
    other = pi.PlasticityModel.create(pi.TaylorRule.full(("x", "y", "w"), 2), pi.FeedForward(4, 2), pi.GaussianActivity(0.5), n_trajectories=2, key=jax.random.key(1))
    pi.FitResult.load(path, like=other)
except pi.DataError as e:
    print("refused:", str(e).splitlines()[1])

# %% [markdown]
# ## Long posterior runs: NUTS checkpoints
# A posterior can take hours. `bayes.sample(..., checkpoint=, checkpoint_every=)` runs NUTS warmup and
# sampling in chunks and writes every chain's sampler state (position, step size, mass-matrix
# adaptation, random key) and the draws so far after each chunk, atomically. If the run stops — Ctrl-C,
# a job's time limit, a crash — the *same call* with `resume=True` continues from the last chunk, and the
# draws are bit for bit those of a run never interrupted. Here the chunked run is checked against an
# unchunked one, and resuming a finished checkpoint returns its draws without sampling again. On the
# command line: `plasticinfer fly --hierarchical "x*r + w" --checkpoint-every 50` and `--resume`.

# %%
import time  # noqa: E402

from plasticinfer import bayes  # noqa: E402

nuts = bayes.NUTS(warmup=30 if SMALL else 500, samples=20 if SMALL else 500, chains=2, max_tree_depth=5 if SMALL else 10)
post_ckpt = OUT / "nuts.ckpt"
kw = dict(key=jax.random.key(2), method=nuts, warn=False)
chunked = bayes.sample(resumed.model, ds, checkpoint=post_ckpt, checkpoint_every=10, **kw)
plain = bayes.sample(resumed.model, ds, **kw)
t0 = time.perf_counter()
again = bayes.sample(resumed.model, ds, checkpoint=post_ckpt, checkpoint_every=10, resume=True, **kw)
print("chunked == unchunked:", np.array_equal(chunked.coefficients.values, plain.coefficients.values))
print(f"resumed a finished checkpoint in {time.perf_counter() - t0:.1f} s; same draws:", np.array_equal(again.coefficients.values, plain.coefficients.values))
print(chunked.summary().round(3).head())

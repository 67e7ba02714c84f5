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
# # 02 — Loading data: the fly dataset and your own CSV
#
# Every model in plasticinfer reads one xarray schema (see `docs/data-format.md`): a behaviour
# dataset has dims `subject` × `trial` (plus `option` and `feature` for the cues), variables
# `choice`, `reward`, `trial_mask` and `cue`, and coords such as `block` and `p_reward`.
# Subjects with fewer trials are padded at the end; `trial_mask` is False there, and padded
# entries hold fill values (choice −1, reward 0) that nothing downstream reads as data.
#
# In this tutorial we
#
# 1. load the Drosophila operant-matching data of Rajagopalan et al. (PNAS 2023) by name,
# 2. load a table of our own whose columns are named differently,
# 3. save and reload a dataset as netCDF,
# 4. plot choices and rewards per block.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no windows
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import plasticinfer as pi

OUT = Path(os.environ.get("PLASTICINFER_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="plasticinfer-tutorial02-"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. A named dataset
#
# `plasticinfer.datasets.load` finds the files (a `path=` argument, the `PLASTICINFER_DATA_DIR`
# environment variable, or `../shared/data`), checks their SHA-256 checksums and builds the
# schema. With `download=True` it fetches them from the public source instead. The 18 complete
# sessions are the default; `include_incomplete=True` adds the 3 short ones.

# %%
print(pi.datasets.names())
flies = pi.datasets.load("rajagopalan2023")
print(flies)

# %%
n_trials = flies["trial_mask"].sum("trial")
print(f"{flies.sizes['subject']} flies, {int(n_trials.sum())} trials; per fly: {n_trials.values.tolist()}")
print("licence:", flies.attrs["license"])
print("cite:", flies.attrs["citation"].splitlines()[0], "...")

# %% [markdown]
# ## 2. Your own table
#
# Here is a table as a lab might export it: one row per trial, the subject in `mouse`, the choice
# as `"L"`/`"R"` in `lever`, the reward in `got_reward`. We write it to a temporary folder and
# load it with a column mapping and a choice-code mapping.

# %%
rng = np.random.default_rng(0)
rows = []
for mouse, n in (("m1", 60), ("m2", 45)):  # different numbers of trials: ragged subjects
    p_right = np.repeat([0.8, 0.2, 0.5], 20)[:n]
    for t in range(n):
        lever = "R" if rng.random() < 0.5 + 0.8 * (p_right[t] - 0.5) else "L"
        reward = int(rng.random() < (p_right[t] if lever == "R" else 1 - p_right[t]))
        rows.append((mouse, t + 1, t // 20 + 1, lever, reward, p_right[t]))
table = pd.DataFrame(rows, columns=["mouse", "trial", "block", "lever", "got_reward", "p_right"])
csv = OUT / "my_mice.csv"
table.to_csv(csv, index=False)
table.head()

# %%
mice = pi.load(
    csv,
    columns={"subject": "mouse", "choice": "lever", "reward": "got_reward", "p_reward_1": "p_right"},
    choice_codes={"L": 0, "R": 1},
    attrs={"license": "CC-BY-4.0", "citation": "My Lab (2026), unpublished"},
)
print(mice)
print(pi.data.schema_notes(mice))  # what the validator would like you to add

# %% [markdown]
# Mistakes are caught with a message naming the file, column and row, and what to do:

# %%
try:
    pi.load(csv, columns={"subject": "mouse", "choice": "lever", "reward": "got_reward"})
except pi.DataError as e:
    print(e)

# %% [markdown]
# ## 3. netCDF round trip
#
# `save_netcdf` validates and writes atomically (a temporary file, then a rename), so a crash
# never leaves half a file behind; `load_netcdf` validates again.

# %%
path = pi.save_netcdf(mice, OUT / "my_mice.nc")
again = pi.data.load_netcdf(path)
assert again["choice"].equals(mice["choice"]) and again["trial_mask"].equals(mice["trial_mask"])

# %% [markdown]
# ## 4. Choices and rewards per block
#
# `to_dataframe` gives back one row per *real* trial — padded trials never appear — which makes
# per-block summaries a pandas `groupby`. For the flies we also compare the fraction of choices
# of odour 2 with its share of the reward probability in that block: operant matching predicts
# they are close.

# %%
def per_block(ds):
    df = pi.data.to_dataframe(ds)
    out = df.groupby(["subject", "block"]).agg(choice_1=("choice", "mean"), reward=("reward", "mean"))
    if "p_reward_0" in df and df["p_reward_0"].notna().all():
        share = df["p_reward_1"] / (df["p_reward_0"] + df["p_reward_1"])
        out["p_share_1"] = share.groupby([df["subject"], df["block"]]).mean()
    return out.reset_index()


fly_blocks = per_block(flies)
mouse_blocks = per_block(mice)

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))

ax = axes[0]
one = flies.isel(subject=0)
mask = one["trial_mask"].values
t = np.arange(mask.sum())
window = np.ones(10) / 10
ax.plot(t, np.convolve(one["choice"].values[mask], window, "same"), label="P(odour 2), 10-trial mean")
ax.plot(t, np.convolve(one["reward"].values[mask], window, "same"), label="reward rate", alpha=0.7)
ax.step(t, one["p_reward"].values[mask, 1], where="post", color="k", lw=1, label="p(reward | odour 2)")
for b in np.unique(one["block"].values[mask])[1:]:
    ax.axvline(np.argmax(one["block"].values == b), color="grey", ls=":")
ax.set(xlabel="trial", ylim=(-0.05, 1.05), title=f"fly {one['fly_id'].item()}: one session")
ax.legend(fontsize=7, loc="upper right")

ax = axes[1]
ax.scatter(fly_blocks["p_share_1"], fly_blocks["choice_1"], c=fly_blocks["block"], cmap="viridis", s=18)
ax.plot([0, 1], [0, 1], "k--", lw=1)
ax.set(xlabel="odour 2 share of reward probability", ylabel="fraction of choices of odour 2",
       title=f"{flies.sizes['subject']} flies, 3 blocks each")

ax = axes[2]
width = 0.35
for i, (mouse, g) in enumerate(mouse_blocks.groupby("subject")):
    ax.bar(g["block"] + (i - 0.5) * width, g["choice_1"], width, label=f"{mouse}: P(R)")
    ax.plot(g["block"] + (i - 0.5) * width, g["reward"], "ko", ms=4)
ax.set(xlabel="block", ylabel="fraction", title="my_mice.csv (dots: reward rate)", xticks=[1, 2, 3])
ax.legend(fontsize=7)

fig.tight_layout()
figure = OUT / "choices_rewards_per_block.png"
fig.savefig(figure, dpi=100)
print("figure written to", figure)

# %%
r = np.corrcoef(fly_blocks["p_share_1"], fly_blocks["choice_1"])[0, 1]
print(f"choice fraction vs reward-probability share across {len(fly_blocks)} fly blocks: r = {r:.2f}")

"""Synthetic recovery: simulate a known rule, fit a full Taylor rule back, and score the recovery."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._fit import FitResult, fit
from ._io import write_figure, write_text
from ._metrics import HeldOutScore, coefficient_error, cosine_similarity, heldout_r2
from ._model import PlasticityModel
from ._networks import FeedForward
from ._observation import GaussianActivity
from ._rules import TaylorRule
from ._synthetic import GaussianInputs, SyntheticActivity, make_activity_data


@dataclass
class RecoveryReport:
    """True vs recovered rule, held-out R², and the fit itself."""

    true_rule: TaylorRule
    fitted_rule: TaylorRule
    heldout: HeldOutScore
    fit: FitResult
    synthetic: SyntheticActivity
    settings: dict
    timings: dict = field(default_factory=dict)

    @property
    def table(self):
        """pandas DataFrame: term, true and recovered coefficient, error (in units of η·θ / η)."""
        import pandas as pd

        true = self.true_rule.coefficients
        lr_ratio = self.true_rule.learning_rate / self.fitted_rule.learning_rate
        rows = []
        for name, value in self.fitted_rule.coefficients.items():
            t = true.get(name, 0.0) * lr_ratio
            rows.append({"term": name, "true": t, "recovered": value, "error": value - t})
        return pd.DataFrame(rows).set_index("term")

    @property
    def cosine(self) -> float:
        return cosine_similarity(self.fitted_rule, self.true_rule)

    def summary(self) -> str:
        tab = self.table
        shown = tab[(tab["true"] != 0) | (tab["recovered"].abs() >= 0.01)]
        lines = [
            f"true rule:      {self.true_rule.equation()}",
            f"recovered rule: {self.fitted_rule.equation(threshold=0.01)}  (terms with |θ| < 0.01 not shown)",
            "",
            shown.to_string(float_format=lambda v: f"{v: .3f}"),
            "",
            f"largest |θ| among terms absent from the true rule: {self.largest_spurious():.3f}",
            f"cosine(recovered, true) = {self.cosine:.4f}",
            f"held-out R² (new inputs, new initial weights, {self.heldout.n_trajectories} trajectories): "
            f"weights {self.heldout.r2_weights:.4f}, activity {self.heldout.r2_activity:.4f}",
        ]
        if not np.isfinite(self.heldout.r2_weights) or not np.isfinite(self.heldout.r2_activity):
            lines.append("  (−inf: the recovered rule blows up on the held-out trajectories; fit longer or check the fit's warnings)")
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        if not self.fit.converged and self.fit.convergence_message:
            lines.append(f"not converged: {self.fit.convergence_message}")
        if self.fit.interrupted:
            lines.insert(0, "INTERRUPTED: the figures below are from the best parameters so far, not a finished fit\n")
        return "\n".join(lines)

    def largest_spurious(self) -> float:
        tab = self.table
        spurious = tab.loc[tab["true"] == 0, "recovered"].abs()
        return float(spurious.max()) if len(spurious) else 0.0

    def plot(self):
        """Figure: true vs recovered coefficients, and held-out weight trajectories."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from ._synthetic import rollout

        tab = self.table
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
        ax = axes[0]
        pos = np.arange(len(tab))
        ax.bar(pos - 0.2, tab["true"], 0.4, label="true", color="0.6")
        ax.bar(pos + 0.2, tab["recovered"], 0.4, label="recovered", color="tab:blue")
        ax.set_xticks(pos, tab.index, rotation=90, fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("coefficient θ")
        ax.set_title("Taylor coefficients")
        ax.legend(frameon=False)
        ax = axes[1]
        key = jax.random.key(int(self.settings.get("plot_seed", 12345)))
        net, inputs = self.synthetic.true_model.network, self.synthetic.inputs
        k_x, k_w = jax.random.split(key)
        x = inputs.sample(k_x, 1, self.synthetic.data.n_trials)
        w0 = jax.vmap(lambda k: net.init_weights(k, self.settings.get("init_scale", 0.1)))(jax.random.split(k_w, 1))
        _, w_true = rollout(self.true_rule, net, w0, x)
        _, w_fit = rollout(self.fitted_rule, net, w0, x)
        wt, wf = np.asarray(w_true["w"][0]), np.asarray(w_fit["w"][0])
        pairs = dict.fromkeys((a % wt.shape[1], b % wt.shape[2]) for a, b in [(0, 0), (0, 1), (1, 2), (2, 3)])  # small layers too
        for i, (a, b) in enumerate(pairs):
            color = f"C{i}"
            ax.plot(wt[:, a, b], color=color, lw=2, alpha=0.5, label="true" if i == 0 else None)
            ax.plot(wf[:, a, b], color=color, ls="--", lw=1, label="recovered rule" if i == 0 else None)
        ax.set_xlabel("trial")
        ax.set_ylabel("weight")
        ax.set_title(f"held-out trajectory (R² weights {self.heldout.r2_weights:.3f})")
        ax.legend(frameon=False)
        fig.tight_layout()
        return fig

    def save(self, folder) -> dict[str, Path]:
        """Write results.nc, coefficients.csv, summary.md and recovery.png into ``folder`` (atomically each)."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        ds = self.fit.to_dataset()
        tab = self.table
        ds["true_coefficient"] = ("term", tab.loc[list(ds["term"].values), "true"].to_numpy())
        ds.attrs.update(
            {
                "true_equation": self.true_rule.equation(),
                "heldout_r2_weights": self.heldout.r2_weights,
                "heldout_r2_activity": self.heldout.r2_activity,
                "cosine": self.cosine,
            }
        )
        from ._io import write_netcdf

        paths["results"] = write_netcdf(ds, folder / "results.nc")
        paths["coefficients"] = write_text(tab.to_csv(), folder / "coefficients.csv")
        paths["summary"] = write_text("# Recovery summary\n\n```\n" + self.summary() + "\n```\n", folder / "summary.md")
        fig = self.plot()
        paths["plot"] = write_figure(fig, folder / "recovery.png", dpi=110)
        plt.close(fig)
        return paths


def oja_recovery(
    *,
    key: PRNGKeyArray,
    n_pre: int = 20,
    n_post: int = 5,
    n_trajectories: int = 8,
    n_trials: int = 300,
    learning_rate: float = 0.005,
    noise: float = 0.1,
    recorded_fraction: float = 0.5,
    init_scale: float = 0.3,
    variables=("x", "y", "w"),
    max_power: int = 2,
    steps: int = 500,
    l1: float = 0.01,
    optimiser=None,
    progress: bool = True,
) -> RecoveryReport:
    """Generate data from Oja's rule in an ``n_pre → n_post`` layer and fit a full Taylor rule back.

    Half the output neurons are recorded (by default) with 10 % noise, the initial
    weights are unknown (fitted), and the fitted rule has every monomial of
    ``variables`` up to ``max_power`` (27 terms for x, y, w). Evaluation uses new
    inputs and new initial weights drawn from a key split off the root, never used in
    training.
    """
    t0 = time.perf_counter()
    k_inputs, k_data, k_model, k_eval = jax.random.split(key, 4)
    spectrum = jnp.linspace(2.0, 0.2, n_pre)
    inputs = GaussianInputs.with_spectrum(k_inputs, spectrum)
    true_rule = TaylorRule.from_terms({"x*y": 1.0, "y^2*w": -1.0}, learning_rate=learning_rate)
    net = FeedForward(n_pre, n_post)
    syn = make_activity_data(
        true_rule,
        net,
        inputs,
        key=k_data,
        n_trajectories=n_trajectories,
        n_trials=n_trials,
        noise=noise,
        recorded_fraction=recorded_fraction,
        init_scale=init_scale,
    )
    t1 = time.perf_counter()
    start = TaylorRule.full(variables, max_power, learning_rate=learning_rate)
    model = PlasticityModel.create(
        start, net, GaussianActivity(0.5), n_trajectories=n_trajectories, key=k_model, init_scale=0.1
    )
    result = fit(model, syn.data, optimiser=optimiser, steps=steps, l1=l1, progress=progress)
    t2 = time.perf_counter()
    score = heldout_r2(result.model.rule, true_rule, net, inputs, key=k_eval, n_trajectories=10, n_trials=n_trials, init_scale=init_scale)
    t3 = time.perf_counter()
    settings = dict(
        n_pre=n_pre,
        n_post=n_post,
        n_trajectories=n_trajectories,
        n_trials=n_trials,
        learning_rate=learning_rate,
        noise=noise,
        recorded_fraction=recorded_fraction,
        init_scale=init_scale,
        steps=steps,
        l1=l1,
    )
    return RecoveryReport(
        true_rule,
        result.model.rule,
        score,
        result,
        syn,
        settings,
        {"simulate": t1 - t0, "fit": t2 - t1, "evaluate": t3 - t2},
    )


__all__ = ["RecoveryReport", "oja_recovery", "coefficient_error"]

"""The whole feedback-alignment experiment: tune baselines, meta-learn a sparse rule, evaluate on held-out digits."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PRNGKeyArray

from .._errors import ModelError
from .._io import write_figure, write_text, write_together
from .._optimise import describe_optimiser
from ._episodes import DEFAULT_HELDOUT_CLASSES, digits_split
from ._evaluate import LearnerEvaluation, evaluate_learners
from .._fit import check_real
from ._metalearn import MetaLearnResult, default_optimiser, meta_learn, tune_scale
from ._network import FeedbackNetwork, RandomFeedback, SymmetricFeedback
from ._terms import PSEUDO_GRADIENT, TERM_POOL, LocalRule, LocalTerm

BACKPROP = "backprop"
FEEDBACK_ALIGNMENT = "feedback alignment"
META = "meta-learned"
META_PRUNED = "meta-learned, surviving terms only"


@dataclass
class FeedbackAlignmentReport:
    """Rules, meta-training history and held-out evaluation of the feedback-alignment experiment.

    ``rules`` holds the tuned online-backprop rule, the tuned plain feedback-alignment rule, the
    meta-learned rule and the meta-learned rule pruned to its surviving terms (|θ| > ``threshold``).
    """

    rules: dict[str, LocalRule]
    networks: dict[str, FeedbackNetwork]
    meta: MetaLearnResult
    evaluation: LearnerEvaluation
    tuning: dict[str, dict[float, float]]
    threshold: float
    settings: dict
    timings: dict = field(default_factory=dict)

    @property
    def rule(self) -> LocalRule:
        """The meta-learned rule (all terms)."""
        return self.rules[META]

    def surviving_terms(self) -> tuple[str, ...]:
        return self.rule.surviving(self.threshold)

    def surviving_equation(self) -> str:
        return self.rule.equation(threshold=self.threshold)

    def summary(self) -> str:
        ev = self.evaluation
        s = self.settings
        lines = [
            f"meta-trained on digits {tuple(s['train_classes'])}, evaluated on held-out digits {tuple(s['heldout_classes'])}",
            f"network {' → '.join(map(str, s['sizes']))}, {s['n_way']}-way, {s['k_shot']} online examples per class "
            f"(batch size 1), {s['n_query']} query images per class",
            "",
            f"query accuracy on {ev.n_episodes} held-out episodes (mean ± s.e.; chance = {1 / s['n_way']:.2f}):",
        ]
        for name in ev.learners:
            lines.append(f"  {name:<36} {ev.mean(name):.3f} ± {ev.se(name):.3f}")
        d_fa, se_fa = ev.difference(META, FEEDBACK_ALIGNMENT)
        d_bp, se_bp = ev.difference(META, BACKPROP)
        gap = ev.gap_closed(META, FEEDBACK_ALIGNMENT, BACKPROP)
        lines += [
            "",
            f"meta-learned − feedback alignment: {d_fa:+.3f} ± {se_fa:.3f} (paired s.e.)",
            f"meta-learned − online backprop:    {d_bp:+.3f} ± {se_bp:.3f} (paired s.e.)",
            (f"share of the feedback-alignment → backprop gap closed: {100 * gap:.0f} %"
             + (" (the meta-learned rule exceeds online backprop)" if gap > 1 else "")) if np.isfinite(gap) else
            "share of the feedback-alignment → backprop gap closed: undefined (the two baselines score the same)",
            "",
            f"surviving terms (|θ| > {self.threshold:g}): {self.surviving_equation()}",
            f"all terms: {self.rule.equation()}",
            f"baselines: backprop {self.rules[BACKPROP].equation()}, feedback alignment {self.rules[FEEDBACK_ALIGNMENT].equation()}",
        ]
        if self.meta.diverged_at >= 0:
            lines.append(f"WARNING: meta-learning hit a non-finite loss at step {self.meta.diverged_at}; best finite coefficients kept")
        if self.timings:
            lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        return "\n".join(lines)

    def markdown(self) -> str:
        ev = self.evaluation
        rows = "\n".join(f"| {n} | {ev.mean(n):.3f} ± {ev.se(n):.3f} |" for n in ev.learners)
        coef = "\n".join(
            f"| `{t.name}` | {t.alias} | {c:+.4f} | {'yes' if abs(c) > self.threshold else 'no'} |"
            for t, c in zip(self.rule.terms, np.asarray(self.rule.coeffs))
        )
        return (
            "# Feedback alignment: meta-learned local rule\n\n"
            "```\n" + self.summary() + "\n```\n\n"
            f"## Held-out query accuracy ({ev.n_episodes} episodes)\n\n| learner | accuracy (mean ± s.e.) |\n|---|---|\n"
            + rows
            + "\n\n## Coefficients\n\n| term | alias | θ | survives |\n|---|---|---|---|\n"
            + coef
            + "\n\nSettings: `"
            + json.dumps(self.settings, default=str)
            + "`\n"
        )

    def plot(self):
        """Figure: held-out learning curves (mean ± s.e.), coefficients, meta-loss history."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        ev = self.evaluation
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 1.2, 1]})
        ax = axes[0]
        seen = np.arange(ev.curve.shape[-1])
        for i, name in enumerate(ev.learners):
            m = ev.curve[i].mean(0)
            se = ev.curve[i].std(0, ddof=1) / np.sqrt(ev.n_episodes)
            ax.plot(seen, m, label=f"{name} ({ev.mean(name):.2f})", color=f"C{i}", ls="--" if i >= 3 else "-")
            ax.fill_between(seen, m - se, m + se, color=f"C{i}", alpha=0.25, lw=0)
        ax.axhline(1 / self.settings["n_way"], color="0.5", ls=":", lw=1, label="chance")
        ax.set_xlabel("online examples seen (batch size 1)")
        ax.set_ylabel("query accuracy (held-out digits)")
        ax.set_title(f"learning curves, mean ± s.e. over {ev.n_episodes} episodes")
        ax.legend(frameon=False, fontsize=8)
        ax = axes[1]
        c = np.asarray(self.rule.coeffs)
        pos = np.arange(c.size)
        ax.bar(pos, c, color=["tab:blue" if abs(v) > self.threshold else "0.7" for v in c])
        ax.set_xticks(pos, [t.alias for t in self.rule.terms], rotation=60, ha="right", fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("θ")
        ax.set_title(f"meta-learned coefficients (grey: |θ| ≤ {self.threshold:g})")
        ax = axes[2]
        h = self.meta.loss_history
        window = max(1, len(h) // 40)
        smooth = np.convolve(h, np.ones(window) / window, mode="valid") if len(h) >= window else h
        ax.plot(np.arange(smooth.size) + window, smooth, label="training (running mean)", color="0.5")
        ax.plot(self.meta.validation_steps, self.meta.validation_history, "o-", label="validation", color="tab:red", ms=3)
        ax.set_xlabel("meta-step")
        ax.set_ylabel("meta-loss (query CE + L1)")
        ax.set_title("meta-training")
        ax.legend(frameon=False)
        fig.tight_layout()
        return fig

    def annotations(self):
        """What the report adds to the meta-learning result's file: ``coefficient`` (term) of the meta-learned
        rule, ``rule_coefficient`` (rule, term) of every learner's rule, the held-out ``accuracy`` and
        ``query_loss`` (learner, episode), ``learning_curve`` (learner, episode, seen), ``tuning_loss_<learner>``
        (scale), and attributes ``surviving_equation``, ``threshold``, ``learning_rate``, ``experiment_settings``,
        ``kind`` (no ``timings``: they are in ``summary.md``, and the same run saves the same bytes)."""
        import xarray as xr

        ev = self.evaluation
        terms = list(self.rule.terms)
        coeff = np.zeros((len(self.rules), len(terms)))
        for i, r in enumerate(self.rules.values()):
            for name, v in r.coefficients.items():
                coeff[i, [t.name for t in terms].index(name)] = v
        ds = xr.Dataset(
            {
                "coefficient": ("term", np.asarray(self.rule.coeffs, dtype=float)),
                "rule_coefficient": (("rule", "term"), coeff),
                "accuracy": (("learner", "episode"), ev.accuracy),
                "query_loss": (("learner", "episode"), ev.loss),
                "learning_curve": (("learner", "episode", "seen"), ev.curve),
            },
            coords={
                "rule": list(self.rules),
                "learner": list(ev.learners),
                "episode": np.arange(ev.n_episodes),
                "seen": np.arange(ev.curve.shape[-1]),
            },
        )
        for name, table in self.tuning.items():
            ds[f"tuning_loss_{name.replace(' ', '_')}"] = xr.DataArray(
                np.asarray(list(table.values())), dims=["scale"], coords={"scale": np.asarray(list(table))}
            )
        ds.attrs.update(
            {
                "surviving_equation": self.surviving_equation(),
                "threshold": self.threshold,
                "learning_rate": self.rule.learning_rate,
                "experiment_settings": json.dumps(self.settings, default=str),
                "kind": "feedback-alignment meta-learning",
            }
        )
        return ds

    def to_dataset(self):
        """The content of ``results.nc``: the meta-learning result's dataset (``MetaLearnResult.to_dataset``,
        read back by ``MetaLearnResult.load``) with the report's :meth:`annotations` merged in."""
        return self.meta.to_dataset(self.annotations())

    def save(self, folder) -> dict[str, Path]:
        """Write results.nc, summary.md and learning_curves.png into ``folder``: all three or, when one fails, none."""
        import matplotlib.pyplot as plt

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with write_together():
            paths = {
                "results": self.meta.save(folder / "results.nc", self.annotations()),
                "summary": write_text(self.markdown(), folder / "summary.md"),
            }
            fig = self.plot()
            paths["plot"] = write_figure(fig, folder / "learning_curves.png", dpi=110)
            plt.close(fig)
        return paths


def feedback_alignment_experiment(
    *,
    key: PRNGKeyArray,
    hidden: Sequence[int] = (100, 80),
    n_way: int = 5,
    k_shot: int = 10,
    n_query: int = 10,
    heldout_classes: Sequence[int] = DEFAULT_HELDOUT_CLASSES,
    terms: Sequence[LocalTerm | str] = TERM_POOL,
    learning_rate: float = 0.05,
    steps: int = 300,
    meta_batch: int = 16,
    l1: float = 0.03,
    optimiser: optax.GradientTransformation | None = None,
    meta_learning_rate: float = 1e-2,
    eval_episodes: int = 200,
    tune_episodes: int = 128,
    validation_episodes: int = 64,
    eval_every: int = 25,
    threshold: float = 0.02,
    dtype=jnp.float32,
    progress: bool = True,
) -> FeedbackAlignmentReport:
    """Tune the baselines, meta-learn a sparse local rule, and evaluate all on held-out digit classes.

    1. Split the digits: meta-train on the classes not in ``heldout_classes``, evaluate on those in it.
    2. Tune the single coefficient (the learning rate) of online backprop and of plain feedback alignment
       on meta-training episodes (:func:`tune_scale`).
    3. Meta-learn every term of ``terms`` with random feedback, starting from the tuned feedback-alignment
       rule, with L1 weight ``l1`` (:func:`meta_learn`).
    4. Evaluate backprop, feedback alignment, the meta-learned rule and its surviving terms
       (|θ| > ``threshold``) on ``eval_episodes`` held-out episodes, all learners on the same episodes.

    The key is split once into tuning, meta-training and evaluation keys, so no episode is reused.
    """
    check_real(meta_learning_rate, "meta_learning_rate", minimum=0, open_low=True)
    check_real(threshold, "threshold (the |θ| a surviving term exceeds)", minimum=0)  # as the command line's check
    names = [t if isinstance(t, str) else t.name for t in terms]
    if not any(n in (PSEUDO_GRADIENT.name, PSEUDO_GRADIENT.alias) for n in names):
        raise ModelError("the term pool must include the pseudo-gradient term e_{l+1}·y_lᵀ (the starting rule)")
    train, heldout = digits_split(heldout_classes, n_way=n_way, k_shot=k_shot, n_query=n_query, dtype=dtype)
    sizes = (train.n_pixels, *map(int, hidden), n_way)
    fa_net = FeedbackNetwork(sizes, RandomFeedback())
    bp_net = FeedbackNetwork(sizes, SymmetricFeedback())
    k_tune, k_meta, k_eval = jax.random.split(key, 3)
    timings = {}

    t0 = time.perf_counter()
    plain = LocalRule.feedback_alignment(learning_rate=learning_rate, dtype=dtype)
    bp_rule, bp_table = tune_scale(plain, bp_net, train, key=k_tune, n_episodes=tune_episodes)
    fa_rule, fa_table = tune_scale(plain, fa_net, train, key=k_tune, n_episodes=tune_episodes)
    timings["tuning baselines"] = time.perf_counter() - t0

    start = LocalRule.pool(
        {PSEUDO_GRADIENT.name: float(fa_rule.coeffs[0])}, terms=terms, learning_rate=learning_rate, dtype=dtype
    )
    meta = meta_learn(
        start,
        fa_net,
        train,
        key=k_meta,
        optimiser=default_optimiser(meta_learning_rate) if optimiser is None else optimiser,
        steps=steps,
        meta_batch=meta_batch,
        l1=l1,
        validation_episodes=validation_episodes,
        eval_every=eval_every,
        progress=progress,
    )
    timings["meta-training"] = meta.wall_time

    t0 = time.perf_counter()
    rules = {BACKPROP: bp_rule, FEEDBACK_ALIGNMENT: fa_rule, META: meta.rule}
    networks = {BACKPROP: bp_net, FEEDBACK_ALIGNMENT: fa_net, META: fa_net}
    if meta.rule.surviving(threshold):
        rules[META_PRUNED] = meta.rule.pruned(threshold)
        networks[META_PRUNED] = fa_net
    evaluation = evaluate_learners({n: (rules[n], networks[n]) for n in rules}, heldout, key=k_eval, n_episodes=eval_episodes)
    timings["evaluation"] = time.perf_counter() - t0

    settings = dict(
        sizes=list(sizes),
        n_way=n_way,
        k_shot=k_shot,
        n_query=n_query,
        train_classes=list(train.classes),
        heldout_classes=list(heldout.classes),
        learning_rate=learning_rate,
        steps=steps,
        meta_batch=meta_batch,
        l1=l1,
        eval_episodes=eval_episodes,
        tune_episodes=tune_episodes,
        validation_episodes=validation_episodes,
        threshold=threshold,
        dtype=str(jnp.dtype(dtype)),
        optimiser=describe_optimiser(optimiser, None, f"Adam {meta_learning_rate:g}, meta-gradient clipped to norm 1"),
        meta_learning_rate=meta_learning_rate if optimiser is None else None,
    )
    return FeedbackAlignmentReport(
        rules=rules,
        networks=networks,
        meta=meta,
        evaluation=evaluation,
        tuning={BACKPROP: bp_table, FEEDBACK_ALIGNMENT: fa_table},
        threshold=threshold,
        settings=settings,
        timings=timings,
    )

"""Reports of a discovery run: an xarray Dataset (netCDF), a markdown summary with equations, figures."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .._results_io import duration
from ._common import DiscoveryError
from ._families import RuleFamily, coefficient_table, normalise
from ._homeostasis import TraceRule


def report_annotations(result, *, reference: str | None = None, families: Sequence[RuleFamily] = (), description: str = ""):
    """What a report adds to a search's file: a table of every restart's coefficients by name, normalised, and
    its family. Variables ``coefficients`` and ``normalised`` (by |θ(reference)| per rule, or the norm), dims
    ``restart`` × ``parameter``, and ``family`` (index into the attrs' family list, −1 for none); attrs
    ``normalised_by``, ``families`` (every family's label, count and equation) and ``description``."""
    import xarray as xr

    names, values = coefficient_table(result.rules)
    family = np.full(result.n_restarts, -1, dtype=np.int64)
    for i, f in enumerate(families):
        family[f.members] = i
    return xr.Dataset(
        {
            "coefficients": (("restart", "parameter"), values),
            "normalised": (("restart", "parameter"), normalise(names, values, reference)),
            "family": (("restart",), family),
        },
        coords={"restart": np.arange(result.n_restarts), "parameter": names},
        attrs=dict(
            normalised_by=reference or "L2 norm per rule",
            families=json.dumps([{"label": f.label, "count": f.count, "equation": f.equation} for f in families]),
            description=description,
        ),
    )


def to_dataset(result, *, reference: str | None = None, families: Sequence[RuleFamily] = (), description: str = ""):
    """The file a report writes for a search: ``result.to_dataset()`` (everything
    :meth:`SearchResult.load <plasticinfer.discovery.SearchResult.load>` reads back) with the report's
    :func:`report_annotations` (``coefficients``, ``normalised``, ``family``) merged in."""
    return result.to_dataset(report_annotations(result, reference=reference, families=families, description=description))


def manifold_table(result, nu_pre: float, target: float) -> dict[str, np.ndarray]:
    """B3 solutions against the analytic manifold ν* = −α·ν_pre/(β + (κτ_post + γτ_pre)·ν_pre).

    Returns per restart: α, β, γ, κ, the pair coefficient c = κτ_post + γτ_pre, the analytic
    ν*, the simulated rate, the residual ν_sim − ν* (Hz: does the simulation sit on the
    manifold?), the target error ν* − target, and ``position`` = β / (β + c·ν_pre) ∈ [0, 1]
    for stable solutions: 0 for a purely Hebbian-pairing rule (Vogels-like, ν* independent
    of ν_pre), 1 for a purely postsynaptic one — where on the manifold the rule sits.
    """
    rules = result.rules
    if not isinstance(rules, TraceRule):
        raise DiscoveryError("manifold_table needs a search over TraceRules (HomeostasisObjective / LIFHomeostasisObjective)")
    a, b, g, k = (np.asarray(getattr(rules, n), dtype=float) for n in ("alpha", "beta", "gamma", "kappa"))
    c = k * rules.tau_post + g * rules.tau_pre
    denom = b + c * nu_pre
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero rule has no fixed point: NaN
        nu_star = -a * nu_pre / denom
        position = b / denom
    sim = np.asarray(result.metrics.get("rate_hz", np.full_like(a, np.nan)), dtype=float)
    return {
        "alpha": a,
        "beta": b,
        "gamma": g,
        "kappa": k,
        "pair": c,
        "nu_star": nu_star,
        "rate": sim,
        "residual": sim - nu_star,
        "target_error": nu_star - target,
        "position": position,
    }


def _table(rows: Sequence[Sequence], header: Sequence[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def summary_markdown(
    result,
    *,
    title: str,
    families: Sequence[RuleFamily] = (),
    notes: Sequence[str] = (),
    sections: Mapping[str, str] | None = None,
) -> str:
    """A markdown report: settings, success count, families as equations, metric table."""
    lines = [f"# {title}", ""]
    ok = int(np.sum(result.success))
    lines += [
        f"- method: **{result.method}**, {result.n_restarts} restarts, {duration(result.wall_time)}",
        f"- restarts meeting the objective (held-out episode): **{ok} / {result.n_restarts}**",
        f"- best held-out loss: {np.nanmin(result.losses):.4g} (restart {result.best})",
        "",
        "## Best rule",
        "",
        "```",
        result.equation(threshold=1e-3),
        "```",
        "",
    ]
    if families:
        lines += ["## Families of rules that meet the objective", ""]
        for i, f in enumerate(families):
            lines += [f"### Family {i + 1}: {f.label} ({f.count} solutions)", "", "```", f.equation, "```", ""]
            spread = {k: v for k, v in f.spread.items() if abs(f.median.get(k, 0.0)) > 0 or v > 0}
            big = sorted(spread, key=lambda k: -abs(f.median[k]))[:8]
            if big:
                lines += [_table([(k, f"{f.median[k]:+.3f}", f"{f.spread[k]:.3f}") for k in big], ["parameter", "median", "spread (s.d.)"]), ""]
    elif ok == 0:
        lines += ["No restart met the objective: try more restarts or steps (see docs/discovery.md).", ""]
    metric_names = list(result.metrics)
    rows = [
        [i, "yes" if result.success[i] else "no"] + [f"{result.metrics[m][i]:.4g}" for m in metric_names]
        for i in range(result.n_restarts)
    ]
    lines += ["## Every restart (held-out metrics)", "", _table(rows, ["restart", "meets objective"] + metric_names), ""]
    for name, text in (sections or {}).items():
        lines += [f"## {name}", "", text, ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def plot_search(result, families: Sequence[RuleFamily] = (), *, reference: str | None = None, title: str = ""):
    """Loss histories of every restart and the normalised coefficients of the successful ones."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names, values = coefficient_table(result.rules)
    u = normalise(names, values, reference)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1, 1.6]})
    ax = axes[0]
    hist = np.where(np.isfinite(result.loss_history), result.loss_history, np.nan)
    for i, h in enumerate(hist):
        ax.plot(np.maximum(h, 1e-12), color="C2" if result.success[i] else "0.6", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step" if result.method == "gradient" else "generation")
    ax.set_ylabel("training objective")
    ax.set_title("restarts (green: meet the objective)")
    ax = axes[1]
    ok = np.flatnonzero(result.success)
    show = [j for j in range(len(names)) if ok.size and np.nanmax(np.abs(u[ok, j])) > 0.05] or list(range(min(len(names), 12)))
    for i in ok:
        fam = next((n for n, f in enumerate(families) if i in f.members), 0)
        ax.plot(range(len(show)), u[i, show], "o", color=f"C{fam % 10}", alpha=0.6, ms=4)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.set_xticks(range(len(show)))
    ax.set_xticklabels([names[j] for j in show], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel(f"coefficient / |{reference}|" if reference else "coefficient / norm")
    ax.set_title("solutions meeting the objective (colour: family)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_manifold(tables: Mapping[str, Mapping[str, np.ndarray]], nu_pre: float, target: float, successes: Mapping[str, np.ndarray]):
    """B3 solutions against the analytic manifold (one colour per search method).

    Left: each rule divided by |α| (the overall rate is free), plotted as β/|α| against
    (κτ_post + γτ_pre)·ν_pre/|α|. For α < 0 the manifold ν* = target is the line
    x + y = ν_pre/target, so the spread of a family along the manifold is visible: x = 0
    is Vogels-like pure pairing, y = 0 a purely postsynaptic rule. Right: simulated rate
    against the analytic ν* of each rule.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    xmin, xmax = 0.0, nu_pre / target
    for n, (label, t) in enumerate(tables.items()):
        ok = np.asarray(successes[label], bool)
        a = np.where(np.abs(t["alpha"]) > 0, np.abs(t["alpha"]), np.nan)
        x, y = t["beta"] / a, t["pair"] * nu_pre / a
        axes[0].plot(x[ok], y[ok], "o", color=f"C{n}", label=f"{label} ({ok.sum()} solutions)", alpha=0.7)
        if ok.any():
            xmin, xmax = min(xmin, np.nanmin(x[ok])), max(xmax, np.nanmax(x[ok]))
        axes[1].plot(t["nu_star"][ok], t["rate"][ok], "o", color=f"C{n}", alpha=0.7, label=label)
    xs = np.linspace(xmin, xmax, 50)
    axes[0].plot(xs, nu_pre / target - xs, "k-", lw=1, label=f"manifold ν* = {target:g} Hz")
    axes[0].set_xlabel("β / |α|")
    axes[0].set_ylabel("(κτ_post + γτ_pre)·ν_pre / |α|")
    axes[0].set_title("solutions along the B3 manifold")
    axes[0].legend(fontsize=8)
    rng = [0.8 * target, 1.2 * target]
    axes[1].plot(rng, rng, "k-", lw=1)
    axes[1].set_xlabel("analytic ν* (Hz)")
    axes[1].set_ylabel("simulated rate (Hz)")
    axes[1].set_title("simulation vs analytic fixed point")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


#: The list of files a discovery report wrote (its own name: a fly report's list in the same folder is not its to use)
MANIFEST = "discovery_files.json"


def save_report(
    folder,
    *,
    markdown: str,
    searches: Mapping[str, object] | None = None,
    families: Mapping[str, Sequence[RuleFamily]] | None = None,
    reference: str | None = None,
    description: str = "",
    figures: Mapping[str, object] | None = None,
) -> dict[str, Path]:
    """Write ``<name>.nc`` per search, ``summary.md`` and ``<name>.png`` per figure into ``folder``.

    Each search is written by :meth:`SearchResult.save <plasticinfer.discovery.SearchResult.save>` with the
    report's :func:`report_annotations` (its ``families[name]``, normalised by ``reference``), so
    ``SearchResult.load`` reads it back. Every file is written atomically (a temporary file, then a rename),
    and all of them or none (:func:`~plasticinfer._io.write_together`). The files written are listed in
    ``discovery_files.json``; a later discovery report into the same folder deletes those of the list it does not
    write again (files not on the list — the user's own, another command's — are never touched).
    """
    import matplotlib.pyplot as plt

    from .._io import remove_earlier_outputs, write_figure, write_text, write_together

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    families = families or {}
    with write_together():
        paths = {
            name: res.save(folder / f"{name}.nc", report_annotations(res, reference=reference, families=families.get(name, ()), description=description))
            for name, res in (searches or {}).items()
        }
        paths["summary"] = write_text(markdown, folder / "summary.md")
        for name, fig in (figures or {}).items():
            paths[name] = write_figure(fig, folder / f"{name}.png", dpi=120)
            plt.close(fig)
    # a rerun with other settings (e.g. --method gradient after both) must not leave the earlier run's files beside these
    remove_earlier_outputs(folder, paths.values(), MANIFEST)
    return paths


__all__ = ["report_annotations", "to_dataset", "manifold_table", "summary_markdown", "plot_search", "plot_manifold", "save_report"]

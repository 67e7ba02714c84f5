"""`plasticinfer discover …` commands: thin wrappers over plasticinfer.discovery."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ._report import MANIFEST
from .._cli_common import (
    Fraction, NonNegative, PathOption, Rate, Seed, Size, echo_written, non_negative, output_folder, refuse_unused, show_bars,
)

_OUT_HELP = "Folder for results (netCDF), summary.md (equations) and PNG figures; created if missing."


def _adam(lr: float, steps: int):
    import optax

    from .._optimise import described

    return described(optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05)), f"Adam {lr:g}, cosine-decayed to 5 % over {steps} steps")


# Searches start at |θ| ≈ 0.01 and the known solutions have |θ| of order 1 (times a free overall
# rate); a coefficient beyond this means the optimiser blew up rather than found a rule.
DIVERGED_COEFFICIENT = 1e3


def _check_diverged(res, lr: float) -> None:
    """Refuse a gradient search whose coefficients blew up (non-finite or beyond DIVERGED_COEFFICIENT)."""
    import equinox as eqx
    import jax
    import numpy as np

    from ._common import DiscoveryError

    leaves = [np.asarray(a, dtype=float) for a in jax.tree_util.tree_leaves(eqx.filter(res.rules, eqx.is_inexact_array))]
    largest = max((float(np.nanmax(np.abs(a))) if a.size else 0.0 for a in leaves), default=0.0)
    finite = all(np.isfinite(a).all() for a in leaves)
    if not finite or largest > DIVERGED_COEFFICIENT:
        what = "non-finite coefficients" if not finite else f"coefficients up to {largest:.3g} (> {DIVERGED_COEFFICIENT:g})"
        raise DiscoveryError(
            f"the search diverged: {what} with --lr {lr:g}; nothing was written. Lower --lr (e.g. 10x smaller) or --steps."
        )


def pc1(
    n_pre: Annotated[int, Size("Number of inputs (the 2020 work struggled beyond ~10; try 3, 39, 100).")] = 39,
    restarts: Annotated[int, Size("Independent starts, run as one vmapped computation.")] = 4,
    steps: Annotated[int, Size("Adam steps of gradient descent through the 200-step learning trajectory.")] = 300,
    l1: Annotated[float, NonNegative("L1 penalty on each term's typical contribution.")] = 3e-4,
    prune: Annotated[float, Fraction("Drop terms whose typical contribution is below this fraction of the largest (after 60 % of the steps), then re-fit; in [0, 1), 0 = off.")] = 0.25,
    lr: Annotated[float, Rate("Initial Adam step size (cosine-decayed to 5 %).")] = 3e-2,
    networks: Annotated[int, Size("Independent networks (own rotation, scale, inputs, w0) per loss evaluation.")] = 4,
    fixed_rotation: Annotated[bool, typer.Option(help="Literal DESIGN.md B1: one input rotation for every network (a rule can overfit it).")] = False,
    scale_variation: Annotated[bool, typer.Option(help="Multiply each network's input covariance by a log-uniform scale in [0.5, 2] (pins θ(w) = 0).")] = True,
    seed: Annotated[int, Seed("Root random seed.")] = 0,
    out: Annotated[Path, PathOption(_OUT_HELP)] = Path("discover-pc1"),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Rediscover Oja's rule: one neuron must learn the first principal component of its inputs (B1).

    Searches a full 27-term degree-2 Taylor rule over x (pre), y (post), w (weight) by
    gradient descent through learning; the loss is sin²(angle to PC1) + (|w| − 1)² after
    200 steps of 100 samples (η = 0.1). The task fixes the rule only up to its overall
    rate, so coefficients are reported divided by θ(x·y).
    """
    output_folder(out, files=("results.nc", "summary.md", "search.png"))
    import jax

    from . import PC1Objective, find_families, gradient_search, oja_comparison, plot_search, save_report, summary_markdown
    from ._report import _table

    k_obj, k_search = jax.random.split(jax.random.key(seed))
    obj = PC1Objective.create(
        k_obj, n_pre, n_networks=networks, random_rotations=not fixed_rotation, scale_range=(0.5, 2.0) if scale_variation else None
    )
    typer.echo(f"PC1 objective: {n_pre} inputs, spectrum λ₁ = 1, λ₂…λₙ = 0.5 → 1e-6 (geometric); {restarts} restarts × {steps} steps …")
    res = gradient_search(
        obj, key=k_search, restarts=restarts, steps=steps, l1=l1, prune=prune or None, optimiser=_adam(lr, steps),
        init_scale=0.01, progress=show_bars(quiet),
    )  # fmt: skip
    _check_diverged(res, lr)
    fams = find_families(res, reference="x*y")
    rows = []
    for i in range(res.n_restarts):
        c = oja_comparison(res.rule(i))
        rows.append([i, "yes" if res.success[i] else "no", f"{c['rate']:.3f}", f"{c['y2w']:+.3f}", f"{c['y2w_error_pct']:+.1f} %", f"{c['w']:+.3f}", f"{c['largest_other_term']} ({c['largest_other']:.3f})"])
    oja_table = _table(rows, ["restart", "meets objective", "θ(x·y)", "θ(y²w)/θ(x·y)", "vs −1", "θ(w)/θ(x·y)", "largest other |θ/θ(x·y)|"])
    notes = [
        "The objective fixes the direction and norm of w, not the rule's overall rate: coefficients are compared after dividing by θ(x·y).",
        (f"Each loss evaluation averages {networks} networks with one input rotation, fixed for the whole search "
         "(--fixed-rotation: the literal B1 setup, which a rule can overfit)" if fixed_rotation else
         f"Each loss evaluation averages {networks} networks with their own input rotation")
        + (" and covariance scale (×0.5…2)" if scale_variation else "")
        + "; inputs are refreshed every 10 steps; held-out metrics use an episode no step saw.",
        f"Search settings: Adam at learning rate {lr:g}, cosine-decayed over {steps} steps; {restarts} restarts; l1 {l1:g}; "
        f"seed {seed}.",
    ]
    md = summary_markdown(res, title=f"PC1 extraction, {n_pre} inputs", families=fams, notes=notes, sections={"Comparison with Oja's rule": oja_table})
    paths = save_report(
        out,
        markdown=md,
        searches={"results": res},
        families={"results": fams},
        reference="x*y",
        description=(f"PC1 objective, n_pre={n_pre}, {networks} networks, "
                     + ("one fixed input rotation" if fixed_rotation else "a random input rotation per network")
                     + (", covariance scale ×0.5…2" if scale_variation else "") + f"; Adam lr {lr:g}, seed {seed}"),
        figures={"search": plot_search(res, fams, reference="x*y", title=f"PC1, {n_pre} inputs")},
    )
    typer.echo(res.summary())
    typer.echo("\n" + oja_table)
    echo_written(out, paths, own=(MANIFEST,))  # save_report's list of what it wrote


def pca_network(
    n_in: Annotated[int, Size("Inputs.")] = 50,
    n_out: Annotated[int, Size("Outputs (principal components to span).")] = 5,
    restarts: Annotated[int, Size("Independent starts (about half reach the subspace; more restarts, more solutions).")] = 8,
    steps: Annotated[int, Size("Adam steps.")] = 250,
    max_degree: Annotated[int, typer.Option(help="Maximum total degree of the Taylor terms (0: all 27 terms of each rule).", callback=non_negative)] = 3,
    l1: Annotated[float, NonNegative("L1 penalty on each term's typical contribution.")] = 3e-4,
    prune: Annotated[float, Fraction("Prune terms below this fraction of their rule's largest after 60 % of the steps; in [0, 1), 0 = off.")] = 0.25,
    lr: Annotated[float, Rate("Initial Adam step size (cosine-decayed).")] = 1e-2,
    networks: Annotated[int, Size("Networks per loss evaluation.")] = 2,
    seed: Annotated[int, Seed("Root random seed.")] = 0,
    out: Annotated[Path, PathOption(_OUT_HELP)] = Path("discover-pca-network"),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Discover a feed-forward rule and a lateral rule that together make outputs span the top PCs (B2).

    The network is y = (I − L)⁻¹ W x; W and L learn jointly under two Taylor rules over
    (x, y, w), the lateral one seeing pre = y_j, post = y_i. Success: every principal angle
    between the output subspace and the top n_out PCs under 10°. The known solution is Oja
    for W with anti-Hebbian θ(x·y) = −1 for L.
    """
    output_folder(out, files=("results.nc", "summary.md", "search.png"))
    import jax

    from .._rules import TaylorRule
    from . import PCANetworkObjective, find_families, gradient_search, plot_search, save_report, summary_markdown

    k_obj, k_search = jax.random.split(jax.random.key(seed))
    obj = PCANetworkObjective.create(k_obj, n_in, n_out, n_networks=networks)
    rule = {k: TaylorRule.full(("x", "y", "w"), 2, max_degree=max_degree or None, learning_rate=obj.learning_rate) for k in ("ff", "lateral")}
    typer.echo(f"PCA network {n_in} → {n_out}: {len(rule['ff'].terms)} + {len(rule['lateral'].terms)} terms; {restarts} restarts × {steps} steps …")
    res = gradient_search(
        obj, rule, key=k_search, restarts=restarts, steps=steps, l1=l1, prune=prune or None, optimiser=_adam(lr, steps),
        init_scale=0.01, progress=show_bars(quiet),
    )  # fmt: skip
    _check_diverged(res, lr)
    fams = find_families(res, reference="x*y")
    notes = ["Coefficients are divided by each rule's |θ(x·y)| (the objective leaves each rule's rate free)."]
    md = summary_markdown(res, title=f"PCA network {n_in} → {n_out}", families=fams, notes=notes)
    paths = save_report(
        out,
        markdown=md,
        searches={"results": res},
        families={"results": fams},
        reference="x*y",
        description=f"PCA network {n_in}->{n_out}",
        figures={"search": plot_search(res, fams, reference="x*y", title=f"PCA network {n_in} → {n_out}")},
    )
    typer.echo(res.summary())
    typer.echo(f"max principal angle per restart (deg): {[round(float(a), 1) for a in res.metrics['max_angle_deg']]}")
    echo_written(out, paths, own=(MANIFEST,))  # save_report's list of what it wrote


class Model(str, Enum):
    rate = "rate"
    lif = "lif"


class Method(str, Enum):
    gradient = "gradient"
    cma = "cma"
    both = "both"


def homeostasis(
    ctx: typer.Context,
    model: Annotated[Model, typer.Option(help="rate: rate neuron (gradients work); lif: leaky integrate-and-fire (CMA-ES only).")] = Model.rate,
    method: Annotated[Method, typer.Option(help="gradient descent, CMA-ES, or both (to compare them).")] = Method.both,
    restarts: Annotated[int, Size("Gradient-descent restarts (vmapped).")] = 16,
    steps: Annotated[int, Size("Gradient-descent steps.")] = 300,
    cma_restarts: Annotated[int, Size("Independent CMA-ES runs (their populations are evaluated together).")] = 4,
    generations: Annotated[int, Size("CMA-ES generations.")] = 60,
    target: Annotated[float, Rate("Target postsynaptic rate (Hz).")] = 5.0,
    nu_inh: Annotated[float, Rate("Inhibitory input rate ν_pre (Hz).")] = 10.0,
    correlated: Annotated[float, NonNegative("Rate model: s.d. of shared per-group rate fluctuations (0: constant rates); > 0 adds the balance objective.")] = 0.0,
    l1: Annotated[float, NonNegative("L1 penalty (keeps the overall rate of the rule bounded).")] = 1e-3,
    familiarity: Annotated[bool, typer.Option(help="Rate model: run the familiarity probe on the solutions.")] = True,
    seed: Annotated[int, Seed("Root random seed.")] = 0,
    out: Annotated[Path, PathOption(_OUT_HELP)] = Path("discover-homeostasis"),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Discover inhibitory plasticity rules that hold a neuron at a target rate (B3), and check the manifold.

    Searches the pair-based trace rule (α, β, γ, κ with τ_pre = τ_post = 20 ms): at a
    presynaptic spike Δw = η(α + κ·x_post), at a postsynaptic spike Δw = η(β + γ·x_pre).
    Solutions should lie on ν* = −α·ν_pre/(β + (κτ_post + γτ_pre)·ν_pre) = target; the
    summary reports the residuals, the spread of the family along the manifold, agreement
    of gradient descent and CMA-ES, generalisation to other input rates and (rate model)
    the fraction of solutions that also detect familiar input patterns.
    """
    import jax

    from . import (
        HomeostasisObjective,
        LIFHomeostasisObjective,
        analyse_homeostasis,
        cma_search,
        find_families,
        gradient_search,
        plot_search,
        save_report,
        summary_markdown,
    )
    from ._common import DiscoveryError

    if model is Model.lif and method is not Method.cma:
        raise DiscoveryError("spikes make the LIF loss piecewise constant, so gradients are useless; use --method cma")
    unused = {  # an option these settings would ignore is refused, not dropped without a word
        "correlated": (model is Model.lif, "--correlated applies to the rate model (--model rate)"),
        "familiarity": (model is Model.lif, "--familiarity applies to the rate model (--model rate)"),
        "restarts": (method is Method.cma, "--restarts applies to gradient descent (--method gradient or both); CMA-ES takes --cma-restarts"),
        "steps": (method is Method.cma, "--steps applies to gradient descent (--method gradient or both); CMA-ES takes --generations"),
        "cma_restarts": (method is Method.gradient, "--cma-restarts applies to CMA-ES (--method cma or both)"),
        "generations": (method is Method.gradient, "--generations applies to CMA-ES (--method cma or both)"),
    }
    refuse_unused(ctx, {name: message for name, (ignored, message) in unused.items() if ignored})
    methods = {Method.gradient: ["gradient"], Method.cma: ["cma-es"], Method.both: ["gradient", "cma-es"]}[method]
    output_folder(out, files=["summary.md", "manifold.png"] + [f"{k}_{m}.{e}" for m in methods for k, e in (("results", "nc"), ("search", "png"))])
    k_g, k_c, k_a = jax.random.split(jax.random.key(seed), 3)
    if model is Model.rate:
        obj = HomeostasisObjective.create(target=target, nu_inh=nu_inh, fluctuation=correlated)
    else:
        obj = LIFHomeostasisObjective.create(target=target, nu_inh=nu_inh)
    results = {}
    if method in (Method.gradient, Method.both):
        typer.echo(f"gradient descent: {restarts} restarts × {steps} steps …")
        results["gradient"] = gradient_search(
            obj, key=k_g, restarts=restarts, steps=steps, l1=l1, init_scale=1.0, optimiser=_adam(0.1, steps), progress=show_bars(quiet)
        )
    if method in (Method.cma, Method.both):
        typer.echo(f"CMA-ES: {cma_restarts} runs × {generations} generations …")
        results["cma-es"] = cma_search(obj, key=k_c, restarts=cma_restarts, generations=generations, l1=l1, init_scale=1.0, progress=show_bars(quiet))
    analysis = analyse_homeostasis(results, obj, key=k_a, familiarity=familiarity and model is Model.rate, generalise_to=(5.0, 20.0) if model is Model.rate else ())
    searches, families, figures, parts = {}, {}, {"manifold": analysis.figure()}, []
    for m, res in results.items():
        fams = find_families(res, reference="alpha")
        searches[f"results_{m}"], families[f"results_{m}"] = res, fams
        figures[f"search_{m}"] = plot_search(res, fams, reference="alpha", title=f"B3 ({model.value}), {m}")
        parts.append(summary_markdown(res, title=f"{m}", families=fams))
        typer.echo(res.summary())
    notes = ["Coefficients are divided by |α| (every solution fixes only the ratios; the rule's overall rate is free)."]
    if correlated > 0:
        notes.append(
            "With correlated inputs pre- and postsynaptic rates covary, which shifts the steady state off the "
            "constant-rate manifold; the loss also asks for detailed balance (metric `unbalanced`)."
        )
    if model is Model.lif:
        notes.append(
            "Spiking: an inhibitory spike lowers the chance of a postsynaptic spike right after it, so x_pre at "
            "postsynaptic spikes is below its mean and the γ term is under-counted; simulated rates sit above ν* by up to ~10 %."
        )
    md = "\n\n".join(
        [f"# Homeostatic inhibitory plasticity ({model.value} model), target {target:g} Hz\n", "## Manifold check and probes\n", analysis.markdown()]
        + [p.replace("# ", "## ", 1) for p in parts]
        + ["## Notes\n\n" + "\n".join(f"- {n}" for n in notes)]
    )
    paths = save_report(
        out, markdown=md, searches=searches, families=families, reference="alpha", description=f"B3 {model.value} model", figures=figures
    )
    typer.echo("\n" + analysis.markdown())
    echo_written(out, paths, own=(MANIFEST,))  # save_report's list of what it wrote


def register(discover_app: typer.Typer) -> None:
    """Attach the discovery commands to the `plasticinfer discover` group."""
    discover_app.command("pc1")(pc1)
    discover_app.command("pca-network")(pca_network)
    discover_app.command("homeostasis")(homeostasis)

"""`plasticinfer fly`: the choice-learning analysis of a named dataset or a behaviour file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def fly(
    dataset: Annotated[str, typer.Argument(help="Named dataset (rajagopalan2023, mohanta2022) or a behaviour data file (.nc, .csv, .mat, …).")] = "rajagopalan2023",
    out: Annotated[Path, typer.Option(help="Folder for report.md, table.csv, scores.nc and figures.")] = Path("plasticinfer-fly"),
    hypotheses: Annotated[list[str] | None, typer.Option("--hypothesis", "-H", help="Hypotheses to fit (repeat); default all standard ones.")] = None,
    heldout: Annotated[float, typer.Option(help="Fraction of each block's last trials held out.")] = 0.2,
    steps: Annotated[int, typer.Option(help="L-BFGS steps per fit.")] = 50,
    in_sample: Annotated[bool, typer.Option(help="Also fit on all trials (in-sample figures, as published).")] = True,
    data_dir: Annotated[Path | None, typer.Option(help="Folder holding the named datasets (default: PLASTICINFER_DATA_DIR or ../shared/data).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (MLP initialisation).")] = 0,
    hierarchical: Annotated[
        str | None,
        typer.Option(help="Also fit this hypothesis hierarchically across flies with NUTS (e.g. 'x·r + w'; several minutes)."),
    ] = None,
    warmup: Annotated[int, typer.Option(help="NUTS warmup steps per chain (with --hierarchical).")] = 500,
    draws: Annotated[int, typer.Option(help="NUTS draws per chain (with --hierarchical).")] = 500,
) -> None:
    """Fit rule hypotheses to every fly (MAP), rank them by held-out likelihood, and write a report."""
    import time

    import jax

    from .. import datasets as named
    from ..data import load
    from ._analysis import analyse_choices
    from ._report import write_report

    t0 = time.perf_counter()
    if dataset in named.names():
        ds = named.load(dataset, path=data_dir)
    else:
        ds = load(dataset)
    typer.echo(f"{ds.sizes['subject']} subjects × up to {ds.sizes['trial']} trials; fitting …")
    analysis = analyse_choices(ds, hypotheses, key=jax.random.key(seed), heldout_fraction=heldout, steps=steps, in_sample=in_sample)
    population = None
    if hierarchical is not None:
        from .. import bayes
        from ._hierarchical import hierarchical_fit

        typer.echo(f"hierarchical NUTS fit of {hierarchical!r} across flies …")
        population = hierarchical_fit(
            ds, hierarchical, key=jax.random.key(seed + 1), method=bayes.NUTS(warmup=warmup, samples=draws, chains=2, target_accept=0.9, dense_mass=True)
        )
    paths = write_report(analysis, out, title=f"Choice-learning analysis: {dataset}", posterior=population)
    typer.echo(analysis.table().round(2).to_string())
    if population is not None:
        typer.echo("\n" + str(population))
    typer.echo(f"\n{time.perf_counter() - t0:.0f} s; wrote {paths['report']} and figures in {out}/")


def register(app: typer.Typer) -> None:
    app.command("fly")(fly)

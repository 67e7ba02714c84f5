"""Core CLI commands: demo, simulate, fit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._errors import DataError, ModelError


def _echo_paths(paths: dict) -> None:
    for name, p in paths.items():
        typer.echo(f"  {name:<13} {p}")


def demo(
    out: Annotated[Path, typer.Option(help="Folder for results.nc, coefficients.csv, summary.md and recovery.png.")] = Path(
        "plasticinfer-demo"
    ),
    seed: Annotated[int, typer.Option(help="Root random seed (data, model start and evaluation keys are split from it).")] = 0,
    steps: Annotated[int, typer.Option(help="L-BFGS steps.")] = 300,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Recover Oja's rule from synthetic recordings: 20 → 5 layer, half the neurons recorded, 10 % noise.

    Fits a full 27-term Taylor rule over (x, y, w) with unknown initial weights, prints true vs
    recovered coefficients and held-out R², and writes results to OUT.
    """
    import jax

    from ._recovery import oja_recovery

    typer.echo("Simulating Oja's rule (20 → 5, 8 trajectories × 300 trials, 10 % noise, half the neurons recorded)")
    typer.echo("and fitting a 27-term Taylor rule over (x, y, w) with unknown initial weights …")
    report = oja_recovery(key=jax.random.key(seed), steps=steps, progress=not quiet)
    typer.echo("")
    typer.echo(report.summary())
    paths = report.save(out)
    typer.echo(f"\nwrote to {out}/:")
    _echo_paths(paths)


def simulate_cmd(
    out: Annotated[Path, typer.Argument(help="netCDF file to write (neural dataset schema).")],
    rule: Annotated[str, typer.Option(help="True rule as an equation in x (pre), y (post), w (weight), e.g. 'x*y - y^2*w'.")] = "x*y - y^2*w",
    learning_rate: Annotated[float, typer.Option(help="Overall rate η multiplying the rule.")] = 0.005,
    n_pre: Annotated[int, typer.Option(help="Presynaptic neurons.")] = 20,
    n_post: Annotated[int, typer.Option(help="Postsynaptic neurons.")] = 5,
    trajectories: Annotated[int, typer.Option(help="Independent learning trajectories (e.g. sessions).")] = 8,
    trials: Annotated[int, typer.Option(help="Trials per trajectory.")] = 300,
    noise: Annotated[float, typer.Option(help="Noise s.d. as a fraction of the activity's s.d.")] = 0.1,
    recorded_fraction: Annotated[float, typer.Option(help="Fraction of output neurons recorded.")] = 0.5,
    init_scale: Annotated[float, typer.Option(help="Initial weights ~ init_scale·N(0,1).")] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Simulate recordings of a plastic feed-forward layer learning under a known rule."""
    import jax
    import jax.numpy as jnp

    from ._convert import activity_dataset
    from ._io import write_netcdf
    from ._networks import FeedForward
    from ._rules import TaylorRule
    from ._synthetic import GaussianInputs, make_activity_data

    true_rule = TaylorRule.from_equation(rule, learning_rate=learning_rate)
    k_in, k_data = jax.random.split(jax.random.key(seed))
    inputs = GaussianInputs.with_spectrum(k_in, jnp.linspace(2.0, 0.2, n_pre))
    syn = make_activity_data(
        true_rule,
        FeedForward(n_pre, n_post),
        inputs,
        key=k_data,
        n_trajectories=trajectories,
        n_trials=trials,
        noise=noise,
        recorded_fraction=recorded_fraction,
        init_scale=init_scale,
    )
    ds = activity_dataset(syn, description=f"simulated {true_rule.equation()} in a {n_pre}→{n_post} layer")
    write_netcdf(ds, out)
    typer.echo(f"wrote {out}: {trajectories} trajectories × {trials} trials, rule {true_rule.equation()}")


def fit_cmd(
    data: Annotated[Path, typer.Argument(help="netCDF dataset (see docs/data-format.md), e.g. from `plasticinfer simulate`.")],
    out: Annotated[Path, typer.Option(help="Folder for results.nc and summary.md.")] = Path("plasticinfer-fit"),
    variables: Annotated[str, typer.Option(help="Rule variables, letters from x (pre), y (post), w (weight), r (reward).")] = "xyw",
    max_power: Annotated[int, typer.Option(help="Maximum power of each variable.")] = 2,
    learning_rate: Annotated[float, typer.Option(help="Overall rate η of the fitted rule (fixed).")] = 0.005,
    steps: Annotated[int, typer.Option(help="L-BFGS steps.")] = 300,
    l1: Annotated[float, typer.Option(help="L1 penalty per observation on the Taylor coefficients.")] = 0.01,
    heldout: Annotated[float, typer.Option(help="Fraction of each trajectory's last trials held out for early stopping (0: none).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed for the model's starting weights.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fit a Taylor plasticity rule to a neural dataset (feed-forward layer, Gaussian noise, fitted initial weights)."""
    import jax

    from ._convert import activity_data
    from ._fit import fit
    from ._io import write_text
    from ._model import PlasticityModel
    from ._networks import FeedForward
    from ._observation import GaussianActivity
    from ._rules import TaylorRule

    from ._results_io import read_netcdf

    ds = read_netcdf(data)
    ds.attrs.setdefault("source_file", str(data))
    _validate(ds)
    if ds.attrs.get("kind") != "neural":
        raise DataError(
            f"{data}: `plasticinfer fit` fits neural datasets (attrs kind='neural'); this one is {ds.attrs.get('kind')!r}. "
            "For behaviour use `plasticinfer fly` or the Python API (ChoiceCircuit)."
        )
    td = activity_data(ds)
    n_pre = ds.sizes["pre"]
    n_post = ds.sizes["post"]
    rule = TaylorRule.full(tuple(variables), max_power, learning_rate=learning_rate)
    model = PlasticityModel.create(
        rule, FeedForward(n_pre, n_post), GaussianActivity(0.5), n_trajectories=td.n_trajectories, key=jax.random.key(seed)
    )
    validation = None
    if heldout > 0:
        td, validation = td.split_trials(heldout)
    result = fit(model, td, steps=steps, l1=l1, validation=validation, patience=50 if validation is not None else None, progress=not quiet)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "results.nc")
    text = (
        f"# Fit of {data}\n\n```\n{result.model.rule.equation(threshold=0.01)}\n\n"
        f"{result.coefficients.T.rename(columns={0: 'coefficient'}).to_string()}\n```\n"
    )
    write_text(text, out / "summary.md")
    typer.echo(result.model.rule.equation(threshold=0.01))
    if "true_equation" in ds.attrs:
        typer.echo(f"true rule (from the file's attrs): {ds.attrs['true_equation']}")
    typer.echo(f"wrote {out / 'results.nc'} and {out / 'summary.md'}")


def _validate(ds):
    """Run the data layer's validator when it is available."""
    try:
        from .data import validate
    except ImportError:  # pragma: no cover - data layer always ships with the package
        return ds
    return validate(ds)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("simulate")(simulate_cmd)
    app.command("fit")(fit_cmd)


__all__ = ["register", "ModelError"]

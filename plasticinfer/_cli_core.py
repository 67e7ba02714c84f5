"""Core CLI commands: demo, simulate, fit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._cli_common import (
    CHOICE_CODES_HELP,
    DATA_DIR_HELP,
    MAP_HELP,
    RESTARTS_HELP,
    CLIError,
    Fraction,
    NonNegative,
    PathOption,
    Rate,
    Seed,
    Size,
    echo_written,
    load_data,
    note,
    output_file,
    output_folder,
    path_value,
    show_bars,
    unit_interval,
)
from ._errors import DataError, FitDivergedError, ModelError


FIT_FILES = ("results.nc", "summary.md", "coefficients.png")
DEMO_FILES = ("results.nc", "coefficients.csv", "summary.md", "recovery.png")


def demo(
    out: Annotated[Path, PathOption("Folder for results.nc, coefficients.csv, summary.md and recovery.png.")] = Path(
        "plasticinfer-demo"
    ),
    seed: Annotated[int, Seed("Root random seed (data, model start and evaluation keys are split from it).")] = 0,
    steps: Annotated[int, Size("L-BFGS steps (at 300 the loss is still falling by about 1e-4 relative).")] = 500,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Recover Oja's rule from synthetic recordings: 20 → 5 layer, 2 of the 5 output neurons recorded, 10 % noise.

    Fits a full 27-term Taylor rule over (x, y, w) with unknown initial weights, prints true vs
    recovered coefficients and held-out R², and writes results to OUT.
    """
    output_folder(out, files=DEMO_FILES)
    import jax

    from ._io import write_together
    from ._recovery import oja_recovery

    typer.echo("Simulating Oja's rule (20 → 5, 8 trajectories × 300 trials, 10 % noise, 2 of the 5 outputs recorded)")
    typer.echo("and fitting a 27-term Taylor rule over (x, y, w) with unknown initial weights …")
    report = oja_recovery(key=jax.random.key(seed), steps=steps, progress=show_bars(quiet))
    interrupted = bool(report.fit.interrupted)
    typer.echo("")
    typer.echo(report.summary())  # says INTERRUPTED first when it was, as its summary.md does
    with write_together():
        paths = report.save(out)
    echo_written(out, paths)
    if interrupted:  # as `plasticinfer fit`: what there is, saved; then the exit status of a Ctrl-C
        typer.echo(f"interrupted: saved the best parameters so far to {out}", err=True)
        raise typer.Exit(130)


def simulate_cmd(
    out: Annotated[Path, typer.Argument(help="netCDF file to write (neural dataset schema).", parser=path_value)],
    rule: Annotated[str, typer.Option(help="True rule as an equation in x (pre), y (post), w (weight), e.g. 'x*y - y^2*w'.")] = "x*y - y^2*w",
    learning_rate: Annotated[float, Rate("Overall rate η multiplying the rule.")] = 0.005,
    n_pre: Annotated[int, Size("Presynaptic neurons.")] = 20,
    n_post: Annotated[int, Size("Postsynaptic neurons.")] = 5,
    trajectories: Annotated[int, Size("Independent learning trajectories (e.g. sessions).")] = 8,
    trials: Annotated[int, Size("Trials per trajectory.")] = 300,
    noise: Annotated[float, NonNegative("Noise s.d. as a fraction of the activity's s.d.")] = 0.1,
    recorded_fraction: Annotated[float, typer.Option(help="Fraction of output neurons recorded, in (0, 1].", callback=unit_interval)] = 0.5,
    init_scale: Annotated[float, NonNegative("Initial weights ~ init_scale·N(0,1).")] = 0.3,
    seed: Annotated[int, Seed("Random seed.")] = 0,
    plot: Annotated[bool, typer.Option(help="Also write OUT with suffix .png: weights and activity over trials.")] = True,
) -> None:
    """Simulate recordings of a plastic feed-forward layer learning under a known rule."""
    output_file(out, also=[out.with_suffix(".png")] if plot else [])
    import jax
    import jax.numpy as jnp

    from ._convert import activity_dataset
    from ._io import write_netcdf, write_together
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
    png = out.with_suffix(".png")
    with write_together():  # the .nc and its .png, or neither
        write_netcdf(ds, out)
        if plot:
            _trajectory_plot(syn, ds, png, title=f"simulated {true_rule.equation()} (η = {learning_rate:g})")
    typer.echo(f"wrote {out}: {trajectories} trajectories × {trials} trials, rule {true_rule.equation()}")
    if plot:
        typer.echo(f"wrote {png}")


def _trajectory_plot(syn, ds, path: Path, *, title: str) -> None:
    """Weights (norm per output neuron) and recorded activity over trials, first trajectory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ._io import write_figure

    w = np.asarray(syn.weights["w"])[0]  # (trial, post, pre)
    act = ds["activity"].values[0]  # (trial, post), NaN where not recorded
    trials = np.arange(w.shape[0])
    fig, (ax_w, ax_y) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for j, norm in enumerate(np.linalg.norm(w, axis=-1).T):
        ax_w.plot(trials, norm, label=f"neuron {j}")
    if w.shape[1] <= 8:
        ax_w.legend(fontsize=7)
    ax_w.set(xlabel="trial", ylabel="‖w‖ per output neuron (a.u.)", title="weights (trajectory 0)")
    rec = np.where(ds["recorded"].values[0])[0]
    for j in rec:
        ax_y.plot(trials, act[:, j], lw=0.6, label=f"neuron {j}")
    ax_y.set(xlabel="trial", ylabel=f"recorded activity ({ds.attrs.get('units_activity', 'a.u.')})", title="activity (trajectory 0)")
    if len(rec) <= 8:
        ax_y.legend(fontsize=7)
    fig.suptitle(title)
    write_figure(fig, path)
    plt.close(fig)


def _coefficient_plot(coefficients, path: Path, *, title: str) -> None:
    """Bar chart of fitted Taylor coefficients, one bar per term."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ._io import write_figure

    names = [str(c) for c in coefficients.columns]
    values = np.asarray(coefficients.iloc[0], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.32 * len(names) + 1.5), 3.6), constrained_layout=True)
    ax.bar(np.arange(len(names)), values, color=np.where(values >= 0, "tab:blue", "tab:red"))
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="coefficient θ (per unit η)", title=title)
    write_figure(fig, path)
    plt.close(fig)


def fit_cmd(
    data: Annotated[str, typer.Argument(help="Neural dataset: a netCDF file (from `plasticinfer simulate`), NWB or HDF5 (docs/data-format.md; MAT files hold behaviour only), or a named dataset.")],
    out: Annotated[Path, PathOption("Folder for results.nc, summary.md and coefficients.png.")] = Path("plasticinfer-fit"),
    map_: Annotated[Optional[list[str]], typer.Option("--map", help=MAP_HELP)] = None,
    choice_codes: Annotated[Optional[list[str]], typer.Option("--choice-codes", help=CHOICE_CODES_HELP)] = None,
    data_dir: Annotated[Optional[Path], PathOption(DATA_DIR_HELP)] = None,
    variables: Annotated[str, typer.Option(help="Rule variables, letters from x (pre), y (post), w (weight); recordings carry no reward.")] = "xyw",
    max_power: Annotated[int, Size("Maximum power of each variable.")] = 2,
    learning_rate: Annotated[float, Rate("Overall rate η of the fitted rule (fixed).")] = 0.005,
    steps: Annotated[int, Size("L-BFGS steps.")] = 300,
    restarts: Annotated[int, Size(RESTARTS_HELP)] = 4,
    l1: Annotated[float, NonNegative("L1 penalty per observation on the Taylor coefficients.")] = 0.01,
    heldout: Annotated[float, Fraction("Fraction of each trajectory's last trials held out for early stopping (0: none).")] = 0.0,
    seed: Annotated[int, Seed("Random seed for the model's starting weights and restarts.")] = 0,
    checkpoint_every: Annotated[Optional[int], Size("Save the fit's state to OUT/checkpoint.nc every N steps.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.nc.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Fit a Taylor plasticity rule to a neural dataset (feed-forward layer, Gaussian noise, fitted initial weights)."""
    bad = sorted(set(variables) - set("xywr"))
    if bad or not variables:
        raise CLIError(f"--variables takes letters from x, y, w (e.g. xyw); got {variables!r}.")
    if "r" in variables:
        raise CLIError(f"--variables {variables}: neural recordings carry no reward, so terms in r cannot be fitted; use letters from x, y, w.")
    if len(set(variables)) != len(variables):
        raise CLIError(f"--variables {variables}: each letter once (e.g. xyw).")
    output_folder(out, files=FIT_FILES + (("checkpoint.nc",) if checkpoint_every is not None or resume else ()))
    checkpoint = out / "checkpoint.nc"
    if resume and not checkpoint.is_file():
        raise CLIError(f"--resume: no checkpoint at {checkpoint}; run once with --checkpoint-every N and --out {out}.")

    import jax
    import numpy as np

    from ._convert import activity_data
    from ._fit import fit
    from ._optimise import never_moved
    from ._io import write_text, write_together
    from ._model import PlasticityModel
    from ._networks import FeedForward
    from ._observation import GaussianActivity
    from ._rules import TaylorRule

    if Path(data).suffix.lower() == ".mat" and not map_:  # the MAT loader's advice would be about choice and reward
        raise DataError(
            f"{data}: `plasticinfer fit` fits neural datasets, and MAT files load as behaviour (choice, reward) only. "
            "Save the recordings to HDF5 or NWB (docs/data-format.md), or build them with pi.data.neural_dataset."
        )
    ds = load_data(data, mapping=map_, choice_codes=choice_codes, data_dir=data_dir)
    if ds.attrs.get("kind") != "neural":
        raise DataError(
            f"{data}: `plasticinfer fit` fits neural datasets (attrs kind='neural'); this one is {ds.attrs.get('kind')!r}. "
            "For behaviour use `plasticinfer compare` or `plasticinfer fly`."
        )
    td = activity_data(ds)
    n_pre = ds.sizes["pre"]
    n_post = ds.sizes["post"]
    rule = TaylorRule.full(tuple(variables), max_power, learning_rate=learning_rate)
    k_model, k_fit = jax.random.split(jax.random.key(seed))
    model = PlasticityModel.create(
        rule, FeedForward(n_pre, n_post), GaussianActivity(0.5), n_trajectories=td.n_trajectories, key=k_model
    )
    validation = None
    if heldout > 0:
        td, validation = td.split_trials(heldout)
        if not np.asarray(validation.mask).any():
            raise CLIError(
                f"--heldout {heldout:g} leaves no validation trials in {data}: no trajectory has the 2 trials it takes to "
                "hold its last ones out and keep one to fit; use --heldout 0 (no early stopping) or data with more trials."
            )
    extra = {}
    if checkpoint_every is not None or resume:
        extra = {"checkpoint": checkpoint, "checkpoint_every": checkpoint_every or 50, "resume": resume}
    note(f"fitting a {len(rule.terms)}-term rule to {td.n_trajectories} trajectories × {td.n_trials} trials ({restarts} restarts × {steps} steps) …", quiet)
    result = fit(
        model, td, steps=steps, l1=l1, restarts=restarts, key=k_fit, validation=validation,
        patience=50 if validation is not None else None, progress=show_bars(quiet), **extra,
    )  # fmt: skip
    interrupted = bool(result.interrupted)
    diverged = np.asarray(result.diverged_at).reshape(-1)
    best = int(np.asarray(result.best_restart).reshape(-1)[0])
    if diverged[best] >= 0:
        raise FitDivergedError(
            f"the fit diverged (non-finite loss at step {int(diverged[best])} in the best restart; "
            f"{int((diverged >= 0).sum())} of {diverged.size} restarts diverged) with --learning-rate {learning_rate:g}; "
            "nothing was written. Lower --learning-rate (the rule's η) or check the data's scale."
        )
    history = np.asarray(result.loss_history).reshape(diverged.size, -1)[best]
    if not interrupted and never_moved(history):
        # the start is all the fit returns: with η far too large every step is rejected (the other restarts diverge)
        raise FitDivergedError(
            f"the fit never moved from its start (loss {history[0]:.6g} at every step of the best restart; "
            f"{int((diverged >= 0).sum())} of {diverged.size} restarts diverged) with --learning-rate {learning_rate:g}; "
            "nothing was written. A learning rate far too large makes every step diverge and one far too small moves "
            "nothing: change --learning-rate (the rule's η) or check the data's scale."
        )
    if (diverged >= 0).any():
        status_note = f"\n{int((diverged >= 0).sum())} of {diverged.size} restarts diverged and were discarded (lower --learning-rate?).\n"
    else:
        status_note = ""
    if not bool(np.all(result.converged)):
        status_note += f"\nConvergence: {result.convergence_message}\n"
    finished_before = interrupted and _finished_fit(out / "results.nc")
    if interrupted and (int(result.steps_run) == 0 or finished_before):
        # a Ctrl-C never replaces a finished fit in OUT, and a fit stopped before its first step has nothing to save
        kept = f"{out / 'results.nc'} (a finished fit) was kept" if finished_before else "nothing was written"
        typer.echo(
            f"interrupted after {int(result.steps_run)} steps: {kept}; this run's parameters were not saved "
            "(--checkpoint-every N saves a fit's state so that --resume can continue it).", err=True,
        )
        raise typer.Exit(130)
    equation = result.model.rule.equation(threshold=0.01)
    status = " (INTERRUPTED: best parameters so far)" if interrupted else ""
    text = (
        f"# Fit of {data}{status}\n\n```\n{equation}\n\n"
        f"{result.coefficients.T.rename(columns={0: 'coefficient'}).to_string()}\n```\n{status_note}"
    )
    with write_together():  # the three files, or none
        result.save(out / "results.nc")
        write_text(text, out / "summary.md")
        _coefficient_plot(result.coefficients, out / "coefficients.png", title=f"fitted rule, {data}{status}")
    typer.echo(equation)
    if "true_equation" in ds.attrs:
        typer.echo(f"true rule (from the file's attrs): {ds.attrs['true_equation']}")
    echo_written(out, {"results": out / "results.nc", "summary": out / "summary.md", "plot": out / "coefficients.png"},
                 own=("checkpoint.nc",) if checkpoint_every is not None or resume else ())
    if interrupted:
        typer.echo(f"interrupted: saved the best parameters so far to {out}", err=True)
        raise typer.Exit(130)


def _finished_fit(path) -> bool:
    """Whether ``path`` holds a results file of a fit that ran to its end (not interrupted)."""
    if not path.is_file():
        return False
    import h5py
    import numpy as np

    try:
        with h5py.File(path, "r") as f:
            if "interrupted" in f.attrs:
                return not int(np.asarray(f.attrs["interrupted"]).reshape(-1)[0])
            # an older results file (no such attribute) was written by a fit that ran to its end
            return np.asarray(f.attrs.get("created_by", b"")).astype(str).reshape(-1)[:1].tolist() == ["plasticinfer"]
    except (OSError, ValueError, TypeError, IndexError):
        return False


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("simulate")(simulate_cmd)
    app.command("fit")(fit_cmd)


__all__ = ["register", "ModelError"]

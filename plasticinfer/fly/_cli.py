"""`plasticinfer fly`: the choice-learning analysis of a named dataset or a behaviour file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .._cli_common import (
    CHOICE_CODES_HELP,
    DATA_DIR_HELP,
    MAP_HELP,
    RESTARTS_HELP,
    PathOption,
    Seed,
    Size,
    echo_written,
    load_data,
    note,
    output_folder,
    show_bars,
    in_command_line_terms,
    open_unit_interval,
    refuse_unused,
)
from ..compare._cli import AGENT_HELP, GRU_HELP, GRU_STEPS_HELP, POLICY_HELP, POPULATION_HELP, check_extra_options


FLY_FILES = ("report.md", "table.csv", "traces.png", "deviance.png", "decay.png", "posterior.png", "posterior.nc")


def fly(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Named dataset (rajagopalan2023, mohanta2022) or a behaviour data file in any supported format (.nc, .csv, .parquet, .mat, .nwb, .h5).")] = "rajagopalan2023",
    out: Annotated[Path, PathOption("Folder for report.md, scores.csv, coefficients.csv, the comparison tables and figures.")] = Path("plasticinfer-fly"),
    map_: Annotated[Optional[list[str]], typer.Option("--map", help=MAP_HELP)] = None,
    choice_codes: Annotated[Optional[list[str]], typer.Option("--choice-codes", help=CHOICE_CODES_HELP)] = None,
    data_dir: Annotated[Optional[Path], PathOption(DATA_DIR_HELP)] = None,
    hypotheses: Annotated[Optional[list[str]], typer.Option("--hypothesis", "-H", help="Hypotheses to fit (repeat), e.g. 'x*r + w'; default all standard ones.")] = None,
    heldout: Annotated[float, typer.Option(help="Fraction of each block's last trials held out, in (0, 1).", callback=open_unit_interval)] = 0.2,
    steps: Annotated[int, Size("L-BFGS steps per fit.")] = 50,
    restarts: Annotated[int, Size(RESTARTS_HELP)] = 4,
    split: Annotated[str, typer.Option(help="heldout (last part of each block, one fit per fly), dataset (the data's own train/test flies, one shared rule), kfold (k folds of flies, one shared rule).")] = "heldout",
    folds: Annotated[int, Size("Folds of flies for --split kfold.")] = 5,
    in_sample: Annotated[bool, typer.Option(help="Also fit on all trials (in-sample figures, as published).")] = True,
    control: Annotated[bool, typer.Option(help="Also run the held-out comparison of the decay pairs and the best rule on rewards shuffled within each fly (the null of every reward-learning claim in the report).")] = True,
    seed: Annotated[int, Seed("Random seed (MLP initialisation).")] = 0,
    agent: Annotated[Optional[list[str]], typer.Option("--agent", help=AGENT_HELP)] = None,
    policy: Annotated[Optional[list[str]], typer.Option("--policy", help=POLICY_HELP)] = None,
    gru: Annotated[Optional[list[int]], typer.Option("--gru", help=GRU_HELP.format(splits="dataset, kfold"))] = None,
    gru_steps: Annotated[int, Size(GRU_STEPS_HELP)] = 3000,
    population: Annotated[Optional[int], typer.Option("--population", metavar="DRAWS", help=POPULATION_HELP.format(splits="dataset, kfold"))] = None,
    hierarchical: Annotated[
        Optional[str],
        typer.Option(help="Also fit this hypothesis hierarchically across flies with NUTS (e.g. 'x*r + w'; several minutes)."),
    ] = None,
    warmup: Annotated[int, Size("NUTS warmup steps per chain (with --hierarchical).")] = 500,
    draws: Annotated[int, Size("NUTS draws per chain (with --hierarchical).")] = 500,
    target_accept: Annotated[float, typer.Option(help="NUTS target acceptance probability, in (0, 1) (with --hierarchical); raise it (e.g. 0.95) if the report warns of divergences.", callback=open_unit_interval)] = 0.9,
    checkpoint_every: Annotated[Optional[int], Size("With --hierarchical: save the NUTS state to OUT/nuts-checkpoint.npz every N iterations.")] = None,
    resume: Annotated[bool, typer.Option(help="With --hierarchical: continue the NUTS run from OUT/nuts-checkpoint.npz.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress lines or bars.")] = False,
) -> None:
    """Fit rule hypotheses to every fly (MAP), rank them by held-out likelihood, and write a report."""
    unused = {
        "heldout": (split != "heldout", "--heldout applies to --split heldout; dataset and kfold hold out whole flies"),
        "folds": (split != "kfold", "--folds applies to --split kfold"),
        "warmup": (hierarchical is None, "--warmup applies to the hierarchical NUTS fit; add --hierarchical HYPOTHESIS"),
        "draws": (hierarchical is None, "--draws applies to the hierarchical NUTS fit; add --hierarchical HYPOTHESIS"),
        "target_accept": (hierarchical is None, "--target-accept applies to the hierarchical NUTS fit; add --hierarchical HYPOTHESIS"),
        "gru_steps": (not gru, "--gru-steps applies to the --gru rows; add --gru UNITS"),
    }
    refuse_unused(ctx, {name: message for name, (ignored, message) in unused.items() if ignored})
    from ..compare._result import RESULT_FILES

    output_folder(out, files=[*RESULT_FILES.values(), *FLY_FILES])
    import time

    import jax

    from .._cli_common import CLIError
    from ._analysis import analyse_choices
    from ._report import write_report

    t0 = time.perf_counter()
    if split not in ("heldout", "dataset", "kfold"):
        raise CLIError(f"--split must be one of heldout, dataset, kfold; got {split!r}")
    checkpoint = out / "nuts-checkpoint.npz"
    if (checkpoint_every is not None or resume) and hierarchical is None:
        raise CLIError("--checkpoint-every and --resume checkpoint the hierarchical NUTS run; add --hierarchical HYPOTHESIS.")
    if resume and not checkpoint.is_file():
        raise CLIError(f"--resume: no checkpoint at {checkpoint}; run once with --hierarchical, --checkpoint-every N and --out {out}.")
    check_extra_options(agents=agent, policies=policy, gru=gru, population=population, subject_split=split != "heldout",
                        splits="dataset or kfold")
    if hierarchical is not None:  # read the equation now, as hierarchical_fit will, not after every MAP fit
        from .._errors import PlasticInferError
        from ._hypotheses import get_hypotheses as _get

        try:
            if len(_get([hierarchical])) != 1:
                raise CLIError(f"--hierarchical needs one rule hypothesis; {hierarchical!r} is a baseline")
        except CLIError:
            raise
        except PlasticInferError as err:
            raise CLIError(f"--hierarchical: {err}") from None
    options = {"restarts": restarts}
    if split != "heldout":
        from ..compare._splits import DatasetSplit, SubjectKFold

        options["split"] = DatasetSplit() if split == "dataset" else SubjectKFold(folds, seed=seed)
    ds = load_data(dataset, mapping=map_, choice_codes=choice_codes, data_dir=data_dir)
    if ds.attrs.get("kind") != "behaviour":
        raise CLIError(f"{dataset}: `plasticinfer fly` analyses behaviour (attrs kind='behaviour'); this one is {ds.attrs.get('kind')!r}. Use `plasticinfer fit` for neural data.")
    from ..compare._cli import extra_hypotheses
    from ._hypotheses import get_hypotheses

    extra = extra_hypotheses(get_hypotheses(hypotheses), ds, agents=agent, policies=policy, gru=gru, gru_steps=gru_steps,
                             population=population, subject_split=split != "heldout", seed=seed)  # fmt: skip
    names = hypotheses or "the standard hypotheses"
    note(f"{ds.sizes['subject']} subjects × up to {ds.sizes['trial']} trials; fitting {names} (all subjects at once, {steps} steps each) …", quiet)
    analysis = analyse_choices(
        ds, hypotheses, key=jax.random.key(seed), heldout_fraction=heldout, steps=steps, in_sample=in_sample, control=control,
        extra=extra or None, progress=show_bars(quiet), log=None if quiet else note, **options,
    )  # fmt: skip
    note(f"fits done in {time.perf_counter() - t0:.0f} s", quiet)
    posterior = None
    if hierarchical is not None:
        from .. import bayes
        from ._hierarchical import hierarchical_fit

        note(f"hierarchical NUTS fit of {hierarchical!r} across flies …", quiet)
        saving = checkpoint_every is not None or resume
        nuts_extra = {"checkpoint": checkpoint, "checkpoint_every": checkpoint_every or 50, "resume": resume} if saving else {}
        try:
            posterior = hierarchical_fit(
                ds, hierarchical, key=jax.random.key(seed + 1),
                method=bayes.NUTS(warmup=warmup, samples=draws, chains=2, target_accept=target_accept, dense_mass=True), **nuts_extra,
            )  # fmt: skip
        except KeyboardInterrupt:
            if saving:
                typer.echo(f"interrupted: the NUTS state is saved in {checkpoint}; rerun the same command with --resume to continue", err=True)
            raise
    from .._io import write_together

    with write_together():  # every file of the report, or none
        paths = write_report(analysis, out, title=f"Choice-learning analysis: {dataset}", posterior=posterior, advice=in_command_line_terms)
    from ._report import _short

    typer.echo(_short(analysis.table()).to_string())  # the report's own table (p-values to 4 decimals, not 0.00)
    if posterior is not None:
        typer.echo("\n" + in_command_line_terms(str(posterior)))
    typer.echo(f"\n{time.perf_counter() - t0:.0f} s; the report is {paths['report']}")
    from ._report import MANIFEST  # write_report's list of what it wrote

    echo_written(out, paths, own=(MANIFEST,) + (("nuts-checkpoint.npz",) if checkpoint_every is not None or resume else ()))


def register(app: typer.Typer) -> None:
    app.command("fly")(fly)

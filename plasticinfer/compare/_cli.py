"""`plasticinfer compare`: rank rule hypotheses on a dataset file or a named synthetic task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .._cli_common import (
    CHOICE_CODES_HELP,
    DATA_DIR_HELP,
    MAP_HELP,
    RESTARTS_HELP,
    Fraction,
    PathOption,
    Rate,
    Seed,
    Size,
    echo_written,
    note,
    output_folder,
    show_bars,
    open_unit_interval,
    refuse_unused,
)
from .._errors import ComparisonError, DataError

SPLITS = ("heldout", "future", "subject", "dataset", "kfold", "insample")
SYNTHETIC = ("choice", "activity")
DEFAULT_HYPOTHESES = {
    # the fly analysis's names for the same rules, so that the two commands' scores.csv agree in names too;
    # not x·r + x·w: that is the Rescorla–Wagner baseline
    "choice": ["x·r", "x·r + w", "x·(r−E[r])"],
    "activity": ["x·y", "x·y − y²·w", "x·y + w"],
}


def _split(name: str, heldout: float, calibration: float, folds: int, seed: int):
    from ._splits import DatasetSplit, HeldOutTrials, InSample, LeaveFutureOut, LeaveOneSubjectOut, SubjectKFold

    registry = {
        "heldout": lambda: HeldOutTrials(heldout),
        "future": lambda: LeaveFutureOut(1.0 - heldout),
        "subject": lambda: LeaveOneSubjectOut(calibration),
        "dataset": lambda: DatasetSplit(calibration_fraction=calibration),
        "kfold": lambda: SubjectKFold(folds, seed=seed, calibration_fraction=calibration),
        "insample": InSample,
    }
    if name not in registry:
        raise ComparisonError(f"--split must be one of {list(registry)}; got {name!r}")
    return registry[name]()


def _load(source: str, mapping, choice_codes, data_dir):
    """(validated dataset, kind) from a named dataset or any supported data file."""
    from .._cli_common import load_data

    ds = load_data(source, mapping=mapping, choice_codes=choice_codes, data_dir=data_dir)
    kind = ds.attrs.get("kind")
    if kind not in ("behaviour", "neural"):
        raise DataError(f"{source}: attrs kind must be 'behaviour' or 'neural' (docs/data-format.md); got {kind!r}")
    return ds, {"behaviour": "choice", "neural": "activity"}[kind]


AGENT_HELP = (
    "Also a classical agent (Q-learning family, docs/behaviour.md): a name such as 'DF + LT + OS', "
    "'Q (RW)', 'expected SARSA', or 'all' (repeat). Each comes with every --policy. Choice data with two cues."
)
POLICY_HELP = "Policies of the --agent rows: softmax, accept-reject (repeat; default both)."
GRU_HELP = (
    "Also a tiny GRU with this many units, the flexible ceiling (repeat; 1–64 units, tiny RNNs use 1–8). Needs a split that holds out "
    "whole subjects ({splits})."  # .format(splits=…): the command's own subject-level splits
)
GRU_STEPS_HELP = "Adam steps of each --gru fit (early-stopped on a validation part of the training subjects)."
POPULATION_HELP = (
    "Also every rule and agent as a population: its parameters vary between subjects as N(μ, σ²), unseen "
    "subjects predicted by the marginal likelihood over DRAWS Monte Carlo draws (64 is a good start). Needs a "
    "split that holds out whole subjects ({splits})."
)


def check_extra_options(*, agents, policies, gru, population, subject_split: bool, splits: str = "dataset, kfold or subject") -> None:
    """Refuse inconsistent --agent/--policy/--gru/--population options before any data are read; ``splits``: the
    command's subject-level splits, for the message."""
    from .._cli_common import CLIError
    from ._agents import select_rules

    if policies and not agents:
        raise CLIError("--policy chooses the policies of the --agent rows; add --agent NAME (or 'all')")
    unknown = [p for p in policies or () if p not in ("softmax", "accept-reject")]
    if unknown:
        raise CLIError(f"--policy must be softmax or accept-reject; got {unknown}")
    if agents:
        try:
            select_rules(list(agents))
        except ComparisonError as err:
            raise CLIError(f"--agent: {err}") from None
    for option, given in (("--gru", gru), ("--population", population)):
        if given and not subject_split:
            raise CLIError(f"{option} predicts subjects the fit never saw: add --split {splits}.")
    if population is not None and population < 2:
        raise CLIError(f"--population is the number of Monte Carlo draws (≥ 2; 64 is a good start); got {population}")
    bad = [h for h in gru or () if not 1 <= h <= 64]
    if bad:
        raise CLIError(f"--gru is a number of units between 1 and 64 (tiny RNNs use 1–8); got {bad}")


def extra_hypotheses(models: dict, ds, *, agents, policies, gru, gru_steps: int, population: int, subject_split: bool, seed: int) -> dict:
    """The hypotheses the --agent, --gru and --population options add to ``models`` (equations already parsed); ``ds`` a
    dataset or :class:`TrialData`.

    Shared by ``plasticinfer compare`` and ``plasticinfer fly`` so both add the same rows.
    """
    import jax

    from .._trial_data import TrialData
    from ._agents import classical_agents
    from ._gru import GRUHypothesis
    from ._hypotheses import as_populations

    check_extra_options(agents=agents, policies=policies, gru=gru, population=population, subject_split=subject_split)
    extra: dict = {}
    td = ds if isinstance(ds, TrialData) else TrialData.from_dataset(ds, validate=False) if (agents or population) else None
    if agents:
        extra.update(classical_agents(td, policies=tuple(policies or ("softmax", "accept-reject")), rules=list(agents)))
    if population:
        extra.update(as_populations({**models, **extra}, td, n_draws=population, key=jax.random.key(seed)))
    for h in gru or ():
        extra[f"GRU ({h} units)"] = GRUHypothesis(f"GRU ({h} units)", hidden=h, steps=gru_steps, seed=seed)
    return extra


def _synthetic(name: str, subjects: int, seed: int):
    import jax
    import jax.numpy as jnp

    from .._networks import FeedForward
    from .._rules import TaylorRule, oja
    from .._synthetic import GaussianInputs, make_activity_data, make_choice_data

    key = jax.random.key(seed)
    if name == "choice":
        truth = TaylorRule.from_terms({"x*r": 0.3, "w": -0.1})
        syn = make_choice_data(truth, key=key, n_subjects=subjects, inverse_temperature=1.0)
        return syn.data, syn.block, [f"sim{i}" for i in range(subjects)], truth.equation()
    if name == "activity":
        k_in, k_data = jax.random.split(key)
        truth = oja(1.0)
        truth = TaylorRule(truth.terms, truth.coeffs, learning_rate=0.01)
        inputs = GaussianInputs.with_spectrum(k_in, jnp.linspace(2.0, 0.2, 8))
        syn = make_activity_data(truth, FeedForward(8, 3), inputs, key=k_data, n_trajectories=subjects, n_trials=200, noise=0.1, init_scale=0.3)
        return syn.data, None, [f"sim{i}" for i in range(subjects)], truth.equation()
    raise ComparisonError(f"--synthetic must be one of {list(SYNTHETIC)}; got {name!r}")


def compare_command(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Argument(help="A named dataset (rajagopalan2023, mohanta2022) or a data file in any supported format (netCDF, CSV/Parquet, MAT, NWB, HDF5; docs/data-format.md).")] = None,
    synthetic: Annotated[Optional[str], typer.Option(help="Use a named synthetic task instead of a file: 'choice' (two-odour task, 3 blocks × 80 trials, true rule 0.3·x·r − 0.1·w) or 'activity' (Oja in an 8→3 layer).")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help=MAP_HELP)] = None,
    choice_codes: Annotated[Optional[list[str]], typer.Option("--choice-codes", help=CHOICE_CODES_HELP)] = None,
    data_dir: Annotated[Optional[Path], PathOption(DATA_DIR_HELP)] = None,
    hypothesis: Annotated[Optional[list[str]], typer.Option("--hypothesis", "-H", help="A rule to compare, as an equation in x, y, w, r, e.g. 'x*r + w' or 'x*(r-E\\[r]) + w' (repeat the option). Terms without a number start at 0. Default: x·r, x·r + w, x·(r−E\\[r]) for choices; x·y, x·y − y²·w, x·y + w for activity (the fly analysis's names).")] = None,
    split: Annotated[str, typer.Option(help="heldout (last part of each block), future (leave-future-out), subject (leave-one-subject-out), dataset (the data's own train/test subjects), kfold (k folds of subjects), insample. Subject-level splits fit one shared rule.")] = "heldout",
    folds: Annotated[int, Size("Folds of subjects for --split kfold.")] = 5,
    heldout: Annotated[float, typer.Option(help="Fraction held out (of each block for 'heldout', of each session's end for 'future'), in (0, 1).", callback=open_unit_interval)] = 0.25,
    calibration: Annotated[float, Fraction("For 'subject': fraction of the held-out subject's first trials used to fit its initial weights.")] = 0.0,
    shared: Annotated[bool, typer.Option("--shared/--per-subject", help="One rule for all subjects, or one per subject (default).")] = False,
    baselines: Annotated[bool, typer.Option(help="Add the baselines (coin flip, base rate, Rescorla–Wagner; activity: mean activity, static weights).")] = True,
    steps: Annotated[int, Size("L-BFGS steps per fit (as pi.compare.compare).")] = 300,
    restarts: Annotated[int, Size(RESTARTS_HELP)] = 4,
    agent: Annotated[Optional[list[str]], typer.Option("--agent", help=AGENT_HELP)] = None,
    policy: Annotated[Optional[list[str]], typer.Option("--policy", help=POLICY_HELP)] = None,
    gru: Annotated[Optional[list[int]], typer.Option("--gru", help=GRU_HELP.format(splits="dataset, kfold, subject"))] = None,
    gru_steps: Annotated[int, Size(GRU_STEPS_HELP)] = 3000,
    population: Annotated[Optional[int], typer.Option("--population", metavar="DRAWS", help=POPULATION_HELP.format(splits="dataset, kfold, subject"))] = None,
    learning_rate: Annotated[float, Rate("Rate η of activity rules (choice rules use η = 1).")] = 0.01,
    subjects: Annotated[int, Size("Subjects of the synthetic task.")] = 8,
    seed: Annotated[int, Seed("Random seed (synthetic data; initial weights of activity models).")] = 0,
    out: Annotated[Path, PathOption("Folder for what ComparisonResult.save writes (comparison.csv, comparison.md, per_subject.csv, comparison.png, …).")] = Path("plasticinfer-compare"),
    quiet: Annotated[bool, typer.Option(help="No progress lines or bars.")] = False,
) -> None:
    """Rank rule hypotheses by held-out log-likelihood, per subject and overall, against baselines."""
    if data is None and synthetic is None:
        raise ComparisonError("give the data to compare on: a dataset (a name or a file) or --synthetic choice|activity")
    if data is not None and synthetic is not None:
        raise ComparisonError("give either a dataset (a name or a file) or --synthetic choice|activity, not both")
    if synthetic is not None and synthetic not in SYNTHETIC:
        raise ComparisonError(f"--synthetic must be one of {list(SYNTHETIC)}; got {synthetic!r}")
    if split not in SPLITS:
        raise ComparisonError(f"--split must be one of {list(SPLITS)}; got {split!r}")
    if synthetic is not None and (map_ or choice_codes or data_dir):
        raise ComparisonError("--map, --choice-codes and --data-dir describe a dataset; --synthetic data needs none of them")
    if synthetic == "activity" and (agent or gru):
        raise ComparisonError("--agent and --gru model choices; --synthetic activity is neural activity")
    subject_level = ("subject", "dataset", "kfold")
    unused = {
        "calibration": (split not in subject_level, "--calibration applies to --split subject, dataset or kfold (a held-out subject's first trials)"),
        "heldout": (split not in ("heldout", "future"), "--heldout applies to --split heldout or future; the other splits hold out whole subjects or none"),
        "folds": (split != "kfold", "--folds applies to --split kfold"),
        "subjects": (synthetic is None, "--subjects sets the number of subjects of --synthetic data; a dataset has its own"),
        "gru_steps": (not gru, "--gru-steps applies to the --gru rows; add --gru UNITS"),
    }
    refuse_unused(ctx, {name: message for name, (ignored, message) in unused.items() if ignored})
    if split == "kfold" and folds < 2:
        raise ComparisonError(f"--folds {folds}: --split kfold needs at least 2 folds of subjects")
    check_extra_options(agents=agent, policies=policy, gru=gru, population=population, subject_split=split in ("subject", "dataset", "kfold"))
    from ._result import RESULT_FILES

    output_folder(out, files=RESULT_FILES.values())
    import jax

    from .._io import write_together
    from ._compare import compare
    from ._parse import parse_hypothesis

    truth = None
    if data is not None:
        td, kind = _load(data, map_, choice_codes, data_dir)
        blocks = names = None
        what = f"{td.sizes['subject']} subjects ({data})"
    else:
        td, blocks, names, truth = _synthetic(synthetic, subjects, seed)
        kind = synthetic
        what = f"{td.n_trajectories} subjects (synthetic {synthetic}, true rule {truth})"
    equations = hypothesis or DEFAULT_HYPOTHESES[kind]
    if kind == "choice":  # known once the data are read: choice rules learn at η = 1 (θ carries the rate)
        refuse_unused(ctx, {"learning_rate": "--learning-rate sets η of activity rules; choice rules use η = 1 (their "
                                             "coefficients carry the rate), so it would be ignored here"})
    rate = 1.0 if kind == "choice" else learning_rate
    hyps = {eq: parse_hypothesis(eq, learning_rate=rate) for eq in equations}
    if kind != "choice" and (agent or gru):
        raise ComparisonError(f"--agent and --gru model choices; {data} holds neural activity")
    subject_split = split in ("subject", "dataset", "kfold")
    hyps.update(extra_hypotheses(hyps, td, agents=agent, policies=policy, gru=gru, gru_steps=gru_steps,
                                 population=population, subject_split=subject_split, seed=seed))  # fmt: skip
    if subject_split and not shared:
        shared = True
        note(f"--split {split} fits one shared rule (--shared)", quiet)
    note(f"comparing {list(hyps)} on {what}", quiet)
    result = compare(
        hyps,
        td,
        split=_split(split, heldout, calibration, folds, seed),
        blocks=blocks,
        per_subject=not shared,
        baselines=baselines,
        steps=steps,
        restarts=restarts,
        key=jax.random.fold_in(jax.random.key(seed), 1),
        subject_names=names,
        progress=show_bars(quiet),
        log=None if quiet else note,
    )
    with write_together():  # every file, or none (and the summary only once they are written)
        paths = result.save(out)
    typer.echo("")
    typer.echo(result.summary())
    echo_written(out, paths)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)


__all__ = ["compare_command", "register"]

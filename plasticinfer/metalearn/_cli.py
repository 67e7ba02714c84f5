"""``plasticinfer discover feedback-alignment``: meta-learn a local rule that lets random-feedback networks learn online."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._cli_common import NonNegative, PathOption, Rate, Seed, Size, echo_written, non_negative, output_folder, show_bars
from .._errors import ModelError


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ModelError(f"{what} must be comma-separated integers, e.g. '100,80'; got {text!r}") from None
    if not values:
        raise ModelError(f"{what} is empty; give comma-separated integers, e.g. '100,80'")
    if min(values) < 0 or (what == "--hidden" and min(values) < 1):
        raise ModelError(f"{what} needs {'positive widths' if what == '--hidden' else 'digits 0-9'}; got {text!r}")
    return values


def feedback_alignment_cmd(
    out: Annotated[
        Path, PathOption("Folder for results.nc (netCDF), summary.md and learning_curves.png.")
    ] = Path("plasticinfer-output/feedback-alignment"),
    steps: Annotated[int, Size("Meta-gradient steps (each differentiates through META_BATCH online episodes).")] = 300,
    meta_batch: Annotated[int, Size("Episodes per meta-step, vmapped.")] = 16,
    l1: Annotated[float, NonNegative("L1 penalty on the rule's coefficients (larger → fewer surviving terms).")] = 0.03,
    meta_lr: Annotated[float, Rate("Adam learning rate of the meta-optimiser (meta-gradient clipped to norm 1).")] = 1e-2,
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated; input is 64 pixels, output N_WAY classes.")] = "100,80",
    n_way: Annotated[int, Size("Classes per episode.")] = 5,
    k_shot: Annotated[int, Size("Training images per class, presented one at a time.")] = 10,
    n_query: Annotated[int, Size("Held-aside query images per class used to score an episode.")] = 10,
    heldout: Annotated[
        str, typer.Option(help="Digits held out of meta-training and used only for evaluation (≥ N_WAY of them).")
    ] = "5,6,7,8,9",
    learning_rate: Annotated[float, Rate("Overall plasticity rate η multiplying every rule.")] = 0.05,
    eval_episodes: Annotated[int, Size("Held-out episodes for the final accuracies (≥ 100 recommended).")] = 200,
    tune_episodes: Annotated[int, Size("Meta-training episodes used to tune the baselines' learning rates.")] = 128,
    validation_episodes: Annotated[
        int, Size("Fixed meta-training-class episodes that pick the best coefficients during meta-training.")
    ] = 64,
    eval_every: Annotated[int, Size("Validate (and update the progress bar) every this many meta-steps.")] = 25,
    threshold: Annotated[
        float,
        typer.Option(
            callback=non_negative,
            help="A term 'survives' the L1 penalty if |θ| exceeds this (coefficients the penalty has killed "
            "hover within about ±META_LR of zero). The rule pruned to its survivors is evaluated too."
        ),
    ] = 0.02,
    seed: Annotated[int, Seed("Root random seed; tuning, meta-training and evaluation keys are split from it.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Meta-learn a sparse local plasticity rule that lets a network with fixed random feedback learn online.

    Few-shot digit classification (scikit-learn's bundled 8×8 digits, no download): each episode
    shows K_SHOT images of each of N_WAY digits one at a time to a fresh 64 → hidden → N_WAY network,
    then scores it on query images. The rule ΔW = η·Σθ_k·F_k combines ten local terms (the
    feedback-alignment pseudo-gradient e_{l+1}·y_lᵀ, error-Hebbian e_{l+1}·e_lᵀ, Oja, Hebb, decay, …);
    the θ are meta-learned on digits outside HELDOUT with an L1 penalty. Online backprop and plain
    feedback alignment (learning rates tuned on the same digits) are evaluated alongside it on the
    HELDOUT digits.

    Takes about 2–4 minutes on 2 CPU cores at the default size. Example:

        plasticinfer discover feedback-alignment --steps 300 --seed 0 --out fa-run
    """
    hidden_sizes, heldout_classes = _ints(hidden, "--hidden"), _ints(heldout, "--heldout")
    output_folder(out, files=("results.nc", "summary.md", "learning_curves.png"))
    import jax

    from .._io import write_together
    from ._report import feedback_alignment_experiment

    report = feedback_alignment_experiment(
        key=jax.random.key(seed),
        hidden=hidden_sizes,
        n_way=n_way,
        k_shot=k_shot,
        n_query=n_query,
        heldout_classes=heldout_classes,
        learning_rate=learning_rate,
        steps=steps,
        meta_batch=meta_batch,
        l1=l1,
        meta_learning_rate=meta_lr,
        eval_episodes=eval_episodes,
        tune_episodes=tune_episodes,
        validation_episodes=validation_episodes,
        eval_every=eval_every,
        threshold=threshold,
        progress=show_bars(quiet),
    )
    typer.echo(report.summary())
    with write_together():  # every file, or none
        paths = report.save(out)
    echo_written(out, paths)


def register(discover_app: typer.Typer) -> None:
    discover_app.command("feedback-alignment")(feedback_alignment_cmd)

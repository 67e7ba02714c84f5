"""`plasticinfer discover families`: families of co-active rules in a recurrent E/I spiking network (NPE) and their memory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._cli_common import NonNegative, PathOption, Rate, Seed, Size, at_least, output_folder, unit_interval

_TYPES = ("ee", "ei", "ie", "ii")


def families(
    n_exc: Annotated[int, Size("Excitatory neurons.")] = 160,
    n_inh: Annotated[int, Size("Inhibitory neurons.")] = 40,
    p: Annotated[float, typer.Option(callback=unit_interval, help="Connection probability (weights scaled to keep each neuron's mean recurrent input).")] = 0.2,
    plastic: Annotated[str, typer.Option(help="Comma-separated plastic synapse types among ee, ei, ie, ii (pre→post).")] = "ee,ei,ie,ii",
    duration: Annotated[float, Rate(help="Seconds simulated per rule (a multiple of --segment).")] = 1.0,
    transient: Annotated[float, NonNegative(help="Initial seconds left out of the statistics.")] = 0.2,
    segment: Annotated[float, Rate(help="Seconds per counting segment (and per pattern presentation).")] = 0.1,
    simulations: Annotated[int, typer.Option(callback=at_least(20), help="Prior draws simulated to train the posterior (≥ 20).")] = 256,
    predictive: Annotated[int, Size(help="Posterior and prior draws simulated for the predictive check.")] = 64,
    memory: Annotated[int, NonNegative(help="Rules per group in the familiarity probe (at least 2); 0 = skip it.")] = 8,
    patterns: Annotated[int, Size(help="Patterns in the familiarity probe (half familiarised).")] = 16,
    delay: Annotated[float, NonNegative(help="Seconds between familiarisation and test (plasticity on).")] = 1.0,
    batch: Annotated[int, Size(help="Simulations per vmapped batch.")] = 32,
    seed: Annotated[int, Seed("Root random seed.")] = 0,
    out: Annotated[Path, PathOption("Folder for families.nc, summary.md; created if missing.")] = Path("discover-families"),
    quiet: Annotated[bool, typer.Option(help="Print only the output paths.")] = False,
) -> None:
    """Infer the family of co-active E→E, E→I, I→E, I→I pair rules that keep an E/I network plausible, and test it for memory.

    Neural posterior estimation over 6 parameters per plastic type (α, β, γ, κ, τ_pre, τ_post),
    conditioned on plausible rates, irregular firing and bounded weights; then the fraction of
    posterior vs prior draws that meet every constraint, and a familiarity probe (readout on
    after-familiarisation responses) against shuffled labels, no plasticity, prior rules and
    speed-matched hand-written rules.
    """
    output_folder(out, files=("families.nc", "summary.md"))
    import jax

    from .._io import write_text, write_together
    from ._memory import FamiliarityProtocol
    from ._plausibility import FamilyTask
    from ._rule_families import run_families

    if memory == 1:  # the probe compares rules within a group: one cannot be compared (it ran 2 without a word)
        raise typer.BadParameter("the familiarity probe needs at least 2 rules per group; give 2 or more, or 0 to skip it",
                                 param_hint="--memory")
    types = tuple(t.strip() for t in plastic.split(",") if t.strip())
    bad = [t for t in types if t not in _TYPES]
    if bad or not types:
        raise typer.BadParameter(f"unknown synapse types {bad or types}; use a comma-separated subset of {','.join(_TYPES)}", param_hint="--plastic")
    # a DiscoveryError (e.g. no segment left after the transient) is bad input: exit 2, and the output folder is removed
    k_net, k_run = jax.random.split(jax.random.key(seed))
    task = FamilyTask.create(k_net, n_exc=n_exc, n_inh=n_inh, p=p, plastic=types, duration=duration, transient=transient, segment=segment)
    protocol = FamiliarityProtocol(n_patterns=patterns, delay=delay, warmup=min(0.5, duration), repeats=3)
    if not quiet:
        typer.echo(f"E/I network {n_exc}/{n_inh}, plastic {','.join(types)}; {simulations} simulations of {duration:g} s …")
    res = run_families(
        k_run, task, n_simulations=simulations, n_predictive=predictive, memory=memory > 0, n_memory=max(memory, 2),  # unused when memory is 0
        protocol=protocol, batch_size=batch,
    )  # fmt: skip
    with write_together():  # both files, or neither
        paths = {"families": res.save(out / "families.nc"), "summary": write_text(res.markdown(), out / "summary.md")}
    if not quiet:
        typer.echo(res.check.markdown())
        if res.memory is not None:
            typer.echo(res.memory.verdict)
    for name, path in paths.items():
        typer.echo(f"  {name:<10} {path}")


def register(discover_app: typer.Typer) -> None:
    """Attach `families` to the `plasticinfer discover` group (wired in cli.py by the integrator)."""
    discover_app.command("families")(families)


__all__ = ["register", "families"]

"""The `plasticinfer` command line. Each command is a thin wrapper over the Python API."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="plasticinfer",
    help="Infer synaptic plasticity rules from data, and discover rules that give networks a function.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

discover_app = typer.Typer(
    help="Discover plasticity rules that carve a function into a network.",
    no_args_is_help=True,
)
app.add_typer(discover_app, name="discover")


@app.callback()
def _setup() -> None:
    """Infer synaptic plasticity rules from data, and discover rules that give networks a function."""
    import jax

    jax.config.update("jax_enable_x64", True)

# --- core engine commands ---
from ._cli_core import register as _register_core  # noqa: E402

_register_core(app)

from .fly._cli import register as _register_fly  # noqa: E402

_register_fly(app)

# --- data layer commands ---
from .data._cli import datasets_app, inspect_command  # noqa: E402

app.add_typer(datasets_app, name="datasets")
app.command("inspect")(inspect_command)

# --- bayes and comparison commands ---
from .compare._cli import register as _register_compare  # noqa: E402

_register_compare(app)

# --- discovery commands (attach to discover_app) ---
from .discovery._cli import register as _register_discovery  # noqa: E402

_register_discovery(discover_app)

# --- meta-learning commands (attach to discover_app) ---
from .metalearn._cli import register as _register_metalearn  # noqa: E402

_register_metalearn(discover_app)


def main() -> None:
    """Entry point: run the app, turning plasticinfer's own errors into one clear line and exit code 2."""
    from ._errors import PlasticInferError

    try:
        app(standalone_mode=False)
    except PlasticInferError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()

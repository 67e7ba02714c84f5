"""The `plasticinfer` command line. Each command is a thin wrapper over the Python API."""

from __future__ import annotations

import os
import sys
import warnings

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


_STATE = {"debug": False}


@app.callback()
def _setup(
    debug: bool = typer.Option(False, "--debug", envvar="PLASTICINFER_DEBUG", help="Show the full traceback of any error."),
) -> None:
    """Infer synaptic plasticity rules from data, and discover rules that give networks a function."""
    import jax

    _STATE["debug"] = debug
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

# --- rule families in recurrent E/I spiking networks (attach to discover_app) ---
from .discovery._cli_families import register as _register_families  # noqa: E402

_register_families(discover_app)


def _debug(argv: list[str]) -> bool:
    env = os.environ.get("PLASTICINFER_DEBUG", "").strip().lower()
    return _STATE["debug"] or "--debug" in argv or env not in ("", "0", "false", "no")


def _fail(message: str, code: int) -> int:
    from ._cli_common import remove_created_folders

    remove_created_folders()
    typer.secho(message, fg=typer.colors.RED, err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    Usage errors (unknown option or command, missing argument, a value of the wrong type or out
    of range) and every `PlasticInferError` print one line and return 2; an unexpected exception
    prints one line saying it is a bug and returns 1 (``--debug`` or ``PLASTICINFER_DEBUG=1``
    re-raises it for the full traceback); Ctrl-C returns 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        return _run(argv)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Library warnings as one `warning: …` line on stderr (no source line), safe in logs; Python advice in them
    reads as the options that do it."""
    from ._cli_common import in_command_line_terms

    typer.echo("warning: " + in_command_line_terms(" ".join(str(message).split())), err=True)


def _run(argv: list[str]) -> int:
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
    from typer.exceptions import Abort, Exit

    from ._cli_common import remove_created_folders
    from ._errors import PlasticInferError

    try:
        code = app(args=argv, prog_name="plasticinfer", standalone_mode=False)
        if code == 130:  # typer turns KeyboardInterrupt into Exit(130), returned as the command's value
            return _fail("interrupted", 130)
        if isinstance(code, int):
            return code
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except NoArgsIsHelpError as e:
        typer.echo(e.ctx.get_help() if e.ctx is not None else e.format_message())
        return 0
    except UsageError as e:
        ctx = e.ctx
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return _fail(f"error: {e.format_message()}{where}", e.exit_code)
    except ClickException as e:
        return _fail(f"error: {e.format_message()}", e.exit_code)
    except Exit as e:
        return e.exit_code
    except Abort:
        return _fail("interrupted", 130)
    except PlasticInferError as e:
        if _debug(argv):
            remove_created_folders()
            raise
        from ._cli_common import in_command_line_terms

        return _fail("error: " + in_command_line_terms(" ".join(str(e).split("\n"))), 2)
    except Exception as e:  # noqa: BLE001 - the one place unexpected errors are reported
        if _debug(argv):
            remove_created_folders()
            raise
        text = " ".join(str(e).split())
        return _fail(
            f"internal error (a bug in plasticinfer, please report it): {type(e).__name__}: {text[:300]}. "
            "Rerun with --debug for the traceback.",
            1,
        )
    return 0


class _ReaderMayLeave:
    """``sys.stdout``/``sys.stderr`` for the console script: when its reader goes away (``plasticinfer … | head -1``), the rest of
    the output is discarded and the command finishes its work (results files included) instead of dying on
    ``BrokenPipeError`` mid-way."""

    def __init__(self, stream):
        self._stream = stream

    def _gone(self) -> None:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())  # the interpreter's last flush too
        except (OSError, ValueError):
            pass
        self._stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main() -> None:
    """Console entry point (the `plasticinfer` script)."""
    from ._interrupt import install

    install()  # a Ctrl-C is never lost; a second one quits at once
    if sys.stdout is not None:  # None: started with stdout closed (`>&-`); click then writes nothing
        sys.stdout = _ReaderMayLeave(sys.stdout)
    if sys.stderr is not None:  # `2>&1 | head`: progress bars and warnings go to stderr
        sys.stderr = _ReaderMayLeave(sys.stderr)
    try:
        code = run()
    except Exception as e:  # only under --debug, where run() re-raises: the traceback, and the exit code without it
        import traceback

        from ._errors import PlasticInferError

        traceback.print_exc()
        code = 2 if isinstance(e, PlasticInferError) else 1
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    if code == 130:
        # Leave without tearing down JAX/XLA's threads mid-computation (that can segfault).
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()

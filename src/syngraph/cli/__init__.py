"""The ``syngraph`` command line (typer + rich)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from syngraph import __version__
from syngraph.config import absolute_path

app = typer.Typer(
    name="syngraph",
    help="From a dense volume-EM segmentation to a synaptic wiring diagram.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Write and check syngraph.toml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console(stderr=True)



WorkDir = Annotated[Path, typer.Option("--wd", "-w", help="working directory (holds syngraph.toml)",
                                       callback=absolute_path)]
Scheduler = Annotated[
    str | None,
    typer.Option(help='"local" (Dask LocalCluster), "serial", "slurm" (jobs from [compute.slurm] via '
                      'dask-jobqueue), or a scheduler address tcp://host:port'),
]
Workers = Annotated[int | None, typer.Option(help="worker processes for a local cluster (default: cores)")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="discard earlier results of this step")]

_shown_type = typer.core.TyperOption.display_type_rich


def _flag_shows_no_type(param: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    """Help shows flags as flags: typer prints ``<bool>`` after every ``--flag``, which takes no value."""
    return None if param.is_flag else _shown_type(param, ctx)


typer.core.TyperOption.display_type_rich = _flag_shows_no_type  # type: ignore[method-assign]


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"syngraph {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="print the version")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show the full traceback of an error")] = False,
) -> None:
    pass


def _workdir_arg(args: list[str]) -> str | None:
    """The ``--wd`` of the command line (what an environment error is about), if given."""
    for i, a in enumerate(args):
        if a in ("--wd", "-w") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--wd="):
            return a[len("--wd="):]
    return None


def main() -> None:
    """Entry point: run the app and turn every error into one clear message (exit codes in
    :mod:`syngraph.errors`); ``--debug`` anywhere on the line shows the traceback instead."""
    # register the command modules
    from syngraph.cli import commands  # noqa: F401
    from syngraph.errors import explain

    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except KeyboardInterrupt:
        if debug:
            raise
        console.print("[bold red]interrupted:[/] finished tasks are kept; run the same command again to resume")
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        from rich.markup import escape

        code, message = explain(exc, _workdir_arg(sys.argv[1:]))
        # escape: messages name config sections like [layers], which rich would read as markup
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(code)

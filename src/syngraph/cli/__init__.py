"""The ``syngraph`` command line (typer + rich)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from syngraph import __version__

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

WorkDir = Annotated[Path, typer.Option("--wd", "-w", help="working directory (holds syngraph.toml)")]
Scheduler = Annotated[
    str | None,
    typer.Option(help='"local" (Dask LocalCluster), "serial", or a scheduler address tcp://host:port'),
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
) -> None:
    pass


def main() -> None:
    """Entry point: run the app and turn known errors into one clear message."""
    # register the command modules
    from syngraph.cli import commands  # noqa: F401
    from syngraph.errors import USER_ERRORS

    try:
        app()
    except USER_ERRORS as exc:
        from rich.markup import escape

        # escape: messages name config sections like [layers], which rich would read as markup
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)

"""The `dicombrowser` command line: a thin shell over DICOMBrowserLogic.

The global options choose the database; each area registers its subcommands from its own
module (database_commands, loading_commands, compare_commands, network_commands,
gui_commands, export_commands), so the shell stays small and every command is a call into the same logic the
GUI and tests use.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from ..config import DATABASE_ENV
from ..errors import DICOMBrowserError

if TYPE_CHECKING:
    from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic


@dataclass
class CLIContext:
    """What the global options decided; the logic is created on first use."""

    database_dir: str | None = None
    temporary: bool = False
    _logic: "DICOMBrowserLogic | None" = field(default=None, repr=False)

    def logic(self) -> "DICOMBrowserLogic":
        if self._logic is None:
            from DICOMBrowser.DICOMBrowser import DICOMBrowserLogic

            self._logic = DICOMBrowserLogic(database_dir=self.database_dir, temporary=self.temporary)
        return self._logic

    def close(self) -> None:
        if self._logic is not None:
            self._logic.close()
            self._logic = None


pass_cli = click.make_pass_decorator(CLIContext)


#: set by a command whose process may end without the interpreter's teardown (see `main`)
_quick_exit = False


def allow_quick_exit() -> None:
    """Called by batch commands (convert, load) once their outputs are written and closed."""
    global _quick_exit
    _quick_exit = True


class _ProjectGroup(click.Group):
    """Turns project errors into click errors: one line on stderr, exit code 1, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DICOMBrowserError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=_ProjectGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database",
    "database_dir",
    envvar=DATABASE_ENV,
    type=click.Path(file_okay=False),
    help=f"Database folder (default: ${DATABASE_ENV}, else a per-user folder).",
)
@click.option(
    "--temporary",
    is_flag=True,
    help="Use a throw-away database for this command only (open a folder without a database).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="dicombrowser")
@click.pass_context
def cli(ctx: click.Context, database_dir: str | None, temporary: bool, verbose: int) -> None:
    """Local DICOM database, PACS networking and loading into volumes."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    state = CLIContext(database_dir=database_dir, temporary=temporary)
    ctx.obj = state
    ctx.call_on_close(state.close)


def _register_commands() -> None:
    """Each area adds its commands; a missing area module must not break the others."""
    import importlib

    for name in ("database_commands", "loading_commands", "compare_commands", "network_commands", "gui_commands",
                 "export_commands", "convert_commands"):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"{__name__}.{name}":
                continue
            raise
        module.register(cli)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    After a command that called `allow_quick_exit`, the process ends with os._exit once click
    has run its close callbacks (the database closed), stdout and stderr are flushed and logging
    is shut down. Why: the interpreter's teardown frees every header string, data set and array
    of the run one object at a time: 60 ms after converting the benchmark folder on a quiet
    machine, ~0.2 s on a busy one, of a conversion of about a second. Nothing is lost: the
    command's files were closed by then. Not used in-process (tests call `cli` itself)."""
    try:
        cli.main(args=argv, prog_name="dicombrowser")
    except SystemExit as finished:
        code = finished.code
        if _quick_exit and (code is None or isinstance(code, int)):
            import os
            import sys

            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except (OSError, ValueError):  # a closed pipe: the exit code still says what happened
                pass
            logging.shutdown()
            os._exit(code or 0)
        raise

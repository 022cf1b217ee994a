"""`dicombrowser compare`: our default loading of each series against a reference converter.

A thin shell over DICOMBrowserLogic.compare. The contract: `compare TARGET... --with dcm2niix
[--json]`; one verdict line per series ("OK   <series>  (...)" / "DIFF <series>: reasons"), or
with --json one array of verdict objects (keys: series, series_uid, ok, reasons, notes,
reference_source, references, outputs); exit status 1 when any series differs.
"""
from __future__ import annotations

import json

import click

from . import CLIContext, pass_cli


@click.command("compare")
@click.argument("targets", nargs=-1, required=True)
@click.option("--with", "reference", type=click.Choice(["dcm2niix"]), required=True,
              help="The converter to compare with (run live; must be on PATH).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as a JSON array.")
@pass_cli
def compare_command(state: CLIContext, targets: tuple[str, ...], reference: str, as_json: bool) -> None:
    """Load each series as `load` does and compare with dcm2niix: voxels, affine, 4D shape, bval/bvec.

    TARGETS are database UIDs (patient key, study, series, instance) or files/folders read
    without the database. Exit status 1 when any series differs.
    """
    verdicts = state.logic().compare(list(targets), with_=reference)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in verdicts], indent=2, ensure_ascii=False))
    else:
        for verdict in verdicts:
            click.echo(verdict.line())
        if not verdicts:
            click.echo("No series found.")
    if not all(v.ok for v in verdicts):
        raise click.exceptions.Exit(1)


def register(cli: click.Group) -> None:
    """Add the compare command to the `dicombrowser` group."""
    cli.add_command(compare_command)

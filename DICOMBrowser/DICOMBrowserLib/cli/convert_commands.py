"""`dicombrowser convert`: every series of folders, files or database UIDs to NIfTI/NRRD files.

A thin shell over `conversion.convert` (docs/convert.md): a rich progress bar on stderr while series
convert in parallel, then a summary of what was written and what was skipped and why (`--json`:
the same as one JSON object on stdout). Exit code 1 when nothing could be written.
"""
from __future__ import annotations

import json
import sys

import click

from . import CLIContext, allow_quick_exit, pass_cli


def _placeholder_help() -> str:
    from ..conversion import DEFAULT_PATTERN, PLACEHOLDERS

    listing = ", ".join(f"%{key} {what}" for key, (_, what) in PLACEHOLDERS.items())
    return (f"File name pattern (default {DEFAULT_PATTERN}): {listing}, %% a percent sign. dcm2niix's suffix of "
            "each part of a series (_e2, _ph, _fieldmaphz, ...) is appended; equal names get a, b, ...")


@click.command("convert")
@click.argument("targets", nargs=-1, required=True)
@click.option("--output-dir", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the outputs.")
@click.option("--format", "fmt", type=click.Choice(["nii", "nii.gz", "nrrd"]), default="nii.gz", show_default=True,
              help="Image format (DWI: NIfTI + .bval/.bvec, or NRRD DWI).")
@click.option("--filename", "pattern", default=None, help=_placeholder_help())
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: every core).")
@click.option("--no-provenance", is_flag=True, help="Do not write the <name>.provenance.json slice map.")
@click.option("--no-sidecar", is_flag=True, help="Do not write the BIDS <name>.json sidecar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_cli
def convert_command(state: CLIContext, targets: tuple[str, ...], output_dir: str, fmt: str, pattern: str | None,
                    jobs: int | None, no_provenance: bool, no_sidecar: bool, as_json: bool) -> None:
    """Convert every series to NIfTI/NRRD with BIDS and provenance sidecars (no database needed).

    TARGETS are folders or files (read without the database, as dcm2niix does) or database UIDs
    (patient key, study, series). Each series is written with its default loadable(s); several
    defaults of one series (echoes, phase, field map) each get their suffix.
    """
    import os

    from ..leanimport import import_pydicom

    import_pydicom()
    from .. import conversion

    targets_list = [str(t) for t in targets]
    database = None
    if not all(os.path.exists(t) for t in targets_list):
        database = state.logic().database
    summary = _run(targets_list, output_dir, database, fmt, pattern or conversion.DEFAULT_PATTERN, jobs,
                   not no_sidecar, not no_provenance, show_progress=not as_json and sys.stderr.isatty())
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_summary(summary)
    allow_quick_exit()
    if not summary.written and (summary.skipped or summary.series == 0):
        raise SystemExit(1)


def _run(targets, output_dir, database, fmt, pattern, jobs, sidecars, provenance, show_progress: bool):
    from .. import conversion

    if not show_progress:
        return conversion.convert(targets, output_dir, database=database, fmt=fmt, pattern=pattern, workers=jobs,
                                  sidecars=sidecars, provenance=provenance)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("[bold]converting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("scanning headers", total=None)

        def progress(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=message)

        return conversion.convert(targets, output_dir, database=database, fmt=fmt, pattern=pattern, workers=jobs,
                                  sidecars=sidecars, provenance=provenance, progress=progress)


def _print_summary(summary) -> None:
    for image in summary.written:
        extra = f"  (+ {', '.join(p.rsplit('/', 1)[-1] for p in image.sidecars)})" if image.sidecars else ""
        click.echo(f"wrote {image.path}  {'x'.join(str(n) for n in image.shape)} {image.dtype}{extra}")
        if image.warning:
            click.echo(f"  warning: {image.warning}")
    for skipped in summary.skipped:
        click.echo(f"skipped {skipped.series} ({skipped.files} files): {skipped.reason}")
    if summary.skipped_files:
        reasons: dict[str, int] = {}
        for _, reason in summary.skipped_files:
            reasons[reason] = reasons.get(reason, 0) + 1
        click.echo("skipped files: " + "; ".join(f"{n} {why}" for why, n in sorted(reasons.items())))
    click.echo(f"{len(summary.written)} image(s) from {summary.series} series, {len(summary.skipped)} skipped, "
               f"{summary.workers} worker(s), {summary.seconds:.2f} s")


def register(cli: click.Group) -> None:
    """Add `convert` to the `dicombrowser` group."""
    cli.add_command(convert_command)

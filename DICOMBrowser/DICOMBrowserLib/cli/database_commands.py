"""Database commands of `dicombrowser`: import, ls, show, delete, db info|verify|vacuum.

Thin shells over DICOMBrowserLogic. Shapes printed with --json are contracts (DICOM keywords as
keys); tables and the progress bar are for people and go through rich. `ls` and `tree` print
while they read: rich tables only for answers of up to SMALL_ANSWER rows (rich spends about half a
millisecond per row laying a table out), tab-separated plain text beyond.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import click

from . import CLIContext, pass_cli

if TYPE_CHECKING:  # rich is imported where a table or a progress bar is drawn (about 40 ms)
    from rich.console import Console
    from rich.table import Table

LEVELS = ("patients", "studies", "series", "instances")
COLUMNS: dict[str, list[str]] = {
    "patients": ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfStudies", "NumberOfSeries",
                 "NumberOfInstances", "PatientUID"],
    "studies": ["PatientName", "StudyDate", "StudyDescription", "ModalitiesInStudy", "NumberOfSeries",
                "NumberOfInstances", "StudyInstanceUID"],
    "series": ["PatientName", "SeriesNumber", "Modality", "SeriesDescription", "NumberOfInstances",
               "SeriesInstanceUID"],
    "instances": ["InstanceNumber", "SOPClassUID", "TransferSyntaxUID", "SOPInstanceUID", "FilePath"],
}
LEVEL_FILTER = {"patient": "PatientUID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID",
                "instance": "SOPInstanceUID"}


HEADERS = {"PatientName": "Patient", "PatientID": "ID", "PatientBirthDate": "Birth", "PatientSex": "Sex",
           "NumberOfStudies": "Studies", "NumberOfSeries": "Series", "NumberOfInstances": "Instances",
           "PatientUID": "Patient key", "StudyDate": "Date", "StudyDescription": "Description",
           "ModalitiesInStudy": "Modalities", "StudyInstanceUID": "Study UID", "SeriesNumber": "#",
           "SeriesDescription": "Description", "SeriesInstanceUID": "Series UID", "InstanceNumber": "#",
           "SOPClassUID": "SOP Class", "TransferSyntaxUID": "Transfer Syntax", "SOPInstanceUID": "SOP Instance UID",
           "FilePath": "File"}


def _console(stderr: bool = False) -> "Console":
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped: do not squeeze UIDs into 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=False, width=200)
    return console


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


#: Rows (ls) or nodes (tree) up to which an answer is drawn as a rich table or tree.
SMALL_ANSWER = 200


def _stream_json(items: Iterable[Any]) -> None:
    """One JSON array printed item by item (the same text as _print_json, never all in memory)."""
    out = sys.stdout
    first = True
    for item in items:
        text = json.dumps(item, indent=2, ensure_ascii=False, default=str).replace("\n", "\n  ")
        out.write(("[\n  " if first else ",\n  ") + text)
        first = False
    out.write("[]\n" if first else "\n]\n")


def _plain(value: Any) -> str:
    return "" if value is None else str(value).replace("\t", " ").replace("\n", " ")


def _table(rows: list[dict[str, Any]], columns: list[str], title: str) -> "Table":
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(HEADERS.get(column, column), overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if row.get(c) is None else str(row.get(c))) for c in columns))  # never markup
    return table


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--copy", is_flag=True, help="Copy files into the database folder (default: reference them in place).")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Header-scanning processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--no-progress", is_flag=True, help="No progress bar even on a terminal.")
@pass_cli
def import_command(state: CLIContext, paths: tuple[str, ...], copy: bool, workers: int | None, as_json: bool,
                   no_progress: bool) -> None:
    """Import files, folders (recursively) and DICOMDIR media into the database."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..indexer import import_paths

    for path in paths:
        if not os.path.exists(path):
            raise click.ClickException(f"{path}: no such file or folder")
    logic = state.logic()
    console = _console(stderr=True)
    show_bar = console.is_terminal and not no_progress
    with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                  TimeRemainingColumn(), console=console, disable=not show_bar, transient=True) as bar:
        task = bar.add_task("import", total=None)
        last = [0.0]

        def progress(done: int, total: int | None, current: str) -> bool:
            now = time.monotonic()
            if show_bar and (now - last[0] > 0.1 or done == total):  # redraws cost more than indexing a file
                last[0] = now
                bar.update(task, completed=done, total=total)
            return False

        summary = import_paths(logic.database, list(paths), copy=copy, progress=progress, workers=workers)
    if as_json:
        _print_json({**summary.as_dict(), "database": str(logic.database.folder)})
        if summary.stopped:
            sys.exit(1)
        return
    # every file the import did not take, named with its reason (stderr; the summary on stdout)
    for label, entries in (("error", summary.errors), ("skipped", summary.skipped_files),
                           ("duplicate", summary.duplicate_files)):
        for path, reason in entries:
            console.print(f"{label}: {path}: {reason}", markup=False)
    rate = summary.files_per_second
    click.echo(f"{summary.seen} files seen: {summary.indexed} indexed, {summary.updated} updated, "
               f"{summary.unchanged} unchanged, {summary.duplicates} duplicates, {summary.relinked} relinked, "
               f"{summary.skipped} skipped (not DICOM), {len(summary.errors)} errors "
               f"in {summary.elapsed:.2f} s ({rate:.0f} files/s)")
    click.echo(f"database: {logic.database.folder}")
    if summary.stopped:
        for path in summary.not_done:
            console.print(f"not done: {path}", markup=False)
        click.echo(f"import stopped: {summary.stopped}; {len(summary.not_done)} of {summary.seen} file(s) "
                   f"({summary.not_done_bytes / 1e6:.1f} MB) were not imported, listed above as 'not done' "
                   f"(import the same paths again once there is room)", err=True)
        sys.exit(1)


@click.command("ls")
@click.option("--level", type=click.Choice(LEVELS), default="patients", show_default=True)
@click.option("--name", help="Patient name: case-insensitive substring, or DICOM wildcards * ?.")
@click.option("--patient-id", help="Patient ID (exact, or wildcards).")
@click.option("--date-from", help="Studies on or after this date (YYYYMMDD).")
@click.option("--date-to", help="Studies on or before this date (YYYYMMDD).")
@click.option("--date", "date_range", help="Study date or DICOM range (YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD).")
@click.option("--modality", help="Series modality (CT, MR, ...).")
@click.option("--description", help="Study or series description substring (at the level's own description).")
@click.option("--uid", help="Limit to one patient key / study / series / instance UID and what it contains.")
@click.option("--limit", type=click.IntRange(0), help="At most this many rows.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many rows first.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array keyed by DICOM keywords.")
@pass_cli
def ls_command(state: CLIContext, level: str, name: str | None, patient_id: str | None, date_from: str | None,
               date_to: str | None, date_range: str | None, modality: str | None, description: str | None,
               uid: str | None, limit: int | None, offset: int, as_json: bool) -> None:
    """List patients, studies, series or instances, with counts (by patient name, then date, number).

    Up to 200 rows are drawn as a table; more are printed tab-separated as they are read."""
    logic = state.logic()
    filters: dict[str, Any] = {"PatientName": name, "PatientID": patient_id, "date_from": date_from,
                               "date_to": date_to, "StudyDate": date_range, "Modality": modality}
    if description:
        filters["SeriesDescription" if level in ("series", "instances") else "StudyDescription"] = description
    if uid:
        uid_level = logic.level_of(uid)
        if uid_level is None:
            raise click.ClickException(f"{uid}: not in the database {logic.database.folder}")
        filters[LEVEL_FILTER[uid_level]] = uid
    try:
        rows = logic.database.browse_rows(level, limit=limit, offset=offset, **filters)
        first = list(itertools.islice(rows, SMALL_ANSWER + 1))
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    if as_json:
        _stream_json(itertools.chain(first, rows))
        return
    if len(first) <= SMALL_ANSWER:
        _console().print(_table(first, COLUMNS[level], f"{len(first)} {level}"))
        return
    columns = COLUMNS[level]
    out = sys.stdout
    out.write("\t".join(HEADERS.get(c, c) for c in columns) + "\n")
    count = 0
    for row in itertools.chain(first, rows):
        out.write("\t".join(_plain(row.get(c)) for c in columns) + "\n")
        count += 1
    out.write(f"{count} {level}\n")


def _peek(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any] | None]:
    """rows, then None forever: lets the tree's merge look at the next row without taking it."""
    yield from rows
    while True:
        yield None


def _nested_tree(patients: Iterable[dict[str, Any]], studies: Iterator[dict[str, Any]],
                 series: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Patients with their studies and series, merged from three queries read in one order
    (patient, study, series: the database's browsing order), one patient at a time."""
    studies, series = _peek(studies), _peek(series)
    study, one_series = next(studies), next(series)
    for patient in patients:
        patient_studies = []
        while study is not None and study["PatientUID"] == patient["PatientUID"]:
            study_series = []
            while one_series is not None and one_series["StudyInstanceUID"] == study["StudyInstanceUID"]:
                study_series.append(one_series)
                one_series = next(series)
            patient_studies.append({**study, "Series": study_series})
            study = next(studies)
        yield {**patient, "Studies": patient_studies}


def _tree_lines(patient: dict[str, Any]) -> Iterator[tuple[int, str, str, str]]:
    """(depth, label, counts, UID) of a patient's node and the nodes under it."""
    def t(value: Any, empty: str = "") -> str:
        return str(value) if value not in (None, "") else empty

    yield (0, f"{t(patient['PatientName'], '(no name)')} ID {t(patient['PatientID'], '(none)')}",
           f"{patient['NumberOfStudies']} studies, {patient['NumberOfInstances']} instances", patient["PatientUID"])
    for study in patient["Studies"]:
        yield (1, f"{t(study['StudyDate'], '(no date)')} {t(study['StudyDescription'], '(no description)')}",
               f"[{study['ModalitiesInStudy']}]", study["StudyInstanceUID"])
        for series in study["Series"]:
            yield (2, f"#{t(series['SeriesNumber'], '-')} {t(series['Modality'])} "
                      f"{t(series['SeriesDescription'], '(no description)')}",
                   f"{series['NumberOfInstances']} instances", series["SeriesInstanceUID"])


@click.command("tree")
@click.option("--uid", help="Only this patient key / study / series.")
@click.option("--name", help="Patient name: case-insensitive substring, or wildcards.")
@click.option("--limit", type=click.IntRange(0), help="At most this many patients.")
@click.option("--offset", type=click.IntRange(0), default=0, help="Skip this many patients first.")
@click.option("--json", "as_json", is_flag=True, help="Print nested JSON (patients > studies > series).")
@pass_cli
def tree_command(state: CLIContext, uid: str | None, name: str | None, limit: int | None, offset: int,
                 as_json: bool) -> None:
    """Print the Patient / Study / Series tree with instance counts.

    Three queries whatever the size (patients, studies, series, read side by side); a tree of up
    to 200 nodes is drawn with rich, a larger one printed as indented text while it is read."""
    from rich.markup import escape
    from rich.tree import Tree

    logic = state.logic()
    database = logic.database
    filters: dict[str, Any] = {"PatientName": name}
    if uid:
        uid_level = logic.level_of(uid)
        if uid_level is None:
            raise click.ClickException(f"{uid}: not in the database {database.folder}")
        filters[LEVEL_FILTER[uid_level]] = uid
    with database.snapshot():  # the three queries see one state even while a listener stores
        patients: Iterable[dict[str, Any]] = database.browse_rows("patients", limit=limit, offset=offset, **filters)
        start = None
        if limit is not None or offset:
            patients = list(patients)
            start = patients[0] if patients else None
            if start is None:
                patients = []
        nested = _nested_tree(patients, database.browse_rows("studies", from_patient=start, **filters),
                              database.browse_rows("series", from_patient=start, **filters))
        if as_json:
            _stream_json(nested)
            return
        first: list[dict[str, Any]] = []
        nodes = 0
        for patient in nested:
            first.append(patient)
            nodes += 1 + sum(1 + len(study["Series"]) for study in patient["Studies"])
            if nodes > SMALL_ANSWER:
                break
        if nodes <= SMALL_ANSWER:
            def e(value: Any) -> str:  # file contents are text, never rich markup
                return escape(str(value))

            root = Tree(f"[bold]{e(database.folder)}[/] ({len(first)} patients)")
            parents = [root]
            for depth, label, counts, key in (line for patient in first for line in _tree_lines(patient)):
                text = f"{e(label)}  {e(counts)}  [dim]{e(key)}[/]"
                node = parents[depth].add(f"[bold]{text}[/]" if depth == 0 else text)
                del parents[depth + 1:]
                parents.append(node)
            _console().print(root)
            return
        out = sys.stdout
        out.write(f"{database.folder}\n")
        count = 0
        for patient in itertools.chain(first, nested):
            count += 1
            for depth, label, counts, key in _tree_lines(patient):
                out.write(f"{'    ' * (depth + 1)}{label}  {counts}  {key}\n")
        out.write(f"({count} patients)\n")


@click.command("show")
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_cli
def show_command(state: CLIContext, uid: str, as_json: bool) -> None:
    """Show the attributes of one patient (key), study, series or instance."""
    item = state.logic().show(uid)
    if as_json:
        _print_json(item)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{item['Level']} {uid}"), show_header=False)
    table.add_column("attribute", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in item.items():
        if key == "Tags":
            continue
        table.add_row(key, Text("" if value is None else str(value)))
    for tag, value in (item.get("Tags") or {}).items():
        table.add_row(f"({tag})", Text(value))
    _console().print(table)


@click.command("delete")
@click.argument("uids", nargs=-1, required=True)
@click.option("--remove-copied-files", is_flag=True,
              help="Also delete files that were copied into the database folder (referenced files are never touched).")
@pass_cli
def delete_command(state: CLIContext, uids: tuple[str, ...], remove_copied_files: bool) -> None:
    """Delete patients (keys), studies, series or instances from the database, all in one
    transaction (an unknown UID: nothing is deleted)."""
    logic = state.logic()
    levels = {uid: logic.level_of(uid) for uid in uids}
    count = logic.delete(list(levels), remove_copied_files=remove_copied_files)
    removed = " (copied files removed)" if remove_copied_files else ""
    if len(levels) == 1:
        [(uid, level)] = levels.items()
        click.echo(f"deleted {level} {uid}: {count} instances{removed}")
        return
    for uid, level in levels.items():
        click.echo(f"deleted {level} {uid}")
    click.echo(f"{len(levels)} UIDs deleted: {count} instances{removed}")


@click.group("db")
def db_group() -> None:
    """Database maintenance: info, verify, vacuum, rebuild."""


@db_group.command("info")
@click.option("--json", "as_json", is_flag=True)
@pass_cli
def db_info(state: CLIContext, as_json: bool) -> None:
    """Folder, schema version, counts and sizes."""
    info = state.logic().database_info()
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key}: {value}")


@db_group.command("verify")
@click.option("--repair", is_flag=True, help="Remove entries whose files are gone; re-index changed files; index "
              "files under dicom/ the index lacks; remove stale temporary (.part) files.")
@click.option("--limit", type=click.IntRange(1), help="Check the first N indexed files only (in file name order; "
              "the database folder is then not searched for files the index lacks).")
@click.option("--uid", help="Check the files of one patient key / study / series / instance only.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-progress", is_flag=True, help="No progress bar even on a terminal.")
@pass_cli
def db_verify(state: CLIContext, repair: bool, limit: int | None, uid: str | None, as_json: bool,
              no_progress: bool) -> None:
    """Check both SQLite files' integrity, then report indexed files that are missing or changed
    since import, files in the database folder that the index lacks and stale temporary files
    (exit code 1 if any, unless --repair). Problems are printed as they are found."""
    logic = state.logic()
    database = logic.database
    integrity = database.check_integrity()
    if integrity:  # files checked against a damaged index would say nothing reliable
        if as_json:
            _print_json({"integrity": integrity})
        else:
            for line in integrity:
                click.echo(f"integrity: {line}")
            click.echo("integrity check failed: `dicombrowser db rebuild` re-indexes the files (the old index is kept)")
        sys.exit(1)
    if repair:
        if limit is not None or uid is not None:
            raise click.UsageError("--repair checks every file; it cannot be combined with --limit or --uid")
        report = logic.verify(repair=True)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from ..database import VerifyReport

        if uid is not None and logic.level_of(uid) is None:
            raise click.ClickException(f"{uid}: not in the database {database.folder}")
        report = VerifyReport()
        total = limit if limit is not None else (None if uid else database.counts()["instances"])
        console = _console(stderr=True)
        show_bar = console.is_terminal and not no_progress and not as_json
        with Progress(TextColumn("[bold]verifying"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                      TimeRemainingColumn(), console=console, disable=not show_bar, transient=True) as bar:
            task = bar.add_task("verify", total=total)
            last = 0.0
            for path, status in database.file_states(limit=limit, uid=uid):
                report.checked += 1
                if status != "ok":
                    (report.missing if status == "missing" else report.changed).append(path)
                    if not as_json:
                        click.echo(f"{status}: {path}")
                now = time.monotonic()
                if show_bar and now - last > 0.1:
                    last = now
                    bar.update(task, completed=report.checked)
        if limit is None and uid is None:
            report.unindexed, report.partial = database.folder_leftovers()
    if as_json:
        _print_json({"checked": report.checked, "missing": report.missing, "changed": report.changed,
                     "unindexed": report.unindexed, "partial": report.partial,
                     "removed": report.removed, "reindexed": report.reindexed,
                     "recovered": report.recovered, "partial_removed": report.partial_removed,
                     "integrity": integrity})
    else:
        printed = ("not indexed", report.unindexed), ("partial", report.partial)
        if repair:
            printed = ("missing", report.missing), ("changed", report.changed), *printed
        for label, paths in printed:
            for path in paths:
                click.echo(f"{label}: {path}")
        click.echo(f"{report.checked} files checked: {len(report.missing)} missing, {len(report.changed)} changed; "
                   f"{len(report.unindexed)} file(s) in the database folder not indexed, "
                   f"{len(report.partial)} stale partial file(s)"
                   + (f"; {report.removed} entries removed, {report.reindexed} re-indexed, {report.recovered} "
                      f"indexed, {report.partial_removed} partial file(s) removed" if repair else ""))
    if report.problems and not repair:
        sys.exit(1)


@db_group.command("vacuum")
@pass_cli
def db_vacuum(state: CLIContext) -> None:
    """Compact the SQLite files and drop cache entries of deleted instances."""
    logic = state.logic()
    logic.vacuum()
    click.echo(f"vacuumed {logic.database.folder}")


@db_group.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print the import summary as one JSON object.")
@pass_cli
def db_rebuild(state: CLIContext, as_json: bool) -> None:
    """Re-index a database folder from its files (corrupt, unknown version, or a 3D Slicer/CTK database).

    The old SQLite files are renamed to *.bak, never deleted; files under <folder>/dicom and the
    files the old index referenced (as far as it can be read) are indexed again.
    """
    from ..config import resolve_database_folder
    from ..indexer import rebuild

    if state.temporary:
        raise click.UsageError("db rebuild needs a database folder, not --temporary")
    folder = resolve_database_folder(state.database_dir)
    if not folder.is_dir():
        raise click.ClickException(f"{folder}: no such database folder")
    state.close()
    database, summary, moved = rebuild(folder)
    database.close()
    if as_json:
        _print_json({**summary.as_dict(), "database": str(folder), "moved_aside": [str(p) for p in moved]})
        return
    for path in moved:
        click.echo(f"kept old index as {path}")
    click.echo(f"rebuilt {folder}: {summary.seen} files seen, {summary.indexed} indexed, "
               f"{summary.duplicates} duplicates, {len(summary.errors)} errors")


def register(cli: click.Group) -> None:
    """Add the database commands to the `dicombrowser` group."""
    for command in (import_command, ls_command, tree_command, show_command, delete_command, db_group):
        cli.add_command(command)

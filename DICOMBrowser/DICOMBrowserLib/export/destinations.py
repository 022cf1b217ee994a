"""Where exported objects go: a folder, the database (all or nothing), a configured node.

The data sets are complete and checked before this runs; de-identification (when asked for)
is applied to them here, before any byte is written, so no identifying value reaches a file.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ExportError

logger = logging.getLogger(__name__)


def deliver(database: Any, result: Any, *, output_dir: str | os.PathLike | None = None, to_database: bool = False,
            send: Callable[[list[Path]], Any] | None = None,
            deidentify: Callable[[list[Any]], list[Any]] | None = None, prefix: str = "") -> Any:
    """Write `result.datasets`, then import and/or send them; fills `result.files`, `.imported`, `.sent`."""
    from .volume import write_datasets

    if output_dir is None and not to_database and send is None:
        raise ExportError("say where the export goes: --to-database, --output-dir DIR and/or --send NODE")
    if deidentify is not None:
        result.datasets = deidentify(result.datasets)
        first = result.datasets[0]
        result.study_uid, result.series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        result.frame_of_reference_uid = str(first.get("FrameOfReferenceUID", ""))
        result.notes.append("de-identified before writing")
    work = None
    if output_dir is not None:
        folder = Path(output_dir).expanduser().resolve()
    else:
        base = getattr(database, "folder", None) if database is not None else None
        work = Path(tempfile.mkdtemp(prefix="dicombrowser-export-", dir=base))
        folder = work
    try:
        paths = write_datasets(result.datasets, folder, prefix=prefix)
        if output_dir is not None:
            result.files = paths
        if to_database:
            import_all_or_nothing(database, paths, result.series_uid)
            result.imported = True
            if output_dir is None:
                result.files = [Path(p) for p in database.files_for_series(result.series_uid)]
        if send is not None:
            result.sent = send(paths)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return result


def import_all_or_nothing(database: Any, paths: list[Path], series_uid: str) -> None:
    """Copy `paths` into the database; if any of them is not indexed, remove what was, and raise."""
    from ..indexer import import_paths

    try:
        summary = import_paths(database, paths, copy=True, workers=1)
    except BaseException:
        _remove_series(database, series_uid)
        raise
    indexed = summary.indexed + summary.updated
    if summary.errors or indexed != len(paths):
        _remove_series(database, series_uid)
        reasons = "; ".join(f"{path}: {reason}" for path, reason in summary.errors[:3])
        raise ExportError(f"series {series_uid}: {indexed} of {len(paths)} exported files indexed, the database "
                          f"is left as it was{': ' + reasons if reasons else ''}")


def _remove_series(database: Any, series_uid: str) -> None:
    if database.level_of(series_uid) is not None:
        database.delete(series_uid, remove_copied_files=True)

"""Series that a derived object (SEG, RT Structure Set, SR) refers to, and whether to load them with it.

The policy is a setting with three values, as in Slicer's DICOM module: "always" load the
referenced image series with the object, "never", or "ask" the user (the browser asks; a command
line or script has no one to ask, so it loads only the object and logs which series it refers
to). The default comes from $DICOMBROWSER_LOAD_REFERENCED, else "ask"; a caller sets it per
loadable in `loadable.extra["load_referenced"]` (the Logic's `load(..., referenced=...)`).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Sequence

from .errors import DICOMBrowserError

logger = logging.getLogger(__name__)

POLICIES = ("ask", "always", "never")
ENVIRONMENT_VARIABLE = "DICOMBROWSER_LOAD_REFERENCED"


def default_policy() -> str:
    """The policy from $DICOMBROWSER_LOAD_REFERENCED, else "ask"."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "ask").strip().lower() or "ask"
    if value not in POLICIES:
        raise DICOMBrowserError(f"${ENVIRONMENT_VARIABLE}={value!r}: use one of {', '.join(POLICIES)}")
    return value


def policy_of(loadable: Any) -> str:
    """The loadable's own policy (set by the caller), else the default."""
    value = str(loadable.extra.get("load_referenced") or "").lower()
    return value if value in POLICIES else default_policy()


def volume_in_scene(scene: Any, series_uid: str) -> Any:
    """A volume node of `series_uid` already in the scene (None if none)."""
    nodes = scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetAttribute("DICOM.seriesInstanceUID") == series_uid:
            return node
    return None


def load_referenced_series(database: Any, series_uids: Sequence[str], scene: Any, loadable: Any,
                           ask: Callable[[list[str]], bool] | None = None) -> list[Any]:
    """Volume nodes of the referenced series, per the loadable's policy: reused when already in the
    scene, else found in the database and loaded by the registry's default reading of that series.
    Series not in the database are logged and skipped (the object loads without them)."""
    policy = policy_of(loadable)
    if policy == "never" or not series_uids:
        return []
    if policy == "ask" and (ask is None or not ask(list(series_uids))):
        logger.info("%s refers to series %s; not loaded with it (referenced-series setting %r)",
                    loadable.name, ", ".join(series_uids), policy)
        return []
    nodes = []
    for uid in series_uids:
        present = volume_in_scene(scene, uid)
        if present is not None:
            nodes.append(present)
            continue
        files = database.files_for_series(uid) if database is not None else []
        if not files:
            logger.warning("%s refers to series %s, which is not in the database: loaded without it", loadable.name, uid)
            continue
        from . import loading  # the loader runs the registry's plugins on the referenced series

        report = loading.examine(database, [files])
        chosen = [item for item in report.loadables if item.selected]
        if not chosen:
            logger.warning("%s: no plugin offers a default for its referenced series %s", loadable.name, uid)
            continue
        nodes.extend(loading.load_loadables(chosen[:1], scene, database, report=report))
    return nodes

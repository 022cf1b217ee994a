"""The geometry verdict of a series, as the series table shows it before anything is loaded.

Made from the series' examination (the loadables, cached by the loading logic): the findings of
`geometry.check_geometry` that the scalar volume plugin stores in each loadable's
`extra["findings"]`, and its "sequence" kind for multi-volume series. GUI-free (no Qt import) so
it can be tested and reused, but it lives with the widgets because it is a presentation choice.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

#: finding kind -> the word the series table shows
SHORT = {
    "missing_geometry": "no geometry",
    "invalid_orientation": "invalid orientation",
    "orientation_varies": "mixed orientation",
    "pixel_spacing_varies": "pixel spacing varies",
    "size_varies": "size varies",
    "single_slice": "single slice",
    "duplicate_positions": "duplicate positions",
    "nonuniform_spacing": "irregular spacing",
    "missing_slices": "missing slices",
    "gantry_tilt": "tilt",
}
#: kinds that are worth a colour (a single slice is a fact, not a problem)
HARMLESS = {"single_slice"}
MAX_FILES_IN_TOOLTIP = 12


def _main_loadables(loadables: Sequence[Any]) -> list[Any]:
    chosen = [loadable for loadable in loadables if loadable.selected]
    if not chosen and loadables:
        best = max(float(loadable.confidence) for loadable in loadables)
        chosen = [loadable for loadable in loadables if float(loadable.confidence) == best]
    return chosen


def geometry_verdict(loadables: Sequence[Any]) -> tuple[str, str, bool]:
    """(short verdict, tooltip with the findings and offending files, is it a problem)."""
    chosen = _main_loadables(loadables)
    if not chosen:
        return "not loadable", "no plugin can load this series as an image", False
    words: list[str] = []
    lines: list[str] = []
    problem = False
    for loadable in chosen:
        extra = getattr(loadable, "extra", {}) or {}
        if extra.get("kind") == "sequence":
            count = len(extra.get("frames", [])) or 0
            words.append(f"multi-volume ({count})" if count else "multi-volume")
            lines.append(f"{loadable.name}: {count} volumes")
        for finding in extra.get("findings", []) or []:
            kind = finding.get("kind", "")
            word = SHORT.get(kind, kind.replace("_", " "))
            if word not in words:
                words.append(word)
            problem = problem or kind not in HARMLESS
            files = list(finding.get("files", []))
            shown = ", ".join(os.path.basename(f.split("#")[0]) + ("#" + f.split("#")[1] if "#" in f else "")
                              for f in files[:MAX_FILES_IN_TOOLTIP])
            more = f" and {len(files) - MAX_FILES_IN_TOOLTIP} more" if len(files) > MAX_FILES_IN_TOOLTIP else ""
            lines.append(f"{finding.get('message', word)}" + (f"\n    files: {shown}{more}" if files else ""))
    if len(chosen) > 1 and not any(w.startswith("multi-volume") for w in words):
        words.insert(0, f"{len(chosen)} volumes")
    if not words:
        words = ["regular"]
        lines.append("regular: evenly spaced parallel slices, nothing missing")
    return ", ".join(words), "\n".join(lines), problem

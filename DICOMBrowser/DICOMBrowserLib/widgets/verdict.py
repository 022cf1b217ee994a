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
        if "Diffusion" in str(getattr(loadable, "plugin", "")):
            count = _volume_count(loadable)
            words.append(f"DWI ({count} volumes)" if count else "DWI")
            lines.append(f"{loadable.name}: diffusion-weighted, {count} volumes")
        elif extra.get("kind") == "sequence":
            count = _volume_count(loadable)
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
    if len(chosen) > 1 and not any(w.startswith(("multi-volume", "DWI")) for w in words):
        words.insert(0, f"{len(chosen)} volumes")
    if not words:
        words = ["regular"]
        lines.append("regular: evenly spaced parallel slices, nothing missing")
    return ", ".join(words), "\n".join(lines), problem


# --- loadables as a user reads them ------------------------------------------------------------
# The plugins name loadables for scripts and the CLI ("2 [AcquisitionNumber 4]"); the browser
# shows what a user chooses between ("Volume: 2 slices, 512x512 - acquisition 4 only") from the
# loadable's fields, without changing the plugins' names.
_SUFFIX_WORDS = {"ph": "phase", "real": "real part", "imaginary": "imaginary part", "mag": "magnitude",
                 "fieldmaphz": "field map (Hz)"}
CORRECTABLE = {"missing_slices", "nonuniform_spacing", "gantry_tilt"}


def _volume_count(loadable: Any) -> int:
    extra = getattr(loadable, "extra", {}) or {}
    plan = extra.get("plan")
    if plan is not None and getattr(plan, "volumes", None) is not None:
        return len(plan.volumes)
    if extra.get("kind") in ("sequence", "mosaic"):
        return len(extra.get("index_values") or extra.get("frames") or [])
    return 0


def _qualifier(loadable: Any) -> str:
    """The variant a loadable is, from the bracket of its name and its dcm2niix-style suffix."""
    words = []
    name = str(getattr(loadable, "name", ""))
    if name.endswith("]") and " [" in name:
        bracket = name.rsplit(" [", 1)[1][:-1]
        lower = bracket.lower()
        if lower == "regularized":
            words.append("regularized (resampled onto a regular grid)")
        elif lower.startswith("acquisitionnumber "):
            words.append(f"acquisition {bracket.split()[-1]} only")
        elif lower.startswith("acquisition order "):
            words.append(f"volume {bracket.split()[-1]} only")
        elif not lower.startswith("4d,"):
            words.append(bracket)
    suffix = str((getattr(loadable, "extra", {}) or {}).get("suffix", "") or "")
    for part in [p for p in suffix.split("_") if p]:
        if part[0] == "e" and part[1:].isdigit():
            words.append(f"echo {part[1:]}")
        else:
            words.append(_SUFFIX_WORDS.get(part.lower(), part))
    return ", ".join(words)


def series_label(loadable: Any) -> str:
    """The series part of a plugin's name ('2: Head CT'), for telling several series apart."""
    name = str(getattr(loadable, "name", ""))
    return name.rsplit(" [", 1)[0] if name.endswith("]") else name


def readable_name(loadable: Any) -> str:
    """'Volume: 93 slices, 64x64', 'DWI: 17 volumes', '4D: 10 volumes - echo 2', 'Segmentation: 3 segments'."""
    extra = getattr(loadable, "extra", {}) or {}
    kind = extra.get("kind", "")
    tooltip = str(getattr(loadable, "tooltip", "") or "")
    plugin = str(getattr(loadable, "plugin", ""))
    volumes = _volume_count(loadable)
    if "Diffusion" in plugin:
        text = f"DWI: {volumes} volumes" if volumes else "DWI"
    elif kind == "sequence":
        text = f"4D: {volumes} volumes" if volumes else "4D series"
    elif kind == "mosaic":
        text = f"Mosaic: {volumes} volumes" if volumes > 1 else "Mosaic volume"
    elif kind == "segmentation":
        text = f"Segmentation: {len(extra.get('segments') or [])} segments"
    elif kind == "volume":
        first = tooltip.split(";")[0].split(" Corrects:")[0].strip()
        text = f"Volume: {first}" if "slice" in first else "Volume"
    else:
        first = tooltip.splitlines()[0].split(";")[0].strip() if tooltip else ""
        text = first[:60] or str(getattr(loadable, "name", ""))
    qualifier = _qualifier(loadable)
    return f"{text} - {qualifier}" if qualifier else text


def advice(loadable: Any, siblings: Sequence[Any]) -> str:
    """What to do about a warning, when another loadable of the same series corrects it."""
    extra = getattr(loadable, "extra", {}) or {}
    if extra.get("regularize"):
        return ""
    kinds = {finding.get("kind") for finding in extra.get("findings", []) or []}
    if not kinds & CORRECTABLE:
        return ""
    label = series_label(loadable)
    if any((getattr(s, "extra", {}) or {}).get("regularize") and series_label(s) == label for s in siblings):
        return "Load the 'regularized' variant (below) to correct this."
    return ""


def details_text(loadable: Any, siblings: Sequence[Any] = ()) -> str:
    """Everything about one loadable, for the detail pane: nothing cut."""
    lines = [readable_name(loadable), f"Series: {series_label(loadable)}",
             f"Plugin: {getattr(loadable, 'plugin', '')} (confidence {float(getattr(loadable, 'confidence', 0)):.2f})",
             f"Files: {len(getattr(loadable, 'files', []) or [])}"]
    tooltip = str(getattr(loadable, "tooltip", "") or "")
    if tooltip:
        lines.append(tooltip)
    warning = str(getattr(loadable, "warning", "") or "")
    if warning:
        lines.append(f"Warning: {warning}")
    hint = advice(loadable, siblings)
    if hint:
        lines.append(hint)
    return "\n".join(lines)

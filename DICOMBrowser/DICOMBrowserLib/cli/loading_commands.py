"""Loading commands of `dicombrowser`: examine, load, view.

Thin shells over DICOMBrowserLogic. Each takes database UIDs (any level) or, for "load without
the database", files and folders on disk. `examine --json` prints the loadables as a JSON array
(keys: name, plugin, confidence, selected, warning, tooltip, files, referencedSeriesUIDs); the
`--loadable N` of load/view is an index into that array.
"""
from __future__ import annotations

import json
import sys
import time

import click

from . import CLIContext, allow_quick_exit, pass_cli

def _examine(state: CLIContext, targets: tuple[str, ...]):
    report = state.logic().examine(list(targets))
    for plugin, reason in report.errors:
        click.echo(f"warning: plugin {plugin} failed: {reason}", err=True)
    return report


def _load(state: CLIContext, targets: tuple[str, ...], index: int | None, single: bool,
          referenced: str | None = None):
    """Examine, choose (index or defaults), load into a new scene; returns (loadables, nodes).
    `referenced` says whether a SEG or structure set also loads the series it refers to."""
    logic = state.logic()
    report = _examine(state, targets)
    chosen = logic.choose_loadables(report.loadables, index)
    if single and len(chosen) > 1 and not _distinct_suffixes(chosen):
        listing = "; ".join(f"{report.loadables.index(l)}: {l.name}" for l in chosen)
        raise click.ClickException(f"{len(chosen)} loadables selected by default ({listing}); "
                                   f"choose one with --loadable N, or write a .mrb/.mrml scene")
    for loadable in chosen:
        if loadable.warning:
            click.echo(f"warning: {loadable.name}: {loadable.warning}", err=True)
    return chosen, logic.load(chosen, report=report, referenced=referenced)


def _distinct_suffixes(loadables) -> bool:
    """True when several defaults are the parts dcm2niix writes as separate files of one series
    (echoes, phase, field map: each carries its own file name suffix), so each can be written
    beside the others."""
    suffixes = [l.extra.get("suffix") for l in loadables]
    return len(set(suffixes)) == len(suffixes) and all(isinstance(s, str) for s in suffixes)


def _output_with_suffix(output: str, suffix: str) -> str:
    """x.nii.gz + _e2 -> x_e2.nii.gz (dcm2niix's naming of a series' parts)."""
    lower = output.lower()
    for extension in (".nii.gz", ".seq.nrrd", ".nii", ".nrrd", ".nhdr"):
        if lower.endswith(extension):
            return output[: len(output) - len(extension)] + suffix + output[len(output) - len(extension):]
    return output + suffix


@click.command("examine")
@click.argument("targets", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the loadables as a JSON array.")
@pass_cli
def examine_command(state: CLIContext, targets: tuple[str, ...], as_json: bool) -> None:
    """List the ways the plugins can load the series (defaults marked).

    TARGETS are database UIDs (patient key, study, series, instance) or files/folders read
    without the database.
    """
    report = _examine(state, targets)
    if as_json:
        click.echo(json.dumps([l.to_json() for l in report.loadables], indent=2, ensure_ascii=False))
        return
    if not report.loadables:
        click.echo("No plugin can load these files.")
        return
    for index, loadable in enumerate(report.loadables):
        mark = "*" if loadable.selected else " "
        click.echo(f"{mark} {index:3d}  {loadable.confidence:.2f}  {loadable.plugin:28s} {loadable.name}"
                   f"  ({len(loadable.files)} files)")
        if loadable.warning:
            click.echo(f"         warning: {loadable.warning}")
    click.echo("(* = loaded by default; pick another with --loadable N)")


@click.command("load")
@click.argument("targets", nargs=-1, required=True)
@click.option("--loadable", "index", type=int, default=None, help="Index of the loadable (as listed by examine).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="FILE.nrrd | FILE.nii | FILE.nii.gz | FILE.mrml (scene + NRRD beside it) | FILE.mrb (bundle).")
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None,
              help="Also write axial/sagittal/coronal slices of the volume to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.option("--referenced", type=click.Choice(["ask", "always", "never"]), default=None,
              help="Also load the image series a SEG or structure set refers to: always, never, or ask "
                   "(without a terminal to ask: never). Default: $DICOMBROWSER_LOAD_REFERENCED, else ask.")
@click.option("--sidecars", is_flag=True,
              help="NIfTI/NRRD: also write the BIDS <name>.json and the <name>.provenance.json slice map (as convert).")
@pass_cli
def load_command(state: CLIContext, targets: tuple[str, ...], index: int | None, output: str,
                 screenshot: str | None, as_json: bool, referenced: str | None, sidecars: bool) -> None:
    """Load series into volume nodes and write them (NRRD, NIfTI, MRML scene or MRB bundle).

    TARGETS are database UIDs (patient key, study, series, instance) or files/folders read
    without the database. A NIfTI/NRRD output without --screenshot takes the converter's path
    (docs/convert.md): no scene, no VTK, the array written once.
    """
    started = time.perf_counter()
    from ..leanimport import import_pydicom

    import_pydicom()
    lower = output.lower()
    scene_output = lower.endswith(".mrb") or lower.endswith(".mrml")
    if not scene_output and not screenshot and _fast_output(output):
        result = _load_to_file(state, targets, index, output, sidecars)
        if result is not None:
            result["seconds"] = round(time.perf_counter() - started, 3)
            _report(result, as_json)
            allow_quick_exit()  # the converter's path: no scene, files closed
            return
    chosen, nodes = _load(state, targets, index, single=not scene_output, referenced=referenced)
    logic = state.logic()
    if scene_output or len(nodes) == 1:
        outputs = [str(logic.save_volume(nodes[0], output))]
    else:  # the parts of one series (echoes, phase, field map), each beside the others as dcm2niix writes them
        outputs = [str(logic.save_volume(node, _output_with_suffix(output, l.extra.get("suffix", ""))))
                   for l, node in zip(chosen, nodes)]
    written = outputs[0]
    if screenshot:
        logic.screenshot(nodes[0], screenshot)
    result = {"output": str(written), "screenshot": screenshot, "seconds": round(time.perf_counter() - started, 3),
              "loaded": [{"name": l.name, "plugin": l.plugin, "node": n.GetName(), "class": n.GetClassName(),
                          "warning": l.warning} for l, n in zip(chosen, nodes)]}
    if len(outputs) > 1:
        result["outputs"] = outputs
        for entry, path in zip(result["loaded"], outputs):
            entry["output"] = path
    _report(result, as_json)


def _report(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    for entry in result["loaded"]:
        click.echo(f"Loaded {entry['name']} ({entry['plugin']}) as {entry['class']} '{entry['node']}'")
    outputs = result.get("outputs") or [result["output"]]
    screenshot = result.get("screenshot")
    click.echo(f"Wrote {', '.join(outputs)}" + (f" and {screenshot}" if screenshot else "")
               + f" in {result['seconds']} s")


def _fast_output(output: str) -> bool:
    """Formats the converter writes from arrays (.seq.nrrd and .nhdr stay with Slicer's writers)."""
    lower = output.lower()
    return lower.endswith((".nii", ".nii.gz", ".nrrd")) and not lower.endswith(".seq.nrrd")


def _mrml_class(loadable) -> str:
    """The node class a scene load would have made (what `load --json` reports as "class")."""
    if loadable.plugin == "DICOMDiffusionVolumePlugin":
        return "vtkMRMLDiffusionWeightedVolumeNode"
    four_d = loadable.extra.get("kind") == "sequence" or (
        loadable.extra.get("kind") == "mosaic" and len(loadable.files) > 1)
    return "vtkMRMLSequenceNode" if four_d else "vtkMRMLScalarVolumeNode"


def _load_to_file(state: CLIContext, targets: tuple[str, ...], index: int | None, output: str, sidecars: bool):
    """The converter's path (no scene): examine, choose, write each default from its array.
    None when a chosen loadable needs a scene (other plugins, colour, 4D NRRD): the caller loads."""
    import os
    from pathlib import Path

    from .. import conversion, loading

    logic = state.logic()
    if all(os.path.exists(t) for t in targets):
        source, groups, _ = conversion.collect_series(list(targets))
        report = loading.examine(source, list(groups.values()), use_cache=False)
    else:
        report = _examine(state, targets)
        source = logic.database
    chosen = logic.choose_loadables(report.loadables, index)
    if len(chosen) > 1 and not _distinct_suffixes(chosen):
        listing = "; ".join(f"{report.loadables.index(l)}: {l.name}" for l in chosen)
        raise click.ClickException(f"{len(chosen)} loadables selected by default ({listing}); "
                                   f"choose one with --loadable N, or write a .mrb/.mrml scene")
    nrrd = output.lower().endswith(".nrrd")
    for loadable in chosen:
        scalar = loadable.plugin == "DICOMScalarVolumePlugin" and not loadable.extra.get("color")
        four_d = _mrml_class(loadable) == "vtkMRMLSequenceNode"
        if not (loadable.plugin == "DICOMDiffusionVolumePlugin" or (scalar and not (nrrd and four_d))):
            return None
    for loadable in chosen:
        if loadable.warning:
            click.echo(f"warning: {loadable.name}: {loadable.warning}", err=True)
    fmt = "nii.gz" if output.lower().endswith(".nii.gz") else ("nii" if output.lower().endswith(".nii") else "nrrd")
    options = conversion._Options(str(Path(output).parent), fmt, sidecars=sidecars, provenance=sidecars)
    outputs = []
    for loadable in chosen:
        path = Path(output if len(chosen) == 1 else _output_with_suffix(output, loadable.extra.get("suffix", "")))
        path = path.expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        conversion.write_loadable(loadable, report, source, path.parent, "", options, path=path)
        outputs.append(str(path))
    result = {"output": outputs[0], "screenshot": None, "seconds": 0.0,
              "loaded": [{"name": l.name, "plugin": l.plugin, "node": l.name, "class": _mrml_class(l),
                          "warning": l.warning} for l in chosen]}
    if len(outputs) > 1:
        result["outputs"] = outputs
        for entry, path in zip(result["loaded"], outputs):
            entry["output"] = path
    return result


@click.command("view")
@click.argument("targets", nargs=-1, required=True)
@click.option("--loadable", "index", type=int, default=None, help="Index of the loadable (as listed by examine).")
@click.option("--screenshot", type=click.Path(dir_okay=False), default=None,
              help="Render off-screen to this PNG instead of opening a window (no display needed).")
@click.option("--size", nargs=2, type=int, default=None, help="Window/picture size in pixels (width height).")
@click.option("--close-after", type=float, default=None, hidden=True, help="Close the window after N seconds.")
@pass_cli
def view_command(state: CLIContext, targets: tuple[str, ...], index: int | None, screenshot: str | None,
                 size: tuple[int, int] | None, close_after: float | None) -> None:
    """Show axial, sagittal and coronal slices of a loaded volume in a VTK window (or a PNG).

    TARGETS are database UIDs (patient key, study, series, instance) or files/folders read
    without the database.
    """
    chosen, nodes = _load(state, targets, index, single=False)
    if len(nodes) > 1:
        click.echo(f"note: showing the first of {len(nodes)} volumes ({chosen[0].name})", err=True)
    if screenshot:
        path = state.logic().screenshot(nodes[0], screenshot, size=tuple(size) if size else (900, 300))
        click.echo(f"Wrote {path}")
        return
    import os

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise click.ClickException("no display to open a window on; use --screenshot FILE.png")
    from ..view import show

    show(nodes[0], size=tuple(size) if size else (1200, 400), close_after=close_after)


def register(cli: click.Group) -> None:
    """Add the loading commands to the `dicombrowser` group."""
    cli.add_command(examine_command)
    cli.add_command(load_command)
    cli.add_command(view_command)

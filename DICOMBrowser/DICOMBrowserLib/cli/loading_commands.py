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

from . import CLIContext, pass_cli

def _examine(state: CLIContext, targets: tuple[str, ...]):
    report = state.logic().examine(list(targets))
    for plugin, reason in report.errors:
        click.echo(f"warning: plugin {plugin} failed: {reason}", err=True)
    return report


def _load(state: CLIContext, targets: tuple[str, ...], index: int | None, single: bool):
    """Examine, choose (index or defaults), load into a new scene; returns (loadables, nodes)."""
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
    return chosen, logic.load(chosen, report=report)


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
@pass_cli
def load_command(state: CLIContext, targets: tuple[str, ...], index: int | None, output: str,
                 screenshot: str | None, as_json: bool) -> None:
    """Load series into volume nodes and write them (NRRD, NIfTI, MRML scene or MRB bundle).

    TARGETS are database UIDs (patient key, study, series, instance) or files/folders read
    without the database.
    """
    started = time.perf_counter()
    lower = output.lower()
    scene_output = lower.endswith(".mrb") or lower.endswith(".mrml")
    chosen, nodes = _load(state, targets, index, single=not scene_output)
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
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        for entry in result["loaded"]:
            click.echo(f"Loaded {entry['name']} ({entry['plugin']}) as {entry['class']} '{entry['node']}'")
        click.echo(f"Wrote {', '.join(outputs)}" + (f" and {screenshot}" if screenshot else "")
                   + f" in {result['seconds']} s")


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

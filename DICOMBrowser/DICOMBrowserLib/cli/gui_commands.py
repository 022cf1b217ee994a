"""`dicombrowser gui`: the standalone host window (browser + slice views), and its screenshot mode.

`gui --load UID --screenshot FILE.png` opens the window, loads the UID's series with the default
loadables, renders, saves the whole window and exits: for documentation, bug reports and tests
(under Xvfb: `xvfb-run -a -s "-screen 0 1280x1024x24" dicombrowser gui ...`).
"""
from __future__ import annotations

import logging
import os
import sys
import time

import click

from . import CLIContext, pass_cli

logger = logging.getLogger(__name__)


def has_display() -> bool:
    """True when Qt can open windows: an X or Wayland display, or an explicit Qt platform."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM"))


def _settle(app: object, seconds: float) -> None:
    """Let Qt lay out, paint and finish background thumbnails for a moment (screenshot mode)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


@click.command("gui")
@click.option("--load", "load_uid", metavar="UID", help="Load this patient/study/series UID (default loadables).")
@click.option("--screenshot", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Save a screenshot of the whole window, then exit.")
@click.option("--size", default="1280x1000", show_default=True, help="Window size WIDTHxHEIGHT.")
@pass_cli
def gui(state: CLIContext, load_uid: str | None, screenshot: str | None, size: str) -> None:
    """Open the DICOM browser with axial/sagittal/coronal and 3D views."""
    if not has_display():
        if not screenshot:
            raise click.ClickException("no display: run under X, or `xvfb-run -a dicombrowser gui ...`")
        logger.warning("No display: screenshot without slice views (Qt offscreen platform)")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    try:
        from PySide6 import QtWidgets
    except ImportError as error:
        raise click.ClickException(f"the GUI needs PySide6 ({error}): pip install 'dicombrowser[gui]'") from error

    from ..widgets.mainwindow import DICOMBrowserMainWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setApplicationName("DICOM Browser")
    window = DICOMBrowserMainWindow(state.logic())
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError as error:
        raise click.BadParameter(f"{size!r} is not WIDTHxHEIGHT") from error
    window.resize(width, height)
    window.show()
    if screenshot:  # no modal boxes in batch mode: messages go to the log
        window.browser.show_message = lambda title, text, error=False: logger.log(
            logging.ERROR if error else logging.INFO, "%s: %s", title, text)
    _settle(app, 0.2)
    try:
        if load_uid:
            nodes = window.browser.load_uid(load_uid)
            click.echo(f"Loaded {len(nodes)} node(s): " + ", ".join(n.GetName() for n in nodes), err=True)
        if screenshot:
            _settle(app, 1.0)
            window.browser.jobs.wait(10000)
            _settle(app, 0.3)
            path = window.save_screenshot(screenshot)
            click.echo(str(path))
            return
        app.exec()
    finally:
        window.close()
        app.processEvents()


def register(cli: click.Group) -> None:
    cli.add_command(gui)

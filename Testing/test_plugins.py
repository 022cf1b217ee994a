"""The plugin contract and registry live in the library (DICOMBrowserLib.plugins), as Slicer's
DICOMLib holds DICOMPlugin; DICOMPlugins re-exports the same objects.

Given a fresh interpreter, when only the library's registry is asked for plugins, then the
built-in plugins are found through the declared plugin package (no import of DICOMPlugins in
the library's code), and every import path extensions use names the same class and dictionary.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_library_registry_finds_builtins_without_naming_the_plugins_package():
    source = (REPO / "DICOMBrowser" / "DICOMBrowserLib" / "plugins.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not any(name and name.startswith("DICOMPlugins") for name in imported)
    script = ("import sys\n"
              "from DICOMBrowser.DICOMBrowserLib.plugins import allPlugins\n"
              "names = list(allPlugins())\n"
              "print(names[0], 'DICOMSegmentationPlugin' in names, 'DICOMRTDosePlugin' in names)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            stdin=subprocess.DEVNULL, check=True)
    assert result.stdout.split() == ["DICOMScalarVolumePlugin", "True", "True"]


def test_every_import_path_names_the_same_objects():
    import DICOMPlugins
    from DICOMBrowser.DICOMBrowserLib import plugins
    from DICOMPlugins import DICOMLoadable, DICOMPlugin, dicomPlugins
    from DICOMPlugins.DICOMPlugin import DICOMPlugin as FromSubmodule

    assert DICOMPlugin is FromSubmodule is plugins.DICOMPlugin
    assert DICOMLoadable is plugins.DICOMLoadable
    assert dicomPlugins is plugins.dicomPlugins and DICOMPlugins.unavailablePlugins is plugins.unavailablePlugins
    assert isinstance(DICOMPlugins.DICOMPlugin, type)  # the class, not the submodule of the same name


def test_loadable_json_keys_are_the_contract():
    from DICOMBrowser.DICOMBrowserLib.plugins import DICOMLoadable

    assert list(DICOMLoadable(name="x").to_json()) == [
        "name", "plugin", "confidence", "selected", "warning", "tooltip", "files", "referencedSeriesUIDs", "suffix"]

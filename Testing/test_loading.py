"""Loading framework: every plugin examines, defaults by confidence, failures isolated, cached.

Given generated series (and the real corpus where noted), examined by small plugins defined
here and by the example extension under Testing/example_plugin.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import DICOMPlugins
from DICOMBrowser.DICOMBrowserLib import loading
from DICOMBrowser.DICOMBrowserLib.errors import LoadError, NotFoundError
from DICOMPlugins import DICOMLoadable, DICOMPlugin

EXAMPLE = Path(__file__).parent / "example_plugin"


class CountingPlugin(DICOMPlugin):
    """Offers each series once with a fixed confidence; counts its examinations."""

    confidence = 0.5
    calls = 0

    def examineFiles(self, files):
        type(self).calls += 1
        description = self.fileValue(files[0], "0008,103e")
        return [DICOMLoadable(name=description, files=list(files), confidence=self.confidence, selected=True,
                              extra={"rows": self.fileValue(files[0], "0028,0010")})]


class LowPlugin(CountingPlugin):
    confidence = 0.3
    calls = 0


class HighPlugin(CountingPlugin):
    confidence = 0.9
    calls = 0


class BrokenPlugin(DICOMPlugin):
    def examineFiles(self, files):
        raise RuntimeError("this plugin is broken on purpose")


@pytest.fixture
def two_series(series_factory):
    ct = series_factory("ct", count=5, series_description="CT head", modality="CT")
    mr = series_factory("mr", count=3, series_description="MR brain", modality="MR")
    return [str(p) for p in ct], [str(p) for p in mr]


def test_highest_confidence_selected_others_available(two_series):
    report = loading.examine(None, list(two_series), plugins=[LowPlugin, HighPlugin])
    assert len(report.loadables) == 4
    by_plugin = {(l.plugin, l.name): l for l in report.loadables}
    assert by_plugin[("HighPlugin", "CT head")].selected
    assert not by_plugin[("LowPlugin", "CT head")].selected
    assert by_plugin[("HighPlugin", "MR brain")].selected
    assert not by_plugin[("LowPlugin", "MR brain")].selected
    assert by_plugin[("LowPlugin", "MR brain")].files == two_series[1]


def test_plugin_that_raises_is_reported_and_skipped(two_series, caplog):
    report = loading.examine(None, list(two_series), plugins=[BrokenPlugin, HighPlugin])
    assert [l.plugin for l in report.loadables] == ["HighPlugin", "HighPlugin"]
    assert len(report.errors) == 2
    assert report.errors[0][0] == "BrokenPlugin" and "broken on purpose" in report.errors[0][1]
    assert "BrokenPlugin failed to examine" in caplog.text


def test_progress_can_cancel(two_series):
    seen = []

    def progress(done, total, message):
        seen.append((done, total))
        return done >= 1

    report = loading.examine(None, list(two_series), plugins=[HighPlugin], progress=progress)
    assert report.cancelled
    assert len(report.loadables) == 1
    assert seen[0] == (0, 2)


def test_examination_cached_per_series_and_invalidated_by_changes(database, two_series):
    for path in two_series[0] + two_series[1]:
        database.index_file(path, copied=False)
    HighPlugin.calls = 0
    first = loading.examine(database, list(two_series), plugins=[HighPlugin])
    assert HighPlugin.calls == 2 and first.cached == 0
    second = loading.examine(database, list(two_series), plugins=[HighPlugin])
    assert HighPlugin.calls == 2, "second examination must come from the cache"
    assert second.cached == 2
    assert [l.to_json() for l in second.loadables] == [l.to_json() for l in first.loadables]
    assert second.loadables[0].extra == {"rows": "16"}
    # touching a file changes the series fingerprint: examined again
    Path(two_series[1][0]).touch()
    import os
    stat = os.stat(two_series[1][0])
    os.utime(two_series[1][0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    third = loading.examine(database, list(two_series), plugins=[HighPlugin])
    assert HighPlugin.calls == 3 and third.cached == 1


def test_group_files_by_series_without_database(two_series, tmp_path):
    (tmp_path / "ct" / "notes.txt").write_text("not DICOM")
    groups = loading.group_files_by_series([tmp_path])
    assert sorted(len(files) for files in groups.values()) == [3, 5]
    assert sorted(groups[next(k for k, v in groups.items() if len(v) == 5)]) == sorted(two_series[0])
    lists = loading.file_lists_for(None, [str(tmp_path / "mr")])
    assert [sorted(files) for files in lists] == [sorted(two_series[1])]
    with pytest.raises(NotFoundError):
        loading.file_lists_for(None, ["1.2.3.4"])


def test_file_lists_for_uids_in_database(database, two_series):
    for path in two_series[0]:
        database.index_file(path, copied=False)
    series_uid = database.file_value(two_series[0][0], "0020,000e")
    study_uid = database.file_value(two_series[0][0], "0020,000d")
    assert [sorted(f) for f in loading.file_lists_for(database, [series_uid])] == [sorted(two_series[0])]
    assert [sorted(f) for f in loading.file_lists_for(database, [study_uid])] == [sorted(two_series[0])]
    with pytest.raises(NotFoundError):
        loading.file_lists_for(database, ["9.9.9"])


@pytest.fixture
def clean_registry():
    """Registry and module state restored after a test that registers plugins."""
    saved = dict(DICOMPlugins.dicomPlugins)
    saved_unavailable = dict(DICOMPlugins.unavailablePlugins)
    saved_path = list(sys.path)
    sys.modules.pop("dicombrowser_example_plugin", None)
    DICOMPlugins.dicomPlugins.pop("ExampleImageStackPlugin", None)
    yield
    DICOMPlugins.dicomPlugins.clear()
    DICOMPlugins.dicomPlugins.update(saved)
    DICOMPlugins.unavailablePlugins.clear()
    DICOMPlugins.unavailablePlugins.update(saved_unavailable)
    sys.path[:] = saved_path
    sys.modules.pop("dicombrowser_example_plugin", None)
    importlib.invalidate_caches()


def _install_dist_info(site: Path, entry_points: str) -> None:
    """What pip would leave in site-packages for the example extension: metadata + entry points."""
    dist_info = site / "dicombrowser_example_plugin-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: dicombrowser-example-plugin\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(entry_points)


def test_entry_point_discovery_of_installed_extension(clean_registry, tmp_path, two_series):
    site = tmp_path / "site"
    entry_points = (EXAMPLE / "pyproject.toml").read_text().split('[project.entry-points."dicombrowser.plugins"]')[1]
    entry_points = entry_points.split("[")[0].strip().replace('"', "")  # TOML string -> entry_points.txt
    _install_dist_info(site, f"[dicombrowser.plugins]\n{entry_points}\n")
    sys.path[:0] = [str(site), str(EXAMPLE)]
    importlib.invalidate_caches()
    assert "ExampleImageStackPlugin" not in DICOMPlugins.dicomPlugins
    assert "ExampleImageStackPlugin" not in DICOMPlugins.allPlugins()  # installed packages read once per process
    plugins = DICOMPlugins.rescanPlugins()
    assert "ExampleImageStackPlugin" in plugins
    report = loading.examine(None, [two_series[0]], plugins=["ExampleImageStackPlugin", HighPlugin])
    example = next(l for l in report.loadables if l.plugin == "ExampleImageStackPlugin")
    assert example.confidence == pytest.approx(0.1) and not example.selected
    assert next(l for l in report.loadables if l.plugin == "HighPlugin").selected


def test_broken_entry_point_is_recorded_not_fatal(clean_registry, tmp_path):
    site = tmp_path / "site"
    _install_dist_info(site, "[dicombrowser.plugins]\nMissingPlugin = no_such_module_xyz:Plugin\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    plugins = DICOMPlugins.rescanPlugins()
    assert "MissingPlugin" not in plugins
    assert "no_such_module_xyz" in DICOMPlugins.unavailablePlugins["MissingPlugin"]


def test_in_code_registration_and_load_into_scene(clean_registry, two_series):
    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    sys.path.insert(0, str(EXAMPLE))
    module = importlib.import_module("dicombrowser_example_plugin")  # registers itself on import
    assert DICOMPlugins.dicomPlugins["ExampleImageStackPlugin"] is module.ExampleImageStackPlugin
    report = loading.examine(None, [two_series[1]], plugins=["ExampleImageStackPlugin"])
    assert len(report.loadables) == 1 and report.loadables[0].selected
    scene = scenes.new_scene()
    (node,) = loading.load_loadables(report.loadables, scene)
    assert node.IsA("vtkMRMLScalarVolumeNode")
    assert scenes.array_from_volume(node).shape == (3, 16, 16)
    assert len(node.GetAttribute("DICOM.instanceUIDs").split(" ")) == 3


def test_load_with_unknown_plugin_raises():
    with pytest.raises(LoadError, match="not registered"):
        loading.load_loadables([DICOMLoadable(name="x", plugin="NoSuchPlugin", files=["/nowhere"])], None)


def test_register_plugin_refuses_non_plugins(clean_registry):
    with pytest.raises(TypeError, match="not a DICOMPlugin"):
        DICOMPlugins.registerPlugin(object)  # type: ignore[arg-type]
    DICOMPlugins.registerPlugin(HighPlugin, "Renamed")
    assert DICOMPlugins.allPlugins()["Renamed"] is HighPlugin


def test_builtin_plugins_are_registered():
    plugins = DICOMPlugins.allPlugins()
    assert "DICOMScalarVolumePlugin" in plugins
    assert list(plugins).index("DICOMScalarVolumePlugin") < list(plugins).index("DICOMDiffusionVolumePlugin")


def test_declared_tags_accept_both_dictionary_directions():
    class NameToTag(DICOMPlugin):
        tags = {"seriesDescription": "0008,103E", "rows": "0028,0010"}

    class TagToName(DICOMPlugin):
        tags = {"0008,103e": "SeriesDescription", "(0028,0010)": "Rows"}

    assert NameToTag.declaredTags() == ["0008,103e", "0028,0010"]
    assert TagToName.declaredTags() == ["0008,103e", "0028,0010"]


def test_file_values_without_database_come_from_one_header_scan(series_factory):
    """Loading a folder: one prefetch, then every fileValue is served from the cache; a
    rewritten file is read again."""
    import pydicom

    files = [str(p) for p in series_factory(count=4, series_description="before")]
    plugin = HighPlugin(None)
    plugin.prefetch(files)
    plugin_module = sys.modules["DICOMPlugins.DICOMPlugin"]

    assert all(path in plugin_module._HEADER_CACHE for path in files)
    uids = [plugin.fileValue(path, "0008,0018") for path in files]
    assert uids == [str(pydicom.dcmread(path).SOPInstanceUID) for path in files]
    assert plugin.fileValue(files[0], "0008,103e") == "before"
    ds = pydicom.dcmread(files[0])
    ds.SeriesDescription = "after, longer text"
    ds.save_as(files[0])
    assert plugin.fileValue(files[0], "0008,103e") == "after, longer text"
    assert plugin.fileValue(files[0], "0018,0050") == "1"  # a tag outside the prefetched set


@pytest.mark.slow
def test_real_series_examination_is_cached_for_every_plugin(corpus, database):
    """The built-in plugins' loadables (with their private `extra` data) survive the cache."""
    from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

    folder = corpus / "slicer_ct_head"
    import_paths(database, [folder])
    file_lists = loading.file_lists_for(database, [s["SeriesInstanceUID"] for s in database.series()])
    first = loading.examine(database, file_lists)
    second = loading.examine(database, file_lists)
    assert not first.errors and first.cached == 0
    assert second.cached == len(DICOMPlugins.allPlugins()) * len(file_lists)
    assert [dataclasses_asdict(l) for l in second.loadables] == [dataclasses_asdict(l) for l in first.loadables]
    # a cached loadable still loads
    from DICOMBrowser.DICOMBrowserLib import scene as scenes

    chosen = [l for l in second.loadables if l.selected]
    (node,) = loading.load_loadables(chosen, scenes.new_scene(), database)
    assert scenes.array_from_volume(node).shape[0] == 93


def dataclasses_asdict(loadable):
    import dataclasses
    import json

    return json.loads(json.dumps(dataclasses.asdict(loadable)))


class RememberingPlugin(CountingPlugin):
    """Loads by returning itself, so the test can see which plugin object loaded."""

    confidence = 0.7
    calls = 0

    def load(self, loadable, scene):
        return self


def test_loading_with_the_report_reuses_the_examining_plugin(clean_registry, two_series):
    report = loading.examine(None, list(two_series), plugins=[RememberingPlugin])
    chosen = [l for l in report.loadables if l.selected]
    (same,) = loading.load_loadables(chosen[:1], None, None, report=report)
    assert same is report.plugins["RememberingPlugin"]
    DICOMPlugins.registerPlugin(RememberingPlugin)
    (fresh,) = loading.load_loadables(chosen[:1], None, None)
    assert isinstance(fresh, RememberingPlugin) and fresh is not same

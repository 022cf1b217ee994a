"""DICOMBrowser: the scripted module, in 3D Slicer's four roles.

- `DICOMBrowser`        the module description
- `DICOMBrowserLogic`   the work, no GUI: a thin facade over DICOMBrowserLib's small modules;
                        the CLI, the widget and the tests all call this
- `DICOMBrowserWidget`  the Qt (PySide6) browser; Qt is imported only when a widget is built
- `DICOMBrowserTest`    self-tests runnable from pytest and from the GUI's Help menu
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from DICOMBrowser.DICOMBrowserLib import config

logger = logging.getLogger(__name__)


class DICOMBrowser:
    """Module description (what Slicer shows in its module list)."""

    title = "DICOM Browser"
    categories = ["Informatics"]
    contributors = ["DICOMBrowser developers"]
    helpText = (
        "Keep a local DICOM database, query and retrieve from PACS, load series as volumes "
        "through plugins, and export results back to DICOM."
    )
    acknowledgementText = "Modelled on 3D Slicer's DICOM module; uses pydicom, pynetdicom, VTK and slicer-core."


class DICOMBrowserLogic:
    """Everything a button or a CLI command does, without a GUI.

    Holds one open database at a time; `switch_database` closes it and opens another.
    Each group of methods below delegates to one library module.
    """

    def __init__(self, database_dir: str | os.PathLike | None = None, temporary: bool = False):
        self._database_dir = None if temporary else config.resolve_database_folder(database_dir)
        self._temporary = temporary
        self._database = None

    # --- database -------------------------------------------------------------------------
    @property
    def database(self):
        """The open DICOMDatabase (opened, and created if needed, on first use)."""
        if self._database is None:
            from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase

            if self._temporary:
                self._database = DICOMDatabase.temporary()
            else:
                self._database = DICOMDatabase(self._database_dir)
                config.remember_database(self._database_dir)
        return self._database

    @property
    def database_folder(self) -> Path:
        return self.database.folder

    def switch_database(self, folder: str | os.PathLike) -> None:
        self.close()
        self._temporary = False
        self._database_dir = Path(folder).expanduser().resolve()

    def close(self) -> None:
        """Stop the listener (it writes into this database), then close the database."""
        if self._listener is not None:
            self.stop_listener()
            self._listener = None
        if self._database is not None:
            self._database.close()
            self._database = None

    @property
    def settings(self) -> config.DatabaseSettings:
        return config.DatabaseSettings.load(self.database_folder)

    def save_settings(self, settings: config.DatabaseSettings) -> None:
        settings.save(self.database_folder)

    # --- import and browse (DICOMBrowserLib.indexer / database) --------------------------------
    def import_paths(self, paths: list[str | os.PathLike], copy: bool = False,
                     progress: Callable[..., Any] | None = None, workers: int | None = None):
        """Index files and folders (recursively) into the database; returns an ImportSummary.

        `progress(done, total, path)` returning a truthy value cancels; `workers` header-scanning
        processes (default: all cores).
        """
        from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

        return import_paths(self.database, [Path(p) for p in paths], copy=copy, progress=progress, workers=workers)

    def delete(self, uid: str, remove_copied_files: bool = False):
        """Remove a patient/study/series/instance from the database; referenced files are never touched."""
        return self.database.delete(uid, remove_copied_files=remove_copied_files)

    def patients(self, **filters: Any) -> list[dict[str, Any]]:
        """Patients (dicts keyed by DICOM keywords, with counts) matching filters such as PatientName."""
        return self.database.patients(**filters)

    def studies(self, patient_uid: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.database.studies(patient_uid, **filters)

    def series(self, study_uid: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.database.series(study_uid, **filters)

    def instances(self, series_uid: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        return self.database.instances(series_uid, **filters)

    def browse(self, level: str = "patients", **filters: Any) -> list[dict[str, Any]]:
        """One level of the tree by name ("patients", "studies", "series", "instances"), for the CLI's ls."""
        if level not in ("patients", "studies", "series", "instances"):
            raise ValueError(f"unknown level {level!r}")
        return getattr(self.database, level)(**filters)

    def show(self, uid: str) -> dict[str, Any]:
        """Every stored attribute of one patient/study/series/instance (instances include cached tags)."""
        return self.database.show(uid)

    def level_of(self, uid: str) -> str | None:
        return self.database.level_of(uid)

    def files_for_uid(self, uid: str) -> list[str]:
        return self.database.files_for_uid(uid)

    def series_for_uid(self, uid: str) -> list[str]:
        return self.database.series_for_uid(uid)

    def database_info(self) -> dict[str, Any]:
        return self.database.info()

    def verify(self, repair: bool = False):
        """Entries whose files are gone or changed (VerifyReport); `repair` removes the gone ones."""
        return self.database.verify(repair=repair)

    def vacuum(self) -> None:
        self.database.vacuum()

    def rebuild_database(self, progress: Callable[..., Any] | None = None):
        """Re-index the current database folder from its files (after a corrupt or unknown-version
        error); the old SQLite files are kept aside. Returns the ImportSummary."""
        from DICOMBrowser.DICOMBrowserLib.indexer import rebuild

        if self._temporary:
            raise ValueError("a temporary database has nothing to rebuild")
        self.close()
        database, summary, _ = rebuild(self._database_dir, progress=progress)
        self._database = database
        return summary

    def open_folder_without_database(self, paths: list[str | os.PathLike],
                                     progress: Callable[..., Any] | None = None):
        """Browse files without touching any database: switch to a throw-away database (deleted on
        close or on the next switch) and import `paths` in reference mode. Returns the ImportSummary."""
        self.close()
        self._temporary = True
        return self.import_paths(paths, progress=progress)

    # --- loading (DICOMBrowserLib.loading, DICOMPlugins) ---------------------------------------
    # Targets are database UIDs of any level, or files/folders on disk ("load without the
    # database": grouped by series from their headers; the database is not opened for them).
    def _database_for(self, targets: list[str]):
        return None if all(os.path.exists(t) for t in targets) else self.database

    def examine(self, targets: list[str], plugins: list[str] | None = None,
                progress: Callable[..., Any] | None = None):
        """Every plugin examines the targets' series; an ExamineReport (loadables, plugin errors)."""
        from DICOMBrowser.DICOMBrowserLib import loading

        targets = [str(t) for t in targets]
        database = self._database_for(targets)
        return loading.examine(database, loading.file_lists_for(database, targets), plugins, progress)

    _loading_scene = None

    @property
    def loading_scene(self):
        """The scene `load` fills when given none (created on first use). The logic holds it:
        MRML nodes do not keep their scene alive, and saving needs the scene."""
        if self._loading_scene is None:
            from DICOMBrowser.DICOMBrowserLib import scene as scenes

            self._loading_scene = scenes.new_scene()
        return self._loading_scene

    def load(self, loadables: list, scene: Any = None, report: Any = None, referenced: str | None = None) -> list:
        """Load loadables (from `examine`; pass its report to reuse what the plugins read) into
        `scene` (default: `loading_scene`); returns the nodes. `referenced` ("ask", "always",
        "never"; default $DICOMBROWSER_LOAD_REFERENCED or "ask") says whether a SEG or structure
        set also loads the image series it refers to (DICOMBrowserLib.referenced)."""
        from DICOMBrowser.DICOMBrowserLib import loading

        if referenced is not None:
            for loadable in loadables:
                loadable.extra["load_referenced"] = referenced

        scene = scene if scene is not None else self.loading_scene
        # the database only if examine opened it: loadables of a folder load without one
        return loading.load_loadables(loadables, scene, self._database, report=report)

    def choose_loadables(self, loadables: list, index: int | None = None) -> list:
        """The loadable at `index` (as listed by examine), else the selected defaults."""
        from DICOMBrowser.DICOMBrowserLib.errors import NotFoundError

        if index is not None:
            if not 0 <= index < len(loadables):
                raise NotFoundError(f"no loadable {index}: examine offered {len(loadables)} (0..{len(loadables) - 1})")
            return [loadables[index]]
        chosen = [l for l in loadables if l.selected]
        if not chosen:
            raise NotFoundError("no loadable selected by default (none offered, or all low confidence); pass an index")
        return chosen

    def save_volume(self, node: Any, path: str | os.PathLike) -> Path:
        """Write a volume or 4D sequence as .nrrd, .nii/.nii.gz, or its scene as .mrml/.mrb; a
        segmentation as Slicer's .seg.nrrd; a table (RT plan beams, SR measurements) as .tsv/.csv."""
        from DICOMBrowser.DICOMBrowserLib import scene as scenes

        lower = str(path).lower()
        if node.IsA("vtkMRMLSegmentationNode") and lower.endswith((".nrrd", ".nhdr")):
            from DICOMBrowser.DICOMBrowserLib.segmentation import save_segmentation

            return Path(save_segmentation(node, str(path)))
        if node.IsA("vtkMRMLTableNode") and lower.endswith((".tsv", ".csv", ".txt")):
            from DICOMBrowser.DICOMBrowserLib.tables import save_table

            return Path(save_table(node, str(path)))
        return scenes.save_volume(node, path)

    def screenshot(self, node: Any, path: str | os.PathLike, size: tuple[int, int] = (900, 300)) -> Path:
        """Axial/sagittal/coronal slices of a volume rendered off-screen to a PNG."""
        from DICOMBrowser.DICOMBrowserLib import view

        return view.screenshot(node, path, size=size)

    # --- differential testing (DICOMBrowserLib.comparison) ----------------------------------------
    def compare(self, targets: list[str], with_: str = "dcm2niix",
                progress: Callable[..., Any] | None = None) -> list:
        """Each series of the targets (UIDs or files/folders) loaded by default and converted by
        dcm2niix (on PATH), compared: a list of comparison.SeriesVerdict, one per series."""
        from DICOMBrowser.DICOMBrowserLib import comparison, loading

        if with_ != "dcm2niix":
            raise ValueError(f"cannot compare with {with_!r} (known: dcm2niix)")
        targets = [str(t) for t in targets]
        database = self._database_for(targets)
        return comparison.compare_with_dcm2niix(database, loading.file_lists_for(database, targets), progress)

    # --- diffusion (DICOMBrowserLib.diffusion) -------------------------------------------------
    def save_dwi(self, node: Any, path: str | os.PathLike) -> list[Path]:
        """Write a diffusion node: .nrrd / .nhdr (Slicer NRRD DWI) or .nii/.nii.gz plus .bval/.bvec
        beside it. The same writer as `save_volume` uses for a DWI node: one file per format,
        whichever method wrote it."""
        from DICOMBrowser.DICOMBrowserLib.diffusion import save_dwi

        return save_dwi(node, path)

    # --- networking (DICOMBrowserLib.networking) -----------------------------------------------
    # The listener lives as long as the logic (the GUI's "Start listener"); every other call opens
    # one association and returns plain results (summaries with counts, lists of dicts).
    _listener = None

    def node(self, name: str):
        """A configured remote node (NotFoundError lists the known ones)."""
        from DICOMBrowser.DICOMBrowserLib.networking import fastpath, nodes

        fastpath.apply_settings(self.settings)  # the database's fastpath setting, for what follows
        return nodes.get_node(self.database_folder, name)

    def start_listener(self, port: int | None = None, ae_title: str | None = None, host: str | None = None,
                       on_indexed: Callable[[str, str], Any] | None = None, limits: Any = None,
                       fsync: bool | None = None):
        """Start the Storage SCP in the background (settings' AE title/port/timeouts/limits/fsync unless
        given; `limits`: networking.admission.ConnectionLimits); returns its status."""
        from DICOMBrowser.DICOMBrowserLib.networking import StorageListener, fastpath, tls
        from DICOMBrowser.DICOMBrowserLib.networking.admission import ConnectionLimits

        if self._listener is not None and self._listener.running:
            return self._listener.status()
        settings = self.settings
        fastpath.apply_settings(settings)
        self._listener = StorageListener(
            self.database, ae_title=ae_title or settings.ae_title, port=port or settings.port,
            host=host or settings.listen_host, allowed_callers=settings.allowed_callers, on_indexed=on_indexed,
            limits=limits or ConnectionLimits(**settings.listener_limits()),
            fsync=settings.fsync if fsync is None else fsync, ssl_context=tls.server_context(settings))
        return self._listener.start()

    def stop_listener(self):
        """Stop the listener after indexing what it received; returns its final status (None if none ran)."""
        if self._listener is None:
            return None
        return self._listener.stop()

    def listener_status(self):
        """The listener's counters (None if it was never started)."""
        return None if self._listener is None else self._listener.status()

    def echo(self, node_name: str) -> float:
        """C-ECHO a configured node; returns the round trip in seconds, raises NetworkError."""
        from DICOMBrowser.DICOMBrowserLib.networking import service

        return service.echo(self.settings, self.node(node_name))

    def find(self, node_name: str, level: str = "study", filters: dict[str, str | None] | None = None,
             model: str | None = None):
        """C-FIND at patient/study/series level; returns a FindResult (matches: list of dicts)."""
        from DICOMBrowser.DICOMBrowserLib.networking import service

        return service.find(self.settings, self.node(node_name), level, filters, model=model)

    def retrieve(self, node_name: str, uids: list[str], level: str | None = None, method: str | None = None,
                 progress: Callable[..., Any] | None = None):
        """C-MOVE (to our listener) or C-GET studies/series into the database; returns a RetrieveSummary."""
        from DICOMBrowser.DICOMBrowserLib.networking import service

        return service.retrieve(self.database, self.settings, self.node(node_name), list(uids), level=level,
                                method=method, listener=self._listener, progress=progress)

    def send(self, node_name: str, uids: list[str], progress: Callable[..., Any] | None = None):
        """C-STORE patients/studies/series from the database to a node; returns a SendSummary."""
        from DICOMBrowser.DICOMBrowserLib.networking import service

        return service.send(self.database, self.settings, self.node(node_name), list(uids), progress=progress)


    # --- export (DICOMBrowserLib.export) -------------------------------------------------------
    # Exports build every object in memory and check it before writing; `to_database` imports
    # all or nothing; `send_to` names a configured node; `deidentify` (DeidentifyOptions)
    # de-identifies the objects before any byte is written.
    def export_source_node(self, source: Any, node_name: str | None = None, loadable: int | None = None):
        """What `source` names, as something an exporter takes: a node as is; a volume or scene
        file read from disk; a database UID loaded through the plugins (its default loadable or
        `loadable`), so the node keeps its DICOM frame of reference."""
        if not isinstance(source, (str, os.PathLike)):
            return source
        if os.path.exists(source):
            from DICOMBrowser.DICOMBrowserLib.export import read_volume_source

            return read_volume_source(source, node_name)
        report = self.examine([str(source)])
        return self.load(self.choose_loadables(report.loadables, loadable), report=report)[0]

    def _sender(self, node_name: str | None):
        """A callable that C-STOREs written files to a configured node (None without a node)."""
        if not node_name:
            return None
        node, settings = self.node(node_name), self.settings

        def send(paths):
            import pydicom

            from DICOMBrowser.DICOMBrowserLib.networking import service

            files = []
            for path in paths:
                header = pydicom.dcmread(path, stop_before_pixels=True)
                files.append((str(path), str(header.SOPClassUID), str(header.file_meta.TransferSyntaxUID)))
            return service.send_files(settings, node, files)

        return send

    def export_volume(self, source: Any, study_uid: str, options: Any = None, *, node_name: str | None = None,
                      loadable: int | None = None, output_dir: str | os.PathLike | None = None,
                      to_database: bool = False, send_to: str | None = None, deidentify: Any = None):
        """A volume (node, file, or database UID; 4D sequences too) as a new image series of
        `study_uid`; returns export.ExportResult (files written, series UID, notes)."""
        from DICOMBrowser.DICOMBrowserLib import export

        node_or_source = self.export_source_node(source, node_name, loadable)
        volume = node_or_source if isinstance(node_or_source, export.VolumeSource) else export.volume_from_node(node_or_source)
        return export.export_volume(self.database, volume, study_uid, options or export.VolumeExportOptions(),
                                    output_dir=output_dir, to_database=to_database, send=self._sender(send_to),
                                    deidentify=self._deidentifier(deidentify))

    def export_segmentation(self, source: Any, study_uid: str, reference_series_uid: str | None = None, *,
                            segments: list | None = None, series_description: str = "",
                            output_dir: str | os.PathLike | None = None, to_database: bool = False,
                            send_to: str | None = None, deidentify: Any = None, fractional: bool = False):
        """A segmentation (`.seg.nrrd` or segmentation node) or labelmap (file or labelmap node) as a
        DICOM SEG referencing one of the study's series (`reference_series_uid`; the study's only
        series when None), binary or `fractional`; returns export.ExportResult."""
        from DICOMBrowser.DICOMBrowserLib.export import segmentation

        return segmentation.export_segmentation(
            self.database, source, study_uid, reference_series_uid, segments, series_description,
            output_dir=output_dir, to_database=to_database, send=self._sender(send_to),
            deidentify=self._deidentifier(deidentify), fractional=fractional)

    def export_scene(self, source: Any, study_uid: str, *, series_description: str = "Slicer Data Bundle",
                     output_dir: str | os.PathLike | None = None, to_database: bool = False,
                     send_to: str | None = None):
        """A scene (an MRML scene object, a .mrml/.mrb file, or database UIDs loaded by default)
        as one DICOM object in `study_uid`, as Slicer's data bundle; returns export.ExportResult."""
        from DICOMBrowser.DICOMBrowserLib import scene as scenes
        from DICOMBrowser.DICOMBrowserLib.export import bundle

        if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
            scene = scenes.load_scene(source)
        elif isinstance(source, (str, os.PathLike, list, tuple)):
            uids = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(u) for u in source]
            scene = scenes.new_scene()
            report = self.examine(uids)
            self.load(self.choose_loadables(report.loadables), scene, report=report)
        else:
            scene = source
        return bundle.export_scene(self.database, scene, study_uid, series_description, output_dir=output_dir,
                                   to_database=to_database, send=self._sender(send_to))

    def deidentify(self, uids: list[str], options: Any, output_dir: str | os.PathLike | None = None,
                   to_database: str | os.PathLike | None = None):
        """De-identified copies of everything under `uids` (any level) into a folder and/or
        another database folder (never this one: its originals stay as they are); returns a
        deidentify.DeidentifySummary (written files, refused files with reasons, UID map)."""
        import shutil
        import tempfile

        from DICOMBrowser.DICOMBrowserLib import deidentify
        from DICOMBrowser.DICOMBrowserLib.errors import NotFoundError

        if output_dir is None and to_database is None:
            raise ValueError("say where the de-identified copies go: an output folder and/or another database")
        if to_database is not None and Path(to_database).expanduser().resolve() == self.database_folder.resolve():
            raise ValueError(f"{to_database} is the database being de-identified; choose another folder")
        files: list[str] = []
        for uid in uids:
            found = self.database.files_for_uid(uid)
            if not found:
                raise NotFoundError(f"UID {uid} is not in the database {self.database_folder}")
            files.extend(f for f in found if f not in files)
        work = None if output_dir is not None else Path(tempfile.mkdtemp(prefix="dicombrowser-deid-"))
        try:
            summary = deidentify.deidentify_files(files, output_dir if output_dir is not None else work, options)
            if to_database is not None and summary.written:
                from DICOMBrowser.DICOMBrowserLib.database import DICOMDatabase
                from DICOMBrowser.DICOMBrowserLib.indexer import import_paths

                target = DICOMDatabase(Path(to_database).expanduser())
                try:
                    imported = import_paths(target, summary.written, copy=True, workers=1)
                    summary.refused.extend((str(path), f"not imported: {reason}") for path, reason in imported.errors)
                finally:
                    target.close()
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
        return summary

    def send_deidentified(self, node_name: str, uids: list[str], options: Any):
        """De-identified copies of `uids` sent to a configured node (the database keeps the
        originals); returns the SendSummary, with refused files among its failures."""
        import shutil
        import tempfile

        send = self._sender(node_name)
        work = Path(tempfile.mkdtemp(prefix="dicombrowser-send-deid-"))
        try:
            summary = self.deidentify(uids, options, output_dir=work)
            sent = send(summary.written)
            sent.total += len(summary.refused)
            sent.failed.extend(summary.refused)
            return sent
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _deidentifier(self, options: Any):
        """A callable de-identifying data sets with `options` (None when not asked for)."""
        if options is None:
            return None
        from DICOMBrowser.DICOMBrowserLib import deidentify

        return deidentify.Deidentifier(options).deidentify_datasets



    # --- gui helpers (DICOMBrowserLib.widgets; thin, so the browser needs no loading code) -------
    _gui_scene = None

    @property
    def gui_scene(self):
        """The MRML scene the browser loads into (created on first use, kept across databases)."""
        if self._gui_scene is None:
            from DICOMBrowser.DICOMBrowserLib import scene

            self._gui_scene = scene.new_scene()
        return self._gui_scene

    def examine_uids(self, uids: list[str]) -> list:
        """Loadables (defaults selected, examine cache used) for database UIDs of any level."""
        return self.examine(list(uids)).loadables

    def load_into_scene(self, loadables: list) -> list:
        """Load loadables into `gui_scene`; returns the nodes (raises LoadError)."""
        return self.load(loadables, self.gui_scene)


class DICOMBrowserWidget:
    """The Qt browser panel. Qt is imported here only, so the logic runs headless.

    Thin: the panel and its dialogs live in DICOMBrowserLib/widgets; the standalone host window
    (`dicombrowser gui`) is `widgets.mainwindow.DICOMBrowserMainWindow`.
    """

    def __init__(self, logic: DICOMBrowserLogic | None = None, parent: Any = None):
        self.logic = logic or DICOMBrowserLogic()
        self.parent = parent
        self.widget = None

    def setup(self):
        """Build the browser panel (patients/studies/series, thumbnails, loadables, actions)."""
        from DICOMBrowser.DICOMBrowserLib.widgets.browser import DICOMBrowserPanel

        self.widget = DICOMBrowserPanel(self.logic, self.parent)
        return self.widget

    def cleanup(self) -> None:
        """Stop the panel's timers and workers (the host closes the module)."""
        if self.widget is not None:
            self.widget.shutdown()


class DICOMBrowserTest:
    """Module self-tests: real sample data in a temporary database, no GUI needed.

    Each `test_*` method raises AssertionError on failure; `runTest` runs them all and returns
    (name, passed, message) triples so the GUI can show them and pytest can assert on them.
    """

    def setUp(self) -> None:
        import tempfile

        self.logic = DICOMBrowserLogic(temporary=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="dicombrowser-selftest-")
        self.tmp = Path(self._tmp.name)

    def tearDown(self) -> None:
        self.logic.close()
        self._tmp.cleanup()

    def runTest(self) -> list[tuple[str, bool, str]]:
        results = []
        for name in sorted(n for n in dir(self) if n.startswith("test_")):
            self.setUp()
            try:
                getattr(self, name)()
                results.append((name, True, ""))
            except Exception as error:  # a self-test reports, it does not crash the host
                logger.exception("Self-test %s failed", name)
                results.append((name, False, f"{type(error).__name__}: {error}"))
            finally:
                self.tearDown()
        return results

    def test_import_sample_data(self) -> None:
        from DICOMBrowser.DICOMBrowserLib import sampledata

        folder = sampledata.pydicom_sample_folder()
        summary = self.logic.import_paths([folder])
        assert summary.indexed > 0, f"nothing indexed from {folder}"
        assert self.logic.database.patients(), "no patients after import"

    def test_load_generated_ct(self) -> None:
        """Import a generated CT with known geometry, load its default loadable, check the volume."""
        import numpy as np

        from DICOMBrowser.DICOMBrowserLib import sampledata, scene

        files = sampledata.write_series(self.tmp / "ct", count=12, spacing=2.5, rows=24, columns=20,
                                        patient_name="SelfTest^CT", patient_id="SELFTEST")
        summary = self.logic.import_paths([self.tmp / "ct"])
        assert summary.indexed == len(files), f"indexed {summary.indexed} of {len(files)} generated files"
        series_uid = self.logic.database.series()[0]["SeriesInstanceUID"]
        loadables = [l for l in self.logic.examine([series_uid]).loadables if l.selected]
        assert len(loadables) == 1, f"expected one default loadable, got {[l.name for l in loadables]}"
        assert not loadables[0].warning, f"regular series got a warning: {loadables[0].warning}"
        nodes = self.logic.load(loadables)
        voxels = scene.array_from_volume(nodes[0])
        assert voxels.shape == (12, 24, 20), f"volume shape {voxels.shape} != (12, 24, 20) (k, j, i)"
        ijk_to_ras = scene.ijk_to_ras_of(nodes[0])
        spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
        assert np.allclose(spacing, [1.0, 1.0, 2.5], atol=1e-4), f"spacing {spacing} != [1, 1, 2.5] mm"
        # the generator writes slice index * 100 (+ a ramp) and rescale -1024: slice order is checkable
        assert [int(voxels[k, 0, 0]) for k in range(12)] == [k * 100 - 1024 for k in range(12)], "slices out of order"

    def test_missing_slice_is_reported(self) -> None:
        """A series with a gap gets a geometry warning that names the files around the gap."""
        from DICOMBrowser.DICOMBrowserLib import sampledata

        positions = [(0.0, 0.0, 2.0 * k) for k in range(10) if k != 5]
        sampledata.write_series(self.tmp / "gap", positions=positions, patient_id="SELFTESTGAP")
        self.logic.import_paths([self.tmp / "gap"])
        series_uid = self.logic.database.series()[0]["SeriesInstanceUID"]
        loadables = self.logic.examine([series_uid]).loadables
        warnings = " ".join(l.warning for l in loadables)
        assert "missing" in warnings, f"no missing-slice warning in {warnings!r}"

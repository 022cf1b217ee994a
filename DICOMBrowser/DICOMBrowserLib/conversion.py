"""Batch conversion: every series of folders, files or database UIDs to NIfTI/NRRD files, with
BIDS sidecars and slice-to-instance provenance, at the speed of a dedicated converter.

Why a path of its own: loading into MRML nodes pays for slicer-core/VTK (about a second of imports)
and for the scene; a file converter needs neither. Here the plugins examine as always, and their
array readers (`read_volume` of the scalar plugin, `diffusion.read_dwi`) hand the voxels to the
writers in `volumeio` (and `diffusion.dwi_io` for DWI, the one DWI writer), written once from the
array that holds them. Only a loadable whose plugin has no array reader (e.g. RT dose, PET SUV,
colour) goes through a scene, and only that worker imports VTK.

One process: headers are scanned once for everything every plugin declares (`ScanIndex`), in
parallel; series then convert in parallel across cores (largest first). Worker processes are forked
only while this process holds neither VTK nor Qt (else a fork server or spawn starts them clean).

Output names come from a pattern (`PLACEHOLDERS`), plus dcm2niix's suffix of each part of a series
(`_e2`, `_ph`, `_fieldmaphz`, ...). Names never collide: equal names of different series get `a`,
`b`, ... (dcm2niix's rule), and each image is claimed with an exclusive create, so a file already in
the output folder is never overwritten.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


from .errors import DICOMBrowserError, NotFoundError

logger = logging.getLogger(__name__)

FORMATS = ("nii", "nii.gz", "nrrd")
DEFAULT_PATTERN = "%s_%d"
#: placeholder -> (DICOM tag, what it is); %t and %f are computed
PLACEHOLDERS: dict[str, tuple[str, str]] = {
    "s": ("0020,0011", "series number"),
    "d": ("0008,103e", "series description"),
    "p": ("0018,1030", "protocol name"),
    "i": ("0010,0020", "patient ID"),
    "n": ("0010,0010", "patient name"),
    "j": ("0020,000e", "series instance UID"),
    "k": ("0020,000d", "study instance UID"),
    "m": ("0008,0070", "manufacturer (short: Siemens, GE, Philips, ...)"),
    "u": ("0020,0012", "acquisition number"),
    "x": ("0020,0010", "study ID"),
    "o": ("0008,0060", "modality"),
    "t": ("0008,0020", "study date and time, YYYYMMDDhhmmss"),
    "f": ("", "name of the folder holding the series' first file"),
}
_STUDY_TIME = "0008,0030"
#: what the provenance rows hold, in order
PROVENANCE_COLUMNS = ["t", "k", "SOPInstanceUID", "frame", "tile", "file"]

Progress = Callable[[int, int, str], Any]


# --- results -----------------------------------------------------------------------------------
@dataclass
class WrittenImage:
    """One image written (with its sidecars)."""

    series_uid: str
    series: str  # "number: description"
    loadable: str
    plugin: str
    path: str
    sidecars: list[str] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)  # NIfTI order (i, j, k[, t])
    dtype: str = ""
    suffix: str = ""
    warning: str = ""
    fast: bool = True  # False: written through a scene (slicer-core)


@dataclass
class SkippedSeries:
    """A series (or one of its loadables) not written, and why."""

    series_uid: str
    series: str
    files: int
    reason: str


@dataclass
class ConversionSummary:
    written: list[WrittenImage] = field(default_factory=list)
    skipped: list[SkippedSeries] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not DICOM, no series
    series: int = 0
    workers: int = 1
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"written": [asdict(w) for w in self.written], "skipped": [asdict(s) for s in self.skipped],
                "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped_files],
                "series": self.series, "workers": self.workers, "seconds": round(self.seconds, 3)}


@dataclass
class SeriesJob:
    """What a worker needs to convert one series (plain data: it crosses process boundaries)."""

    series_uid: str
    files: list[str]
    base_name: str
    label: str


@dataclass
class _Options:
    output_dir: str
    fmt: str
    sidecars: bool = True
    provenance: bool = True


# --- names -------------------------------------------------------------------------------------
def safe_name(text: str) -> str:
    """A file name part: letters, digits, '-', '.', '_' kept, anything else becomes '_' (as dcm2niix)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._")
    return cleaned


def expand_pattern(pattern: str, values: dict[str, str], first_file: str = "") -> str:
    """The pattern with each %x placeholder replaced (unknown ones raise); '' values drop out."""
    from .bids import manufacturer_name

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key == "%":
            return "%"
        if key not in PLACEHOLDERS:
            raise DICOMBrowserError(f"unknown placeholder %{key} in file name pattern {pattern!r} "
                                    f"(known: {', '.join('%' + k for k in PLACEHOLDERS)})")
        if key == "f":
            return safe_name(Path(first_file).parent.name)
        if key == "t":
            return safe_name(values.get("0008,0020", "") + values.get(_STUDY_TIME, "").split(".")[0])
        value = values.get(PLACEHOLDERS[key][0], "")
        if key == "m":
            value = manufacturer_name(value)
        return safe_name(value.replace("^", "_"))

    name = re.sub(r"%(.)", replace, pattern)
    name = re.sub(r"_{2,}", "_", name).strip("_")
    return name or "series"


def name_tags() -> list[str]:
    return sorted({tag for tag, _ in PLACEHOLDERS.values() if tag} | {_STUDY_TIME})


def base_names(jobs_values: Sequence[tuple[dict[str, str], str]], pattern: str) -> list[str]:
    """One base name per series, equal names made distinct by 'a', 'b', ... in series order."""
    names = [expand_pattern(pattern, values, first) for values, first in jobs_values]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name.lower(), 0)
        seen[name.lower()] = count + 1
        out.append(name if count == 0 else name + _letters(count))
    return out


def _letters(n: int) -> str:
    """1 -> 'a', 26 -> 'z', 27 -> 'aa' ..."""
    text = ""
    while n > 0:
        n, remainder = divmod(n - 1, 26)
        text = chr(ord("a") + remainder) + text
    return text


def claim(output_dir: Path, stem: str, extension: str) -> Path:
    """Create `stem.extension` exclusively (race-free across workers); when taken, stem + 'a', 'b', ..."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(0, 10_000):
        candidate = output_dir / f"{stem}{_letters(attempt)}.{extension}"
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return candidate
        except FileExistsError:
            continue
    raise DICOMBrowserError(f"{output_dir}: no free file name for {stem}.{extension}")


def stem_of(path: str | os.PathLike) -> str:
    name = Path(path).name
    for extension in (".nii.gz", ".nii", ".nrrd", ".nhdr"):
        if name.lower().endswith(extension):
            return name[: -len(extension)]
    return Path(path).stem


# --- the work on one series (in a worker) --------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(index: Any, database_folder: str | None, options: _Options) -> None:
    """Worker start: the scan index (inherited when forked, pickled otherwise) or a database of its own
    (a SQLite connection must not cross a fork)."""
    if database_folder is not None:
        from .database import DICOMDatabase

        index = DICOMDatabase(database_folder, create=False)
    _WORKER["index"] = index
    _WORKER["options"] = options


def _convert_job(job: SeriesJob) -> tuple[list[WrittenImage], list[SkippedSeries]]:
    """Examine one series, write each default loadable; never raises (failures become skips)."""
    try:
        return convert_series(job, _WORKER["index"], _WORKER["options"])
    except Exception as error:  # one broken series must not stop the batch: reported, logged with traceback
        logger.exception("Converting series %s (%s) failed", job.label, job.files[0] if job.files else "?")
        return [], [SkippedSeries(job.series_uid, job.label, len(job.files), f"{type(error).__name__}: {error}")]


def convert_series(job: SeriesJob, index: Any, options: _Options) -> tuple[list[WrittenImage], list[SkippedSeries]]:
    """Examine `job`'s files with every plugin and write the default loadable(s)."""
    from . import loading

    report = loading.examine(index, [job.files], use_cache=False)
    skipped: list[SkippedSeries] = []
    for plugin, reason in report.errors:
        skipped.append(SkippedSeries(job.series_uid, job.label, len(job.files), f"plugin {plugin} failed: {reason}"))
    chosen = [loadable for loadable in report.loadables if loadable.selected]
    if not chosen:
        reason = ("no plugin can load these files" if not report.loadables
                  else "no loadable selected by default: " + "; ".join(l.name for l in report.loadables[:3]))
        return [], skipped + [SkippedSeries(job.series_uid, job.label, len(job.files), reason)]
    suffixes = [str(l.extra.get("suffix") or "") for l in chosen]
    if len(set(suffixes)) < len(suffixes):  # several defaults without distinct dcm2niix suffixes
        suffixes = [s + (f"_{n + 1}" if len(chosen) > 1 else "") for n, s in enumerate(suffixes)]
    written: list[WrittenImage] = []
    for loadable, suffix in zip(chosen, suffixes):
        try:
            written.append(write_loadable(loadable, report, index, Path(options.output_dir), job.base_name + suffix,
                                          options, job))
        except DICOMBrowserError as error:
            skipped.append(SkippedSeries(job.series_uid, f"{job.label} / {loadable.name}", len(loadable.files),
                                         str(error)))
    return written, skipped


def write_loadable(loadable: Any, report: Any, index: Any, output_dir: Path, stem: str, options: _Options,
                   job: SeriesJob | None = None, path: Path | None = None) -> WrittenImage:
    """Read one loadable through its plugin's array reader and write image + sidecars (`path`
    given: write exactly there, else claim `stem.<format>` in `output_dir`)."""
    plugin = report.plugins.get(loadable.plugin)
    if plugin is None:
        from .plugins import allPlugins

        plugin = allPlugins()[loadable.plugin](index)
    extension = options.fmt
    if path is None:
        path = claim(output_dir, stem, extension)
    label = job.label if job else loadable.name
    series_uid = job.series_uid if job else ""
    try:
        if loadable.plugin == "DICOMDiffusionVolumePlugin" and extension in ("nii", "nii.gz", "nrrd"):
            image = _write_dwi(loadable, plugin, index, path, options)
        elif hasattr(plugin, "read_volume") and not loadable.extra.get("color") and type(plugin).__name__ == \
                "DICOMScalarVolumePlugin":
            image = _write_scalar(loadable, plugin, index, path, options)
        else:
            image = _write_through_scene(loadable, report, index, path, options)
    except BaseException:
        if path.exists() and path.stat().st_size == 0:
            path.unlink()  # the claim of a failed write
        raise
    image.series_uid = image.series_uid or series_uid
    image.series = label
    return image


def _frames_provenance(files: Sequence[str], volumes: Sequence[Sequence[Sequence[int]]],
                       uid_of: Callable[[str], str], mosaic_tiles: int | None = None) -> list[list[Any]]:
    """Rows [t, k, SOPInstanceUID, frame (1-based), tile (mosaics: 0-based) or None, file]."""
    rows: list[list[Any]] = []
    for t, volume in enumerate(volumes):
        if mosaic_tiles is not None:  # one mosaic (file) per volume, slice k = tile k
            file_index, frame = volume[0]
            path = files[file_index]
            rows.extend([t, k, uid_of(path), int(frame) + 1, k, path] for k in range(mosaic_tiles))
            continue
        for k, (file_index, frame) in enumerate(volume):
            path = files[int(file_index)]
            rows.append([t, k, uid_of(path), int(frame) + 1, None, path])
    return rows


def _write_provenance(image_path: Path, rows: list[list[Any]], shape_ijk: Sequence[int], rows_flipped: bool,
                      note: str = "") -> Path:
    """`<stem>.provenance.json`: which DICOM instance and frame each slice of the image came from."""
    target = image_path.with_name(stem_of(image_path) + ".provenance.json")
    document = {
        "image": image_path.name,
        "shape": [int(n) for n in shape_ijk],
        "axes": "voxel (i, j, k[, t]) of the image: k is the slice (third axis), t the volume (fourth axis), "
                "both 0-based; frame is the DICOM frame number (1-based), tile the 0-based slice inside a mosaic",
        "rows_flipped": rows_flipped,
        "columns": PROVENANCE_COLUMNS,
        "slices": rows,
    }
    if note:
        document["note"] = note
    target.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    return target


def _write_bids(image_path: Path, header_file: str, index: Any, slice_files: Sequence[str], suffix: str,
                rows_flipped: bool, shape_kji: Sequence[int]) -> Path:
    from . import bids

    values = index.file_values(list(slice_files), list(bids.SLICE_TIMING_TAGS)) if slice_files else {}
    document = bids.sidecar(bids.read_header(header_file), suffix=suffix, rows_flipped=rows_flipped,
                            slice_values=[values[f] for f in slice_files] if slice_files else (),
                            shape_kji=shape_kji, version=_version())
    target = image_path.with_name(stem_of(image_path) + ".json")
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return target


@functools.lru_cache(maxsize=1)
def _version() -> str:
    """The installed distribution's version, for the sidecars' ConversionSoftwareVersion. Looked
    up once per process (importlib.metadata walks site-packages: ~18 ms), before workers fork."""
    try:
        from importlib.metadata import version

        return version("dicombrowser")
    except Exception:  # not installed as a distribution (running from a checkout)
        return ""


def _uid_lookup(index: Any, files: Sequence[str], known: dict[str, dict[str, str]] | None = None) -> Callable[[str], str]:
    if known and all("0008,0018" in known.get(f, {}) for f in files):
        return lambda path: known[path].get("0008,0018", "")
    found = index.file_values(list(files), ["0008,0018"])
    return lambda path: found.get(path, {}).get("0008,0018", "")


def _write_scalar(loadable: Any, plugin: Any, index: Any, path: Path, options: _Options) -> WrittenImage:
    from . import volumeio

    nifti = options.fmt in ("nii", "nii.gz")
    # NIfTI of one rescale: frames go from the files to the output a slab at a time, never whole
    volume = plugin.stream_volume(loadable) if nifti and hasattr(plugin, "stream_volume") else None
    if volume is None:
        if len(loadable.files) > LARGE_SERIES_FILES:  # before the biggest allocation: the scan's and examine's
            _return_freed_memory()                     # garbage goes back (a full collection costs ~80 ms)
        volume = plugin.read_volume(loadable, stored=nifti)
    voxels = volume.voxels if hasattr(volume, "voxels") else None
    shape_kji = tuple(voxels.shape) if voxels is not None else tuple(volume.shape)
    dtype = voxels.dtype if voxels is not None else volume.dtype
    kind = loadable.extra.get("kind")
    files = list(loadable.files)
    suffix = str(loadable.extra.get("suffix") or "")
    sidecars: list[str] = []
    repetition_time = None
    if options.sidecars:
        if kind == "mosaic":
            slice_files: list[str] = []
        else:
            first_volume = loadable.extra.get("frames", [[]])[0]
            single_frame = all(int(frame) == 0 for _, frame in first_volume)
            slice_files = [files[int(i)] for i, _ in first_volume] if single_frame else []
        header_file = files[0] if kind == "mosaic" else files[int(loadable.extra.get("frames", [[[0, 0]]])[0][0][0])]
        bids_path = _write_bids(path, header_file, index, slice_files, suffix, False, shape_kji[-3:])
        sidecars.append(str(bids_path))
        repetition_time = json.loads(bids_path.read_text()).get("RepetitionTime")
    if voxels is None:
        try:
            volumeio.write_nifti_slabs(path, shape_kji, dtype, volume.slabs(volumeio.SLAB_BYTES), volume.ijk_to_ras,
                                       rescale=volume.rescale, repetition_time=repetition_time)
        except BaseException:  # a file that cannot be read halfway: no sidecar without its image
            for sidecar in sidecars:
                Path(sidecar).unlink(missing_ok=True)
            raise
    else:
        volumeio.write_volume(path, voxels, volume.ijk_to_ras, rescale=volume.rescale,
                              repetition_time=repetition_time)
    shape = list(shape_kji[::-1])
    if options.provenance:
        uid_of = _uid_lookup(index, files, volume.file_values)
        if kind == "mosaic":
            volumes = [[[i, 0]] for i in range(len(files))]
            rows = _frames_provenance(files, volumes, uid_of, mosaic_tiles=shape_kji[-3])
            note = ""
        else:
            rows = _frames_provenance(files, loadable.extra.get("frames") or [], uid_of)
            note = ("regularized: slices are interpolated on a regular grid; each row names the acquired slice "
                    "it was listed as, not an exact source") if loadable.extra.get("regularize") else ""
        sidecars.append(str(_write_provenance(path, rows, shape, False, note)))
    return WrittenImage(series_uid="", series="", loadable=loadable.name, plugin=loadable.plugin, path=str(path),
                        sidecars=sidecars, shape=shape, dtype=str(dtype), suffix=suffix,
                        warning=loadable.warning)


#: series of more files than this return freed memory to the system before their voxels are read:
#: for them the peak matters; for small series the collection would cost more than they weigh
LARGE_SERIES_FILES = 256


def _return_freed_memory() -> None:
    """Give memory freed by the header scan and examine back to the system (glibc keeps it otherwise),
    so the process's peak is the volume plus the interpreter, not plus yesterday's garbage."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _write_dwi(loadable: Any, plugin: Any, index: Any, path: Path, options: _Options) -> WrittenImage:
    from .diffusion import read_dwi, save_dwi

    nifti = options.fmt in ("nii", "nii.gz")
    plan = loadable.extra.get("plan")
    used = {plan.files[r.file_index] for volume in plan.volumes for r in volume} if plan else set()
    if plan is None or used != set(loadable.files):
        from .diffusion import plan_dwi

        plan = plan_dwi(loadable.files, database=index)
    # NIfTI keeps the stored integers with scl_slope/scl_inter where one scaling fits all frames
    series = read_dwi(plan.files, database=index, plan=plan, stored=nifti)
    written = [str(p) for p in save_dwi(series, path)]
    sidecars = written[1:]
    first = plan.volumes[0]
    mosaic_layout = first[0].mosaic_layout
    shape = [int(series.voxels.shape[3]), int(series.voxels.shape[2]), int(series.voxels.shape[1]),
             int(series.voxels.shape[0])]
    if options.sidecars:
        slice_files = [] if mosaic_layout is not None else [plan.files[r.file_index] for r in first]
        if any(r.frame_index for r in first):
            slice_files = []
        sidecars.append(str(_write_bids(path, plan.files[first[0].file_index], index, slice_files, "", nifti,
                                        series.voxels.shape[1:])))
    if options.provenance:
        files = plan.files
        uid_of = (lambda p, _u={files[i]: u for i, u in plan.instance_uids.items()}: _u.get(p, "")) \
            if plan.instance_uids else _uid_lookup(index, files)
        volumes = [[[r.file_index, r.frame_index] for r in volume] for volume in plan.volumes]
        rows = _frames_provenance(files, volumes, uid_of,
                                  mosaic_tiles=mosaic_layout.count if mosaic_layout is not None else None)
        sidecars.append(str(_write_provenance(path, rows, shape, nifti,
                                              "NRRD DWI: the gradient axis is first in the file; t is its index"
                                              if not nifti else "")))
    return WrittenImage(series_uid=plan.series_uid, series="", loadable=loadable.name, plugin=loadable.plugin,
                        path=str(path), sidecars=sidecars, shape=shape, dtype=str(series.voxels.dtype),
                        warning=loadable.warning)


def _write_through_scene(loadable: Any, report: Any, index: Any, path: Path, options: _Options) -> WrittenImage:
    """Plugins without an array reader: load into a scene (imports slicer-core) and save the node."""
    from . import loading, scene

    own_scene = scene.new_scene()
    try:
        (node,) = loading.load_loadables([loadable], own_scene, index, report=report)
        scene.save_volume(node, path)
    finally:
        scene.close_scene(own_scene)
    return WrittenImage(series_uid="", series="", loadable=loadable.name, plugin=loadable.plugin, path=str(path),
                        suffix=str(loadable.extra.get("suffix") or ""), warning=loadable.warning, fast=False)


# --- the batch ---------------------------------------------------------------------------------
def heavy_modules_loaded() -> bool:
    """VTK, slicer-core or Qt in this process: forking it could copy locks and GPU/display state."""
    return any(name == "slicer" or name.startswith(("vtkmodules", "PySide6")) for name in sys.modules)


def _context() -> Any:
    from .headerscan import start_method

    method = start_method()
    if method == "fork" and heavy_modules_loaded():
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def collect_series(targets: Sequence[str], database: Any = None, workers: int | None = None,
                   ) -> tuple[Any, dict[str, list[str]], list[tuple[str, str]]]:
    """(index, series UID -> files, skipped files) for paths (one header scan) or database UIDs."""
    from . import bids, loading
    from .scanindex import ScanIndex, plugin_tags

    targets = [str(t) for t in targets]
    paths = [t for t in targets if os.path.exists(t)]
    uids = [t for t in targets if not os.path.exists(t)]
    if paths and uids:
        raise DICOMBrowserError("give either files/folders or database UIDs, not both, in one conversion")
    if uids:
        if database is None:
            raise NotFoundError(f"{uids[0]}: not a file or folder, and no database to look a UID up in")
        groups: dict[str, list[str]] = {}
        for uid in uids:
            series_uids = database.series_for_uid(uid)
            if not series_uids:
                raise NotFoundError(f"{uid}: no such UID in the database {database.folder}")
            for series_uid in series_uids:
                groups.setdefault(series_uid, database.files_for_series(series_uid))
        return database, {uid: files for uid, files in groups.items() if files}, []
    files = loading.expand_paths(paths)
    tags = plugin_tags([*bids.SIDECAR_TAGS, *name_tags()])
    index = ScanIndex.build(files, tags, workers=1 if heavy_modules_loaded() else workers)
    groups = index.series()
    return index, groups, list(index.skipped)


def convert(targets: Sequence[str], output_dir: str | os.PathLike, *, database: Any = None, fmt: str = "nii.gz",
            pattern: str = DEFAULT_PATTERN, workers: int | None = None, progress: Progress | None = None,
            sidecars: bool = True, provenance: bool = True) -> ConversionSummary:
    """Convert every series of `targets` (folders/files, or UIDs of `database`) into `output_dir`."""
    from .headerscan import default_workers

    started = time.perf_counter()
    if fmt not in FORMATS:
        raise DICOMBrowserError(f"unknown output format {fmt!r} (use {', '.join(FORMATS)})")
    expand_pattern(pattern, {})  # a bad placeholder fails before any work
    output = Path(output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    index, groups, skipped_files = collect_series(targets, database, workers)
    firsts = {uid: files[0] for uid, files in groups.items()}
    values = index.file_values(list(firsts.values()), name_tags())
    names = base_names([(values[firsts[uid]], firsts[uid]) for uid in groups], pattern)
    jobs = []
    for (uid, files), name in zip(groups.items(), names):
        v = values[files[0]]
        label = ": ".join(p for p in (v.get("0020,0011", ""), v.get("0008,103e", "")) if p) or uid
        jobs.append(SeriesJob(uid, files, name, label))
    options = _Options(str(output), fmt, sidecars, provenance)
    if sidecars:
        _version()  # once here, inherited by forked workers
    summary = ConversionSummary(series=len(jobs), skipped_files=skipped_files)
    available = default_workers() if workers is None else max(1, int(workers))
    summary.workers = max(1, min(available, len(jobs)))
    database_folder = str(database.folder) if (index is database and database is not None) else None
    results: dict[int, tuple[list[WrittenImage], list[SkippedSeries]]] = {}
    order = sorted(range(len(jobs)), key=lambda n: -len(jobs[n].files))  # largest first: balanced cores
    if progress is not None:
        progress(0, len(jobs), "")
    if summary.workers == 1:
        _init_worker(index, None, options)
        for done, n in enumerate(order, 1):
            results[n] = _convert_job(jobs[n])
            if progress is not None:
                progress(done, len(jobs), jobs[n].label)
    else:
        _import_for_workers()
        context = _context()
        shared = index if database_folder is None else None
        with context.Pool(summary.workers, initializer=_init_worker, initargs=(shared, database_folder, options)) as pool:
            iterator = pool.imap_unordered(_indexed_job, [(n, jobs[n]) for n in order])
            for done, (n, result) in enumerate(iterator, 1):
                results[n] = result
                if progress is not None:
                    progress(done, len(jobs), jobs[n].label)
    for n in range(len(jobs)):
        written, skipped = results[n]
        summary.written.extend(written)
        summary.skipped.extend(skipped)
    summary.seconds = time.perf_counter() - started
    return summary


def _import_for_workers() -> None:
    """What every worker imports for its first series, imported once here so forked workers
    inherit it (each imported them itself: ~5 ms a worker). Light modules only: no VTK."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: F401  (pixelreader's read-ahead thread)

    from . import multiframe, volumeio  # noqa: F401


def _indexed_job(item: tuple[int, SeriesJob]) -> tuple[int, tuple[list[WrittenImage], list[SkippedSeries]]]:
    return item[0], _convert_job(item[1])


def read_provenance(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a provenance sidecar as dicts (t, k, SOPInstanceUID, frame, tile, file)."""
    document = json.loads(Path(path).read_text())
    return [dict(zip(document["columns"], row)) for row in document["slices"]]


def provenance_lookup(path: str | os.PathLike, k: int, t: int = 0) -> dict[str, Any]:
    """Where slice k of volume t of an image came from (its provenance sidecar's row)."""
    for row in read_provenance(path):
        if row["k"] == k and row["t"] == t:
            return row
    raise NotFoundError(f"{path}: no slice k={k}, t={t}")


__all__ = ["convert", "ConversionSummary", "WrittenImage", "SkippedSeries", "PLACEHOLDERS", "DEFAULT_PATTERN",
           "expand_pattern", "read_provenance", "provenance_lookup", "write_loadable"]

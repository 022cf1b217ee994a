"""The scalar volume plugin: image series -> 3D (and 4D) scalar volumes, with geometry checks.

Examine uses only cached tag values (and, for multi-frame objects, the header's functional
groups), never pixel data. It splits a series into stacks by orientation, size and image/frame
type, sorts each stack along the slice normal, recognises repeated positions as echoes (split)
or time points (one 4D loadable, plus each volume), checks the geometry (`geometry.check_geometry`)
and offers a regularized loadable when the acquisition grid is irregular. Load reads the frames
through `pixelreader`, applies rescale, and adds the node through `scene`.

Coordinate frames: DICOM positions are LPS mm; the matrices given to the scene are IJK-to-RAS.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from DICOMBrowser.DICOMBrowserLib import geometry
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, DICOMFileError, LoadError
from DICOMBrowser.DICOMBrowserLib.geometry import FrameGeometry
from DICOMBrowser.DICOMBrowserLib.plugins import series_label

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

# SOP classes that have Rows/Columns but are not a stack of scalar images (other plugins' job)
NOT_SCALAR_VOLUMES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.11.1": "Grayscale Softcopy Presentation State",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
    # stored values are not dose: the RT dose plugin applies DoseGridScaling (Gy)
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
}
#: private SOP classes without a pixel stack (Philips private MR series data, spectra, ...)
NOT_SCALAR_PREFIXES = ("1.3.46.670589.11.0.0.12.",)
#: modalities that are never a scalar image stack
NOT_SCALAR_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "SR", "PR", "KO", "REG", "DOC"}
#: modalities whose series are expected to be 3D stacks (a single slice there is worth a warning)
VOLUME_MODALITIES = {"CT", "MR", "PT", "NM"}
#: photometric interpretations loaded as colour (vtkMRMLVectorVolumeNode, RGB)
COLOR_PHOTOMETRICS = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422",
                      "PALETTE COLOR"}
#: transfer syntax whose pixel data offset no header scan records (the body is compressed)
DEFLATED = "1.2.840.10008.1.2.1.99"
#: direction cosine difference (unitless, about 3 degrees) beyond which frames are another plane
ORIENTATION_SPLIT = 0.05

#: time keys tried in order for single-frame series with repeated positions ("gggg,eeee")
TIME_TAGS = ["0020,0100", "0018,1060", "0020,0012", "0008,0032", "0008,0033"]
TIME_TAG_NAMES = {"0020,0100": "TemporalPositionIdentifier", "0018,1060": "TriggerTime",
                  "0020,0012": "AcquisitionNumber", "0008,0032": "AcquisitionTime", "0008,0033": "ContentTime",
                  "temporal_position": "TemporalPositionIndex", "trigger_time": "NominalCardiacTriggerDelayTime",
                  "file": "file"}
ECHO_TAGS = ["0018,0086", "0018,0081"]
#: b-value tags: standard, GE, Siemens, Philips (any that varies means a diffusion series)
B_VALUE_TAGS = ["0018,9087", "0043,1039", "0019,100c", "2001,1003"]
#: GE's direct field map sequences (Internal Pulse Sequence Name 0019,109E, lower case): per GE,
#: each slice position holds two images, the field map in Hz first and the magnitude second
GE_DIRECT_FIELD_MAPS = {"b0map", "3db0map", "b0rf"}
#: GE's private image type (0043,102F): 0 magnitude, 1 phase, 2 real, 3 imaginary
GE_IMAGE_COMPONENTS = {"1": "ph", "2": "real", "3": "imaginary"}


@dataclass
class _Stack:
    """Frames that can form one volume (or one time series), with why they were split out."""

    records: list[FrameGeometry]
    label: str = ""
    image_type: str = ""
    notes: list[str] = field(default_factory=list)
    color: bool = False  # RGB/YBR/palette images: a vector volume
    #: dcm2niix's file name suffix for this part of the series ("_e2", "_ph", "_e2_ph",
    #: "_fieldmaphz", ...): echo and image component, '' for a plain magnitude series
    suffix: str = ""


class DICOMScalarVolumePlugin(DICOMPlugin):
    """CT, MR, PET, ... image series as scalar volumes (vtkMRMLScalarVolumeNode), 4D as sequences;
    colour images (RGB, YBR, palette) as vector volumes (vtkMRMLVectorVolumeNode), as Slicer does."""

    loadType = "Scalar Volume"
    # 2: colour images offered, files without pixel data skipped; 3: mosaics unpacked, time series
    # from repeated position sets, dcm2niix's echo/phase suffixes, Philips precise scaling
    version = "3"
    tags = {
        "sopClassUID": "0008,0016", "sopInstanceUID": "0008,0018", "imageType": "0008,0008",
        "modality": "0008,0060", "seriesInstanceUID": "0020,000e", "seriesDescription": "0008,103e",
        "seriesNumber": "0020,0011", "instanceNumber": "0020,0013", "studyInstanceUID": "0020,000d",
        "position": "0020,0032", "orientation": "0020,0037", "pixelSpacing": "0028,0030",
        "sliceThickness": "0018,0050", "rows": "0028,0010", "columns": "0028,0011",
        "samplesPerPixel": "0028,0002", "numberOfFrames": "0028,0008", "photometricInterpretation": "0028,0004",
        "bitsAllocated": "0028,0100", "bitsStored": "0028,0101", "pixelRepresentation": "0028,0103",
        "planarConfiguration": "0028,0006",
        "rescaleIntercept": "0028,1052", "rescaleSlope": "0028,1053",
        "windowCenter": "0028,1050", "windowWidth": "0028,1051",
        "temporalPositionIdentifier": "0020,0100", "triggerTime": "0018,1060",
        "acquisitionNumber": "0020,0012", "acquisitionTime": "0008,0032", "contentTime": "0008,0033",
        "echoNumbers": "0018,0086", "echoTime": "0018,0081", "gantryDetectorTilt": "0018,1120",
        "bValue": "0018,9087", "geBValue": "0043,1039", "siemensBValue": "0019,100c", "philipsBValue": "2001,1003",
        "frameOfReferenceUID": "0020,0052", "patientID": "0010,0020", "patientName": "0010,0010",
        "manufacturer": "0008,0070", "philipsScaleSlope": "2005,100e", "geImageType": "0043,102f",
        "geInternalPulseSequenceName": "0019,109e",
    }

    # --- examine -------------------------------------------------------------------------
    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        """Loadables for one series' files (a list of paths); reads no pixel data."""
        files = [str(f) for f in files]
        values = self._values(files)
        if self.database is not None:  # load() soon after (same plugin object) needs them again
            self.__dict__.setdefault("_examined", {}).update(values)
        without_pixels = self._files_without_pixel_data(files, values)
        records: list[FrameGeometry] = []
        color_records: list[FrameGeometry] = []
        skipped: list[str] = []
        for path in files:
            v = values[path]
            sop_class = v.get("0008,0016", "")
            if (sop_class in NOT_SCALAR_VOLUMES or sop_class.startswith(NOT_SCALAR_PREFIXES)
                    or v.get("0008,0060", "") in NOT_SCALAR_MODALITIES or not v.get("0028,0010") or not v.get("0028,0011")):
                skipped.append(path)
                continue
            if path in without_pixels:
                logger.info("Scalar volume plugin skips %s: it has no pixel data", path)
                skipped.append(path)
                continue
            color = _is_color(v)
            if color is None:
                logger.info("Scalar volume plugin skips %s: %s samples per pixel, PhotometricInterpretation %r",
                            path, v.get("0028,0002", ""), v.get("0028,0004", ""))
                skipped.append(path)
                continue
            (color_records if color else records).extend(self._frame_records(path, v))
        if skipped:
            logger.debug("Scalar volume plugin skipped %d files that are not images it reads", len(skipped))
        if not records and not color_records:
            return []
        first = values[(records or color_records)[0].path]
        series_name = self._series_name(first)
        loadables: list[DICOMLoadable] = []
        stacks = self._split_stacks(records, values) if records else []
        color_stacks = self._split_stacks(color_records, values) if color_records else []
        for stack in color_stacks:
            stack.color = True
            stack.label = ", ".join(p for p in ("colour", stack.label) if p) if records else stack.label
        stacks += color_stacks
        biggest = max(len(s.records) for s in stacks)
        self._multi_echo = len({_echo_number(r) for r in records + color_records} - {None}) > 1
        for stack in stacks:
            stack.suffix = self._suffix(stack.records)
            if stack.suffix:  # named as dcm2niix names the file: "4: gre_field_ph [e2_ph]"
                stack.label = stack.suffix[1:]
            loadables.extend(self._loadables_for_stack(stack, values, series_name,
                                                       len(stacks) > 1 or bool(stack.suffix), biggest))
        return loadables + self._display_scaling_alternatives(loadables)

    def _suffix(self, records: list[FrameGeometry], component: str | None = None) -> str:
        """dcm2niix's suffix for these frames: `_e<n>` when they share echo number n and n > 1 or
        the series has several echoes, then `_ph`, `_real`, `_imaginary` or `_fieldmaphz`."""
        echoes = {_echo_number(r) for r in records}
        echo = next(iter(echoes)) if len(echoes) == 1 else None
        suffix = f"_e{echo}" if echo is not None and (echo > 1 or getattr(self, "_multi_echo", False)) else ""
        if component is None:
            components = {_component(r) for r in records}
            component = next(iter(components)) if len(components) == 1 else ""
        return suffix + (f"_{component}" if component else "")

    @staticmethod
    def _display_scaling_alternatives(loadables: list[DICOMLoadable]) -> list[DICOMLoadable]:
        """For each default loadable of Philips images with a private scale slope, the same frames
        with the display scaling (RescaleSlope/Intercept only), as an alternative."""
        alternatives = []
        for loadable in loadables:
            if loadable.selected and loadable.extra.get("philips_scale_slope"):
                extra = dict(loadable.extra, scaling="display")
                alternatives.append(DICOMLoadable(
                    name=f"{loadable.name} [Philips display values]", files=list(loadable.files),
                    tooltip=loadable.tooltip + " Display values (RescaleSlope/Intercept), not Philips' precise "
                    "floating-point values (private scale slope 2005,100E).",
                    confidence=round(max(loadable.confidence - 0.1, 0.0), 3), selected=False, warning=loadable.warning,
                    plugin=loadable.plugin, extra=extra))
        return alternatives

    def _values(self, files: list[str]) -> dict[str, dict[str, str]]:
        """The declared tags of each file: the database tag cache, else a header scan (kept)."""
        tags = sorted(set(self.tags.values()))
        if self.database is not None:
            found = self.database.file_values(files, tags)
            return {f: dict(found.get(f, {})) for f in files}
        from DICOMBrowser.DICOMBrowserLib.headerscan import scan_files

        scanned = self.__dict__.setdefault("_scanned", {})
        pixels = self.__dict__.setdefault("_pixels", {})  # path -> pixel data offset (None: no pixel data)
        missing = [f for f in files if f not in scanned]
        # in-process (workers=1): a plugin must not fork a process that may hold VTK or Qt
        for result in scan_files(missing, tags, workers=1):
            if result.is_dicom and not result.error:
                scanned[result.path] = result.values
                if result.transfer_syntax != DEFLATED:
                    pixels[result.path] = result.pixel_data_offset
            elif result.is_dicom:  # e.g. truncated pixel data: the header may still be readable
                try:
                    scanned[result.path] = {t: self.fileValue(result.path, t) for t in tags}
                except (OSError, ValueError, EOFError) as error:
                    logger.warning("Scalar volume plugin skips %s: %s", result.path, error)
                    scanned[result.path] = {t: "" for t in tags}
            else:
                scanned[result.path] = {t: "" for t in tags}
        return {f: scanned[f] for f in files}

    def _files_without_pixel_data(self, files: list[str], values: dict[str, dict[str, str]]) -> set[str]:
        """Files whose header has no Pixel Data: the index's PixelDataOffset (database) or the header
        scan's pixel data offset (no database). Deflated files are never judged (no offset recorded);
        files the index does not know are kept."""
        if self.database is None:
            pixels = self.__dict__.get("_pixels", {})
            return {f for f in files if f in pixels and pixels[f] is None}
        from DICOMBrowser.DICOMBrowserLib.pixelreader import PixelLocation

        absent: set[str] = set()
        wanted = set(files)
        locations = self.__dict__.setdefault("_locations", {})  # kept for load: no index lookup there
        for series_uid in dict.fromkeys(values[f].get("0020,000e", "") for f in files):
            if not series_uid:
                continue
            for row in self.database.instances(series_uid):
                path = str(row.get("FilePath", ""))
                if path not in wanted:
                    continue
                offset, length = row.get("PixelDataOffset"), row.get("PixelDataLength")
                syntax = str(row.get("TransferSyntaxUID") or "")
                if offset in (None, "") and syntax != DEFLATED:
                    absent.add(path)
                locations[path] = PixelLocation(path, syntax, int(offset) if offset not in (None, "") else None,
                                                int(length) if length not in (None, "") else None)
        return absent

    def _frame_records(self, path: str, v: dict[str, str]) -> list[FrameGeometry]:
        """Per-frame geometry of one file: from the cached tags, or the functional groups."""
        frames = geometry.parse_numbers(v.get("0028,0008", ""))
        if frames and int(frames[0]) > 1:
            from DICOMBrowser.DICOMBrowserLib import multiframe

            # examine asks for a file's frames more than once and the read again: the functional
            # groups of an enhanced file are walked once per plugin object (records are read-only)
            known = self.__dict__.setdefault("_multiframe_records", {})
            if path in known:
                return list(known[path])
            try:
                records = multiframe.frame_geometries(path)
            except DICOMFileError as error:
                logger.warning("Scalar volume plugin: %s", error)
                return []
            for record in records:  # a fresh dict per frame
                record.attributes["modality"] = v.get("0008,0060", "")  # type: ignore[index]
                record.attributes["manufacturer"] = v.get("0008,0070", "")  # type: ignore[index]
            known[path] = records
            return list(records)
        # examine and the read (stream_volume's plan) both ask: parsed once per plugin object
        classic = self.__dict__.setdefault("_classic_records", {})
        if path in classic:
            return [classic[path]]
        keys = {tag: v.get(tag, "") for tag in TIME_TAGS + ECHO_TAGS + B_VALUE_TAGS}
        keys["modality"] = v.get("0008,0060", "")
        keys["image_type"] = v.get("0008,0008", "")
        keys["rescale_slope"] = v.get("0028,1053", "")
        keys["rescale_intercept"] = v.get("0028,1052", "")
        keys["manufacturer"] = v.get("0008,0070", "")
        keys["philips_scale_slope"] = v.get("2005,100e", "")
        keys["ge_image_type"] = v.get("0043,102f", "")
        keys["ge_sequence"] = v.get("0019,109e", "")
        record = classic[path] = geometry.frame_geometry_from_values(path, v, attributes=keys)
        return [record]

    @staticmethod
    def _series_name(v: dict[str, str]) -> str:
        return series_label(v.get("0020,0011", ""), v.get("0008,103e", ""), "Unnamed series")

    @staticmethod
    def _image_type(record: FrameGeometry) -> str:
        return record.attributes.get("frame_type") or record.attributes.get("image_type", "")

    def _split_stacks(self, records: list[FrameGeometry], values: dict[str, dict[str, str]]) -> list[_Stack]:
        """Split by size, orientation (components more than ORIENTATION_SPLIT apart: different
        planes, e.g. a localizer) and image/frame type. Smaller orientation differences stay in one
        stack, where `check_geometry` reports them (tolerance 1e-6)."""
        groups: "OrderedDict[tuple, list[FrameGeometry]]" = OrderedDict()
        orientations: list[np.ndarray] = []
        for record in records:
            orientation_index = -1
            if record.orientation is not None:
                vector = np.asarray(record.orientation, dtype=float)
                for index, known in enumerate(orientations):
                    if np.max(np.abs(known - vector)) <= ORIENTATION_SPLIT:
                        orientation_index = index
                        break
                else:
                    orientations.append(vector)
                    orientation_index = len(orientations) - 1
            key = ((record.rows, record.columns), orientation_index, self._image_type(record))
            groups.setdefault(key, []).append(record)
        split_by = {name for name, index in (("size", 0), ("orientation", 1), ("image type", 2))
                    if len({k[index] for k in groups}) > 1}
        stacks = []
        seen_labels: dict[str, int] = {}
        for (size, orientation_index, image_type), members in groups.items():
            parts = []
            if "size" in split_by:
                parts.append(f"{size[0]}x{size[1]}")
            if "orientation" in split_by and orientation_index >= 0:
                parts.append(_plane_name(orientations[orientation_index]))
            if "image type" in split_by:
                parts.append(image_type.replace("\\", " ") or "no image type")
            label = ", ".join(parts)
            seen_labels[label] = seen_labels.get(label, 0) + 1
            if seen_labels[label] > 1:  # e.g. radial planes: several "sagittal" orientations
                label = f"{label} {seen_labels[label]}"
            stacks.append(_Stack(members, label=label, image_type=image_type))
        return stacks

    def _loadables_for_stack(self, stack: _Stack, values: dict[str, dict[str, str]], series_name: str,
                             split: bool, biggest: int) -> list[DICOMLoadable]:
        sorted_records = geometry.sort_frames(stack.records)
        name = f"{series_name} [{stack.label}]" if split and stack.label else series_name
        base_confidence, notes = self._confidence(sorted_records, stack, values, biggest)
        if _is_mosaic(stack.image_type) and not stack.color:
            echoes = self._mosaic_echoes(stack)
            if echoes is not None:  # multi-echo EPI: each echo its own time series, as dcm2niix writes them
                loadables = []
                for number, members in enumerate(echoes, start=1):
                    suffix = self._suffix(members) or f"_e{number}"
                    loadables.extend(self._loadables_for_stack(
                        _Stack(members, label=suffix[1:] if not split or stack.suffix else f"{stack.label}, {suffix[1:]}",
                               image_type=stack.image_type, suffix=suffix), values, series_name, True, len(members)))
                return loadables
            loadables, problem = self._mosaic_loadables(sorted_records, name, base_confidence, notes)
            if loadables:
                return self._with_suffix(loadables, stack.suffix)
            base_confidence = 0.05
            notes = notes + [f"a mosaic that could not be unpacked ({problem}): this loads the tiles as they are"]
        groups = geometry.position_groups(sorted_records)
        repeats = max(len(g) for g in groups)
        if repeats > 1:
            echo_key = _splitting_key(groups, ["echo_time", *ECHO_TAGS], require_all_positions=True)
            if echo_key is not None:
                loadables = []
                for value in _sorted_values({r.attributes.get(echo_key, "") for r in sorted_records}):
                    members = [r for r in sorted_records if r.attributes.get(echo_key, "") == value]
                    suffix = self._suffix(members)
                    label = suffix[1:] if suffix else f"echo {value}"
                    loadables.extend(self._loadables_for_stack(
                        _Stack(members, label=label if not split or stack.suffix else f"{stack.label}, {label}",
                               image_type=stack.image_type, color=stack.color, suffix=suffix),
                        values, series_name, True, len(members)))
                return loadables
            parts = _ge_direct_field_map_parts(groups)
            if parts is not None:
                loadables = []
                for component, members in parts:
                    suffix = self._suffix(members, component)
                    loadables.extend(self._loadables_for_stack(
                        _Stack(members, label=suffix[1:] if suffix else "magnitude", image_type=stack.image_type,
                               suffix=suffix), values, series_name, True, len(members)))
                return loadables
            time_key = _splitting_key(groups, ["temporal_position", "trigger_time", *TIME_TAGS, "file"],
                                      require_all_positions=True)
            if time_key is not None and not stack.color:  # colour 4D: no vector volume sequences yet
                return self._with_suffix(
                    self._time_series_loadables(sorted_records, time_key, name, base_confidence, notes), stack.suffix)
            volumes = _repeated_position_sets(groups)
            if volumes is not None and not stack.color:
                return self._with_suffix(self._sequence_loadables(
                    sorted_records, volumes, [str(i + 1) for i in range(len(volumes))],
                    [float(i) for i in range(len(volumes))], "acquisition order", name, base_confidence, notes),
                    stack.suffix)
        loadables = self._volume_loadables(sorted_records, name, base_confidence, notes, color=stack.color)
        return self._with_suffix(
            loadables + self._sub_series_loadables(sorted_records, name, base_confidence, notes, stack.color),
            stack.suffix)

    @staticmethod
    def _mosaic_echoes(stack: _Stack) -> list[list[FrameGeometry]] | None:
        """A mosaic stack's files split by echo (EchoNumbers, else EchoTime), in echo order; None
        when the stack holds one echo. (Mosaics have one position per file, so the repeated-position
        split below does not see echoes.)"""
        for tag in ECHO_TAGS:
            keys = [r.attributes.get(tag, "") for r in stack.records]
            if "" in keys or len(set(keys)) < 2:
                continue
            return [[r for r in stack.records if r.attributes.get(tag, "") == value] for value in _sorted_values(set(keys))]
        return None

    @staticmethod
    def _with_suffix(loadables: list[DICOMLoadable], suffix: str) -> list[DICOMLoadable]:
        """Record dcm2niix's file name suffix (echo, phase, ...) on each loadable, for writers and
        comparisons that name outputs as dcm2niix does."""
        for loadable in loadables:
            loadable.extra.setdefault("suffix", suffix)
        return loadables

    def _mosaic_loadables(self, records: list[FrameGeometry], name: str, confidence: float,
                          notes: list[str]) -> tuple[list[DICOMLoadable], str]:
        """Mosaics (Siemens MOSAIC, UIH VFRAME: each file tiles the slices of one volume): one 3D volume per file, and
        a 4D loadable (default) when there are several, unpacked as the diffusion reader does
        (tile order, CSA slice normal, mosaic position correction). Returns (loadables, why not)."""
        from DICOMBrowser.DICOMBrowserLib.diffusion import series as mosaic_series

        files = list(dict.fromkeys(r.path for r in records))
        try:
            plan = mosaic_series.plan_dwi(files, require_diffusion=False, database=self.database)
        except DICOMBrowserError as error:
            logger.info("%s: mosaic not unpacked: %s", name, error)
            return [], str(error)
        if plan.volumes[0][0].mosaic_layout is None:
            return [], "no mosaic layout (neither a Siemens mosaic nor a UIH grid)"
        volume_files = [plan.files[volume[0].file_index] for volume in plan.volumes]
        warning = " ".join(w if w.endswith(".") else f"{w}." for w in plan.warnings if "all b = 0" not in w)
        if notes:
            warning = " ".join([warning, *[f"{n}." for n in notes]]).strip()
        slices, rows, columns = plan.shape_kji
        record_of = {r.path: r for r in records}

        def loadable(label: str, paths: list[str], volume_confidence: float) -> DICOMLoadable:
            count = len(paths)
            return DICOMLoadable(
                name=label, files=paths, confidence=round(max(min(volume_confidence, 1.0), 0.0), 3), selected=False,
                tooltip=f"{plan.vendor} mosaic: {slices} slices" + (f" x {count} volumes" if count > 1 else "")
                        + f", {rows}x{columns}", warning=warning, plugin="DICOMScalarVolumePlugin",
                extra={"kind": "mosaic", "index_values": [float(i) for i in range(count)],
                       "index_name": "acquisition order",
                       "philips_scale_slope": False, "slices": slices})

        loadables = []
        if len(volume_files) > 1:
            series = loadable(f"{name} [4D, {len(volume_files)} volumes by acquisition order]", volume_files, confidence)
            series.selected = confidence >= 0.5
            loadables.append(series)
        for index, path in enumerate(volume_files):
            label = name if len(volume_files) == 1 else f"{name} [volume {index + 1}]"
            single = loadable(label, [path], confidence if len(volume_files) == 1 else max(confidence - 0.15, 0.0))
            single.selected = len(volume_files) == 1 and confidence >= 0.5
            loadables.append(single)
        if any(record_of[p].attributes.get("0019,100c") for p in files if p in record_of):
            for item in loadables:  # diffusion mosaics: the diffusion plugin's job, this is the plain reading
                item.tooltip += " (b-values and gradients not kept: see the diffusion loadable)"
        return loadables, ""

    def _sub_series_loadables(self, records: list[FrameGeometry], name: str, confidence: float,
                              notes: list[str], color: bool = False) -> list[DICOMLoadable]:
        """Where acquisition, echo or temporal values differ along a stack, also offer each part.

        Like Slicer's sub-series split, but only when every part has at least two slices, so a
        scanner that numbers each slice's acquisition does not flood the list. Not selected.
        """
        loadables: list[DICOMLoadable] = []
        for key in ("0020,0012", "0018,0086", "0020,0100", "temporal_position"):
            values = [r.attributes.get(key, "") for r in records]
            distinct = _sorted_values(set(values))
            if "" in distinct or len(distinct) < 2 or len(records) < 2 * len(distinct):
                continue
            key_name = TIME_TAG_NAMES.get(key, {"0018,0086": "EchoNumbers"}.get(key, key))
            for value in distinct:
                part = [r for r in records if r.attributes.get(key, "") == value]
                if len(part) < 2:
                    break
                for loadable in self._volume_loadables(part, f"{name} [{key_name} {value}]",
                                                       min(confidence, 0.4), notes, color=color):
                    loadable.selected = False
                    loadables.append(loadable)
        return loadables

    def _confidence(self, records: list[FrameGeometry], stack: _Stack, values: dict[str, dict[str, str]],
                    biggest: int) -> tuple[float, list[str]]:
        """A plain CT/MR stack scores 0.6; what another plugin reads better scores lower."""
        notes: list[str] = []
        first = values[records[0].path]
        confidence = 0.6 if first.get("0008,0060", "") in ("CT", "MR", "PT", "NM") else 0.5
        image_type = stack.image_type.upper()
        b_values = {_first_number(r.attributes.get(tag, "")) for r in records for tag in (*B_VALUE_TAGS, "b_value")}
        b_values.discard(None)
        if len(b_values) > 1 or any(b and b > 0 for b in b_values):
            confidence = min(confidence, 0.3)
            notes.append("diffusion-weighted images: the diffusion plugin reads gradients and b-values")
        # a small stack beside a bigger one is a localizer, unless each record is a whole volume (mosaics)
        if "LOCALIZER" in image_type or ("SCOUT" in image_type) or (len(records) <= 3 < biggest
                                                                   and not _is_mosaic(image_type)):
            confidence = min(confidence, 0.3)
            notes.append("a localizer/scout, kept apart from the main volume")
        return confidence, notes

    def _informational_kinds(self, records: list[FrameGeometry]) -> set[str]:
        """Finding kinds that are facts, not problems, for this stack: no confidence penalty, logged at
        INFO. A single slice always (in the warning text only where a 3D stack is expected: CT, MR,
        PET, NM); for other modalities (X-ray, SC, US, ...) also missing geometry of 2D pictures."""
        if self._modality(records) in VOLUME_MODALITIES:
            return {geometry.SINGLE_SLICE}
        return {geometry.SINGLE_SLICE, geometry.MISSING_GEOMETRY}

    def _modality(self, records: list[FrameGeometry]) -> str:
        return records[0].attributes.get("modality", "") if records else ""

    def _report_findings(self, name: str, records: list[FrameGeometry],
                         findings: list[geometry.Finding]) -> tuple[float, list[geometry.Finding]]:
        """Log each finding (WARNING, or INFO for informational ones); returns the confidence penalty
        and the findings worth the loadable's warning text."""
        informational = self._informational_kinds(records)
        shown = []
        for finding in findings:
            logger.log(logging.INFO if finding.kind in informational else logging.WARNING, "%s: %s", name, finding.message)
            if finding.kind not in informational or (finding.kind == geometry.SINGLE_SLICE
                                                     and self._modality(records) in VOLUME_MODALITIES):
                shown.append(finding)
        penalty = 0.1 if {f.kind for f in findings} - informational else 0.0
        return penalty, shown

    def _volume_loadables(self, records: list[FrameGeometry], name: str, confidence: float,
                          notes: list[str], color: bool = False) -> list[DICOMLoadable]:
        findings = geometry.check_geometry(records)
        kinds = {f.kind for f in findings}
        penalty, shown = self._report_findings(name, records, findings)
        main = self._loadable(name, records, [records], confidence - penalty, notes, findings, kind="volume",
                              color=color, shown=shown)
        main.selected = confidence >= 0.5
        loadables = [main]
        if not color and kinds & geometry.REGULARIZABLE_KINDS and not kinds & {geometry.MISSING_GEOMETRY, geometry.ORIENTATION_VARIES,
                                                                  geometry.DUPLICATE_POSITIONS, geometry.SIZE_VARIES}:
            corrected = "; ".join(f.kind.replace("_", " ") for f in findings if f.kind in geometry.REGULARIZABLE_KINDS)
            fixed = self._loadable(f"{name} [regularized]", records, [records], confidence - penalty - 0.05,
                                   notes + [f"regularized ({corrected}): resampled onto a regular grid (slices "
                                            "interpolated along the normal, tilt undone by in-plane shifts)"],
                                   [], kind="volume", regularize=True)
            fixed.tooltip += " Corrects: " + geometry.findings_text(findings)
            fixed.selected = False
            loadables.append(fixed)
        return loadables

    def _time_series_loadables(self, records: list[FrameGeometry], time_key: str, name: str, confidence: float,
                               notes: list[str]) -> list[DICOMLoadable]:
        by_time: dict[str, list[FrameGeometry]] = {}
        for record in records:  # records are sorted along the normal, so each list is too
            by_time.setdefault(record.attributes.get(time_key, "") if time_key != "file" else record.path, []).append(record)
        times = _sorted_values(set(by_time))
        labels = [time if time_key != "file" else str(index + 1) for index, time in enumerate(times)]
        return self._sequence_loadables(records, [by_time[t] for t in times], labels,
                                        [_time_value(t, i) for i, t in enumerate(times)],
                                        TIME_TAG_NAMES.get(time_key, time_key), name, confidence, notes)

    def _sequence_loadables(self, records: list[FrameGeometry], volumes: list[list[FrameGeometry]],
                            labels: list[str], index_values: list[float], key_name: str, name: str,
                            confidence: float, notes: list[str]) -> list[DICOMLoadable]:
        """The 4D loadable (selected when confident) and each volume as an alternative."""
        findings = geometry.check_geometry(volumes[0])
        penalty, shown = self._report_findings(name, volumes[0], findings)
        series = self._loadable(f"{name} [4D, {len(volumes)} volumes by {key_name}]", records, volumes,
                                confidence - penalty, notes, findings, kind="sequence", shown=shown)
        series.extra["index_values"] = index_values
        series.extra["index_name"] = key_name
        series.selected = confidence >= 0.5
        loadables = [series]
        for label, volume in zip(labels, volumes):
            single = self._loadable(f"{name} [{key_name} {label}]", volume, [volume],
                                    max(confidence - penalty - 0.15, 0.0), notes, findings, kind="volume", shown=shown)
            single.selected = False
            loadables.append(single)
        return loadables

    def _loadable(self, name: str, records: list[FrameGeometry], volumes: list[list[FrameGeometry]],
                  confidence: float, notes: list[str], findings: list[geometry.Finding], *, kind: str,
                  regularize: bool = False, color: bool = False,
                  shown: list[geometry.Finding] | None = None) -> DICOMLoadable:
        """`findings` all go to extra["findings"]; `shown` (default: all) make the warning text."""
        files: list[str] = []
        index_of: dict[str, int] = {}
        for volume in volumes:
            for record in volume:
                if record.path not in index_of:
                    index_of[record.path] = len(files)
                    files.append(record.path)
        frames = [[[index_of[r.path], r.frame] for r in volume] for volume in volumes]
        warning = geometry.findings_text(findings if shown is None else shown)
        if notes:
            warning = " ".join([warning, *[f"{n}." for n in notes]]).strip()
        slices = len(volumes[0])
        tooltip = (f"{slices} slices" + (f" x {len(volumes)} volumes" if len(volumes) > 1 else "")
                   + f", {records[0].rows}x{records[0].columns}" + (", colour" if color else ""))
        return DICOMLoadable(
            name=name, files=files, tooltip=tooltip, confidence=round(max(min(confidence, 1.0), 0.0), 3),
            selected=False, warning=warning, plugin="DICOMScalarVolumePlugin",
            extra={"kind": kind, "frames": frames, "regularize": regularize, "color": color,
                   "philips_scale_slope": any(_philips_scale_slope(r) for r in records),
                   "findings": [{"kind": f.kind, "message": f.message, "files": f.files} for f in findings]},
        )

    # --- load ------------------------------------------------------------------------------
    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        """Add the loadable's volume (or 4D sequence) to `scene`; returns the node."""
        from DICOMBrowser.DICOMBrowserLib import scene as scene_module

        volume = self.read_volume(loadable)
        identity = self._identity(loadable.files[0])
        series_uid = identity.get("SeriesInstanceUID", "")
        # read_volume looked up every file's tags in one batch: no per-file lookup here
        instance_uids = [volume.file_values.get(f, {}).get("0008,0018", "") for f in loadable.files]
        if volume.color:
            node = scene_module.add_vector_volume(
                scene, volume.voxels, volume.ijk_to_ras, loadable.name, series_uid=series_uid,
                instance_uids=instance_uids, dicom_identity=identity)
        elif volume.voxels.ndim == 4:
            node = scene_module.add_volume_sequence(
                scene, volume.voxels, volume.ijk_to_ras, loadable.name, series_uid=series_uid,
                instance_uids=instance_uids, index_values=loadable.extra.get("index_values"),
                index_name=loadable.extra.get("index_name", "time"), index_unit="",
                window_level=volume.window_level, dicom_identity=identity)
        else:
            node = scene_module.add_scalar_volume(
                scene, volume.voxels, volume.ijk_to_ras, loadable.name, series_uid=series_uid,
                instance_uids=instance_uids, window_level=volume.window_level, dicom_identity=identity)
        if loadable.extra.get("regularize"):
            node.SetAttribute("DICOM.regularized", "1")
        if volume.scaling:
            node.SetAttribute("DICOM.scaling", volume.scaling)
        if loadable.extra.get("suffix"):
            node.SetAttribute("DICOM.suffix", loadable.extra["suffix"])
        if loadable.warning:
            node.SetAttribute("DICOM.warning", loadable.warning)
        return node

    def read_volume(self, loadable: DICOMLoadable, stored: bool = False) -> "VolumeData":
        """Voxels (k, j, i) or (t, k, j, i), modality values, and the IJK-to-RAS matrix (RAS mm);
        colour loadables: (k, j, i, 3) RGB (uint8 for 8-bit images), no rescale.

        `stored=True` (file writers): when every frame shares one (slope, intercept), the stored
        values in their own dtype and that pair in `VolumeData.rescale`, for NIfTI's scl fields
        as dcm2niix writes them; modality values otherwise (rescale None)."""
        from DICOMBrowser.DICOMBrowserLib import pixelreader

        if loadable.extra.get("kind") == "mosaic":
            return self._read_mosaic(loadable)
        plan = self._read_plan(loadable)
        files, values, records, flat = plan.files, plan.values, plan.records, plan.flat
        color = bool(loadable.extra.get("color"))
        try:
            if color:
                stack = pixelreader.read_rgb_frames(files, self.database, flat)
            else:
                stack = self._frame_reader(plan).read_frames()
        except DICOMBrowserError:
            raise
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot read pixels of {files[0]}...: {error}") from error
        if color:
            if len(records) > 1 or loadable.extra.get("regularize"):
                raise LoadError(f"{loadable.name}: colour images load as one 3D vector volume only")
            return VolumeData(stack, geometry.ijk_to_ras(records[0]), None, records[0], values, color=True)
        if stack.ndim != 3:
            raise LoadError(f"{loadable.name}: pixel frames of shape {stack.shape[1:]} are not grey-scale")
        slopes, intercepts = plan.slopes, plan.intercepts
        rescale = None
        if stored and not loadable.extra.get("regularize") and plan.one_rescale:
            voxels, rescale = stack, (float(slopes[0]), float(intercepts[0]))
        else:
            voxels = pixelreader.apply_rescale(stack, slopes, intercepts)
        slice_count = len(records[0])
        if loadable.extra.get("regularize"):
            voxels, matrix = geometry.regularize(voxels, records[0])
        else:
            matrix = geometry.ijk_to_ras(records[0])
        if len(records) > 1:
            voxels = voxels.reshape(len(records), slice_count, *voxels.shape[1:])
        all_records = [r for volume in records for r in volume]
        return VolumeData(voxels, matrix, self._window_level(files[0], all_records[0]), records[0], values,
                          scaling=plan.scaling, rescale=rescale)

    def stream_volume(self, loadable: DICOMLoadable) -> "StreamedVolume | None":
        """What `read_volume(loadable, stored=True)` would return, without holding the voxels: the
        stored frames come a slab at a time (`StreamedVolume.slabs`), for a writer that puts them
        on disk as they arrive (a 600-slice CT then needs a few MB, not the whole volume). None
        when the voxels must be whole first: mosaics, colour, regularized slices, or frames whose
        rescale differs (stored values cannot share one NIfTI scale)."""
        if loadable.extra.get("kind") == "mosaic" or loadable.extra.get("color") or loadable.extra.get("regularize"):
            return None
        plan = self._read_plan(loadable)
        if not plan.one_rescale:
            return None
        try:
            reader = self._frame_reader(plan)
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot read pixels of {plan.files[0]}...: {error}") from error
        if len(reader.pixel_format.frame_shape) != 2:
            return None  # several samples per pixel
        slice_count = len(plan.records[0])
        shape = ((len(plan.records),) if len(plan.records) > 1 else ()) + (slice_count, *reader.pixel_format.frame_shape)
        return StreamedVolume(shape, reader.dtype, geometry.ijk_to_ras(plan.records[0]),
                              (float(plan.slopes[0]), float(plan.intercepts[0])), plan.values, reader, loadable.name)

    def _read_plan(self, loadable: DICOMLoadable) -> "_ReadPlan":
        """The frames of a (non-mosaic) loadable in volume and slice order, their geometry records,
        and each frame's rescale: what reading whole (`read_volume`) and streaming share."""
        from DICOMBrowser.DICOMBrowserLib import pixelreader

        files = list(loadable.files)
        volumes = loadable.extra.get("frames")
        records_by_frame = {}
        examined = self.__dict__.get("_examined", {})
        # one batched lookup for all files, or none when this object examined them (report reuse)
        values = {f: examined[f] for f in files} if all(f in examined for f in files) else self._values(files)
        for path in files:
            for record in self._frame_records(path, values[path]):
                records_by_frame[(record.path, record.frame)] = record
        if not volumes:  # a loadable made elsewhere: every frame of every file, sorted
            volumes = [[[files.index(r.path), r.frame] for r in geometry.sort_frames(records_by_frame.values())]]
        try:
            records = [[records_by_frame[(files[i], frame)] for i, frame in volume] for volume in volumes]
        except KeyError as error:
            raise LoadError(f"{loadable.name}: frame {error} not found in the files") from error
        flat = [(int(i), int(frame)) for volume in volumes for i, frame in volume]
        all_records = [r for volume in records for r in volume]
        slopes = [_first_number(r.attributes.get("rescale_slope", "")) or 1.0 for r in all_records]
        intercepts = [_first_number(r.attributes.get("rescale_intercept", "")) or 0.0 for r in all_records]
        scaling = ""
        if loadable.extra.get("philips_scale_slope"):
            if loadable.extra.get("scaling") == "display":
                scaling = "Philips display values (RescaleSlope/Intercept)"
            else:
                scaling = "Philips precise floating-point values (RescaleSlope/Intercept and scale slope 2005,100E)"
                pairs = [pixelreader.philips_precise_scaling(slope, intercept, _philips_scale_slope(record))
                         for slope, intercept, record in zip(slopes, intercepts, all_records)]
                slopes, intercepts = [p[0] for p in pairs], [p[1] for p in pairs]
        return _ReadPlan(files, values, records, flat, slopes, intercepts, scaling)

    def _frame_reader(self, plan: "_ReadPlan") -> Any:
        from DICOMBrowser.DICOMBrowserLib import pixelreader

        files = plan.files
        if self.database is not None:
            if not all(f in self.__dict__.get("_locations", {}) for f in files):
                # a loadable from the examine cache: the index rows of its series, one query each;
                # the pixel module values are among the plan's (no second tag cache lookup)
                self._files_without_pixel_data(files, plan.values)
            locations = self.__dict__.get("_locations", {})  # examined by this object: index rows at hand
            if all(f in locations for f in files):
                return pixelreader.FrameReader([locations[f] for f in files], [plan.values[f] for f in files],
                                               plan.flat)
        return pixelreader.frame_reader(files, self.database, plan.flat)

    def _read_mosaic(self, loadable: DICOMLoadable) -> "VolumeData":
        """A mosaic loadable: tiles cut into slices by the mosaic reader; 3D for one file, else
        (t, k, j, i) in the loadable's file order."""
        from DICOMBrowser.DICOMBrowserLib.diffusion import series as mosaic_series

        files = list(loadable.files)
        values = self._values(files)
        try:
            plan = mosaic_series.plan_dwi(files, require_diffusion=False, database=self.database)
            order = {path: index for index, path in enumerate(files)}
            plan.volumes.sort(key=lambda volume: order[plan.files[volume[0].file_index]])
            series = mosaic_series.read_dwi(files, database=self.database, plan=plan)
        except (ValueError, OSError) as error:
            raise LoadError(f"{loadable.name}: cannot unpack the mosaics of {files[0]}...: {error}") from error
        voxels = series.voxels[0] if len(files) == 1 else series.voxels
        records = [record for path in files for record in self._frame_records(path, values[path])]
        return VolumeData(np.ascontiguousarray(voxels), series.ijk_to_ras, self._window_level(files[0], records[0]),
                          records, values)

    def _window_level(self, path: str, record: FrameGeometry) -> tuple[float, float] | None:
        center = _first_number(record.attributes.get("window_center", "") or self.fileValue(path, "0028,1050"))
        width = _first_number(record.attributes.get("window_width", "") or self.fileValue(path, "0028,1051"))
        if center is None or width is None or width <= 0:
            return None
        return (width, center)

    def _identity(self, path: str) -> dict[str, str]:
        from DICOMBrowser.DICOMBrowserLib.scene import IDENTITY_KEYS
        from DICOMBrowser.DICOMBrowserLib.tagreader import tag_string

        tags = {key: tag_string(key) for key in IDENTITY_KEYS}
        if self.database is not None:  # one batched lookup, not one per key
            found = self.database.file_values([path], list(tags.values())).get(path, {})
            return {key: found.get(tag, "") for key, tag in tags.items()}
        return {key: self.fileValue(path, tag) for key, tag in tags.items()}


@dataclass
class VolumeData:
    """What `read_volume` returns: voxels in modality units and where they are (RAS mm)."""

    voxels: np.ndarray  # (k, j, i), (t, k, j, i), or colour (k, j, i, 3) RGB
    ijk_to_ras: np.ndarray
    window_level: tuple[float, float] | None
    records: list[FrameGeometry]
    file_values: dict[str, dict[str, str]] = field(default_factory=dict)  # the declared tags of each file
    color: bool = False
    scaling: str = ""  # which of a vendor's scalings the voxels carry, when there is a choice (Philips)
    #: read_volume(stored=True): voxels are stored values; modality value = slope * stored + intercept
    rescale: tuple[float, float] | None = None


@dataclass
class _ReadPlan:
    files: list[str]
    values: dict[str, dict[str, str]]
    records: list[list[FrameGeometry]]  # volume -> its frames' geometry, in slice order
    flat: list[tuple[int, int]]  # (file index, frame index) of every frame, volume by volume
    slopes: list[float]
    intercepts: list[float]
    scaling: str

    @property
    def one_rescale(self) -> bool:
        return len(set(self.slopes)) == 1 and len(set(self.intercepts)) == 1 and self.slopes[0] != 0


@dataclass
class StreamedVolume:
    """What `stream_volume` returns: the layout of the stored voxels ((k, j, i) or (t, k, j, i)),
    where they are (RAS mm), their one rescale, and the frames to come."""

    shape: tuple[int, ...]
    dtype: np.dtype
    ijk_to_ras: np.ndarray
    rescale: tuple[float, float]
    file_values: dict[str, dict[str, str]]
    reader: Any  # pixelreader.FrameReader
    name: str = ""

    def slabs(self, slab_bytes: int) -> Any:
        """Stored frames in file order, about `slab_bytes` at a time (FrameReader.slabs: each valid
        until the next is asked for)."""
        try:
            yield from self.reader.slabs(slab_bytes)
        except DICOMBrowserError:
            raise
        except (ValueError, OSError) as error:
            raise LoadError(f"{self.name}: cannot read pixels of {self.reader.files[0]}...: {error}") from error


# --- helpers ---------------------------------------------------------------------------------------
def _is_color(values: dict[str, str]) -> bool | None:
    """False for grey-scale, True for colour images (RGB, YBR, palette), None for anything else
    (e.g. two samples per pixel, or three samples with an unknown interpretation)."""
    samples = values.get("0028,0002", "").strip()
    photometric = values.get("0028,0004", "").strip().upper()
    if photometric == "PALETTE COLOR":
        return True
    if samples in ("", "1"):
        return False
    if samples == "3" and (photometric in COLOR_PHOTOMETRICS or not photometric):
        return True
    return None


def _first_number(text: str | None) -> float | None:
    values = geometry.parse_numbers(text)
    return values[0] if values else None


def _sorted_values(values: set[str]) -> list[str]:
    """Numeric order when every value is a number, else text order."""
    def key(value: str) -> tuple:
        number = _first_number(value)
        return (0, number, value) if number is not None else (1, 0.0, value)

    return sorted(values, key=key)


def _time_value(text: str, index: int) -> float:
    number = _first_number(text)
    return float(number) if number is not None and math.isfinite(number) else float(index)


def _splitting_key(groups: list[list[FrameGeometry]], keys: Sequence[str],
                   require_all_positions: bool) -> str | None:
    """The first key whose values tell apart the frames at every position, with the same value set.

    Each position must hold each value exactly once; 'file' (a file per time point) applies only
    to multi-frame files, so duplicate single-frame files are never taken for time points.
    """
    for key in keys:
        value_sets = []
        ok = True
        for group in groups:
            values = [(r.path if key == "file" else r.attributes.get(key, "")) for r in group]
            if "" in values or len(set(values)) != len(values):
                ok = False
                break
            value_sets.append(frozenset(values))
        if not ok:
            continue
        if key == "file":
            if not all("frame" in r.attributes for group in groups for r in group):
                continue
            # a file per time point (multi-frame volumes): each file must hold one frame per position
            if len({len(s) for s in value_sets}) == 1 and len(value_sets[0]) > 1:
                return key
            continue
        if require_all_positions and len(set(value_sets)) == 1 and len(value_sets[0]) > 1:
            return key
    return None


def _plane_name(orientation: np.ndarray) -> str:
    """'axial', 'coronal' or 'sagittal' from the slice normal's main LPS axis."""
    normal = geometry.slice_normal(orientation)
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]


def _echo_number(record: FrameGeometry) -> int | None:
    """EchoNumbers of a frame (classic 0018,0086, or Philips' per-frame private group)."""
    number = _first_number(record.attributes.get("0018,0086", "") or record.attributes.get("echo_number", ""))
    return int(number) if number is not None and number >= 1 else None


def _component(record: FrameGeometry) -> str:
    """'ph', 'real', 'imaginary' or 'fieldmaphz' (dcm2niix's suffixes), '' for magnitude/unknown.

    From ImageType / FrameType: Siemens and Philips put M/P/R/I in the third or fourth value,
    enhanced objects PHASE/REAL/IMAGINARY, Philips FIELD_MAP or "B0 MAP" for a map in Hz; GE
    from its private image type (0043,102F).
    """
    values = [v.strip().upper() for v in
              (record.attributes.get("frame_type") or record.attributes.get("image_type", "")).split("\\")]
    words = set(values[2:])
    letters = set(values[2:4])
    if "PHILIPS" in record.attributes.get("manufacturer", "").upper() and words & {"FIELD_MAP", "B0 MAP"}:
        return "fieldmaphz"
    if "PHASE" in words or "P" in letters:
        return "ph"
    if "REAL" in words or "R" in letters:
        return "real"
    if "IMAGINARY" in words or "I" in letters:
        return "imaginary"
    if "GE" in record.attributes.get("manufacturer", "").upper():
        return GE_IMAGE_COMPONENTS.get(record.attributes.get("ge_image_type", "").strip(), "")
    return ""


def _philips_scale_slope(record: FrameGeometry) -> float | None:
    """Philips' private scale slope (2005,100E) of a frame, None for other vendors or when absent."""
    if "PHILIPS" not in record.attributes.get("manufacturer", "").upper():
        return None
    value = _first_number(record.attributes.get("philips_scale_slope", "") or record.attributes.get("2005,100e", ""))
    return value if value and math.isfinite(value) else None


def _acquisition_order(groups: list[list[FrameGeometry]]):
    """Sort key for the frames at one position, in the order they were acquired: InstanceNumber
    (as dcm2niix sorts), unless it repeats within a position (numbering restarted per volume),
    then AcquisitionNumber, AcquisitionTime, ContentTime."""
    numbered = all(len({r.instance_number for r in group}) == len(group) and None not in {r.instance_number for r in group}
                   for group in groups)

    def times(record: FrameGeometry) -> tuple:
        return tuple(_first_number(record.attributes.get(tag, "")) or 0.0 for tag in ("0020,0012", "0008,0032", "0008,0033"))

    if numbered:
        return lambda record: (record.instance_number, *times(record), record.path, record.frame)
    return lambda record: (*times(record), record.instance_number or 0, record.path, record.frame)


def _repeated_position_sets(groups: list[list[FrameGeometry]]) -> list[list[FrameGeometry]] | None:
    """Volumes of a time series that no tag separates: every position holds the same number k > 1
    of frames, so the series is k repetitions of one position set; the m-th acquired frame at each
    position belongs to volume m. None when the counts differ (a broken or mixed series)."""
    counts = {len(group) for group in groups}
    if len(counts) != 1 or counts == {1}:
        return None
    key = _acquisition_order(groups)
    ordered = [sorted(group, key=key) for group in groups]
    return [[group[m] for group in ordered] for m in range(counts.pop())]


def _ge_direct_field_map_parts(groups: list[list[FrameGeometry]]) -> list[tuple[str, list[FrameGeometry]]] | None:
    """GE's direct field maps (B0map, 3db0map) hold two images per position and no tag tells them
    apart; GE documents the first (by acquisition) as the field map in Hz, the second as the
    magnitude. Returns [("fieldmaphz", frames), ("", frames)], or None for anything else."""
    first = groups[0][0].attributes
    if ("GE" not in first.get("manufacturer", "").upper()
            or first.get("ge_sequence", "").strip().lower() not in GE_DIRECT_FIELD_MAPS
            or {len(group) for group in groups} != {2}):
        return None
    volumes = _repeated_position_sets(groups)
    return [("fieldmaphz", volumes[0]), ("", volumes[1])] if volumes else None


def _is_mosaic(image_type: str) -> bool:
    """Files that tile the slices of a volume in one image: Siemens MOSAIC, UIH VFRAME."""
    values = {v.strip().upper() for v in image_type.split("\\")}
    return bool(values & {"MOSAIC", "VFRAME"})

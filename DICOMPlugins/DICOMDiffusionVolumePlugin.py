"""The diffusion volume plugin: a DWI series -> one vtkMRMLDiffusionWeightedVolumeNode.

Examine offers a diffusion loadable (confidence 0.8, above the scalar plugin's 0.5, which stays
available) for a series whose files carry diffusion information: standard tags, Siemens CSA or
mosaics, GE, Philips or UIH private tags, enhanced multi-frame functional groups. The work is
in DICOMBrowser.DICOMBrowserLib.diffusion; this file only examines and loads.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from DICOMBrowser.DICOMBrowserLib.diffusion import series as dwi_series
from DICOMBrowser.DICOMBrowserLib.diffusion import vendors
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError, LoadError

from .DICOMPlugin import DICOMLoadable, DICOMPlugin

logger = logging.getLogger(__name__)

ENHANCED_MR = {"1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.4.4"}
DIFFUSION_CONFIDENCE = 0.8
SEQUENCE_VENDORS = ("CANON", "TOSHIBA", "HITACHI", "FUJIFILM", "UIH")
#: b-value tags the tag cache holds: standard, Siemens, GE, Philips, UIH
B_VALUE_TAGS = ("0018,9087", "0019,100c", "0043,1039", "2001,1003", "0065,1009")
#: b-value tags a vendor writes on every MR image, 0 when not diffusion weighted (GE, Philips):
#: present in a probe they say nothing; a b > 0 in some image of the series does
EVERY_IMAGE_B_TAGS = ("0043,1039", "2001,1003")
#: how many more images (one per volume, at one slice location) examine probes when the first,
#: middle and last file show no diffusion sequence; Canon/Toshiba b = 0 images carry none
MORE_PROBES = 16


class DICOMDiffusionVolumePlugin(DICOMPlugin):
    """DWI series from any vendor as a diffusion-weighted volume node."""

    loadType = "Diffusion Weighted Volume"
    #: name -> tag (Slicer's convention): everything the header plan reads, so the indexer caches
    #: it at import and examining a series in the database opens no file (GE, Philips, standard tags)
    tags = {**dwi_series.cached_tag_names(),
            **{name: tag for tag, name in vendors.EXAMINE_TAGS.items() if tag not in dwi_series.SCAN_TAGS}}

    def _maybe_diffusion(self, files: list[str]) -> bool:
        """Cheap check on cached tags of a few files before any header is parsed in full."""
        probes = list(dict.fromkeys([files[0], files[len(files) // 2], files[-1]]))
        for path in probes:
            image_type = self.fileValue(path, "0008,0008").upper()
            if "DIFFUSION" in image_type or "MOSAIC" in image_type:
                return True
            if any(self.fileValue(path, tag) for tag in B_VALUE_TAGS if tag not in EVERY_IMAGE_B_TAGS):
                return True
            if self.fileValue(path, "0008,0016") in ENHANCED_MR:
                return self._enhanced_diffusion(files)
        if any(self.fileValue(path, tag) for path in probes for tag in EVERY_IMAGE_B_TAGS):
            return self._some_b_value(files)
        # Canon/Toshiba, Hitachi, UIH keep the standard macro inside sequences (0018,9117 or
        # 5200,9229) that the tag cache does not hold: read only those sequences of the probes
        sequence_vendor = [path for path in probes
                           if any(name in self.fileValue(path, "0008,0070").upper() for name in SEQUENCE_VENDORS)
                           and self.fileValue(path, "0008,0060") == "MR"]
        if any(dwi_series.has_diffusion_sequence(path) for path in sequence_vendor):
            return True
        if not sequence_vendor:
            return False
        # the probes may all be b = 0 images, which Canon/Toshiba write without any diffusion
        # tag: when slice positions repeat (a 4D series), probe the other images at the first
        # probe's position, one per volume, in acquisition order
        seen = set(probes)
        return any(dwi_series.has_diffusion_sequence(path)
                   for path in self._same_position(files, probes[0]) if path not in seen)

    @staticmethod
    def _enhanced_diffusion(files: list[str]) -> bool:
        """Whether some enhanced MR file of the series has an MR Diffusion Sequence (shared, or in
        a frame's functional groups), from its header (multiframe.read_header: parsed once, the
        scalar plugin's frame geometry reads the same). Without one the plan finds no diffusion
        information in any frame and examine declines: a Siemens XA fMRI run (one file per
        volume) was planned frame by frame (~0.2 ms a frame) to learn that. A file that is not
        enhanced, or not readable, leaves the decision to the plan."""
        from DICOMBrowser.DICOMBrowserLib import multiframe
        from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError

        diffusion = 0x00189117
        for path in files:
            try:
                header = multiframe.read_header(path)
            except DICOMFileError:
                return True
            per_frame = header.get("PerFrameFunctionalGroupsSequence")
            if not per_frame:
                return True
            shared = header.get("SharedFunctionalGroupsSequence") or []
            if any(diffusion in item for item in (*shared, *per_frame)):
                return True
        return False

    def _some_b_value(self, files: list[str]) -> bool:
        """Whether some image of a GE or Philips series has b > 0 in the vendor's tag or the
        standard one (cached values of every file): without, the plan could only find b = 0
        volumes, which examine turns down, so the header plan (~0.2 ms an image) is not made.
        A value that does not read as a number counts as b > 0: the plan decides then."""
        tags = ["0018,9087", *EVERY_IMAGE_B_TAGS]
        values = self._cached_values(files, tags)
        for path in files:
            for tag, text in values.get(path, {}).items():
                if not text:
                    continue
                try:
                    bvalue = float(text.split("\\", 1)[0])
                except ValueError:
                    return True
                if (vendors.ge_bvalue(bvalue) if tag == "0043,1039" else bvalue) > 0:
                    return True
        return False

    def _cached_values(self, files: list[str], tags: list[str]) -> dict[str, dict[str, str]]:
        """`tags` of every file from the tag cache (the database's, else one header scan of all)."""
        if self.database is not None:
            return self.database.file_values(files, tags)
        self.prefetch(files, tags)
        return {path: {tag: self.fileValue(path, tag) for tag in tags} for path in files}

    def _same_position(self, files: list[str], reference: str) -> list[str]:
        """Up to MORE_PROBES files at the slice position of `reference` (cached values), by
        InstanceNumber; none when every position occurs once (a 3D series is not diffusion)."""
        tags = ["0020,0032", "0020,0013"]
        values = self._cached_values(files, tags)
        positions = {path: values.get(path, {}).get("0020,0032", "") for path in files}
        if len(set(positions.values())) == len(files):
            return []
        target = positions.get(reference, "")

        def instance_number(path: str) -> float:
            try:
                return float(values.get(path, {}).get("0020,0013", "") or 0)
            except ValueError:
                return 0.0

        same = sorted((path for path in files if positions[path] == target), key=instance_number)
        return same[:MORE_PROBES + 1]

    def examineFiles(self, files: list[str]) -> list[DICOMLoadable]:
        from DICOMBrowser.DICOMBrowserLib.diffusion import plan_dwi

        if not files or not self._maybe_diffusion(files):
            return []
        try:
            plan = plan_dwi(files, database=self.database)
        except DICOMBrowserError as error:
            logger.debug("Not a DWI series (%s): %s", files[0], error)
            return []
        if len(plan.volumes) < 2 or not np.any(plan.bvalues > 0):
            return []
        shells = sorted({round(float(b)) for b in plan.bvalues})
        # weighted: b > 0 with a direction (UIH's b = 0 image reports b = 1.25 and no direction)
        directions = int(np.sum((plan.bvalues > 0) & np.any(plan.gradients_lps != 0, axis=1)))
        loadable = DICOMLoadable(
            name=f"{plan.name} (DWI)",
            files=[plan.files[r.file_index] for r in _unique_files(plan)],
            tooltip=(f"{plan.vendor} diffusion: {len(plan.volumes)} volumes, {directions} weighted, "
                     f"b = {', '.join(str(b) for b in shells)} s/mm2; grid {plan.shape_kji[0]} slices"),
            confidence=DIFFUSION_CONFIDENCE,
            selected=True,
            warning="; ".join(plan.warnings),
            plugin="DICOMDiffusionVolumePlugin",
            extra={"series_uid": plan.series_uid, "plan": plan},  # load reuses the header plan
        )
        loadable.referencedSeriesUIDs = [plan.series_uid] if plan.series_uid else []
        return [loadable]

    def load(self, loadable: DICOMLoadable, scene: Any) -> Any:
        from DICOMBrowser.DICOMBrowserLib.diffusion import read_dwi
        from DICOMBrowser.DICOMBrowserLib.diffusion.node import add_dwi_node

        try:
            plan = loadable.extra.get("plan")
            used = {plan.files[r.file_index] for volume in plan.volumes for r in volume} if plan else set()
            if plan is not None and used == set(loadable.files):  # the user did not edit the file list
                series = read_dwi(plan.files, database=self.database, plan=plan)
            else:
                series = read_dwi(loadable.files, database=self.database)
        except DICOMBrowserError:
            raise
        except (ValueError, KeyError, IndexError) as error:
            raise LoadError(f"{loadable.name}: cannot read DWI from {loadable.files[0]}: {error}") from error
        return add_dwi_node(scene, series, name=loadable.name)


def _unique_files(plan) -> list:
    """Records naming each file once, in load order (a multi-frame file appears once)."""
    seen: set[int] = set()
    out = []
    for volume in plan.volumes:
        for record in volume:
            if record.file_index not in seen:
                seen.add(record.file_index)
                out.append(record)
    return out

"""BIDS sidecars of `convert` against dcm2niix's own, key by key, on the corpus references
(`*/Ref/*.json`), and the images against dcm2niix's through the comparison library.

Every key both write must agree, except those in KNOWN_DIFFERENCES (each with why; docs/convert.md
lists them too). Values compare as numbers within 1e-3 relative, lists element by element.
PhaseEncodingDirection and SliceTiming describe voxel axes: where our file's axis runs against
dcm2niix's (rows not flipped in our scalar layout; a mosaic's slice axis the other way round),
the test translates through the two affines before comparing, so the physical meaning must agree.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel
import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import conversion

FOLDERS = ("fmri_timeseries", "siemens_mosaic_order", "fieldmaps", "enhanced_multiframe", "philips_dwi", "ge_dwi",
           "siemens_mosaic_orientation")
#: key -> why ours differs from dcm2niix's (for some or all series)
KNOWN_DIFFERENCES = {
    "ConversionSoftware": "ours is dicombrowser",
    "ConversionSoftwareVersion": "ours is our version",
    "AcquisitionTime": "dcm2niix drops a leading zero of the seconds ('14:13:5.990000') and rounds the fraction "
                       "through a float ('32.974996' -> '32.975000'); ours keeps the DICOM digits",
    "ProcedureStepDescription": "GE fMRI: dcm2niix writes 'PhantomGradient Echo', (0040,0254) holds 'Phantom'",
    "TotalReadoutTime": "GE field map: dcm2niix's echo spacing is 0.8 % below (0043,102C) x ASSET x acquired/recon",
    "EffectiveEchoSpacing": "GE: as TotalReadoutTime",
    "ImageType": "GE DWI: dcm2niix does not append MAGNITUDE although (0043,102F) says magnitude",
    "SliceTiming": "Siemens VB mosaics of 35 slices: dcm2niix recomputes times that differ from the CSA "
                   "MosaicRefAcqTimes ours copies by up to 2.5 ms",
}
SUFFIX = re.compile(r"((?:_(?:e\d+|ph|fieldmaphz))*)$")


def _same(ours, theirs) -> bool:
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours == theirs
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return abs(ours - theirs) <= 1e-3 * max(1.0, abs(theirs))
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return all(_same(a, b) for a, b in zip(ours, theirs))
    return ours == theirs


def _reference_image(reference_json: Path) -> Path | None:
    for extension in (".nii", ".nii.gz"):
        candidate = reference_json.with_name(reference_json.stem + extension)
        if candidate.exists():
            return candidate
    return None


def _axis_agreement(ours_image: Path, reference_image: Path | None) -> tuple[int, int] | None:
    """(sign of j, sign of k) of our voxel axes against the reference's (None when unknown)."""
    if reference_image is None:
        return None
    ours, theirs = nibabel.load(str(ours_image)).affine, nibabel.load(str(reference_image)).affine
    j = float(np.dot(ours[:3, 1], theirs[:3, 1]))
    k = float(np.dot(ours[:3, 2], theirs[:3, 2]))
    return (1 if j > 0 else -1, 1 if k > 0 else -1)


@pytest.fixture(scope="module")
def converted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert-sidecars")
    written = []
    for folder in FOLDERS:  # one folder at a time: a series copied into two folders keeps one UID
        written += conversion.convert([str(corpus / folder)], out / folder, fmt="nii", pattern="%s_%d").written
    outputs = {}
    for image in written:
        sidecar = next((p for p in image.sidecars if p.endswith(".json") and not p.endswith(".provenance.json")), None)
        if sidecar:
            document = json.loads(Path(sidecar).read_text())
            provenance = next(p for p in image.sidecars if p.endswith(".provenance.json"))
            source = Path(conversion.read_provenance(provenance)[0]["file"]).relative_to(corpus).parts[0]
            key = (source, document.get("SeriesNumber"), image.suffix or "")
            outputs.setdefault(key, []).append((document, Path(image.path), image))
    return outputs


def _ours_for(reference: dict, reference_path: Path, converted):
    suffix = SUFFIX.search(reference_path.stem).group(1)
    folder = reference_path.parent.parent.name
    candidates = converted.get((folder, reference.get("SeriesNumber"), suffix), [])
    same_description = [c for c in candidates if c[0].get("SeriesDescription") == reference.get("SeriesDescription")]
    return (same_description or candidates or [None])[0]


@pytest.mark.slow
def test_sidecars_agree_with_dcm2niix_key_by_key(corpus, converted):
    references = sorted(corpus.glob("*/Ref/*.json"))
    assert references, "no dcm2niix sidecars in the corpus"
    unexplained, compared, matched = [], 0, 0
    differing: dict[str, set[str]] = {}
    for reference_path in references:
        reference = json.loads(reference_path.read_text())
        found = _ours_for(reference, reference_path, converted)
        if found is None or reference_path.stem.endswith("_enh"):  # Philips' enhanced DWI file is not in the corpus
            continue  # the series of this reference is absent from the corpus (MANIFEST: some inputs missing)
        matched += 1
        ours, image_path, _ = found
        axes = None
        for key, theirs in reference.items():
            if key not in ours:
                continue
            value = ours[key]
            compared += 1
            if key == "PhaseEncodingDirection" and not _same(value, theirs):
                axes = axes or _axis_agreement(image_path, _reference_image(reference_path))
                axis_sign = {"i": 1, "j": axes[0] if axes else 1, "k": axes[1] if axes else 1}[value[0]]
                flipped = value[0] + ("" if value.endswith("-") else "-")
                if axis_sign < 0 and flipped == theirs:
                    continue  # our j runs against dcm2niix's: same physical direction
            if key == "SliceTiming" and not _same(value, theirs):
                axes = axes or _axis_agreement(image_path, _reference_image(reference_path))
                if axes and axes[1] < 0 and _same(value[::-1], theirs):
                    continue  # our slice axis runs against dcm2niix's: same time for the same slice
            if not _same(value, theirs):
                differing.setdefault(key, set()).add(reference_path.parent.parent.name)
            if not _same(value, theirs) and key not in KNOWN_DIFFERENCES:
                unexplained.append(f"{reference_path.parent.parent.name}/{reference_path.name} {key}: "
                                   f"ours {value!r} dcm2niix {theirs!r}")
    assert matched >= 20, f"only {matched} references matched a converted series"
    assert compared > 300
    assert not unexplained, "\n".join(unexplained)
    print("keys that differ (known):", {key: sorted(folders) for key, folders in sorted(differing.items())})


@pytest.mark.slow
def test_required_bids_keys_are_written(converted):
    """What analysis tools need, wherever the DICOM headers hold it."""
    (mosaic_fmri, _, _), = converted[("siemens_mosaic_order", 2, "")]
    for key in ("RepetitionTime", "EchoTime", "FlipAngle", "SliceTiming", "PhaseEncodingDirection",
                "TotalReadoutTime", "Manufacturer", "SeriesNumber", "ImageType", "EffectiveEchoSpacing"):
        assert key in mosaic_fmri, key
    assert mosaic_fmri["RepetitionTime"] == 3.2 and mosaic_fmri["EchoTime"] == 0.03  # seconds, as BIDS


@pytest.mark.slow
def test_images_equal_dcm2niix_references(corpus, converted):
    """The voxels and affines of converted mosaics and DWI equal dcm2niix's stored references, through
    the differential comparison library (grid mapping, physical values, bval/bvec)."""
    from DICOMBrowser.DICOMBrowserLib import comparison

    checked = 0
    for reference_path in sorted((corpus / "siemens_mosaic_order" / "Ref").glob("*.json")) + [
            corpus / "philips_dwi" / "Ref" / "701_DTI_Biobank_2mm_MB3S2_EPI_cl.json"]:
        reference_image = _reference_image(reference_path)
        found = _ours_for(json.loads(reference_path.read_text()), reference_path, converted)
        if reference_image is None or found is None:
            continue
        result = comparison.compare_outputs(comparison.NiftiOutput.at(found[1]),
                                            comparison.NiftiOutput.at(reference_image))
        assert result.ok, f"{reference_path.name}: {result}"
        checked += 1
    assert checked >= 4

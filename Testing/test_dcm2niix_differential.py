"""Differential testing through the user's own commands: every series of the corpus folders in
FOLDERS is imported, listed and loaded with `dicombrowser` as a user would (`import`,
`ls --json`, `examine --json`, `load UID --output x.nii.gz`) and compared with dcm2niix's
outputs for it: the ones stored in the folder's `Ref/` (found through their JSON sidecars), else
dcm2niix run live on the series' files.

Why through the CLI and the written files: a difference anywhere between import, the default
choice of loadable, loading and the NIfTI/bval/bvec writers shows up, as the user would meet it.
The comparison itself (voxels in physical units, affine within 1e-2 mm and 1e-3 in direction,
4D shape, bval/bvec within 1e-3) is DICOMBrowserLib.comparison, the same as `dicombrowser
compare`.

One verdict line per series is printed and also put into the failure message (and written to
Testing/artifacts/dcm2niix_differential/), so it is readable without `-s`. Every series either
matches or is listed in KNOWN_DIFFERENCES with its reason; a listed series that now matches
fails too, so the table stays true. Corpus folders not compared are listed in NOT_COMPARED.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from DICOMBrowser.DICOMBrowserLib import comparison

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "Testing" / "artifacts" / "dcm2niix_differential"

#: corpus folder -> True when dcm2niix's outputs are stored in <folder>/Ref (a series without
#: a stored NIfTI there is converted live), False to run dcm2niix live for every series
FOLDERS = {
    "enhanced_multiframe": True,
    "fieldmaps": True,
    "fmri_timeseries": True,
    "ge_dwi": True,
    "philips_dwi": True,  # Ref/ holds only .bval/.bvec/.json: converted live
    "siemens_mosaic_order": True,
    "siemens_mosaic_orientation": True,
    "slicer_ct_head": False,
    "ge_t1": False,
    "dicom2nifti": False,  # its ground truths were made by dicom2nifti, not dcm2niix
    "dcmqi_seg": False,
}

#: corpus folders left out, and why (a test checks every corpus folder is here or in FOLDERS)
NOT_COMPARED = {
    "orthanc_tests": "toolkit test files, not acquisitions: one file per transfer syntax, character set or broken "
                     "header, most without patient geometry (no ImageOrientation/PositionPatient), where each "
                     "converter invents its own grid and a verdict would mean nothing",
}

SEGMENTATION = ("a DICOM SEG is a segmentation, not an image: it loads as a segmentation node (Slicer's .seg.nrrd; "
                "Dice 1.0 per segment against dcmqi's label maps in Testing/test_segmentation_plugin.py), and "
                "`load --output x.nii.gz` refuses it with that advice; dcm2niix converts the SEG's binary frames "
                "as a grey image")

PHILIPS_FIELD_MAP = ("the field map in Hz: dcm2niix scales it by 0.2442017, we by 1 / 2005,100E = 0.2442002 (the "
                     "precise value (stored x RS + RI) / (RS x SS)); values up to 0.006 Hz apart, 1/40 of the map's "
                     "0.244 Hz step; the magnitude (e1) matches")

#: (corpus folder, SeriesNumber | SeriesDescription | SeriesInstanceUID) -> why this series does
#: not match dcm2niix. "TODO:" marks a difference of ours still to fix.
KNOWN_DIFFERENCES: dict[tuple[str, int | str], str] = {
    ("dcmqi_seg", "Liver Segmentation"): SEGMENTATION,
    ("dcmqi_seg", 100): SEGMENTATION,
    ("dcmqi_seg", 16): SEGMENTATION,
    ("dcmqi_seg", 17): "a TID1500 measurement report: it loads as a table of measurements (`load --output x.tsv`), "
                       "not an image (`load --output x.nii.gz` says so); dcm2niix writes nothing for it",
    ("dcmqi_seg", "Segmentation 24x38x3"): SEGMENTATION,
    ("dcmqi_seg", "1.2.276.0.7230010.3.1.3.0.65241.1523399608.764873"): SEGMENTATION,  # #300 Segmentation (23x38x3)
    ("dcmqi_seg", "1.2.276.0.7230010.3.1.3.8323329.114908.1781279372.413279"): SEGMENTATION,  # #300 Segmentation
    ("dicom2nifti", 2): "dcm2niix also writes 2__Eq_1, the slices interpolated to equal spacing over the missing "
                        "slice; our default is the as-acquired volume (equal to dcm2niix's 2_, with a "
                        "'1 slices missing' warning) and the equalized one is our non-default [regularized] loadable",
    ("dicom2nifti", 4): "gantry tilt 14 degrees: dcm2niix writes the acquired slices with a sheared affine (4_) and a "
                        "de-tilted volume on a grid widened to 521 rows (4__Tilt_1); our default keeps the acquired "
                        "voxels on the de-tilted grid (slices up to 3.6 mm off, as its tilt warning says) and our "
                        "non-default [regularized] loadable equals 4__Tilt_1 within 0.5 on our 512 rows",
    ("dicom2nifti", 8): "dcm2niix v1.0.20220720 leaves this anonymized Siemens mosaic tiled (1344x1344x1: '0008,0008="
                        "MOSAIC but number of slices not specified'); we unpack it to 192x192x40",
    ("enhanced_multiframe", 801): PHILIPS_FIELD_MAP,
    ("fieldmaps", 801): PHILIPS_FIELD_MAP,
}


def _command() -> list[str]:
    """The installed console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("dicombrowser")
    return [str(script)] if script.exists() else [sys.executable, "-m", "DICOMBrowser"]


def dicombrowser(database: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DICOMBROWSER_DATABASE"}
    result = subprocess.run([*_command(), "--database", str(database), *args], capture_output=True, text=True,
                            timeout=600, env=environment, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"dicombrowser {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and "WARN|" not in line]
    return lines[-1] if lines else ""


def series_verdict(database: Path, folder: str, root: Path, series: dict, files: list[str],
                   offered: list[dict], work: Path) -> comparison.SeriesVerdict:
    """One series through `load --output` (after `examine UID --json` when several loadables are
    defaults), compared with dcm2niix. `offered`: the series' loadables from examining the folder."""
    uid = series["SeriesInstanceUID"]
    number = "" if series.get("SeriesNumber") is None else str(series["SeriesNumber"])
    description = (series.get("SeriesDescription") or "").strip()
    label = f"{folder} #{number} {description}".strip()
    loadables = offered
    if sum(loadable["selected"] for loadable in offered) > 1:  # --loadable N indexes `examine UID`'s own list
        loadables = json.loads(dicombrowser(database, "examine", uid, "--json").stdout)
    selected = [index for index, loadable in enumerate(loadables) if loadable["selected"]]
    ours, reasons, why_no_output = [], [], ""
    if not selected:
        offered = ", ".join(loadable["name"] for loadable in loadables) or "nothing"
        why_no_output = f"no loadable selected by default (examine offers: {offered})"
    for index in selected:
        output = work / "ours" / f"loadable{index}.nii.gz"
        # one default loads as a user types it; several need --loadable N each
        choice = ["--loadable", str(index)] if len(selected) > 1 else []
        result = dicombrowser(database, "load", uid, *choice, "--output", str(output), check=False)
        if result.returncode != 0:
            reasons.append(f"load of {loadables[index]['name']!r} failed: {_last_line(result.stderr)}")
            continue
        ours.append(comparison.NiftiOutput.at(output, label=loadables[index]["name"]))
    references = comparison.stored_references(root / "Ref", number, description, uid) if FOLDERS[folder] else []
    notes = []
    if references:
        versions = sorted({_conversion_version(r.path) for r in references})
        source = f"dcm2niix {', '.join(versions)} (stored in {folder}/Ref)"
    else:
        run = comparison.run_dcm2niix(files, work / "dcm2niix", description)
        references = run.outputs
        source = f"dcm2niix {comparison.dcm2niix_version()} (live)"
        if not run.outputs and run.returncode:
            notes.append(f"dcm2niix exit {run.returncode}: {_last_line(run.log)}")
    return comparison.verdict_for_series(label, ours, references, series_uid=uid, why_no_output=why_no_output,
                                         reasons=reasons, notes=notes, reference_source=source)


def _conversion_version(nifti: Path) -> str:
    sidecar = nifti.with_name(comparison.nifti_stem(nifti) + ".json")
    try:
        return json.loads(sidecar.read_text(encoding="utf-8")).get("ConversionSoftwareVersion", "?")
    except (OSError, ValueError):
        return "?"


def known_difference_keys(folder: str, series: dict) -> list[tuple[str, int | str]]:
    """The KNOWN_DIFFERENCES keys that name this series."""
    names = {series.get("SeriesNumber"), (series.get("SeriesDescription") or "").strip(), series["SeriesInstanceUID"]}
    return [key for key in KNOWN_DIFFERENCES if key[0] == folder and key[1] in names]


def check_against_table(folder: str, listing: list[dict], verdicts: list[comparison.SeriesVerdict]) -> list[str]:
    """What is wrong: a difference not in the table, a listed series that now matches, a key
    that names no series or several."""
    problems = []
    named: dict[tuple, int] = {}
    for series, verdict in zip(listing, verdicts):
        keys = known_difference_keys(folder, series)
        for key in keys:
            named[key] = named.get(key, 0) + 1
        if len(keys) > 1:
            problems.append(f"{verdict.series}: named by several KNOWN_DIFFERENCES keys {keys}")
        elif not verdict.ok and not keys:
            problems.append(f"NEW DIFFERENCE {verdict.line()}")
        elif verdict.ok and keys:
            problems.append(f"NOW MATCHES {verdict.series}: remove KNOWN_DIFFERENCES[{keys[0]!r}] "
                            f"({KNOWN_DIFFERENCES[keys[0]]})")
    for key in KNOWN_DIFFERENCES:
        if key[0] == folder and named.get(key, 0) != 1:
            problems.append(f"KNOWN_DIFFERENCES key {key!r} names {named.get(key, 0)} series of {folder} "
                            "(use the SeriesNumber, the description or the SeriesInstanceUID of exactly one)")
    return problems


def _report(folder: str, verdicts: list[comparison.SeriesVerdict]) -> list[str]:
    lines = [verdict.line() for verdict in verdicts]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{folder}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (ARTIFACTS / f"{folder}.json").write_text(json.dumps([v.to_json() for v in verdicts], indent=2), encoding="utf-8")
    print(f"\n{folder}: {len(verdicts)} series")
    for line in lines:
        print("  " + line)
    return lines


@pytest.fixture
def dcm2niix():
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not on PATH (Debian package dcm2niix)")


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_every_series_matches_dcm2niix_or_is_a_known_difference(corpus, dcm2niix, tmp_path, folder):
    root = corpus / folder
    if not root.is_dir():
        pytest.skip(f"{folder} is not in this corpus")
    database = tmp_path / "database"
    dicombrowser(database, "import", str(root))
    listing = json.loads(dicombrowser(database, "ls", "--level", "series", "--json").stdout)
    files: dict[str, list[str]] = {}
    series_of_file: dict[str, str] = {}
    for instance in json.loads(dicombrowser(database, "ls", "--level", "instances", "--json").stdout):
        files.setdefault(instance["SeriesInstanceUID"], []).append(instance["FilePath"])
        series_of_file[instance["FilePath"]] = instance["SeriesInstanceUID"]
    listing.sort(key=lambda s: (str(s.get("SeriesNumber")), s.get("SeriesDescription") or "", s["SeriesInstanceUID"]))
    assert listing, f"nothing imported from {root}"
    # one examination of the whole folder says what each series offers (a process per series saved)
    offered: dict[str, list[dict]] = {series["SeriesInstanceUID"]: [] for series in listing}
    examined = dicombrowser(database, "examine", *offered, "--json").stdout
    for loadable in json.loads(examined):
        offered[series_of_file[loadable["files"][0]]].append(loadable)

    def verdict(numbered):
        index, series = numbered
        uid = series["SeriesInstanceUID"]
        return series_verdict(database, folder, root, series, files[uid], offered[uid], tmp_path / f"series{index}")

    with ThreadPoolExecutor(max_workers=2) as pool:  # each series is a few subprocesses
        verdicts = list(pool.map(verdict, enumerate(listing)))
    lines = _report(folder, verdicts)
    problems = check_against_table(folder, listing, verdicts)
    if FOLDERS[folder]:
        used = {reference for verdict in verdicts for reference in verdict.references}
        stored = {comparison.nifti_stem(p) for p in (root / "Ref").glob("*.nii*")}
        problems.extend(f"stored reference {folder}/Ref/{stem} belongs to no series we imported"
                        for stem in sorted(stored - used))
    assert not problems, "\n".join([*problems, "", f"verdicts for {folder}:", *lines])


def test_every_corpus_folder_is_compared_or_says_why_not(corpus):
    folders = {p.name for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(".")}
    unaccounted = folders - set(FOLDERS) - set(NOT_COMPARED)
    assert not unaccounted, f"corpus folders neither in FOLDERS nor in NOT_COMPARED: {sorted(unaccounted)}"
    assert not set(FOLDERS) & set(NOT_COMPARED)


# --- the same check as a user's command ------------------------------------------------------------
@pytest.mark.slow
def test_compare_command_prints_one_verdict_per_series_as_json(corpus, dcm2niix, tmp_path):
    folder = corpus / "siemens_mosaic_order" / "In" / "ep2d_Asc_2"
    database = tmp_path / "database"
    dicombrowser(database, "import", str(folder))
    [series] = json.loads(dicombrowser(database, "ls", "--level", "series", "--json").stdout)
    result = dicombrowser(database, "compare", series["SeriesInstanceUID"], "--with", "dcm2niix", "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    [verdict] = json.loads(result.stdout)
    assert set(verdict) == {"series", "series_uid", "ok", "reasons", "notes", "reference_source", "references",
                            "outputs"}
    assert verdict["series"] == "#2 ep2d_Asc" and verdict["series_uid"] == series["SeriesInstanceUID"]
    assert verdict["reference_source"].startswith("dcm2niix v") and verdict["reference_source"].endswith("(live)")
    assert result.returncode == (0 if verdict["ok"] else 1)
    assert verdict["ok"] == (not verdict["reasons"])
    for output in verdict["outputs"]:
        assert {"ours", "reference", "ok", "reasons", "shape_ours", "shape_reference", "axis_mapping",
                "max_abs_voxel_difference", "corner_difference_mm", "direction_difference",
                "bval_max_difference", "bvec_max_difference"} <= set(output)
    # the same through a folder, in text: one line per series
    text = dicombrowser(database, "compare", str(folder), "--with", "dcm2niix", check=False)
    [line] = text.stdout.strip().splitlines()
    assert line.startswith(("OK   #2 ep2d_Asc", "DIFF #2 ep2d_Asc"))


def test_compare_command_says_when_dcm2niix_is_missing(tmp_path):
    environment = dict(os.environ, PATH=str(tmp_path))  # no dcm2niix there
    result = subprocess.run([*_command(), "--temporary", "compare", str(tmp_path), "--with", "dcm2niix"],
                            capture_output=True, text=True, timeout=120, env=environment, check=False)
    assert result.returncode == 1
    assert "dcm2niix is not on PATH" in result.stderr

"""`dicombrowser convert` and the converter's path of `load --output`: names, formats, summary,
stored values with NIfTI scaling, provenance read back to the instance's own pixels."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel
import numpy as np
import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import conversion, sampledata


def _pixels(index: int, rows: int, columns: int) -> np.ndarray:
    """Every slice different (index in the values), so a wrong slice shows."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    return (1000 + 50 * index + xx + 3 * yy).astype(np.int16)


@pytest.fixture
def two_series_same_name(tmp_path):
    """Two CT series with one series number and description (names would collide), shuffled
    InstanceNumbers (slice order must come from positions), plus a file that is not DICOM."""
    folder = tmp_path / "in"
    study = pydicom.uid.generate_uid()
    a = sampledata.write_series(folder / "a", count=6, rows=12, columns=10, spacing=2.5, study_uid=study,
                                series_description="Head CT", pixels=_pixels, shuffle_instance_numbers=True)
    b = sampledata.write_series(folder / "b", count=4, rows=8, columns=8, study_uid=study,
                                series_description="Head CT")
    (folder / "notes.txt").write_text("not DICOM")
    return folder, a, b


def test_convert_folder_names_formats_and_summary(cli_runner, two_series_same_name, tmp_path):
    folder, a, b = two_series_same_name
    out = tmp_path / "out"
    result = cli_runner("convert", str(folder), "--output-dir", str(out), "--format", "nii", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["series"] == 2 and len(summary["written"]) == 2 and summary["skipped"] == []
    assert [s["reason"] for s in summary["skipped_files"]] == ["not a DICOM file"]
    names = sorted(p.name for p in out.iterdir())
    series_number = pydicom.dcmread(a[0]).SeriesNumber
    stem = f"{series_number}_Head_CT"
    # the bigger series converts first and keeps the plain name; the other gets dcm2niix's "a"
    assert names == sorted([f"{stem}.nii", f"{stem}.json", f"{stem}.provenance.json",
                            f"{stem}a.nii", f"{stem}a.json", f"{stem}a.provenance.json"])
    image = nibabel.load(str(out / f"{stem}.nii"))
    assert image.shape == (10, 12, 6)
    # stored values kept (int16) with the rescale in scl_slope/scl_inter, as dcm2niix writes them
    assert image.get_data_dtype() == np.int16
    assert image.dataobj.slope == 1 and image.dataobj.inter == -1024  # nibabel moves scl_* here on load
    assert np.array_equal(image.get_fdata()[:, :, 2].T, _pixels(2, 12, 10) - 1024.0)
    assert np.allclose(image.affine[:3, 2], [0, 0, 2.5])
    sidecar = json.loads((out / f"{stem}.json").read_text())
    assert sidecar["Modality"] == "CT" and sidecar["SeriesNumber"] == series_number
    assert sidecar["SeriesDescription"] == "Head CT" and sidecar["ConversionSoftware"] == "dicombrowser"

    again = cli_runner("convert", str(folder), "--output-dir", str(out), "--format", "nii", "--json")
    assert again.exit_code == 0, again.output
    second = {w["path"].rsplit("/", 1)[-1] for w in json.loads(again.output)["written"]}
    assert len(second) == 2 and not second & set(names), "existing files are never overwritten"


def test_provenance_names_the_instance_whose_pixels_are_at_that_slice(two_series_same_name, tmp_path):
    """Read a slice's SOP Instance UID back from the provenance sidecar, find that instance among
    the files, and find its pixels at that slice index of the image."""
    folder, a, _ = two_series_same_name
    summary = conversion.convert([str(folder / "a")], tmp_path / "out", fmt="nii.gz", pattern="%d")
    (written,) = summary.written
    provenance = next(p for p in written.sidecars if p.endswith(".provenance.json"))
    voxels = nibabel.load(written.path).dataobj.get_unscaled()  # stored values (i, j, k)
    by_uid = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in a}
    for k in range(voxels.shape[2]):
        row = conversion.provenance_lookup(provenance, k)
        assert row["frame"] == 1 and row["tile"] is None
        instance = pydicom.dcmread(by_uid[row["SOPInstanceUID"]])
        assert str(row["file"]) == str(by_uid[row["SOPInstanceUID"]])
        assert np.array_equal(voxels[:, :, k].T, instance.pixel_array), f"slice {k}"


def test_a_series_copied_twice_into_the_folder_is_read_once(cli_runner, two_series_same_name, tmp_path):
    """The same instances in two folders (a copy, an export beside its source): each instance is
    read once, so the image has the slices the scanner acquired, not twice as many; the second
    copies are listed as skipped files, through `convert` and `load -o` alike."""
    import shutil

    folder, a, _ = two_series_same_name
    data = tmp_path / "data"
    shutil.copytree(folder / "a", data / "1_original")
    shutil.copytree(folder / "a", data / "2_copy")
    shutil.copy(a[0], data / "2_copy" / "extra_copy_of_first.dcm")  # a third copy of one instance
    result = cli_runner("convert", str(data), "-o", str(tmp_path / "out"), "--format", "nii", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    (written,) = summary["written"]
    assert written["shape"] == [10, 12, 6]
    duplicates = sorted(s["path"] for s in summary["skipped_files"] if s["reason"].startswith("the same instance"))
    assert duplicates == sorted(str(p) for p in (data / "2_copy").iterdir())
    assert all(str(data / "1_original") in s["reason"] for s in summary["skipped_files"])
    rows = conversion.read_provenance(next(p for p in written["sidecars"] if p.endswith(".provenance.json")))
    assert len({row["SOPInstanceUID"] for row in rows}) == len(rows) == 6
    loaded = cli_runner("load", str(data), "-o", str(tmp_path / "one.nii"), "--json")
    assert loaded.exit_code == 0, loaded.output
    assert nibabel.load(str(tmp_path / "one.nii")).shape == (10, 12, 6)


def test_several_parts_of_one_series_get_their_suffixes(tmp_path):
    """Two echoes at each position: two defaults, written as <name>_e1 and <name>_e2."""
    folder = tmp_path / "echoes"
    series, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for echo, te in ((1, 5.0), (2, 10.0)):
        sampledata.write_series(folder, count=3, rows=6, columns=6, modality="MR", rescale=None, series_uid=series,
                                study_uid=study, file_name=f"E{echo}_{{index:02d}}.dcm", series_description="gre",
                                extra={"EchoNumbers": echo, "EchoTime": te, "RepetitionTime": 500.0})
    summary = conversion.convert([str(folder)], tmp_path / "out", fmt="nii.gz", pattern="%d_%s")
    names = sorted(w.path.rsplit("/", 1)[-1] for w in summary.written)
    assert [n.split("_", 1)[0] for n in names] == ["gre", "gre"]
    assert [n.rsplit("_", 1)[-1] for n in names] == ["e1.nii.gz", "e2.nii.gz"]
    sidecars = [json.loads(open(w.path.replace(".nii.gz", ".json")).read()) for w in sorted(
        summary.written, key=lambda w: w.path)]
    assert [s["EchoTime"] for s in sidecars] == [0.005, 0.01]  # BIDS: seconds
    assert [s.get("EchoNumber") for s in sidecars] == [1, 2]


def test_filename_pattern_placeholders_and_errors():
    values = {"0020,0011": "7", "0008,103e": "T1 / MPRAGE", "0018,1030": "t1_mpr", "0010,0020": "P^1",
              "0008,0070": "SIEMENS", "0008,0020": "20240102", "0008,0030": "101112.5"}
    assert conversion.expand_pattern("%s_%d_%p", values) == "7_T1_MPRAGE_t1_mpr"
    assert conversion.expand_pattern("%m-%t-%i-100%%", values) == "Siemens-20240102101112-P_1-100%"
    assert conversion.expand_pattern("%f", {}, "/data/subject01/IM1.dcm") == "subject01"
    with pytest.raises(Exception, match="unknown placeholder %q"):
        conversion.expand_pattern("%q", values)
    assert conversion.base_names([(values, ""), (values, ""), (values, "")], "%s") == ["7", "7a", "7b"]


def test_the_real_command_ends_quickly_with_its_output_whole(series_factory, tmp_path):
    """`python -m DICOMBrowser convert/load` end with os._exit (no interpreter teardown): the JSON
    on a pipe is complete, the exit codes are right, and the database used by `load UID` opens
    again and answers (its lock is a flock, gone with the process)."""
    from pathlib import Path

    files = series_factory(count=4, rows=8, columns=8, series_description="Quick")
    folder = str(files[0].parent)
    database = tmp_path / "db"
    repo = Path(__file__).resolve().parents[1]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "DICOMBrowser", "--database", str(database), *args],
                              capture_output=True, text=True, timeout=300, cwd=repo)

    converted = run("convert", folder, "-o", str(tmp_path / "out"), "--format", "nii", "--json")
    assert converted.returncode == 0, converted.stderr
    (written,) = json.loads(converted.stdout)["written"]
    assert nibabel.load(written["path"]).shape == (8, 8, 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("convert", str(empty), "-o", str(tmp_path / "none")).returncode == 1
    assert run("import", folder).returncode == 0
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    loaded = run("load", series_uid, "-o", str(tmp_path / "x.nii"), "--json")
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["output"] == str(tmp_path / "x.nii")
    listed = run("ls", "--level", "series", "--json")
    assert listed.returncode == 0 and series_uid in listed.stdout


def test_nrrd_format_and_database_uids(cli_runner, series_factory, tmp_path):
    files = series_factory(count=5, rows=8, columns=9, series_description="Liver")
    assert cli_runner("import", str(files[0].parent)).exit_code == 0
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    out = tmp_path / "out"
    result = cli_runner("convert", series_uid, "-o", str(out), "--format", "nrrd", "--filename", "%d", "--json")
    assert result.exit_code == 0, result.output
    (written,) = json.loads(result.output)["written"]
    import SimpleITK as sitk

    image = sitk.ReadImage(written["path"])
    assert image.GetSize() == (9, 8, 5) and written["path"].endswith("Liver.nrrd")
    truth = np.stack([pydicom.dcmread(f).pixel_array.astype(np.int32) - 1024 for f in files])
    assert np.array_equal(sitk.GetArrayFromImage(image), truth)


def test_nothing_to_convert_exits_1(cli_runner, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    result = cli_runner("convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "0 image(s) from 0 series" in result.output


def test_load_output_takes_the_fast_path_without_vtk(series_factory, tmp_path):
    """`load --output x.nii.gz` in a fresh process: written, and neither VTK nor slicer-core imported."""
    files = series_factory(count=4, rows=8, columns=8)
    output = tmp_path / "x.nii.gz"
    code = ("import sys\nfrom DICOMBrowser.DICOMBrowserLib.cli import cli\n"
            f"cli.main(args=['--temporary', 'load', {str(files[0].parent)!r}, '-o', {str(output)!r}], "
            "standalone_mode=False)\n"
            "print(sorted(m for m in sys.modules if m == 'slicer' or m.startswith('vtkmodules'))[:3])\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "[]"
    assert nibabel.load(str(output)).shape == (8, 8, 4)


@pytest.mark.slow
def test_corpus_mosaic_and_dwi_provenance(corpus, tmp_path):
    """Real files: a Siemens mosaic 4D (slice k of volume t is tile k of that volume's file) and a
    GE DWI (classic slices; rows flipped in the FSL layout): the UID read back holds the pixels."""
    from DICOMBrowser.DICOMBrowserLib.diffusion import mosaic
    from DICOMBrowser.DICOMBrowserLib.diffusion.series import plan_dwi

    summary = conversion.convert([str(corpus / "siemens_mosaic_order" / "In" / "ep2d_Asc_2"),
                                  str(corpus / "ge_dwi")], tmp_path / "out", fmt="nii", pattern="%d")
    by_plugin = {w.plugin: w for w in summary.written}
    image = by_plugin["DICOMScalarVolumePlugin"]
    voxels = np.asarray(nibabel.load(image.path).dataobj)
    provenance = next(p for p in image.sidecars if p.endswith(".provenance.json"))
    layout = plan_dwi([conversion.provenance_lookup(provenance, 0, 0)["file"]], require_diffusion=False
                      ).volumes[0][0].mosaic_layout
    for t, k in ((0, 0), (3, 17), (5, voxels.shape[2] - 1)):
        row = conversion.provenance_lookup(provenance, k, t)
        instance = pydicom.dcmread(row["file"])
        assert str(instance.SOPInstanceUID) == row["SOPInstanceUID"] and row["tile"] == k
        assert np.array_equal(voxels[:, :, k, t].T, mosaic.unpack(instance.pixel_array, layout)[k])

    dwi = by_plugin["DICOMDiffusionVolumePlugin"]
    voxels = np.asarray(nibabel.load(dwi.path).dataobj)
    provenance = next(p for p in dwi.sidecars if p.endswith(".provenance.json"))
    assert json.loads(open(provenance).read())["rows_flipped"] is True
    for t, k in ((0, 0), (1, 1), (6, 0)):
        row = conversion.provenance_lookup(provenance, k, t)
        instance = pydicom.dcmread(row["file"])
        assert str(instance.SOPInstanceUID) == row["SOPInstanceUID"]
        assert np.array_equal(voxels[:, ::-1, k, t].T, instance.pixel_array)


def test_group_by_series_reads_each_instance_once():
    from DICOMBrowser.DICOMBrowserLib.scanindex import group_by_series

    groups, skipped = group_by_series([("a/1", "S", "I1"), ("a/2", "S", "I2"), ("a/1", "S", "I1"), ("b/1", "S", "I1"),
                                       ("c/x", "", "I9"), ("d/1", "T", "I1"), ("e/1", "S", ""), ("e/2", "S", "")])
    assert groups == {"S": ["a/1", "a/2", "e/1", "e/2"], "T": ["d/1"]}  # no UID: nothing to compare, kept
    assert skipped == [("b/1", "the same instance (SOPInstanceUID I1) as a/1"), ("c/x", "no SeriesInstanceUID")]

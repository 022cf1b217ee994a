"""What a user gets by default through `dicombrowser import / ls --json / examine --json / load`,
for the readings that are not a plain stack: time series no tag separates, Siemens mosaics,
echoes and phase images, Philips scaling, series of localizers only.

Voxel-by-voxel agreement with dcm2niix on the real corpus is Testing/test_dcm2niix_differential.py;
these tests pin the rules themselves on generated series (no corpus needed) and on single real
files whose answer is known.
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from DICOMBrowser.DICOMBrowserLib import sampledata


def _series_uid(cli_runner, folder: Path) -> str:
    result = cli_runner("import", str(folder))
    assert result.exit_code == 0, result.output
    listing = json.loads(cli_runner("ls", "--level", "series", "--json").output)
    assert len(listing) == 1, listing
    return listing[0]["SeriesInstanceUID"]


def _examine(cli_runner, target: str) -> list[dict]:
    result = cli_runner("examine", target, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _write_fmri(folder: Path, volumes: int, slices: int, **kwargs) -> None:
    """A GE-like fMRI: `volumes` repetitions of `slices` positions, InstanceNumber running over the
    whole series (volume-major), no TemporalPositionIdentifier, the same AcquisitionNumber everywhere,
    file names that do not follow the acquisition order. Voxel value = 100 * volume + slice."""
    study_uid, series_uid = generate_uid(), generate_uid()
    positions = sampledata.regular_positions(slices, 4.0)
    for volume in range(volumes):
        for index, position in enumerate(positions):
            ds = sampledata.make_dataset(
                study_uid=study_uid, series_uid=series_uid, modality="MR", position=position,
                instance_number=volume * slices + index + 1, rescale=None,
                pixels=np.full((8, 8), 100 * volume + index, dtype=np.int16),
                extra={"AcquisitionNumber": 1, "EchoTime": "30"}, **kwargs)
            ds.save_as(folder / f"Z{(volumes - volume) * 100 + index:05d}.dcm", enforce_file_format=True)


def test_time_series_without_a_temporal_tag_loads_as_4d(cli_runner, tmp_path):
    folder = tmp_path / "fmri"
    folder.mkdir()
    _write_fmri(folder, volumes=10, slices=15)
    uid = _series_uid(cli_runner, folder)
    loadables = _examine(cli_runner, uid)
    [default] = [l for l in loadables if l["selected"]]
    assert "4D, 10 volumes by acquisition order" in default["name"] and default["warning"] == ""
    assert len(loadables) == 11  # and each volume as an alternative
    output = tmp_path / "fmri.nii.gz"
    result = cli_runner("load", uid, "--output", str(output))
    assert result.exit_code == 0, result.output
    image = nibabel.load(output)
    assert image.shape == (8, 8, 15, 10)
    data = np.asarray(image.dataobj)
    # volume m holds the m-th acquisition of every position (InstanceNumber order), slices along the normal
    assert [int(data[0, 0, 0, m]) for m in range(10)] == [100 * m for m in range(10)]
    assert [int(data[0, 0, k, 3]) for k in range(15)] == [300 + k for k in range(15)]


def test_incomplete_repetition_stays_3d_with_a_warning(cli_runner, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    _write_fmri(folder, volumes=2, slices=5)
    next(folder.glob("Z*.dcm")).unlink()  # one position now has a single image
    uid = _series_uid(cli_runner, folder)
    [default] = [l for l in _examine(cli_runner, uid) if l["selected"]]
    assert "4D" not in default["name"] and "share" in default["warning"]


def test_a_series_of_localizers_only_still_has_a_default(cli_runner, tmp_path):
    folder = tmp_path / "scout"
    planes = [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)]
    sampledata.write_series(folder, positions=[(0, 0, 0)] * 3, orientations=planes, modality="MR",
                            extra={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]})
    uid = _series_uid(cli_runner, folder)
    loadables = _examine(cli_runner, uid)
    assert len(loadables) == 3 and all(l["confidence"] < 0.5 for l in loadables)
    assert sum(l["selected"] for l in loadables) == 1  # the best of them, not nothing


def test_a_localizer_beside_the_main_volume_is_not_selected(cli_runner, tmp_path):
    folder = tmp_path / "mixed"
    series_uid, study_uid = generate_uid(), generate_uid()
    sampledata.write_series(folder, count=20, series_uid=series_uid, study_uid=study_uid, modality="MR")
    sampledata.write_series(folder, positions=[(0, 0, 0)], orientation=(0, 1, 0, 0, 0, -1), series_uid=series_uid,
                            study_uid=study_uid, modality="MR", file_name="scout{index}.dcm")
    uid = _series_uid(cli_runner, folder)
    selected = [l for l in _examine(cli_runner, uid) if l["selected"]]
    assert len(selected) == 1 and len(selected[0]["files"]) == 20


def test_echoes_and_phase_load_as_dcm2niix_names_them(cli_runner, tmp_path):
    folder = tmp_path / "gre"
    study_uid, series_uid = generate_uid(), generate_uid()
    for echo, image_type in ((1, "M"), (2, "M"), (2, "P")):
        sampledata.write_series(folder, count=4, study_uid=study_uid, series_uid=series_uid, modality="MR",
                                file_name=f"E{echo}{image_type}{{index}}.dcm",
                                extra={"EchoNumbers": echo, "EchoTime": str(5 * echo),
                                       "ImageType": ["ORIGINAL", "PRIMARY", image_type, "ND"]})
    uid = _series_uid(cli_runner, folder)
    loadables = _examine(cli_runner, uid)
    assert sorted(l["suffix"] for l in loadables if l["selected"]) == ["_e1", "_e2", "_e2_ph"]
    output = tmp_path / "out" / "gre.nii.gz"
    result = cli_runner("load", uid, "--output", str(output), "--json")
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)["outputs"]
    assert sorted(Path(p).name for p in written) == ["gre_e1.nii.gz", "gre_e2.nii.gz", "gre_e2_ph.nii.gz"]


def test_philips_precise_values_by_default_display_values_on_request(cli_runner, tmp_path):
    folder = tmp_path / "philips"
    stored = np.arange(64, dtype=np.int16).reshape(8, 8)
    sampledata.write_series(folder, count=3, modality="MR", rescale=(2.0, 10.0), pixels=lambda i, r, c: stored,
                            extra={"Manufacturer": "Philips Medical Systems"})
    for path in folder.iterdir():  # the private scale slope as Philips writes it (2005,100E FL)
        ds = pydicom.dcmread(path)
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", 0.5)
        ds.save_as(path)
    uid = _series_uid(cli_runner, folder)
    loadables = _examine(cli_runner, uid)
    [default] = [l for l in loadables if l["selected"]]
    display = next(i for i, l in enumerate(loadables) if "Philips display values" in l["name"])
    for index, expected in ((None, (stored * 2.0 + 10.0) / (2.0 * 0.5)), (display, stored * 2.0 + 10.0)):
        output = tmp_path / f"p{index}.nii.gz"
        args = ["load", uid, "--output", str(output)] + (["--loadable", str(index)] if index is not None else [])
        result = cli_runner(*args)
        assert result.exit_code == 0, result.output
        slice_values = np.sort(nibabel.load(output).get_fdata()[:, :, 0].ravel())  # voxel order aside
        assert np.allclose(slice_values, np.sort(expected.ravel())), (index, default["name"])


def test_a_single_mosaic_file_loads_as_a_volume(cli_runner, corpus, tmp_path):
    folder = corpus / "siemens_mosaic_orientation/In/Orientation/ax/axasc35"
    one = sorted(p for p in folder.iterdir() if p.suffix != ".nii")[0]
    result = cli_runner("examine", str(one), "--json")
    [default] = [l for l in json.loads(result.output) if l["selected"]]
    assert default["plugin"] == "DICOMScalarVolumePlugin" and default["confidence"] >= 0.5
    output = tmp_path / "one.nii.gz"
    result = cli_runner("load", str(one), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert nibabel.load(output).shape == (64, 64, 35)


@pytest.mark.slow
def test_every_mosaic_fmri_of_the_corpus_loads_as_4d_by_default(cli_runner, corpus):
    folders = [p for p in (corpus / "siemens_mosaic_order/In").iterdir() if p.is_dir()]
    for folder in folders:
        loadables = _examine(cli_runner, str(folder))
        [default] = [l for l in loadables if l["selected"]]
        assert "4D, 6 volumes" in default["name"], (folder, default["name"])


def test_multi_echo_mosaics_load_one_time_series_per_echo(cli_runner, corpus, tmp_path):
    """A multi-echo EPI saved as mosaics (CMRR's ME sequences: every echo of a volume in one series,
    EchoNumbers 1..n): each echo is its own 4D series, named _e1, _e2 as dcm2niix names them."""
    source = sorted((corpus / "siemens_mosaic_order/In/ep2d_Asc_2").iterdir())
    folder = tmp_path / "me"
    folder.mkdir()
    for index, path in enumerate(source):
        ds = pydicom.dcmread(path)
        ds.EchoNumbers = index % 2 + 1
        ds.EchoTime = str(20 + 20 * (index % 2))
        ds.save_as(folder / path.name)
    uid = _series_uid(cli_runner, folder)
    defaults = [l for l in _examine(cli_runner, uid) if l["selected"]]
    assert sorted((l["suffix"], len(l["files"])) for l in defaults) == [("_e1", 3), ("_e2", 3)]
    assert all("4D, 3 volumes" in l["name"] for l in defaults)

"""NIfTI written a slab at a time (`convert` and `load --output` for series of one rescale): the
same file as writing the whole array, no image or sidecar left when a file fails halfway, and the
writer refuses a stream that does not fill the volume."""
from __future__ import annotations

import os

import nibabel
import numpy as np
import pytest

from DICOMBrowser.DICOMBrowserLib import conversion, loading, sampledata, volumeio
from DICOMBrowser.DICOMBrowserLib.errors import DICOMBrowserError
from DICOMBrowser.DICOMBrowserLib.scanindex import ScanIndex, plugin_tags


def _pixels(index: int, rows: int, columns: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:columns]
    return (-1000 + 37 * index + xx + 5 * yy).astype(np.int16)


@pytest.fixture
def ct_series(tmp_path):
    """70 slices of 64x48, every slice different; 4 slices per slab below, so many slabs."""
    return sampledata.write_series(tmp_path / "ct", count=70, rows=64, columns=48, spacing=1.5, pixels=_pixels,
                                   shuffle_instance_numbers=True)


def _default_scalar(files):
    index = ScanIndex.build([str(f) for f in files], plugin_tags(), workers=1)
    report = loading.examine(index, [[str(f) for f in files]], use_cache=False)
    (loadable,) = [item for item in report.loadables if item.selected]
    return index, report, loadable


def test_streamed_nifti_equals_the_whole_array_written(ct_series, tmp_path, monkeypatch):
    index, report, loadable = _default_scalar(ct_series)
    plugin = report.plugins[loadable.plugin]
    whole = plugin.read_volume(loadable, stored=True)
    streamed = plugin.stream_volume(loadable)
    assert streamed is not None and streamed.shape == whole.voxels.shape and streamed.rescale == whole.rescale
    monkeypatch.setattr(volumeio, "SLAB_BYTES", 4 * 64 * 48 * 2)  # through conversion: 4 slices a slab
    volumeio.write_nifti(tmp_path / "whole.nii", whole.voxels, whole.ijk_to_ras, rescale=whole.rescale)
    out = tmp_path / "out"
    summary = conversion.convert([str(f.parent) for f in ct_series[:1]], out, fmt="nii", workers=1)
    (image,) = summary.written
    assert (tmp_path / "whole.nii").read_bytes() == open(image.path, "rb").read()
    nifti = nibabel.load(image.path)
    assert nifti.shape == (48, 64, 70)
    # slice k of the file is the slice at the k-th position: its provenance names the instance written with it
    row = conversion.provenance_lookup(image.sidecars[-1], k=10)
    import pydicom

    source = pydicom.dcmread(row["file"])
    modality = source.pixel_array * float(source.RescaleSlope) + float(source.RescaleIntercept)
    np.testing.assert_array_equal(np.asarray(nifti.dataobj)[:, :, 10].T, modality)


def test_a_file_cut_halfway_leaves_no_image_and_no_sidecar(ct_series, tmp_path, monkeypatch):
    """A file cut after it was examined (changed while the conversion runs): the write fails naming
    it, and neither the half-written image nor its sidecars stay."""
    monkeypatch.setattr(volumeio, "SLAB_BYTES", 4 * 64 * 48 * 2)
    index, report, loadable = _default_scalar(ct_series)
    victim = loadable.files[loadable.extra["frames"][0][40][0]]  # a slice read well after the first slabs
    with open(victim, "r+b") as handle:
        handle.truncate(os.path.getsize(victim) - 1000)
    out = tmp_path / "out"
    out.mkdir()
    options = conversion._Options(str(out), "nii", True, True)
    with pytest.raises(DICOMBrowserError, match=os.path.basename(victim)):
        conversion.write_loadable(loadable, report, index, out, "ct", options)
    assert sorted(os.listdir(out)) == []


@pytest.mark.parametrize("count", [2, 4])
def test_writer_refuses_a_stream_that_does_not_fill_the_volume(tmp_path, count):
    slabs = (np.zeros((1, 4, 5), np.int16) for _ in range(count))
    with pytest.raises(DICOMBrowserError, match="volume"):
        volumeio.write_nifti_slabs(tmp_path / "x.nii", (3, 4, 5), np.int16, slabs, np.eye(4))
    assert not (tmp_path / "x.nii").exists()


def test_slabs_read_ahead_in_turn_and_stop_cleanly(ct_series):
    """FrameReader.slabs reads the next slab on a helper thread while this one is used: the slabs
    put together are read_frames(), each slab holds its frames while the caller has it, and a
    caller that stops early leaves no reader thread behind."""
    import threading

    from DICOMBrowser.DICOMBrowserLib import pixelreader

    index, report, loadable = _default_scalar(ct_series)
    reader = pixelreader.frame_reader([str(f) for f in ct_series], None)
    whole = reader.read_frames()
    frame_bytes = whole[0].nbytes
    got = []
    for slab in reader.slabs(4 * frame_bytes):
        got.append(slab.copy())
        np.testing.assert_array_equal(slab, whole[sum(len(g) for g in got[:-1]):][:len(slab)])
    np.testing.assert_array_equal(np.concatenate(got), whole)
    stream = reader.slabs(4 * frame_bytes)
    next(stream)
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("slab-reader")]

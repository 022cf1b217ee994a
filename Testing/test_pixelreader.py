"""Pixel reading: the native fast path and pydicom's handlers give what pydicom gives.

Real files: pydicom's bundled images (one image in many transfer syntaxes, multi-frame RT dose,
colour) and the corpus' one-file-per-transfer-syntax folder; generated series for the
database route and the rescale rules.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import pixelreader
from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError

BUNDLED = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
           "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm",
           "CT_small.dcm", "rtdose.dcm", "rtdose_rle.dcm", "rtdose_expb.dcm", "image_dfl.dcm", "JPEG2000.dcm",
           "SC_rgb_rle_2frame.dcm", "SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm", "liver_1frame.dcm"]


def _pydicom_array(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        return ds.pixel_array


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_files_match_pydicom(pydicom_file, name):
    path = pydicom_file(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stack = pixelreader.read_frames([str(path)])
    expected = _pydicom_array(path)
    assert stack.shape[0] == int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)
    assert stack.dtype == expected.dtype.newbyteorder("=")
    assert np.array_equal(stack.reshape(expected.shape), expected)


def test_every_transfer_syntax_of_the_corpus(corpus):
    folder = corpus / "orthanc_tests" / "Database" / "TransferSyntaxes"
    checked = 0
    for path in sorted(folder.glob("*.dcm")):
        if path.name == pixelreader.JPEG_EXTENDED + ".dcm":
            continue  # pydicom cannot decode it; GDCM can (next test)
        try:
            expected = _pydicom_array(path)
        except (RuntimeError, ValueError, AttributeError, NotImplementedError):
            with pytest.raises(DICOMFileError, match=path.name):
                pixelreader.read_frames([str(path)])  # what pydicom cannot decode, we report with the file
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stack = pixelreader.read_frames([str(path)])
        assert np.array_equal(stack.reshape(expected.shape), expected), path.name
        checked += 1
    assert checked >= 11  # native LE/BE/implicit, deflate, JPEG baseline/lossless, JPEG-LS, JPEG 2000, RLE


def test_jpeg_extended_12_bit_decoded_as_dcmtk_decodes_it(corpus, tmp_path):
    """pydicom's plugins refuse this 12-bit JPEG Extended file; GDCM's own reader decodes it to
    the values DCMTK's dcmdjpeg gives."""
    import shutil
    import subprocess

    if shutil.which("dcmdjpeg") is None:
        pytest.skip("DCMTK's dcmdjpeg not installed (Debian package dcmtk)")
    path = corpus / "orthanc_tests" / "Database" / "TransferSyntaxes" / (pixelreader.JPEG_EXTENDED + ".dcm")
    with pytest.raises((RuntimeError, ValueError, NotImplementedError)):
        pydicom.dcmread(path).pixel_array
    subprocess.run(["dcmdjpeg", str(path), str(tmp_path / "plain.dcm")], check=True, timeout=60)
    expected = pydicom.dcmread(tmp_path / "plain.dcm").pixel_array
    stack = pixelreader.read_frames([str(path)])
    assert stack.shape == (1, 512, 512) and np.array_equal(stack[0], expected)


def test_frame_selection_in_a_multiframe_file(pydicom_file):
    path = str(pydicom_file("rtdose.dcm"))
    expected = pydicom.dcmread(path).pixel_array
    stack = pixelreader.read_frames([path], frames=[(0, 7), (0, 0), (0, 14)])
    assert np.array_equal(stack, expected[[7, 0, 14]])
    rle = str(pydicom_file("rtdose_rle.dcm"))
    both = pixelreader.read_frames([path, rle], frames=[(1, 3), (0, 3)])
    assert np.array_equal(both[0], both[1])


def test_series_in_file_order_and_database_route(series_factory, database):
    files = [str(p) for p in series_factory(count=6, rows=20, columns=24)]
    stack = pixelreader.read_frames(files)
    assert stack.shape == (6, 20, 24) and stack.dtype == np.int16
    for index, path in enumerate(files):
        assert np.array_equal(stack[index], pydicom.dcmread(path).pixel_array)
    for path in files:
        database.index_file(path, copied=False)
    assert np.array_equal(pixelreader.read_frames(files[::-1], database), stack[::-1])


def test_signed_values_in_fewer_stored_bits_are_sign_extended(series_factory):
    def pixels(index, rows, columns):
        values = np.full((rows, columns), -5, dtype=np.int16)
        values[0, 0] = 2047
        return values

    (path,) = series_factory(count=1, pixels=pixels, extra={"BitsStored": 12, "HighBit": 11})
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype="<i2").copy()
    raw[1] = raw[1] & 0x0FFF  # -5 stored in 12 bits, high bits cleared, as some scanners write
    ds.PixelData = raw.tobytes()
    ds.save_as(path)
    stack = pixelreader.read_frames([str(path)])
    assert stack[0, 0, 1] == -5 and stack[0, 0, 0] == 2047
    assert np.array_equal(stack[0], pydicom.dcmread(path).pixel_array)


def test_mixed_frame_sizes_refused(series_factory):
    a = series_factory("a", count=1, rows=8, columns=8)
    b = series_factory("b", count=1, rows=8, columns=10)
    with pytest.raises(Exception, match="differs"):
        pixelreader.read_frames([str(a[0]), str(b[0])])


def test_truncated_pixel_data_reported_with_the_file(series_factory, tmp_path):
    (path,) = series_factory(count=1, rows=32, columns=32)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-100])
    with pytest.raises(DICOMFileError, match=Path(path).name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixelreader.read_frames([str(path)])


def test_rescale_keeps_int16_in_place_when_it_fits():
    stack = np.arange(-10, 10, dtype=np.int16).reshape(2, 2, 5)
    out = pixelreader.apply_rescale(stack, 1.0, -1024)
    assert out.dtype == np.int16 and out is stack
    assert out[0, 0, 0] == -1034


def test_rescale_uint16_with_integer_intercept_to_int16_without_wrapping():
    stack = np.array([[[0, 33000]]], dtype=np.uint16)
    out = pixelreader.apply_rescale(stack, [1.0], [-1024.0])
    assert out.dtype == np.int16 and out.tolist() == [[[-1024, 31976]]]


def test_rescale_to_float32_when_needed_never_float64():
    stack = np.array([[[1, 2]], [[3, 4]]], dtype=np.int16)
    fractional = pixelreader.apply_rescale(stack.copy(), [0.5, 2.0], [0.25, -1.0])
    assert fractional.dtype == np.float32
    assert fractional.tolist() == [[[0.75, 1.25]], [[5.0, 7.0]]]
    overflow = pixelreader.apply_rescale(np.array([[[32000]]], dtype=np.int16), 1, 1000)
    assert overflow.dtype == np.float32 and overflow[0, 0, 0] == 33000


def test_header_promising_more_pixels_than_the_file_holds(corpus):
    """Orthanc's malformed files: Rows/Columns far beyond the pixel data; refused, nothing allocated."""
    folder = corpus / "orthanc_tests" / "Database"
    files = sorted(folder.glob("2026-05-26-oob-monochrome-*.dcm"))
    assert files, "the corpus' out-of-bounds monochrome files are missing"
    for path in files:
        with pytest.raises(DICOMFileError, match="header promises"):
            pixelreader.read_frames([str(path)])


def test_rescale_overflow_in_a_late_frame_falls_back_to_exact_float32():
    """Frames shifted in place before the overflowing one are restored before the float path."""
    stack = np.array([[[0, 10]], [[-5, 7]], [[32000, 1]]], dtype=np.int16)
    out = pixelreader.apply_rescale(stack, 1.0, [1000, -1000, 1000])
    assert out.dtype == np.float32
    assert out.tolist() == [[[1000, 1010]], [[-1005, -993]], [[33000, 1001]]]

"""multiframe.read_header: fastheader by default, plain pydicom with DICOMBROWSER_FAST_HEADER=0;
cached per path, modification time and reader; an unreadable file is a DICOMFileError either way.
(The equality of the two readers, and of the geometry and plans made from them, is
test_fastheader.py's.)"""
from __future__ import annotations

import shutil

import pytest

from DICOMBrowser.DICOMBrowserLib import fastheader, multiframe
from DICOMBrowser.DICOMBrowserLib.errors import DICOMFileError


@pytest.fixture
def fast_calls(monkeypatch):
    """The paths multiframe hands to fastheader.read_header, with an empty header cache."""
    calls: list[str] = []
    real = fastheader.read_header

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(fastheader, "read_header", counting)
    multiframe._read_header.cache_clear()
    yield calls
    multiframe._read_header.cache_clear()


def test_the_environment_chooses_the_reader_and_each_is_cached(pydicom_file, tmp_path, monkeypatch, fast_calls):
    path = str(shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "ct.dcm"))
    monkeypatch.setenv("DICOMBROWSER_FAST_HEADER", "0")
    plain = multiframe.read_header(path)
    assert fast_calls == []
    monkeypatch.delenv("DICOMBROWSER_FAST_HEADER")
    fast = multiframe.read_header(path)
    assert fast_calls == [path]
    assert fast is not plain and fast == plain
    assert multiframe.read_header(path) is fast
    monkeypatch.setenv("DICOMBROWSER_FAST_HEADER", "1")
    assert multiframe.read_header(path) is fast and fast_calls == [path]


@pytest.mark.parametrize("flag", ["1", "0"])
def test_unreadable_files_raise_dicom_file_error(pydicom_file, tmp_path, monkeypatch, flag, fast_calls):
    """A sequence cut before its delimiter (pydicom: OSError) and a missing file."""
    monkeypatch.setenv("DICOMBROWSER_FAST_HEADER", flag)
    data = pydicom_file("CT_small.dcm").read_bytes()
    pixel_data = data.index(b"\xe0\x7f\x10\x00")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:pixel_data] + b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff"
                    + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + b"\x10\x00\x20\x00LO\x02\x00ID")
    with pytest.raises(DICOMFileError, match="cannot read multi-frame header"):
        multiframe.read_header(str(cut))
    with pytest.raises(DICOMFileError, match="cannot stat"):
        multiframe.read_header(str(tmp_path / "missing.dcm"))
    assert fast_calls == ([str(cut)] if flag == "1" else [])


def _raw_elements(dataset, found):
    """Every element of `dataset` and its items, recursively, as (item, tag), before any is converted."""
    from pydicom.dataelem import RawDataElement

    for tag in list(dataset.keys()):
        element = dataset.get_item(tag)
        if isinstance(element, RawDataElement):
            found.append((dataset, tag))
        elif element.VR == "SQ":
            for item in element.value:
                _raw_elements(item, found)
    return found


def test_raw_values_read_as_pydicom_converts_them(corpus, pydicom_file):
    """frame_geometries reads DS, IS and binary numbers straight from the raw bytes: for every raw
    element of the corpus's enhanced files and pydicom's, the text and the numbers equal what
    pydicom's conversion gives; elements it does not read that way are left to pydicom."""
    import pydicom

    paths = [p for folder in ("enhanced_multiframe", "fmri_timeseries/In/Siemens/XA10", "dicom2nifti/tests/data/philips_enhanced")
             for p in sorted((corpus / folder).rglob("*")) if p.is_file()]
    paths += [pydicom_file(name) for name in ("MR_small.dcm", "MR_small_padded.dcm", "CT_small.dcm", "rtdose.dcm", "rtplan.dcm",
                                                   "reportsi_with_empty_number_tags.dcm")]
    fast_read = 0
    for path in paths:
        try:
            dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        for item, tag in _raw_elements(dataset, []):
            parts = multiframe._raw_parts(item, tag)
            if parts is None:
                continue
            fast_read += 1
            text = multiframe._value_text(item, tag)
            numbers = multiframe._value_numbers(item, tag, len(parts))
            try:
                value = item[tag].value  # converted by pydicom from here on
            except (ValueError, OverflowError):
                continue
            assert text == multiframe._text(value), (path, hex(tag))
            assert numbers == multiframe._numbers(value, len(parts)), (path, hex(tag))
    assert fast_read > 1000

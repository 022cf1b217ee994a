"""Which copy of an instance is sound: each fact of validity.check_file, on a generated file
damaged the way a bit flip, a cut or an overwrite damages real files, while the header scanner
still reads it; the undamaged file passes every check."""
from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib.headerscan import scan_file
from DICOMBrowser.DICOMBrowserLib.indexer import required_tags
from DICOMBrowser.DICOMBrowserLib.validity import best_copy, check_file


@pytest.fixture
def sound_file(series_factory) -> Path:
    return series_factory(count=1, rows=16, columns=16)[0]


def damaged(sound: Path, name: str, change) -> Path:
    data = bytearray(sound.read_bytes())
    change(data)
    path = sound.with_name(name)
    path.write_bytes(bytes(data))
    return path


def value_offset(path: Path, keyword: str) -> tuple[int, int]:
    dataset = pydicom.dcmread(path, defer_size=1 << 30)
    element = dataset.get_item(keyword, keep_deferred=True)
    return element.value_tell, element.length


def test_the_sound_file_passes_every_check(sound_file):
    validity = check_file(str(sound_file))
    assert validity.rank == (0, 0), validity.describe()
    assert validity.describe() == "passes every check"


def test_each_damage_fails_a_fact_the_header_scanner_misses(sound_file):
    sop_at, sop_length = value_offset(sound_file, "SOPInstanceUID")
    pixel_at, _ = value_offset(sound_file, "PixelData")
    rows_at, _ = value_offset(sound_file, "Rows")
    ds_at, _ = value_offset(sound_file, "SliceThickness")

    def flip_meta_uid(data):  # the file meta's copy of the SOP Instance UID, last character
        at = bytes(data).index(bytes(data[sop_at:sop_at + sop_length]).rstrip(b"\0")[:-1], 132)
        data[at + sop_length - 2] ^= 0x01

    cases = {
        "cut-between-elements": (lambda d: d.__delitem__(slice(rows_at - 8, None)), "without Pixel Data"),
        "cut-pixels": (lambda d: d.__delitem__(slice(pixel_at + 100, None)), "runs past the end"),
        "appended": (lambda d: d.extend(b"\0" * 14), "follow the last element"),
        "meta-uid": (flip_meta_uid, "file meta SOP Instance UID"),
        "meta-length": (lambda d: struct.pack_into("<I", d, 140, struct.unpack_from("<I", d, 140)[0] + 2),
                        "file meta group length"),
        "rows": (lambda d: struct.pack_into("<H", d, rows_at, 17), "Pixel Data has"),
        "text": (lambda d: d.__setitem__(slice(ds_at, ds_at + 1), b"\x01"), "breaks its VR's rules"),
        "tag-order": (lambda d: struct.pack_into("<H", d, rows_at - 6, 0x0000), "out of order"),
    }
    for name, (change, expected) in cases.items():
        path = damaged(sound_file, f"{name}.dcm", change)
        scan = scan_file(str(path), required_tags())
        validity = check_file(str(path))
        assert expected in validity.describe(), f"{name}: {validity.describe()} (scan error: {scan.error})"
        assert validity.rank > (0, 0)
        # whichever comes first, the sound file is chosen
        assert best_copy([str(path), str(sound_file)])[0] == str(sound_file), name
        assert best_copy([str(sound_file), str(path)])[0] == str(sound_file), name


def test_ties_keep_the_copy_indexed_first(sound_file):
    same = damaged(sound_file, "preamble.dcm", lambda d: d.__setitem__(0, 0x55))  # the preamble is free
    assert best_copy([str(same), str(sound_file)])[0] == str(same)
    assert best_copy([str(sound_file), str(same)])[0] == str(sound_file)

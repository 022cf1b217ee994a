"""fastheader.read_header gives what pydicom.dcmread(path, stop_before_pixels=True, force=True)
gives: for the real corpus, pydicom's own test files, generated files built byte by byte (every
encoding case the reader handles or hands back to pydicom), truncated and corrupted files; and
the multi-frame geometry, diffusion plans and converted NIfTI bytes do not change with it."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement

from DICOMBrowser.DICOMBrowserLib import fastheader, multiframe

pytestmark = pytest.mark.filterwarnings("ignore")

DATASET_STATE = ("_read_implicit", "_read_little", "_read_charset", "_parent_encoding",
                 "is_undefined_length_sequence_item", "seq_item_tell", "file_tell")


# -- comparison ----------------------------------------------------------------------------------

def _outcome(read, path):
    """(data set, None) or (None, exception type) of one reader."""
    try:
        return read(path), None
    except Exception as error:  # noqa: BLE001 - the outcome is what is compared
        return None, type(error)


def _element(dataset, tag):
    """The element as pydicom hands it to a caller (converting it), or the exception type."""
    try:
        return dataset[tag], None
    except Exception as error:  # noqa: BLE001
        return None, type(error)


def _same_state(fast, reference, where, names):
    for name in names:
        assert getattr(fast, name, "unset") == getattr(reference, name, "unset"), (where, name)


def assert_same_dataset(fast, reference, where="", values=True) -> int:
    """Element by element, recursively: the stored raw tuples, the converted elements (tag, VR,
    value when `values`), sequence lengths and flags, the item state pydicom's conversions use.
    Returns how many elements pydicom could not convert (the same ones, with the same error) or
    hold a NaN, which make pydicom's own == fail."""
    errors = 0
    _same_state(fast, reference, where, DATASET_STATE)
    assert list(map(int, fast._dict)) == list(map(int, reference._dict)), where
    for tag in reference._dict:
        stored_fast, stored_reference = fast._dict[tag], reference._dict[tag]
        here = f"{where}/{tag}"
        if isinstance(stored_fast, RawDataElement) and isinstance(stored_reference, RawDataElement):
            assert stored_fast == stored_reference, here  # same bytes, VR, offset, encoding flags
            if not values:
                continue
        elif isinstance(stored_fast, RawDataElement):
            pytest.fail(f"{here}: converted by pydicom at read time, left raw here")
        (element_fast, error_fast), (element_reference, error_reference) = (
            _element(fast, tag), _element(reference, tag))
        assert error_fast is error_reference, here
        if error_reference is not None:
            errors += 1
            continue
        assert isinstance(element_fast, DataElement), here
        assert (element_fast.tag, element_fast.VR) == (element_reference.tag, element_reference.VR), here
        assert element_fast.file_tell == element_reference.file_tell, here
        assert element_fast.is_undefined_length == element_reference.is_undefined_length, here
        assert element_fast.private_creator == element_reference.private_creator, here
        assert _state(element_fast, "_value") == _state(element_reference, "_value"), here
        if element_reference.VR == "SQ" and isinstance(element_reference.value, pydicom.Sequence):
            sequence_fast, sequence_reference = element_fast.value, element_reference.value
            assert type(sequence_fast) is pydicom.Sequence, here
            assert len(sequence_fast) == len(sequence_reference), here
            # (a zero-length sequence converted by pydicom on access has no such flag)
            assert (getattr(sequence_fast, "is_undefined_length", None)
                    == getattr(sequence_reference, "is_undefined_length", None)), here
            for index, (item_fast, item_reference) in enumerate(zip(sequence_fast, sequence_reference)):
                errors += assert_same_dataset(item_fast, item_reference, f"{here}[{index}]", values)
        else:
            if element_fast.value != element_reference.value:
                # NaN (random bytes in FL/FD) is unequal to itself, in pydicom's == too
                assert repr(element_fast.value) == repr(element_reference.value) and "nan" in repr(element_fast.value), here
                errors += 1
    # every other attribute (pixel representation set by conversions, private blocks, ...), now
    # that both were used alike
    skip = ("_dict", "file_meta", "buffer")  # (a deflated file keeps its inflated bytes in a buffer)
    assert _state(fast, *skip) == _state(reference, *skip), where
    return errors


def _state(obj, *skip: str) -> dict:
    return {name: value for name, value in vars(obj).items() if name not in skip}


def assert_same_header(path, values=True, expect_fast=None) -> str:
    """The fast reader's outcome for `path` is pydicom's; returns 'fast', 'pydicom' or 'error'."""
    reference, error_reference = _outcome(fastheader.pydicom_read, path)
    handled = fastheader.read_header_or_none(path)  # read_header is this, or else pydicom_read
    fast, error_fast = (handled, None) if handled is not None else _outcome(fastheader.pydicom_read, path)
    assert error_fast is error_reference, path
    if error_reference is not None:
        return "error"
    if expect_fast is not None:
        assert (handled is not None) == expect_fast, path
    assert type(fast) is type(reference), path
    assert (fast.preamble, fast.filename, fast.timestamp) == (reference.preamble, reference.filename,
                                                              reference.timestamp), path
    errors = assert_same_dataset(fast.file_meta, reference.file_meta, f"{path} meta", values)
    errors += assert_same_dataset(fast, reference, str(path), values)
    if values and not errors:
        assert fast.file_meta == reference.file_meta, path
        assert fast == reference, path
    return "pydicom" if handled is None else "fast"


def _check_chunk(paths: list[str]) -> list[tuple[str, str, str]]:
    """Worker: (path, outcome, failure) for each path; the values of one file per folder."""
    warnings.simplefilter("ignore")
    results, folders = [], set()
    for path in paths:
        folder = os.path.dirname(path)
        values = folder not in folders or "enhanced" in path
        folders.add(folder)
        try:
            results.append((path, assert_same_header(path, values=values), ""))
        except AssertionError as failure:
            results.append((path, "differs", str(failure)[:300]))
    return results


def _check_all(paths: list[str]) -> list[tuple[str, str, str]]:
    """_check_chunk over two forked workers (the corpus has ~1400 files)."""
    chunks = [paths[i::2] for i in range(2)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        return [row for rows in pool.map(_check_chunk, chunks) for row in rows]


# -- files built byte by byte --------------------------------------------------------------------

LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEFINED = 0xFFFFFFFF


def ex(tag: int, vr: str, value: bytes, undefined: bool = False) -> bytes:
    """An explicit VR little endian element."""
    if vr in LONG_VRS:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0,
                           UNDEFINED if undefined else len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def im(tag: int, value: bytes, undefined: bool = False) -> bytes:
    """An implicit VR little endian element."""
    return struct.pack("<HHL", tag >> 16, tag & 0xFFFF, UNDEFINED if undefined else len(value)) + value


def item(body: bytes, undefined: bool = False) -> bytes:
    if undefined:
        return struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED) + body + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body


def items(*bodies: bytes, undefined: bool = False) -> bytes:
    """A sequence's value; with `undefined`, closed by a sequence delimiter."""
    return b"".join(bodies) + (struct.pack("<HHL", 0xFFFE, 0xE0DD, 0) if undefined else b"")


def text(value: str, encoding: str = "ascii", pad: bytes = b" ") -> bytes:
    data = value.encode(encoding)
    return data + pad if len(data) % 2 else data


def part10(dataset: bytes, transfer_syntax: str = "1.2.840.10008.1.2.1", preamble: bool = True,
           meta_extra: bytes = b"") -> bytes:
    meta = b"".join([
        ex(0x00020001, "OB", b"\x00\x01"),
        ex(0x00020002, "UI", text("1.2.840.10008.5.1.4.1.1.4", pad=b"\0")),
        ex(0x00020003, "UI", text("1.2.3.4.5.6", pad=b"\0")),
        ex(0x00020010, "UI", text(transfer_syntax, pad=b"\0")),
        ex(0x00020012, "UI", text("1.2.3.4", pad=b"\0")),
        meta_extra,
    ])
    meta = ex(0x00020000, "UL", struct.pack("<L", len(meta))) + meta
    return (b"\0" * 128 + b"DICM" if preamble else b"") + meta + dataset


JAPANESE_PN = (b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
               b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B")
PIXELS = ex(0x7FE00010, "OW", b"\x01\x02" * 8) + ex(0x7FE10010, "OB", b"\0\0")


def explicit_file() -> bytes:
    """Explicit VR: UTF-8 at the top, ISO 2022 in an item, undefined and defined lengths at every
    level, an implicit-VR item inside an explicit sequence, a UN sequence of undefined length,
    private creators and sequences, empty elements and items, an empty item last (pydicom peeks
    past it), pixel data followed by more elements."""
    japanese_item = ex(0x00080005, "CS", text("\\ISO 2022 IR 87")) + ex(0x00100010, "PN", text(JAPANESE_PN.decode("latin-1"), "latin-1"))
    implicit_item = im(0x00081150, text("1.2.840.10008.5.1.4.1.1.4", pad=b"\0")) + im(0x00100010, text("Implicit^Item"))
    nested = ex(0x00081140, "SQ", items(item(ex(0x00081155, "UI", text("1.2.3", pad=b"\0"))), item(b"")))
    referenced = items(
        item(ex(0x00081150, "UI", text("1.2.4", pad=b"\0")) + nested, undefined=True),
        item(japanese_item),
        item(implicit_item, undefined=True),
        item(ex(0x00100010, "PN", text("Grüß^Gott", "utf-8"))),
        undefined=True,
    )
    private = items(item(ex(0x00291001, "LO", text("inside")) + ex(0x00290010, "LO", text("NESTED CREATOR"))))
    un_sequence = items(item(im(0x00100020, text("ID-IN-UN")) + im(0x00100010, text("Un^Known")), undefined=True),
                        undefined=True)
    body = b"".join([
        ex(0x00080005, "CS", text("ISO_IR 192")),
        ex(0x00080016, "UI", text("1.2.840.10008.5.1.4.1.1.4", pad=b"\0")),
        ex(0x00080018, "UI", text("1.2.3.4.5.6", pad=b"\0")),
        ex(0x00080050, "SH", b""),
        ex(0x00081115, "SQ", referenced, undefined=True),
        ex(0x00082112, "SQ", b""),
        ex(0x00100010, "PN", text("Müller^Jürgen=ミュラー", "utf-8")),
        ex(0x00101010, "AS", b""),
        ex(0x00189117, "UN", un_sequence, undefined=True),
        ex(0x00280010, "US", struct.pack("<H", 2)),
        ex(0x00280103, "US", struct.pack("<H", 1)),
        ex(0x00290010, "LO", text("MY PRIVATE CREATOR")),
        ex(0x00291010, "SQ", private),
        ex(0x00291011, "SQ", items(item(b""), item(b""), undefined=True), undefined=True),
        ex(0x00291012, "UN", b"\x01\x02\x03\x04"),
        ex(0x00400275, "SQ", items(item(ex(0x00321060, "LO", text("last"))), item(b""))),
        PIXELS,
    ])
    return part10(body)


def implicit_file(preamble: bool = True) -> bytes:
    """Implicit VR: defined-length public and private sequences (pydicom converts them on access,
    with the Pixel Representation pushed down for a "US or SS" LUT Descriptor), an undefined
    length private sequence recognised by its first item, a private creator pydicom's private
    dictionary knows (its sequence is converted) and one it does not (its bytes stay UN)."""
    lut = im(0x00283002, struct.pack("<hhh", -2000, -1024, 16)) + im(0x00283003, text("LUT")) + im(0x00283006, b"\0\0" * 2)
    body = b"".join([
        im(0x00080005, text("ISO_IR 100")),
        im(0x00080016, text("1.2.840.10008.5.1.4.1.1.4", pad=b"\0")),
        im(0x00081140, items(item(im(0x00081150, text("1.2.5", pad=b"\0"))), item(im(0x00081155, text("1.2.6", pad=b"\0"))))),
        im(0x00100010, text("Gr\xfc\xdf^Gott", "latin-1")),
        im(0x00280103, struct.pack("<H", 1)),
        im(0x00283000, items(item(lut))),
        im(0x00710010, text("AGFA-AG_HPState")),
        im(0x00711018, items(item(im(0x00100020, text("AGFA"))))),
        im(0x00730010, text("UNKNOWN CREATOR")),
        im(0x00731001, items(item(im(0x00100020, text("hidden"))))),
        im(0x00731002, items(item(im(0x00100020, text("undefined")), undefined=True), undefined=True), undefined=True),
        im(0x7FE00010, b"\x01\x02" * 8),
    ])
    return part10(body, "1.2.840.10008.1.2", preamble) if preamble else body


def nested_file(depth: int) -> bytes:
    value = ex(0x00100020, "LO", text("deep"))
    for _ in range(depth):
        value = ex(0x00081115, "SQ", items(item(value, undefined=True), undefined=True), undefined=True)
    return part10(value + PIXELS)


def encapsulated_in_item_file() -> bytes:
    """An undefined-length OB inside an item (not pixel data at the top): pydicom reads it by
    searching for the delimiter; here it goes to pydicom."""
    fragments = struct.pack("<HHL", 0xFFFE, 0xE000, 0) + struct.pack("<HHL", 0xFFFE, 0xE000, 4) + b"abcd"
    value = ex(0x00090010, "LO", text("CREATOR")) + ex(0x00091001, "OB", fragments + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0), undefined=True)
    return part10(ex(0x00081115, "SQ", items(item(value, undefined=True), undefined=True), undefined=True) + PIXELS)


def empty_meta_value_file() -> bytes:
    """An empty OB in the file meta: pydicom's check of the meta lists its elements, which
    converts those without a value."""
    return part10(ex(0x00100020, "LO", text("ID")) + PIXELS, meta_extra=ex(0x00020102, "OB", b""))


GENERATED = {
    "empty_meta_value.dcm": (empty_meta_value_file, True),
    "explicit.dcm": (explicit_file, True),
    "implicit.dcm": (implicit_file, True),
    "implicit_no_meta.dcm": (lambda: implicit_file(preamble=False), True),
    "nested_32.dcm": (lambda: nested_file(31), True),
    "nested_40.dcm": (lambda: nested_file(40), False),
    "encapsulated_in_item.dcm": (encapsulated_in_item_file, False),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("generated")
    paths = {}
    for name, (make, _) in GENERATED.items():
        paths[name] = folder / name
        paths[name].write_bytes(make())
    return paths


# -- tests ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_files_read_as_pydicom_reads_them(generated, name):
    assert assert_same_header(generated[name], expect_fast=GENERATED[name][1]) != "error"


def test_generated_values_are_the_ones_written(generated):
    """A reader's story: text in each item's own character set, the implicit item inside the
    explicit sequence, the UN sequence, the private sequences, nothing after the pixel data."""
    ds = fastheader.read_header(generated["explicit.dcm"])
    assert str(ds.PatientName) == "Müller^Jürgen=ミュラー"
    referenced = ds.ReferencedSeriesSequence
    assert [item.is_undefined_length_sequence_item for item in referenced] == [True, False, True, False]
    assert referenced[1].PatientName.ideographic == "山田^太郎"
    assert referenced[2]._read_implicit and str(referenced[2].PatientName) == "Implicit^Item"
    assert str(referenced[3].PatientName) == "Grüß^Gott"
    assert len(referenced[0].ReferencedImageSequence) == 2
    assert ds[0x00189117].VR == "SQ" and ds[0x00189117].value[0].PatientID == "ID-IN-UN"
    assert ds[0x00291010].private_creator == "MY PRIVATE CREATOR"
    assert ds[0x00291010].value[0][0x00291001].value == "inside"
    assert ds.SourceImageSequence == [] and 0x7FE00010 not in ds and 0x7FE10010 not in ds

    implicit = fastheader.read_header(generated["implicit.dcm"])
    lut = implicit.ModalityLUTSequence[0]  # "US or SS": signed, as the Pixel Representation says
    assert lut._pixel_rep == 1 and lut["LUTDescriptor"].VR == "SS" and lut.LUTDescriptor[1:] == [-1024, 16]
    assert implicit[0x00711018].VR == "SQ" and implicit[0x00731001].VR == "UN"
    assert implicit[0x00731002].value[0].PatientID == "undefined"


def test_pydicom_test_files(pydicom_file):
    """Every file pydicom ships for its tests (big endian, deflate, DICOMDIRs, truncated...):
    the same data set, or the same exception type."""
    outcomes = {}
    for path in get_testdata_files():
        if os.path.isfile(path):
            outcomes[path] = assert_same_header(path)
    assert outcomes[str(pydicom_file("CT_small.dcm"))] == "fast"
    assert outcomes[str(pydicom_file("MR_small_bigendian.dcm"))] == "pydicom"
    assert outcomes[str(pydicom_file("image_dfl.dcm"))] == "pydicom"
    assert list(outcomes.values()).count("fast") > 100


def test_every_dicom_file_of_the_corpus(corpus):
    """Each DICOM file of the corpus (a 'DICM' prefix or a .dcm name): the stored elements and
    structure of every file, the converted values of one file per folder and of every enhanced
    multi-frame file."""
    paths = []
    for folder, _, names in os.walk(corpus):
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as file:
                if file.read(132)[128:] == b"DICM" or name.lower().endswith(".dcm"):
                    paths.append(path)
    results = _check_all(sorted(paths))
    assert [row for row in results if row[1] == "differs"] == []
    fast = {path for path, outcome, _ in results if outcome == "fast"}
    assert len(fast) >= len(paths) - 5
    assert not [path for path in paths if "enhanced_multiframe" in path and path not in fast]


def _truncations(data: bytes) -> list[int]:
    size = len(data)
    cuts = set(range(0, min(size, 600), 13)) | set(range(0, size, max(1, size // 53)))
    cuts |= {size - 1, size - 2, size - 8, size - 12}
    return sorted(cut for cut in cuts if 0 <= cut < size)


def _corrupted(data: bytes, rng: random.Random, header_end: int) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        position = rng.randrange(132, header_end)
        damaged[position] = rng.choice((0x00, 0xFF, 0xFE, 0xE0, 0x44, 0x53, 0x51, rng.randrange(256)))
    return bytes(damaged)


def _samples(generated, corpus_or_none) -> dict[str, bytes]:
    samples = {name: generated[name].read_bytes() for name in ("explicit.dcm", "implicit.dcm")}
    if corpus_or_none is not None:
        samples["xa10"] = (corpus_or_none / "enhanced_multiframe/In/Siemens/XA10/6_1.dcm").read_bytes()
    samples["ct_small"] = Path(get_testdata_files("CT_small.dcm")[0]).read_bytes()
    return samples


@pytest.fixture
def corpus_or_none():
    from conftest import corpus_root

    return corpus_root()


@pytest.mark.timeout(300)
def test_truncated_files_give_pydicoms_outcome(generated, corpus_or_none, tmp_path):
    """Cut at many points: an equal data set or the same exception type, never a hang."""
    for name, data in _samples(generated, corpus_or_none).items():
        for cut in _truncations(data):
            path = tmp_path / f"{name}_{cut}.dcm"
            path.write_bytes(data[:cut])
            assert_same_header(path, values=cut % 3 == 0)
            path.unlink()


@pytest.mark.timeout(300)
def test_corrupted_files_give_pydicoms_outcome(generated, corpus_or_none, tmp_path):
    """Seeded random bytes in the header: the same outcome as pydicom, never a hang."""
    rng = random.Random(20261203)
    for name, data in _samples(generated, corpus_or_none).items():
        header_end = data.find(b"\xe0\x7f\x10\x00") if b"\xe0\x7f\x10\x00" in data else len(data)
        for trial in range(40):
            path = tmp_path / f"{name}_{trial}.dcm"
            path.write_bytes(_corrupted(data, rng, max(header_end, 140)))
            assert_same_header(path, values=trial % 4 == 0)
            path.unlink()


def test_objects_made_without_their_constructors_equal_constructed_ones(generated, monkeypatch):
    """Items, sequences, sequence elements and raw tuples are made from templates for speed;
    with the templates off (as when pydicom's classes change) the results are the same."""
    for name in ("explicit.dcm", "implicit.dcm"):
        templated = fastheader.read_header_or_none(generated[name])
        with monkeypatch.context() as patch:
            for flag, value in (("_DATASET_TEMPLATE", None), ("_PLAIN_SEQUENCE", False),
                                ("_PLAIN_ELEMENT", False), ("_PLAIN_RAW", False)):
                patch.setattr(fastheader, flag, value)
            constructed = fastheader.read_header_or_none(generated[name])
        assert constructed is not None and templated is not None
        assert_same_dataset(templated, constructed, name)
        assert_same_header(generated[name], expect_fast=True)


@pytest.mark.parametrize("first_read", [40, 133, 1000])
def test_a_small_first_read_grows_to_the_same_result(generated, corpus_or_none, monkeypatch, first_read):
    """The buffer grows wherever an element, item header or peek crosses its end."""
    monkeypatch.setattr(fastheader, "FIRST_READ", first_read)
    paths = [generated["explicit.dcm"], generated["implicit.dcm"], get_testdata_files("CT_small.dcm")[0]]
    if corpus_or_none is not None:
        paths.append(corpus_or_none / "enhanced_multiframe/In/Siemens/XA10/6_1.dcm")
    for path in paths:
        assert assert_same_header(path, expect_fast=True) == "fast"


def test_unhandled_configuration_goes_to_pydicom(generated, monkeypatch):
    monkeypatch.setattr(pydicom.config, "replace_un_with_known_vr", False)
    assert fastheader.read_header_or_none(generated["explicit.dcm"]) is None
    assert fastheader.read_header(generated["explicit.dcm"]) == fastheader.pydicom_read(generated["explicit.dcm"])


def test_missing_file_is_pydicoms_error_and_a_dicom_file_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastheader.read_header(tmp_path / "missing.dcm")
    with pytest.raises(multiframe.DICOMFileError):
        multiframe.read_header(str(tmp_path / "missing.dcm"))


ENHANCED_SERIES = (
    "enhanced_multiframe/In/Siemens/XA10",
    "enhanced_multiframe/In/Philips",
    "fmri_timeseries/In/Siemens/XA10",
    "dicom2nifti/tests/data/philips_enhanced",
)


def _series_files(corpus, folder) -> list[str]:
    root = corpus / folder
    return sorted(str(path) for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("folder", ENHANCED_SERIES)
def test_geometry_and_diffusion_plan_unchanged(corpus, folder, monkeypatch):
    """The same frame geometries and diffusion plan with the fast header and with pydicom's."""
    from DICOMBrowser.DICOMBrowserLib.diffusion import series

    files = _series_files(corpus, folder)
    assert files, folder
    results = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("DICOMBROWSER_FAST_HEADER", flag)
        geometries = [multiframe.frame_geometries(path) for path in files]
        try:
            plan = series.plan_dwi(files, require_diffusion=False)
            plan_summary = (plan.files, [[(r.path, r.frame) for r in volume] for volume in plan.volumes],
                            plan.bvalues.tolist(), plan.gradients_lps.tolist(), plan.ijk_to_lps.tolist(),
                            plan.shape_kji, plan.warnings, plan.vendor, plan.identity, plan.instance_uids)
        except Exception as error:  # noqa: BLE001 - the same failure both ways is the same result
            plan_summary = (type(error), str(error))
        results[flag] = (geometries, plan_summary)
    assert sum(len(g) for g in results["1"][0]) > 0
    assert results["1"] == results["0"]


def test_convert_writes_the_same_nifti_bytes(corpus, tmp_path):
    """`dicombrowser convert` of the Siemens XA10 fMRI run, each in a fresh process (no cache of
    one run serves the other): identical NIfTI files with the fast header and with pydicom's."""
    folder = corpus / "fmri_timeseries/In/Siemens/XA10"
    written = {}
    for flag in ("1", "0"):
        out = tmp_path / f"out{flag}"
        code = ("from DICOMBrowser.DICOMBrowserLib.cli import cli; "
                f"cli.main(args=['--database', {str(tmp_path / f'db{flag}')!r}, 'convert', {str(folder)!r}, "
                f"'-o', {str(out)!r}, '--format', 'nii'], standalone_mode=False)")
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "DICOMBROWSER_FAST_HEADER": flag})
        assert completed.returncode == 0, completed.stderr
        written[flag] = {path.name: path.read_bytes() for path in sorted(out.rglob("*.nii"))}
    assert written["1"] and written["1"] == written["0"]

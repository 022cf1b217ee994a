"""Header scan: given real and generated files, the fast scan gives exactly what a full pydicom
read gives (values formatted by tagreader.format_value, pixel data where the offset says), skips
non-DICOM files, reports broken ones, and gives the same answers on one core or several."""
from __future__ import annotations

import multiprocessing
import os
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import write_dataset

from DICOMBrowser.DICOMBrowserLib import headerscan
from DICOMBrowser.DICOMBrowserLib.headerscan import ScanResult, scan_file, scan_files
from DICOMBrowser.DICOMBrowserLib.sampledata import pydicom_sample_folder, write_series
from DICOMBrowser.DICOMBrowserLib.tagreader import format_value, parse_tag

# What an import asks for, plus tags that exercise every conversion rule: file meta, character
# set, PN, DS/IS multi-values, US/SS/FL/FD numbers, binary (OB), sequences, private tags of
# GE (implicit VR), Siemens and Philips, DICOMDIR records, RT and SR attributes.
TAGS = [
    "0002,0002", "0002,0003", "0002,0010", "0002,0013", "0008,0005", "0008,0008", "0008,0016", "0008,0018",
    "0008,0020", "0008,0021", "0008,0030", "0008,0031", "0008,0050", "0008,0060", "0008,0070", "0008,0090",
    "0008,1030", "0008,103e", "0008,1140", "0010,0010", "0010,0020", "0010,0030", "0010,0040", "0010,1010",
    "0010,1030", "0018,0015", "0018,0050", "0018,0060", "0018,0088", "0018,1020", "0018,1310", "0018,9087",
    "0019,100c", "0019,10bb", "0020,000d", "0020,000e", "0020,0010", "0020,0011", "0020,0012", "0020,0013",
    "0020,0032", "0020,0037", "0020,0052", "0020,4000", "0028,0002", "0028,0004", "0028,0008", "0028,0009",
    "0028,0010", "0028,0011", "0028,0030", "0028,0100", "0028,0101", "0028,0103", "0028,0106", "0028,1050",
    "0028,1051", "0028,1052", "0028,1053", "0029,1010", "0040,0275", "0040,a730", "0043,1039", "0004,1220",
    "0054,1001", "2001,1003", "2005,1413", "3006,0002", "300a,0002", "7fe0,0010",
]
SOP_UID = "0008,0018"


def reference(path: Path, tags=TAGS) -> tuple[pydicom.Dataset | None, dict[str, str] | None, str | None]:
    """The truth: a full pydicom read, every value through format_value ('' if pydicom cannot convert it)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # noqa: BLE001 - the reference may fail in any way; the test records how
        return None, None, f"{type(exc).__name__}: {exc}"
    values = {}
    for tag in tags:
        number = parse_tag(tag)
        source = ds.file_meta if number >> 16 == 2 else ds
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values[tag] = format_value(source.get(number)) if source is not None else ""
        except Exception:  # noqa: BLE001 - an unconvertible value is '' by the scanner's rule
            values[tag] = ""
    return ds, values, None


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def check_against_pydicom(results: list[ScanResult]) -> dict[str, int]:
    """Compare every result with the full pydicom read of its file; returns counts by outcome."""
    counts = {"dicom": 0, "fast": 0, "errors": 0, "not_dicom": 0, "pixels": 0}
    for result in results:
        path = Path(result.path)
        ds, truth, failure = reference(path)
        with open(path, "rb") as f:
            prefix = f.read(132)[128:132]
        if not result.is_dicom:
            counts["not_dicom"] += 1
            assert result.error is None or "cannot" in result.error, result
            assert prefix != b"DICM", f"{path}: has the DICM prefix but was taken for a non-DICOM file"
            assert truth is None or not truth[SOP_UID], f"{path}: pydicom finds a SOP Instance UID in it"
            continue
        counts["dicom"] += 1
        if result.error:
            counts["errors"] += 1
            assert result.values == {tag: "" for tag in TAGS}
            continue
        counts["fast"] += result.fast
        assert failure is None, f"{path}: scanned fine but pydicom fails: {failure}"
        assert result.values == truth, f"{path}: " + str({k: (v, truth[k]) for k, v in result.values.items()
                                                           if v != truth[k]})
        assert result.transfer_syntax == str(ds.file_meta.get("TransferSyntaxUID", "") or "")
        assert result.media_storage_sop_class_uid == str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        if "PixelData" in ds:
            if result.pixel_data_offset is None:
                assert result.transfer_syntax == headerscan.DEFLATED  # offsets into the compressed stream are meaningless
                continue
            with open(path, "rb") as f:
                f.seek(result.pixel_data_offset)
                stored = f.read(result.pixel_data_length)
            assert stored == ds.PixelData, f"{path}: bytes at the pixel data offset differ from pydicom's PixelData"
            counts["pixels"] += 1
        elif not any(k in ds for k in ("FloatPixelData", "DoubleFloatPixelData")):
            assert result.pixel_data_offset is None
    return counts


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_corpus_file_scans_like_a_full_pydicom_read(corpus):
    paths = files_under(corpus)
    results = list(scan_files(paths, TAGS, workers=1))
    assert [r.path for r in results] == [str(p) for p in paths]
    counts = check_against_pydicom(results)
    assert counts["dicom"] >= 900  # the MANIFEST's DICOM files; the rest are licences, NIfTI and JSON references
    assert counts["fast"] >= 0.99 * (counts["dicom"] - counts["errors"])  # all but deflate and big endian
    assert counts["pixels"] >= 850
    assert counts["errors"] == 0  # the malformed Orthanc files are malformed in content, not in structure


@pytest.mark.timeout(300)
def test_every_pydicom_test_file_scans_like_a_full_pydicom_read():
    folders = [pydicom_sample_folder(), pydicom_sample_folder().parent / "charset_files"]
    paths = [p for folder in folders for p in files_under(folder)]
    results = list(scan_files(paths, TAGS, workers=1))
    counts = check_against_pydicom(results)
    assert counts["dicom"] >= 150
    # The deliberately truncated files: pydicom only warns, an index must not accept them
    errors = {Path(r.path).name: r.error for r in results if r.error}
    assert {"MR_truncated.dcm", "rtplan_truncated.dcm"} <= set(errors)
    for result in results:  # any other error (a later pydicom's new broken files) must be one pydicom has too
        if result.error and Path(result.path).name not in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
            assert reference(Path(result.path))[2] is not None, (result.path, result.error)
    assert "truncated" in errors["MR_truncated.dcm"]
    assert "past the end of the file" in errors["rtplan_truncated.dcm"]


@pytest.mark.timeout(300)
def test_dataset_values_of_decoded_data_sets_equal_format_value():
    """headerscan.dataset_values (how C-FIND matches are read from pynetdicom's decoded identifiers)
    gives format_value's strings for every readable pydicom test file, character set files included."""
    folders = [pydicom_sample_folder(), pydicom_sample_folder().parent / "charset_files"]
    data_tags = [t for t in TAGS if not t.startswith("0002")]
    checked = fast = 0
    for path in (p for folder in folders for p in files_under(folder)):
        _ds, truth, failure = reference(path)
        if failure is not None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoded = pydicom.dcmread(path, force=True)  # elements stay raw until asked for, as in pynetdicom's
            values = headerscan.dataset_values(decoded, data_tags)
        assert dict(zip(data_tags, values)) == {t: truth[t] for t in data_tags}, path
        checked += 1
        fast += all(isinstance(e, pydicom.dataelem.RawDataElement) for t, e in decoded.items()
                    if t != 0x00080005 and f"{t.group:04x},{t.element:04x}" in data_tags)
    assert checked >= 150 and fast >= 150


@pytest.mark.parametrize("name,charset,patient_name", [
    ("chrFren.dcm", "ISO_IR 100", "Buc^Jérôme"),
    ("chrX1.dcm", "ISO_IR 192", "Wang^XiaoDong=王^小東"),
    ("chrH31.dcm", "\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
    ("chrI2.dcm", "\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동"),
    ("chrX2.dcm", "GB18030", "Wang^XiaoDong=王^小东"),
])
def test_person_names_decode_with_the_specific_character_set(name, charset, patient_name):
    path = pydicom_sample_folder().parent / "charset_files" / name
    result = scan_file(path, ["0008,0005", "0010,0010"])
    assert result.values == {"0008,0005": charset, "0010,0010": patient_name}


def test_corpus_character_sets(corpus):
    folder = corpus / "orthanc_tests" / "Database" / "Encodings"
    expected = {"Lena-latin1.dcm": "Test-éüäöò", "Lena-utf8.dcm": "Test-éüäöòДΘĝדصķћ๛ﾈİ",
                "Lena-cyrillic.dcm": "Test-Дћ", "Lena-arabic.dcm": "Test-ص", "Lena-shift-jis.dcm": "Test-ДΘﾈ"}
    for name, patient_name in expected.items():
        assert scan_file(folder / name, ["0010,0010"]).values["0010,0010"] == patient_name


def test_generated_latin1_and_utf8_names(series_factory):
    latin1 = series_factory(count=1, patient_name="Müller^Jürgen", specific_character_set="ISO_IR 100")[0]
    utf8 = series_factory(count=1, patient_name="Ŝimon^李=り", specific_character_set="ISO_IR 192")[0]
    assert b"M\xfcller" in latin1.read_bytes()
    assert scan_file(latin1, ["0010,0010"]).values["0010,0010"] == "Müller^Jürgen"
    assert scan_file(utf8, ["0010,0010"]).values["0010,0010"] == "Ŝimon^李=り"


def test_pixel_data_offset_of_a_generated_series(series_factory):
    paths = series_factory(count=3, rows=32, columns=16)
    for path in paths:
        result = scan_file(path, [SOP_UID])
        ds = pydicom.dcmread(path)
        assert result.fast and result.transfer_syntax == "1.2.840.10008.1.2.1"
        assert result.pixel_data_length == 32 * 16 * 2
        assert path.read_bytes()[result.pixel_data_offset:][:result.pixel_data_length] == ds.PixelData
        assert result.values[SOP_UID] == ds.SOPInstanceUID == result.media_storage_sop_instance_uid
        assert result.size == path.stat().st_size and result.mtime == path.stat().st_mtime_ns


def test_files_without_preamble_or_meta_are_read(series_factory, tmp_path):
    source = series_factory(count=1)[0]
    ds = pydicom.dcmread(source)
    # (a) file meta but no 128-byte preamble and no DICM prefix
    no_preamble = tmp_path / "no_preamble.dcm"
    data = source.read_bytes()
    no_preamble.write_bytes(data[132:])
    # (b) a bare implicit VR little endian data set, as old ACR-NEMA style tools wrote
    bare = tmp_path / "bare.dcm"
    with open(bare, "wb") as f:
        fp = pydicom.filebase.DicomFileLike(f)
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
    for path in (no_preamble, bare):
        result = scan_file(path, TAGS)
        _, truth, failure = reference(path)
        assert failure is None and result.is_dicom and result.error is None and result.fast
        assert result.values == truth
        assert result.values[SOP_UID] == ds.SOPInstanceUID
        assert path.read_bytes()[result.pixel_data_offset:][:result.pixel_data_length] == ds.PixelData
    assert scan_file(bare, [SOP_UID]).transfer_syntax == ""


def test_dicomdir_is_recognised(pydicom_file):
    result = scan_file(pydicom_file("DICOMDIR"), ["0002,0002", "0004,1130", SOP_UID])
    assert result.is_dicom and result.error is None and result.fast
    assert result.media_storage_sop_class_uid == "1.2.840.10008.1.3.10" == result.values["0002,0002"]
    assert result.values[SOP_UID] == ""  # a media index, not an instance


def test_tags_may_be_given_in_any_form_and_come_back_as_gggg_eeee(series_factory):
    path = series_factory(count=1, patient_name="Doe^Jane")[0]
    result = scan_file(path, ["PatientName", "(0020,000D)", "0020000E", 0x00080060])
    assert set(result.values) == {"0010,0010", "0020,000d", "0020,000e", "0008,0060"}
    assert result.values["0010,0010"] == "Doe^Jane" and result.values["0008,0060"] == "CT"


def test_non_dicom_files_are_skipped_silently(tmp_path):
    samples = {"empty": b"", "text.txt": b"Patient list\nnothing to see\n" * 20, "tiny": b"\x08\x00",
               "image.png": b"\x89PNG\r\n\x1a\n" + bytes(300), "zeros.bin": bytes(4096),
               "random.bin": os.urandom(5000)}
    for name, data in samples.items():
        (tmp_path / name).write_bytes(data)
    results = list(scan_files(sorted(tmp_path.iterdir()), TAGS, workers=1))
    assert len(results) == len(samples)
    for result in results:
        assert not result.is_dicom and result.error is None, result
        assert result.values == {tag: "" for tag in TAGS}


def test_broken_files_give_reasons_not_exceptions(series_factory, tmp_path):
    source = series_factory(count=1, rows=64, columns=64)[0]
    data = source.read_bytes()
    ds = pydicom.dcmread(source)
    pixel_offset = scan_file(source, [SOP_UID]).pixel_data_offset
    cuts = {"in_meta": 150, "in_header": pixel_offset - 100, "in_pixels": pixel_offset + 1000}
    for name, cut in cuts.items():
        (tmp_path / f"cut_{name}.dcm").write_bytes(data[:cut])
    # a header element whose length points far past the end of the file
    bad_length = bytearray(data)
    at = data.index(ds.PatientID.encode()) - 2  # the 2-byte length of Patient ID (explicit VR short form)
    bad_length[at:at + 2] = (0xFFF0).to_bytes(2, "little")
    (tmp_path / "bad_length.dcm").write_bytes(bytes(bad_length))
    (tmp_path / "garbage_after_prefix.dcm").write_bytes(bytes(128) + b"DICM" + os.urandom(64))
    results = {Path(r.path).stem: r for r in scan_files(sorted(tmp_path.glob("*.dcm")), TAGS, workers=1)}
    for name in ("cut_in_meta", "cut_in_header", "cut_in_pixels", "bad_length", "garbage_after_prefix"):
        result = results[name]
        assert result.is_dicom and result.error, (name, result)
        assert str(tmp_path) not in result.error  # the path is in .path; the reason stays short
    assert "truncated" in results["cut_in_pixels"].error
    assert "past the end" in results["bad_length"].error or "truncated" in results["bad_length"].error


def test_missing_file_is_reported(tmp_path):
    result = scan_file(tmp_path / "gone.dcm", TAGS)
    assert not result.is_dicom and "cannot" in result.error


def test_orthanc_malformed_files_scan_without_exceptions(corpus):
    folder = corpus / "orthanc_tests"
    paths = [p for p in files_under(folder) if p.suffix.lower() == ".dcm"]
    results = list(scan_files(paths, TAGS, workers=1))
    assert len(results) == len(paths)
    issue_files = [r for r in results if Path(r.path).name.startswith("Issue")]
    assert issue_files and all(r.is_dicom for r in issue_files)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_parallel_scan_equals_in_process_scan_in_input_order(tmp_path):
    from DICOMBrowser.DICOMBrowserLib.sampledata import write_many

    write_many(tmp_path / "many", patients=6, studies=2, series=5, instances=10)  # 600 files
    (tmp_path / "many" / "notes.txt").write_text("not DICOM")
    paths = [str(p) for p in files_under(tmp_path / "many")]
    serial = list(scan_files(paths, TAGS, workers=1))
    parallel = list(scan_files(iter(paths), TAGS, workers=2, chunk_size=50))  # a lazy iterator, 12 chunks
    assert serial == parallel
    assert [r.path for r in parallel] == paths
    assert sum(r.is_dicom for r in parallel) == 600
    assert len({r.values[SOP_UID] for r in parallel if r.is_dicom}) == 600
    # scan_rows: the same results, values as lists in the order of its keys, in-process and with workers
    for rows_workers in (1, 2):
        keys, rows = headerscan.scan_rows(iter(paths), TAGS, workers=rows_workers, chunk_size=50)
        rows = list(rows)
        assert keys == sorted(keys) and set(keys) == set(serial[0].values)
        assert [r.path for r in rows] == paths and rows[-1].values is None  # notes.txt, not DICOM
        assert [dict(zip(keys, r.values)) if r.values is not None else dict.fromkeys(keys, "") for r in rows] \
            == [r.values for r in serial]
        assert [r._replace(values=None) for r in rows] == [headerscan.ScanRow(*vars(r).values())._replace(values=None)
                                                             for r in serial]


@pytest.mark.timeout(120)
def test_stopping_early_stops_the_workers(tmp_path):
    paths = write_series(tmp_path / "s", count=40, rows=4, columns=4)
    before = set(multiprocessing.active_children())  # other tests' children, if any, are not ours
    scan = scan_files(iter(paths * 10), [SOP_UID], workers=2, chunk_size=20)  # lazy: no probe, the pool at once
    first = next(scan)
    assert first.is_dicom and set(multiprocessing.active_children()) - before
    scan.close()
    assert not set(multiprocessing.active_children()) - before


def test_a_list_of_cheap_headers_stays_in_process_and_a_costly_one_gets_the_pool(tmp_path, monkeypatch):
    """A list is probed on its first PROBE_FILES files: tiny headers whose whole scan would take
    less than POOL_WORTH_S here start no pool; when the estimate is over it, the rest goes to the
    pool, with the same results in the same order."""
    paths = write_series(tmp_path / "s", count=40, rows=4, columns=4) * 15  # 600 paths, 3 chunks of 200
    before = set(multiprocessing.active_children())
    started: list[int] = []
    real_pool = multiprocessing.pool.Pool.__init__

    def counting(self, *args, **kwargs):
        started.append(1)
        real_pool(self, *args, **kwargs)

    monkeypatch.setattr(multiprocessing.pool.Pool, "__init__", counting)
    serial = list(scan_files(paths, [SOP_UID], workers=1))
    assert list(scan_files(paths, [SOP_UID], workers=2, chunk_size=200)) == serial and not started
    monkeypatch.setattr(headerscan, "POOL_WORTH_S", 0.0)
    assert list(scan_files(paths, [SOP_UID], workers=2, chunk_size=200)) == serial and started
    assert not set(multiprocessing.active_children()) - before


def test_workers_1_runs_in_this_process(tmp_path):
    paths = write_series(tmp_path / "s", count=5, rows=4, columns=4)
    before = set(multiprocessing.active_children())
    for result in scan_files(paths * 200, [SOP_UID], workers=1, chunk_size=10):
        assert not set(multiprocessing.active_children()) - before
        assert result.is_dicom


@pytest.mark.timeout(30)
def test_a_fifo_or_folder_does_not_block_the_scan(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        result = scan_file(path, [SOP_UID])
        assert not result.is_dicom and "not a regular file" in result.error


@pytest.mark.timeout(120)
def test_forkserver_workers_give_the_same_results(tmp_path, monkeypatch):
    paths = write_series(tmp_path / "s", count=30, rows=4, columns=4)
    monkeypatch.setenv("DICOMBROWSER_SCAN_START_METHOD", "forkserver")
    monkeypatch.setattr(headerscan, "POOL_WORTH_S", 0.0)  # tiny files: the probe would keep them in-process
    assert headerscan.start_method() == "forkserver"
    parallel = list(scan_files(paths * 4, TAGS, workers=2, chunk_size=10))
    assert parallel == list(scan_files(paths * 4, TAGS, workers=1))


@pytest.mark.timeout(300)
def test_corrupted_files_never_raise_and_agree_with_pydicom_when_readable(tmp_path, series_factory):
    """Seeded fuzzing: flipped bytes, bogus lengths/VRs and cuts in the first 3 KiB of real files."""
    import random

    rng = random.Random(20261126)
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "emri_small.dcm", "SC_rgb.dcm",
             "DICOMDIR", "ExplVR_LitEndNoMeta.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm"]
    sources = [pydicom_sample_folder() / n for n in names if (pydicom_sample_folder() / n).exists()]
    sources += series_factory(count=2)
    paths = []
    for n in range(300):
        data = bytearray(rng.choice(sources).read_bytes()[:20000])
        kind = rng.random()
        for _ in range(rng.randint(1, 6)):
            if len(data) < 2:
                break
            pos = rng.randrange(0, min(len(data), 3000))
            if kind < 0.5:
                data[pos] = rng.randrange(256)
            elif kind < 0.8:
                data[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\x00\xe0",
                                                 b"SQ\x00\x00", b"UN\x00\x00", b"UO\x00\x00"])
            else:
                data = data[:pos]
        path = tmp_path / f"fuzz{n:03d}.dcm"
        path.write_bytes(bytes(data))
        paths.append(path)
    results = list(scan_files(paths, TAGS, workers=1))  # must not raise
    outcomes = {"not_dicom": 0, "error": 0, "equal": 0}
    for result in results:
        if not result.is_dicom:
            outcomes["not_dicom"] += 1
        elif result.error:
            outcomes["error"] += 1
        else:
            _, truth, failure = reference(Path(result.path))
            if failure is None:  # the walker skips what it is not asked for, so pydicom may fail where we do not
                assert result.values == truth, result.path
                outcomes["equal"] += 1
    assert min(outcomes.values()) > 10, outcomes


def test_bytes_after_the_pixel_data_end_the_data_set(series_factory, tmp_path):
    """Padding after Pixel Data (a few bytes, or zeros) ends the data set as it does for pydicom: the
    file scans without an error, also when a tag sorting after Pixel Data is requested (a Slicer
    data bundle's group CADB), and the pixel data is where it was."""
    source = series_factory(count=1)[0]
    data = source.read_bytes()
    plain = scan_file(source, [SOP_UID, "cadb,0010"])
    for name, padding in (("two", b"\0\0"), ("zeros", bytes(20)), ("text", b"trailing junk")):
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data + padding)
        result = scan_file(path, [SOP_UID, "cadb,0010"])
        assert result.error is None and result.values == plain.values, (name, result)
        assert result.pixel_data_offset == plain.pixel_data_offset

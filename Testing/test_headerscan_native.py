"""The header scan's walk in C (nativewalk, native/headerwalk.c) against the walk in Python
(headerscan._walk), the reference: given real, generated, truncated and corrupted files, both
give the same ScanResult, and at the walker level the same values, pixel data, fallback reasons
and errors, word for word. No file makes the C walk crash or hang."""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import struct
import threading
from pathlib import Path

import pydicom
import pytest

from DICOMBrowser.DICOMBrowserLib import headerscan, nativewalk
from DICOMBrowser.DICOMBrowserLib.sampledata import pydicom_sample_folder, write_series

# Testing/test_headerscan.py's tags (every conversion rule, private tags of GE, Siemens and
# Philips) plus the private creators and elements the generated files below carry.
from test_headerscan import TAGS as SCAN_TAGS

TAGS = [*SCAN_TAGS, "0009,1001", "0011,0010", "0011,1001", "0013,1010", "cadb,0010"]

# every test but the build check compares the two walks, so needs the library
needs_library = pytest.mark.skipif(not nativewalk.available(),
                                   reason=f"native header walker not built: {nativewalk.why_unavailable()}")

EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
UNDEFINED = 0xFFFFFFFF


@pytest.fixture(params=["with file meta tags", "data set tags only"])
def plans(request, monkeypatch) -> tuple[headerscan._TagPlan, headerscan._TagPlan]:
    """(native plan, Python plan) for TAGS, and for TAGS without the file meta's: then the usual
    file is read from its first byte in C (nativewalk.Walker.scan), the others from the data set."""
    tags = TAGS if request.param == "with file meta tags" else [t for t in TAGS if not t.startswith("0002")]
    monkeypatch.delenv(nativewalk.SWITCH, raising=False)
    native = headerscan._TagPlan(tags)
    monkeypatch.setenv(nativewalk.SWITCH, "0")
    python = headerscan._TagPlan(tags)
    monkeypatch.delenv(nativewalk.SWITCH)
    assert native.native is not None and python.native is None
    return native, python


def outcome(path: Path | str, plan: headerscan._TagPlan) -> tuple:
    """What the walker alone gives for a file: its result tuple, or the reason it stops."""
    try:
        return headerscan._scan_fast(os.fspath(path), plan)
    except (headerscan._Fallback, headerscan._Broken, OSError) as exc:
        return type(exc).__name__, str(exc)


def assert_same_walk(paths, plans) -> dict[str, int]:
    """Both walkers give the same outcome for every path; returns counts by outcome."""
    native, python = plans
    counts = {"scanned": 0, "_Fallback": 0, "_Broken": 0, "not_dicom": 0}
    for path in paths:
        expected = outcome(path, python)
        assert outcome(path, native) == expected, path
        if len(expected) == 2:  # the reason it stops
            counts[expected[0]] = counts.get(expected[0], 0) + 1
        else:
            counts["scanned" if expected[3] else "not_dicom"] += 1
    return counts


def scan_both(paths, monkeypatch, tags=TAGS) -> tuple[list, list]:
    """scan_files in-process with the walk in C, then in Python."""
    monkeypatch.delenv(nativewalk.SWITCH, raising=False)
    native = list(headerscan.scan_files(paths, tags, workers=1))
    monkeypatch.setenv(nativewalk.SWITCH, "0")
    python = list(headerscan.scan_files(paths, tags, workers=1))
    monkeypatch.delenv(nativewalk.SWITCH)
    return native, python


# --- a small DICOM writer, for structures pydicom does not write -----------------------------------
def element(tag: int, vr: str, value: bytes, implicit: bool = False, length: int | None = None) -> bytes:
    length = len(value) if length is None else length
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit or group == 0xFFFE:
        return struct.pack("<HHL", group, elem, length) + value
    if vr in LONG_VRS:
        return struct.pack("<HH2sHL", group, elem, vr.encode(), 0, length) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), length) + value


def text(value: str) -> bytes:
    data = value.encode()
    return data + b" " * (len(data) % 2)


def item(body: bytes, undefined: bool = True) -> bytes:
    if undefined:
        return element(0xFFFEE000, "", body, length=UNDEFINED) + element(0xFFFEE00D, "", b"")
    return element(0xFFFEE000, "", body)


def sequence(tag: int, items: list[bytes], implicit: bool = False, vr: str = "SQ") -> bytes:
    """An undefined-length sequence (or UN) of `items`, with its delimiter."""
    return element(tag, vr, b"".join(items), implicit, length=UNDEFINED) + element(0xFFFEE0DD, "", b"")


def part10(data_set: bytes, transfer_syntax: str | bytes | None, extra_meta: bytes = b"",
           instance_uid: bytes = b"1.2.3.4.5\0") -> bytes:
    """A Part 10 file: preamble, 'DICM', the file meta (transfer syntax: as text, raw bytes, or
    None for none; `extra_meta` after it) and the data set."""
    meta = element(0x00020001, "OB", b"\0\1") + element(0x00020002, "UI", text("1.2.840.10008.5.1.4.1.1.7\0")) \
        + element(0x00020003, "UI", instance_uid)
    if transfer_syntax is not None:
        meta += element(0x00020010, "UI", transfer_syntax if isinstance(transfer_syntax, bytes)
                        else text(transfer_syntax + "\0"))
    meta += extra_meta
    return bytes(128) + b"DICM" + element(0x00020000, "UL", struct.pack("<L", len(meta))) + meta + data_set


def generated_data_set(implicit: bool, pixels: bytes | None = None, nesting: int = 3) -> bytes:
    """Requested and skipped elements, private creators, defined- and undefined-length sequences
    nested `nesting` deep, UN of undefined length, then pixel data (native unless given)."""
    def e(tag, vr, value, length=None):
        return element(tag, vr, value, implicit, length)

    inner = e(0x00081150, "UI", text("1.2.840.10008.5.1.4.1.1.4\0")) + e(0x00081155, "UI", text("1.2.3.9\0"))
    nested = inner
    for _ in range(nesting):
        nested = e(0x00081155, "UI", text("1.2.3\0")) + sequence(0x00081140, [item(nested), item(inner, False)],
                                                                 implicit)
    # explicit VR items inside an implicit VR UN sequence, and the reverse for explicit files
    un_items = [item(element(0x00100010, "PN", text("In^Un"), True) + element(0x00100020, "LO", text("X"), True))]
    data = (e(0x00080005, "CS", text("ISO_IR 100"))
            + e(0x00080008, "CS", text("ORIGINAL\\PRIMARY"))
            + e(0x00080016, "UI", text("1.2.840.10008.5.1.4.1.1.7\0"))
            + e(0x00080018, "UI", text("1.2.3.4.5\0"))
            + e(0x00080060, "CS", text("OT"))
            + sequence(0x00081140, [item(nested), item(inner, False)], implicit)
            + e(0x00091001, "LO", text("GE private"))
            + e(0x00100010, "PN", "Müller^Jörg ".encode("latin-1"))
            + e(0x00100020, "LO", text("ID-7"))
            + e(0x00110010, "LO", text("ACME 1.1"))
            + e(0x00111001, "LO", text("acme value"))
            + sequence(0x00131010, un_items, implicit, vr="UN")
            + e(0x00180050, "DS", text("1.25"))
            + e(0x00200013, "IS", text("7"))
            + e(0x00200032, "DS", text("-1.5\\2.5\\3"))
            + e(0x00280010, "US", struct.pack("<H", 4))
            + e(0x00280011, "US", struct.pack("<H", 4))
            + e(0x00280100, "US", struct.pack("<H", 16))
            + e(0x00280103, "US", struct.pack("<H", 1))
            + e(0x00291010, "OB", bytes(40)))
    if pixels is None:
        return data + e(0x7FE00010, "OW", bytes(32))
    return data + e(0x7FE00010, "OB", pixels, length=UNDEFINED) + element(0xFFFEE0DD, "", b"")


def encapsulated(*fragments: bytes) -> bytes:
    return element(0xFFFEE000, "", b"") + b"".join(element(0xFFFEE000, "", f) for f in fragments)


@pytest.fixture
def generated(tmp_path) -> list[Path]:
    """Generated files of the structures the walker must handle, each one a small file."""
    files = {
        "explicit.dcm": part10(generated_data_set(False), EXPLICIT_LITTLE),
        "implicit.dcm": part10(generated_data_set(True), "1.2.840.10008.1.2"),
        "bare_implicit.dcm": generated_data_set(True),
        "encapsulated.dcm": part10(generated_data_set(False, encapsulated(b"\xff\xd8" + bytes(30), bytes(18))),
                                   JPEG_BASELINE),
        "padded.dcm": part10(generated_data_set(False), EXPLICIT_LITTLE) + b"\0\0trailing junk",
        "after_pixels.dcm": part10(generated_data_set(False) + element(0xCADB0010, "LO", text("BUNDLE")),
                                   EXPLICIT_LITTLE),
        "deep_ok.dcm": part10(generated_data_set(False, nesting=30), EXPLICIT_LITTLE),
        "too_deep.dcm": part10(generated_data_set(True, nesting=40), "1.2.840.10008.1.2"),
        # implicit VR items in an explicit VR sequence (PS3.5 6.2.2), and a duplicated element
        "implicit_items.dcm": part10(element(0x00100010, "PN", text("First^Name"))
                                     + sequence(0x00081140, [item(element(0x00081155, "UI", text("1.2\0"), True))])
                                     + element(0x00100010, "PN", text("Second^Name"))
                                     + element(0x7FE00010, "OW", bytes(8)), EXPLICIT_LITTLE),
        # file meta cases the C side leaves to Python (past the first read, a UID not plain
        # ASCII, no transfer syntax), reads itself (padded UIDs), or where the data set's VRs
        # overrule the transfer syntax
        "meta_past_first_read.dcm": part10(generated_data_set(False), EXPLICIT_LITTLE,
                                           extra_meta=element(0x00020102, "OB", bytes(9000))),
        "meta_not_ascii.dcm": part10(generated_data_set(False), EXPLICIT_LITTLE, instance_uid=b"1.2.3\xe9"),
        "meta_padded.dcm": part10(generated_data_set(False), b"  1.2.840.10008.1.2.1\0\0 \0",
                                  instance_uid=b" 1.2.3 \0"),
        "meta_says_implicit.dcm": part10(generated_data_set(False), "1.2.840.10008.1.2"),
        "meta_says_explicit.dcm": part10(generated_data_set(True), EXPLICIT_LITTLE),
        "meta_without_ts.dcm": part10(generated_data_set(True), None),
        "meta_twice.dcm": part10(generated_data_set(True), EXPLICIT_LITTLE,
                                 extra_meta=element(0x00020010, "UI", text("1.2.840.10008.1.2\0"))),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / name for name in files]


# --- the library is there ------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_the_library_is_built_where_a_compiler_exists(tmp_path):
    """Not skipped when the library is missing: CI with a compiler must never walk in Python unnoticed."""
    assert nativewalk.available(), nativewalk.why_unavailable()
    built = nativewalk.build(tmp_path / "libheaderwalk-test.so")
    assert built.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert ctypes.CDLL(str(built)).dbw_version() == nativewalk.VERSION


def test_without_a_compiler_the_build_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(nativewalk.shutil, "which", lambda name: None)
    with pytest.raises(nativewalk.NoCompiler):
        nativewalk.build()
    assert nativewalk.main(["--build"]) == 0  # a set-up without a compiler is not a failure: scans walk in Python
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "no C compiler" in message


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_a_library_built_from_another_source_is_not_loaded_whatever_its_time(tmp_path, monkeypatch, caplog):
    source = tmp_path / "headerwalk.c"
    shutil.copy(nativewalk.SOURCE, source)
    monkeypatch.setattr(nativewalk, "SOURCE", source)
    monkeypatch.setattr(nativewalk, "LIBRARY", tmp_path / "libheaderwalk.so")

    def fresh_load() -> bool:  # as in a fresh process
        for name, value in (("_library", None), ("_why_not", None)):
            monkeypatch.setattr(nativewalk, name, value)
        return nativewalk.available()

    nativewalk.build()
    # the same source with a time after the build (a checkout, a copy): the library is the right one
    os.utime(source, ns=(nativewalk.LIBRARY.stat().st_mtime_ns + 10**9,) * 2)
    assert fresh_load(), nativewalk.why_unavailable()
    # the source edited, its time set back before the build (a copy keeping times): not loaded, said so
    source.write_text(source.read_text() + "\n/* edited */\n")
    os.utime(source, ns=(nativewalk.LIBRARY.stat().st_mtime_ns - 10**9,) * 2)
    with caplog.at_level("WARNING", logger=nativewalk.__name__):
        assert not fresh_load()
    assert "not built from this headerwalk.c" in nativewalk.why_unavailable()
    assert "not built from this headerwalk.c" in caplog.text
    assert headerscan._TagPlan(TAGS).native is None
    # rebuilt (to another path: this process's dlopen would return the library it has for the old one)
    monkeypatch.setattr(nativewalk, "LIBRARY", tmp_path / "rebuilt" / "libheaderwalk.so")
    nativewalk.LIBRARY.parent.mkdir()
    nativewalk.build()
    assert fresh_load(), nativewalk.why_unavailable()


@needs_library
def test_the_switch_turns_the_native_walk_off(monkeypatch, series_factory):
    assert headerscan._TagPlan(TAGS).native is not None
    monkeypatch.setenv(nativewalk.SWITCH, "0")
    assert headerscan._TagPlan(TAGS).native is None and not nativewalk.enabled()
    assert "DICOMBROWSER_NATIVE=0" in nativewalk.why_unavailable()
    path = series_factory(count=1)[0]
    assert headerscan.scan_file(path, TAGS).values["0008,0018"] == pydicom.dcmread(path).SOPInstanceUID


# --- real files -----------------------------------------------------------------------------------
@needs_library
@pytest.mark.timeout(300)
def test_every_corpus_file_walks_the_same_in_c_and_in_python(corpus, plans, monkeypatch):
    paths = sorted(p for p in corpus.rglob("*") if p.is_file())
    counts = assert_same_walk(paths, plans)
    assert counts["scanned"] >= 900, counts
    native, python = scan_both(paths, monkeypatch)
    assert native == python


@needs_library
@pytest.mark.timeout(300)
def test_every_pydicom_test_file_walks_the_same_in_c_and_in_python(plans, monkeypatch):
    folders = [pydicom_sample_folder(), pydicom_sample_folder().parent / "charset_files"]
    paths = sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())
    paths += [Path(p) for p in pydicom.data.get_testdata_files() if Path(p) not in paths]
    counts = assert_same_walk(paths, plans)
    assert counts["scanned"] >= 150 and counts["_Broken"] >= 2 and counts["_Fallback"] >= 2, counts
    native, python = scan_both(paths, monkeypatch)
    assert native == python


# --- generated files ------------------------------------------------------------------------------
@needs_library
def test_generated_structures_walk_the_same(generated, plans, monkeypatch):
    results = {Path(r.path).name: r for r in scan_both(generated, monkeypatch)[0]}
    assert_same_walk(generated, plans)
    native, python = scan_both(generated, monkeypatch)
    assert native == python
    for name in ("explicit.dcm", "implicit.dcm", "bare_implicit.dcm", "encapsulated.dcm", "padded.dcm",
                 "after_pixels.dcm", "deep_ok.dcm", "implicit_items.dcm"):
        assert results[name].error is None and results[name].fast, results[name]
    explicit = results["explicit.dcm"].values
    assert explicit["0010,0010"] == "Müller^Jörg" and explicit["0011,1001"] == "acme value"
    assert explicit["0020,0032"] == "-1.5\\2.5\\3" and explicit["0008,1140"] == ""
    public = [t for t in TAGS if not int(t[:4], 16) & 1 and not t.startswith("0002")]
    assert {t: results["implicit.dcm"].values[t] for t in public} == {t: explicit[t] for t in public}
    assert results["after_pixels.dcm"].values["cadb,0010"] == "BUNDLE"
    assert results["padded.dcm"].pixel_data_offset == results["explicit.dcm"].pixel_data_offset
    assert results["encapsulated.dcm"].pixel_data_length == 8 + 40 + 26
    assert results["implicit_items.dcm"].values["0010,0010"] == "Second^Name"  # the last one, as in Python
    too_deep = next(p for p in generated if p.name == "too_deep.dcm")
    assert not results["too_deep.dcm"].fast and outcome(too_deep, plans[0]) == ("_Fallback", "sequences nested too deep")


@needs_library
def test_values_beyond_the_output_buffers(tmp_path, plans, monkeypatch):
    """More kept elements and value bytes than the first output buffers hold: the walk is repeated
    with bigger ones, and the values are those of the Python walk."""
    big = bytes(range(256)) * 600  # 150 KiB, read from the file past the first window
    creators = b"".join(element(0x00290000 | e, "LO", text(f"CREATOR {e}")) for e in range(0x10, 0x100))
    names = b"".join(element(0x00100010, "PN", text(f"Name^{i}")) for i in range(300))
    data = part10(names + element(0x00100020, "LO", text("ID")) + creators + element(0x00291010, "OB", big)
                  + element(0x00291011, "OB", big) + element(0x7FE00010, "OW", bytes(8)), EXPLICIT_LITTLE)
    path = tmp_path / "many.dcm"
    path.write_bytes(data)
    native, python = scan_both([path], monkeypatch)  # TAGS ask for (0029,1010): group 0029's creators are kept
    assert native == python and native[0].error is None and native[0].values["0010,0010"] == "Name^299"
    # the same through Walker.scan (no file meta tags asked), in a thread whose buffers start small
    data_set_tags = [t for t in TAGS if not t.startswith("0002")]
    scanned: dict[str, list] = {}

    def scan_in_thread() -> None:
        scanned["native"], scanned["python"] = scan_both([path], monkeypatch, data_set_tags)

    thread = threading.Thread(target=scan_in_thread)
    thread.start()
    thread.join()
    assert scanned["native"] == scanned["python"] and scanned["native"][0].values["0010,0010"] == "Name^299"
    native_plan, python_plan = plans
    fd = os.open(path, os.O_RDONLY)
    try:
        f = headerscan._File(fd, len(data))
        _meta, start = headerscan._read_meta(f, 132)
        walked = native_plan.native.walk(fd, len(data), f.buf, f.base, start, False)
        assert walked == headerscan._walk(f, start, False, python_plan)
    finally:
        os.close(fd)
    raw = walked[0]
    assert raw[0x00291010][1] == big and raw[0x00290010][1] == text("CREATOR 16") and len(raw) == 1 + 1 + 240 + 1


# --- truncated and corrupted files ----------------------------------------------------------------
@needs_library
@pytest.mark.timeout(120, method="thread")
def test_every_truncation_walks_the_same(generated, tmp_path, plans):
    cut_dir = tmp_path / "cuts"
    cut_dir.mkdir()
    paths = []
    for source in generated:
        data = source.read_bytes()
        step = 1 if len(data) < 3000 else 3
        for cut in range(0, len(data), step):
            path = cut_dir / f"{source.stem}-{cut:05d}.dcm"
            path.write_bytes(data[:cut])
            paths.append(path)
    counts = assert_same_walk(paths, plans)
    assert counts["_Broken"] > 1000 and counts["scanned"] > 50, counts


@needs_library
@pytest.mark.timeout(300, method="thread")
def test_random_corruptions_walk_the_same(generated, tmp_path, plans):
    """Seeded fuzzing over the whole header: flipped bytes, bogus lengths, VRs and item tags."""
    rng = random.Random(20261203)
    sources = [p.read_bytes() for p in generated]
    sources += [(pydicom_sample_folder() / n).read_bytes()[:30000]
                for n in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "emri_small.dcm",
                          "ExplVR_LitEndNoMeta.dcm", "DICOMDIR") if (pydicom_sample_folder() / n).exists()]
    tokens = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"\xfe\xff\x0d\xe0",
              b"SQ\x00\x00", b"UN\x00\x00", b"OB\x00\x00", b"\xe0\x7f\x10\x00", b"\xff\xff", b"\x00\x80\x00\x00"]
    fuzz = tmp_path / "fuzz"
    fuzz.mkdir()
    paths = []
    for n in range(2000):
        data = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(132, len(data)) if len(data) > 132 else 0
            if rng.random() < 0.5:
                data[pos] = rng.randrange(256)
            else:
                data[pos:pos + 4] = rng.choice(tokens)
        path = fuzz / f"fuzz{n:04d}.dcm"
        path.write_bytes(bytes(data))
        paths.append(path)
    counts = assert_same_walk(paths, plans)
    assert min(counts["scanned"], counts["_Fallback"], counts["_Broken"]) > 50, counts


# --- processes and threads ------------------------------------------------------------------------
@needs_library
@pytest.mark.timeout(120)
def test_workers_and_threads_walk_the_same(tmp_path, monkeypatch):
    """Forked workers use their own copy of the output buffers, and threads their own buffers."""
    paths = write_series(tmp_path / "s", count=30, rows=4, columns=4) + list(pydicom_sample_folder().glob("*.dcm"))
    monkeypatch.setenv(nativewalk.SWITCH, "0")
    reference = list(headerscan.scan_files(paths * 2, TAGS, workers=1))
    monkeypatch.delenv(nativewalk.SWITCH)
    monkeypatch.setattr(headerscan, "POOL_WORTH_S", 0.0)
    assert list(headerscan.scan_files(paths * 2, TAGS, workers=2, chunk_size=10)) == reference
    results: dict[int, list] = {}

    def scan(n: int) -> None:
        results[n] = list(headerscan.scan_files(paths * 2, TAGS, workers=1))

    threads = [threading.Thread(target=scan, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == reference for n in range(3))


# --- values formatted in C ------------------------------------------------------------------------
VALUE_VRS = ["AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST",
             "TM", "UI", "UL", "US", "OB", "OW", "SV", "UC", "UN", "UR", "UT", "UV"]
NUMBER_TEXT = [b"0", b"1", b"7", b"9", b"+", b"-", b".", b"e", b"E", b" ", b"\\", b"\0", b"_", b"x", b"inf", b"nan",
               b"\t", b"1.5", b"-2", b"3e-4"]
OTHER_TEXT = [b"A", b"z", b"^", b"=", b" ", b"\\", b"\0", b"\t", b"\r\n", b"\x1b$B", b"\xe9", b"\x7f", b"\x1f",
              b"1.2", b".", b"~", b"ORIGINAL"]


def random_value(rng: random.Random, vr: str) -> bytes:
    """A value of VR `vr` likely to hit the edges of its rule: trailing and inner spaces and NULs,
    backslashes, numbers in and out of the plain form, control and non-ASCII bytes, odd lengths."""
    if rng.random() < 0.08:
        return b""
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT", "OB", "OW", "UN"):
        width = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}.get(vr, 2)
        count = rng.randint(1, 4) * width + (rng.random() < 0.1)
        return bytes(rng.randrange(256) for _ in range(count))
    alphabet = NUMBER_TEXT if vr in ("DS", "IS") or rng.random() < 0.2 else OTHER_TEXT
    value = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
    if rng.random() < 0.3:
        value += rng.choice([b" ", b"\0", b"  ", b" \0", b"\0\0"])
    return value


@needs_library
@pytest.mark.timeout(300, method="thread")
def test_random_values_of_every_vr_format_the_same_in_c_and_in_python(tmp_path, plans):
    """Seeded: every requested tag of the data set with a random VR (explicit VR files) or its
    dictionary VR (implicit VR files) and a random value; the C formatting equals the Python rules."""
    rng = random.Random(20261204)
    tags = sorted(int(t.replace(",", ""), 16) for t in TAGS if t[:4] not in ("0002", "7fe0"))
    charsets = [b"", b"ISO_IR 100", b"ISO_IR 192", b"\\ISO 2022 IR 87", b"ISO_IR 6", b"bogus"]
    paths = []
    for n in range(600):
        implicit = n % 4 == 3
        data = b""
        for tag in tags:
            if rng.random() < 0.15:
                continue
            if tag == 0x00080005:
                data += element(tag, "CS", text(rng.choice(charsets).decode()), implicit)
                continue
            vr = pydicom.datadict.dictionary_VR(tag) if implicit and not (tag >> 16) & 1 else rng.choice(VALUE_VRS)
            vr = vr if len(vr) == 2 else "OW"
            data += element(tag, vr, random_value(rng, vr), implicit)
        data += element(0x7FE00010, "OW", bytes(8), implicit)
        path = tmp_path / f"values{n:04d}.dcm"
        path.write_bytes(part10(data, "1.2.840.10008.1.2" if implicit else EXPLICIT_LITTLE))
        paths.append(path)
    counts = assert_same_walk(paths, plans)
    assert counts["scanned"] > 500, counts
    # both kinds were met: values formatted in C, and values left to Python
    native = plans[0].native
    formatted = pending = 0
    for n, path in enumerate(paths[:40]):
        data = path.read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            f = headerscan._File(fd, len(data))
            _meta, start = headerscan._read_meta(f, 132)
            texts, left, _offset, _length = native.walk_values(fd, len(data), f.buf, f.base, start, n % 4 == 3)
        except nativewalk.WalkFailure:
            continue
        finally:
            os.close(fd)
        pending += len(left)
        formatted += sum(1 for t in texts if t)
    assert formatted > 200 and pending > 200, (formatted, pending)


@needs_library
def test_the_usual_file_is_read_from_its_first_byte_in_c_and_the_others_in_python(generated, plans):
    """Walker.scan reads the usual file whole (file meta included); the files whose meta it leaves
    are read by Python's own path, and both give the Python walk's results."""
    native, python = plans
    if native.meta_tags:
        pytest.skip("a plan with file meta tags reads the meta in Python")
    left = set()
    for path in generated:
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                scanned = native.native.scan(fd, os.fstat(fd).st_size)
            except nativewalk.WalkFailure:
                continue
        finally:
            os.close(fd)
        if scanned is None:
            left.add(path.name)
        else:
            assert outcome(path, native)[6] == scanned[4]  # the transfer syntax, as _uid gives it
    assert left == {"bare_implicit.dcm", "meta_past_first_read.dcm", "meta_not_ascii.dcm"}
    assert_same_walk(generated, plans)
    padded = outcome(next(p for p in generated if p.name == "meta_padded.dcm"), native)
    assert padded[6] == "1.2.840.10008.1.2.1" and padded[10] == "1.2.3"

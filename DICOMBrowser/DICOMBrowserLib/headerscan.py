"""Fast header scanning: read only the tags asked for, from many files, on all cores.

Why not plain ``pydicom.dcmread``: it builds every element of every file (~1 ms a file), which
makes it the bottleneck of an import. Here a small element walker reads the first few KiB of a
file (explicit or implicit VR little endian, with or without the 128-byte preamble), keeps the raw
bytes of the requested tags only, skips everything else by length, and stops at the Pixel Data
element, whose offset and length it records.

Values must be exactly those of a full pydicom read formatted by ``tagreader.format_value``. Plain
cases (numbers, ASCII text, DS/IS that parse) follow a fixed rule per VR, memoised because values
repeat across a series; everything else (Specific Character Set, PN groups, UN, ambiguous VRs,
private tags in implicit VR) is converted by pydicom itself from a small ``Dataset`` of
``RawDataElement``. Files the walker does not handle (big endian, deflate, odd encodings) fall
back to a full pydicom read; truncated or corrupt files are reported with the reason.

The walk of the data set (`_walk`: element headers, sequences skipped item by item, the pixel
data's extent) runs in C when its small library is built (`nativewalk`, native/headerwalk.c:
the same rules, the same results, errors and fallbacks), and so do the formatting of the plain
values (the rules of _FAST_CONVERTERS but FL/FD) and, for the usual file, the first read and the
file meta; `_walk`, `_values` and `_read_meta` stay the fallback when it is not built or
$DICOMBROWSER_NATIVE is 0, and the reference the tests compare it with. The values the C side
leaves (`_pending_values`), the unusual files' meta and everything else stay here.

Work is split in chunks of paths over a fork-started process pool; ``workers=1`` runs in-process.
See docs/headerscan.md.
"""
from __future__ import annotations

import errno
import functools
import itertools
import logging
import multiprocessing
import os
import stat
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from . import nativewalk
from .tagreader import format_value, parse_tag, tag_string

logger = logging.getLogger(__name__)

PIXEL_DATA = 0x7FE00010
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # float, double float, and integer pixel data
SPECIFIC_CHARACTER_SET = 0x00080005
# elements pydicom needs to resolve ambiguous VRs ("US or SS", "OB or OW") of requested tags
CONTEXT_TAGS = (0x00080005, 0x00280100, 0x00280103, 0x54001004)
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

DEFLATED = "1.2.840.10008.1.2.1.99"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"

# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
LONG_VRS = frozenset(v.encode() for v in ("OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"))
SHORT_VRS = frozenset(v.encode() for v in ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                                           "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"))
FIRST_READ = 8192  # bytes read at once; most headers (without private blobs) fit
CHUNK_FILES = 256  # paths per task sent to a worker process
#: a list of paths is first probed in-process on this many files; the pool starts only when the
#: rest would take longer than POOL_WORTH_S in-process (starting it and handing chunks back costs
#: ~30-50 ms: a 600-slice CT's 40 ms scan was 70-100 ms with the pool)
PROBE_FILES = 64
POOL_WORTH_S = 0.15

_unpack_tag_len = struct.Struct("<HHL").unpack_from   # implicit VR header
_unpack_tag_vr_short = struct.Struct("<HH2sH").unpack_from  # explicit VR, 2-byte length
_unpack_long_len = struct.Struct("<L").unpack_from


@dataclass
class ScanResult:
    """What the index needs of one file; see docs/CONTRACTS.md ("Header scan")."""

    path: str
    size: int
    mtime: int  # st_mtime_ns (integer nanoseconds), so "unchanged" is an exact comparison
    is_dicom: bool
    error: str | None = None
    values: dict[str, str] = field(default_factory=dict)  # "gggg,eeee" -> format_value string, '' if absent
    transfer_syntax: str = ""
    pixel_data_offset: int | None = None  # byte offset of the Pixel Data value in the file
    pixel_data_length: int | None = None  # its length in bytes (encapsulated: up to the sequence delimiter)
    media_storage_sop_class_uid: str = ""  # file meta (0002,0002); DICOMDIR: 1.2.840.10008.1.3.10
    media_storage_sop_instance_uid: str = ""  # file meta (0002,0003)
    fast: bool = True  # False when the file needed the full pydicom fallback (for benchmarks/diagnostics)


class ScanRow(NamedTuple):
    """A ScanResult whose values are a list in the order of the keys `scan_rows` gives (None for
    a file that is not DICOM or has an error): for a caller that keeps many files' values
    (ScanIndex), to which a dict per file cost more than the rest of the scan."""

    path: str
    size: int
    mtime: int
    is_dicom: bool
    error: str | None
    values: list[str] | None
    transfer_syntax: str
    pixel_data_offset: int | None
    pixel_data_length: int | None
    media_storage_sop_class_uid: str
    media_storage_sop_instance_uid: str
    fast: bool


class _Fallback(Exception):
    """The fast walker meets something it does not handle; read this file with full pydicom."""


class _Broken(Exception):
    """The file is DICOM but cannot be read to the end of its header (truncated, bad lengths)."""


def _numbers(code: str, width: int):
    def convert(value: bytes) -> str | None:
        count, rest = divmod(len(value), width)
        if rest:
            return None  # pydicom raises on a partial value; let it decide
        return "\\".join(str(v) for v in struct.unpack(f"<{count}{code}", value))
    return convert


def _padded(value: bytes) -> str | None:  # CS AS DA TM DT: one rstrip of the whole value
    return value.decode("ascii").rstrip(" \0") if value.isascii() else None


def _unique_identifier(value: bytes) -> str | None:  # UI: pydicom's UID() also strips each value's whitespace
    if not value.isascii():
        return None
    return "\\".join(v.strip() for v in value.decode("ascii").rstrip(" \0").split("\\"))


def _text(value: bytes) -> str | None:  # LO SH UC: each value right-stripped
    if not value.isascii() or b"\x1b" in value:
        return None
    return "\\".join(v.rstrip("\0 ") for v in value.decode("ascii").split("\\"))


def _single_text(value: bytes) -> str | None:  # LT ST UT: no multiplicity
    return value.decode("ascii").rstrip("\0 ") if value.isascii() and b"\x1b" not in value else None


def _person_name(value: bytes) -> str | None:  # PN: '=' groups have their own rules in pydicom
    if not value.isascii() or b"\x1b" in value or b"=" in value:
        return None
    return value.decode("ascii").rstrip("\0 ")


def _decimal_string(value: bytes) -> str | None:  # DS: str(DSfloat) is the stripped original string
    if not value.isascii():
        return None
    items = [v.strip() for v in value.decode("ascii").strip().rstrip(" \0").split("\\")]
    try:
        for v in items:
            float(v)
    except ValueError:
        return None
    return "\\".join(items)


def _integer_string(value: bytes) -> str | None:  # IS: str(IS) is the stripped original string
    if not value.isascii():
        return None
    items = [v.strip() for v in value.decode("ascii").rstrip(" \0").split("\\")]
    try:
        for v in items:
            int(v)
    except ValueError:
        return None
    return "\\".join(items)


def _application_entity(value: bytes) -> str | None:
    return "\\".join(v.strip() for v in value.decode("ascii").split("\\")) if value.isascii() else None


def _uri(value: bytes) -> str | None:
    return value.decode("ascii").rstrip() if value.isascii() else None


def _binary(value: bytes) -> str:  # format_value caches no bytes and no sequences
    return ""


# VR -> converter of the raw little-endian value to the format_value string, or None where pydicom
# must decide (non-ASCII text, ISO 2022 escapes, invalid numbers, PN groups). AT and UN are left
# to pydicom: UN may become the dictionary VR. The test suite checks these rules against full
# pydicom reads of every corpus file and every pydicom test file.
_FAST_CONVERTERS = {
    b"US": _numbers("H", 2), b"SS": _numbers("h", 2), b"UL": _numbers("L", 4), b"SL": _numbers("l", 4),
    b"FL": _numbers("f", 4), b"FD": _numbers("d", 8), b"SV": _numbers("q", 8), b"UV": _numbers("Q", 8),
    b"CS": _padded, b"AS": _padded, b"DA": _padded, b"TM": _padded, b"DT": _padded, b"UI": _unique_identifier,
    b"LO": _text, b"SH": _text, b"UC": _text, b"LT": _single_text, b"ST": _single_text, b"UT": _single_text,
    b"PN": _person_name, b"DS": _decimal_string, b"IS": _integer_string, b"AE": _application_entity,
    b"UR": _uri, b"OB": _binary, b"OW": _binary, b"OF": _binary, b"OD": _binary, b"OL": _binary,
    b"OV": _binary, b"SQ": _binary,
}


# VR + raw bytes -> string, for the fast rules only (which do not depend on the character set).
# Most values repeat from file to file of a series (names, dates, UIDs of the study and series,
# geometry), so a lookup replaces most conversions; cleared when full.
_MEMO: dict[bytes, str] = {}
_MEMO_SIZE = 50_000


def _fast_value(vr: bytes | None, value: bytes) -> str | None:
    """The format_value string of a raw value for the plain cases, None where pydicom must decide."""
    convert = _FAST_CONVERTERS.get(vr)
    if convert is None:
        return None
    return convert(value) if value else ""


def _implicit_vr(tag: int) -> bytes | None:
    """Dictionary VR of a standard tag when it is unambiguous (implicit VR files); else None."""
    if (tag >> 16) & 1:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr.encode() if len(vr) == 2 else None


class _TagPlan:
    """The requested tags, pre-computed once per scan (and per worker)."""

    def __init__(self, tags: Iterable[str | int]):
        ints = sorted({parse_tag(t) for t in tags})
        self.tags = ints
        self.keys = [tag_string(t) for t in ints]
        self.meta_tags = [t for t in ints if t >> 16 == 0x0002]
        self.data_tags = [t for t in ints if t >> 16 != 0x0002]
        private_groups = {t >> 16 for t in self.data_tags if (t >> 16) & 1}
        self.keep = frozenset(self.data_tags) | frozenset(CONTEXT_TAGS)
        self.private_groups = frozenset(private_groups)
        self.implicit_vrs = {t: _implicit_vr(t) for t in self.data_tags}
        self.data_index = {t: i for i, t in enumerate(self.data_tags)}
        self.meta_index = {t: i for i, t in enumerate(self.meta_tags)}
        self.last_tag = max([PIXEL_DATA, *self.data_tags])  # the walk stops at pixel data unless asked for more
        # the walk in C when built and not switched off ($DICOMBROWSER_NATIVE=0); else _walk in Python
        self.native = nativewalk.walker(self.keep, self.private_groups, self.last_tag, self.data_tags,
                                        [self.implicit_vrs[t] for t in self.data_tags])


class _File:
    """A file read in windows with pread: the header walk touches only the bytes it needs."""

    __slots__ = ("fd", "size", "buf", "base")

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size
        self.buf = os.pread(fd, FIRST_READ, 0)
        self.base = 0

    def window(self, pos: int, need: int) -> tuple[bytes, int]:
        """(buffer, index of pos in it) with at least `need` bytes from absolute `pos`."""
        rel = pos - self.base
        if rel < 0 or rel + need > len(self.buf):
            if pos + need > self.size:
                raise _Broken(f"truncated: {need} bytes needed at offset {pos}, file has {self.size}")
            self.buf = os.pread(self.fd, max(need, FIRST_READ), pos)
            self.base = pos
            rel = 0
            if len(self.buf) < need:
                raise _Broken(f"short read at offset {pos}")
        return self.buf, rel


def _valid_vr(vr: bytes) -> bool:
    return 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B


def _header(f: _File, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, header length) of the element at `pos`."""
    buf, i = f.window(pos, 12 if pos + 12 <= f.size else 8)
    if implicit:
        group, elem, length = _unpack_tag_len(buf, i)
        return (group << 16) | elem, None, length, 8
    group, elem, vr, length = _unpack_tag_vr_short(buf, i)
    tag = (group << 16) | elem
    if group == 0xFFFE:  # item and delimiters carry no VR even in explicit VR
        return tag, None, _unpack_long_len(buf, i + 4)[0], 8
    if vr in SHORT_VRS:
        return tag, vr, length, 8
    if vr in LONG_VRS:
        if len(buf) < i + 12:
            raise _Broken(f"truncated element header at offset {pos}")
        return tag, vr, _unpack_long_len(buf, i + 8)[0], 12
    raise _Fallback(f"invalid VR {vr!r} at offset {pos}")


def _skip_sequence(f: _File, pos: int, implicit: bool, depth: int = 0) -> int:
    """Offset just after an undefined-length sequence value starting at `pos`.

    The element headers inside items are parsed inline, as in `_scan_fast`'s loop (vendors' private
    sequences hold hundreds of elements per file: a call per element was a third of a scan)."""
    if depth > 32:
        raise _Fallback("sequences nested too deep")
    size = f.size
    while True:
        tag, _, length, hlen = _header(f, pos, True)
        pos += hlen
        if tag == SEQUENCE_END:
            return pos
        if tag != ITEM:
            raise _Fallback(f"expected an item in a sequence at offset {pos - hlen}")
        if length != UNDEFINED:
            pos += length
            continue
        # undefined-length item: walk its elements to the item delimiter; an item of an explicit
        # VR sequence may itself be implicit VR (PS3.5 6.2.2), so look at its first element
        item_implicit = implicit
        if not implicit:
            buf, i = f.window(pos, 8)
            item_implicit = not _valid_vr(buf[i + 4:i + 6])
        buf, base = f.buf, f.base
        blen = len(buf)
        while True:
            rel = pos - base
            if rel < 0 or rel + 12 > blen:
                buf, rel = f.window(pos, 12 if pos + 12 <= size else 8)
                base, blen = f.base, len(buf)
            vr = None
            if item_implicit or (buf[rel] == 0xFE and buf[rel + 1] == 0xFF):  # group FFFE: never a VR
                group, elem, length = _unpack_tag_len(buf, rel)
                hlen = 8
            else:
                group, elem, vr, length = _unpack_tag_vr_short(buf, rel)
                if vr in SHORT_VRS:
                    hlen = 8
                elif vr in LONG_VRS:
                    if rel + 12 > blen:
                        raise _Broken(f"truncated element header at offset {pos}")
                    length = _unpack_long_len(buf, rel + 8)[0]
                    hlen = 12
                else:
                    raise _Fallback(f"invalid VR {vr!r} at offset {pos}")
            pos += hlen
            if group == 0xFFFE and elem == 0xE00D:  # item delimiter
                break
            if length == UNDEFINED:
                pos = _skip_sequence(f, pos, item_implicit or vr == b"UN", depth + 1)
                buf, base = f.buf, f.base
                blen = len(buf)
            else:
                pos += length
            if pos > size:
                raise _Broken(f"element at offset {pos - hlen - length} runs past the end of the file")


def _encapsulated_length(f: _File, start: int) -> int:
    """Length of an encapsulated Pixel Data value (items up to, not including, the delimiter)."""
    pos = start
    while True:
        tag, _, length, hlen = _header(f, pos, True)
        if tag == SEQUENCE_END:
            return pos - start
        if tag != ITEM or length == UNDEFINED:
            raise _Broken(f"bad encapsulated pixel data item at offset {pos}")
        pos += hlen + length
        if pos > f.size:
            raise _Broken(f"encapsulated pixel data fragment at offset {pos - length} runs past the end of the file")


def _read_meta(f: _File, pos: int) -> tuple[dict[int, tuple], int]:
    """The file meta group (explicit VR LE) from `pos`: raw elements and where the data set starts."""
    meta: dict[int, tuple] = {}
    size = f.size
    buf, base = f.buf, f.base
    while pos + 8 <= size:
        rel = pos - base
        if rel < 0 or rel + 12 > len(buf):
            buf, rel = f.window(pos, 12 if pos + 12 <= size else 8)
            base = f.base
        if buf[rel] != 2 or buf[rel + 1] != 0:  # group 0002 ends the meta
            break
        group, elem, vr, length = _unpack_tag_vr_short(buf, rel)
        if vr in SHORT_VRS:
            hlen = 8
        elif vr in LONG_VRS and rel + 12 <= len(buf):
            length = _unpack_long_len(buf, rel + 8)[0]
            hlen = 12
        else:
            raise _Fallback(f"unusual file meta element at offset {pos}")
        if length == UNDEFINED:
            raise _Fallback(f"undefined length in the file meta at offset {pos}")
        start = rel + hlen
        if start + length <= len(buf):
            value = buf[start:start + length]
        else:
            vbuf, i = f.window(pos + hlen, length)
            value = vbuf[i:i + length]
            buf, base = f.buf, f.base
        meta[(group << 16) | elem] = (vr, value, pos + hlen)
        pos += hlen + length
    return meta, pos


def _uid(raw: tuple | None) -> str:
    return raw[1].decode("ascii", "replace").rstrip("\0 ").strip() if raw is not None and raw[1] else ""


def reference_value(ds: Dataset, tag: int) -> str:
    """A tag's cache string from a pydicom data set: format_value, '' where pydicom cannot convert it.

    The rule for invalid values (say a DS of "1.2.3"): pydicom raises when the value is read, and
    one bad attribute must not make a whole file unimportable, so its cached value is ''.
    """
    try:
        if tag >> 16 == 0x0002 and getattr(ds, "file_meta", None) is not None:
            return format_value(ds.file_meta.get(tag))
        return format_value(ds.get(tag))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types (BytesLengthException is a bare Exception)
        logger.debug("value of %s cannot be converted: %s: %s", tag_string(tag), type(exc).__name__, exc)
        return ""


def _values(raw: dict[int, tuple], tags: list[int], index: dict[int, int], implicit: bool,
            implicit_vrs: dict) -> list[str]:
    """Values of `tags` from raw (VR, bytes, offset) tuples: the fast rules, else pydicom's
    conversion (`_pending_values`, the rules the C walk's leftovers go through too).

    Only the elements present are visited (most requested tags are absent from most files).
    """
    values = [""] * len(tags)
    pending: list[tuple] = []
    for tag, elem in raw.items():
        i = index.get(tag)
        if i is None:  # context element (character set, private creator) that was not asked for
            continue
        value = elem[1]
        if value:
            pending.append((i, implicit_vrs.get(tag) if implicit else elem[0], value))
    _pending_values(values, pending, lambda: raw, tags, implicit)
    return values


def _pending_values(values: list[str], pending: list[tuple], raw: Callable[[], dict[int, tuple]], tags: list[int],
                    implicit: bool) -> None:
    """Fill values[i] for the (i, VR, value bytes) the C walk left to Python, by `_values`' rules:
    the fast rules (memoised), else pydicom's conversion of the walk's raw elements (raw())."""
    slow: list[int] = []
    memo = _MEMO
    for i, vr, value in pending:
        if vr is None:
            slow.append(i)
            continue
        key = vr + value
        text = memo.get(key)
        if text is None:
            convert = _FAST_CONVERTERS.get(vr)
            text = convert(value) if convert is not None else None
            if text is None:
                slow.append(i)
                continue
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = text
        values[i] = text
    if slow:
        for i, text in zip(slow, _convert(raw(), [tags[i] for i in slow], implicit)):
            values[i] = text


def file_meta(data: bytes) -> tuple[dict[int, str], int] | None:
    """The UI values of the file meta group of a Part 10 file held in memory ({tag: UID}) and the
    offset where its data set starts; None without the preamble and 'DICM', or for a file meta
    the walker leaves to pydicom (fastpath/_storesend.py then sends the file through pynetdicom)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    whole = _File.__new__(_File)  # a "file" whose one window is all of `data`: no reads needed
    whole.fd, whole.size, whole.buf, whole.base = -1, len(data), data, 0
    try:
        meta, offset = _read_meta(whole, 132)
    except (_Fallback, _Broken):
        return None
    return {tag: _uid(raw) for tag, raw in meta.items() if raw[0] == b"UI"}, offset


@functools.lru_cache(maxsize=32)
def _plan(tags: tuple[str | int, ...]) -> tuple[_TagPlan, tuple[int, ...]]:
    """The scan plan of `tags` and their numbers in the order given."""
    return _TagPlan(tags), tuple(parse_tag(t) for t in tags)


def dataset_values(ds: Dataset, tags: Iterable[str | int]) -> list[str]:
    """The cache strings (format_value; '' where pydicom cannot convert) of `tags`, in the order
    given, from a data set pydicom decoded from bytes but has not converted yet (a C-FIND response
    identifier): its raw little-endian elements by the scanner's rules, ~10x faster than asking
    the Dataset element by element. Anything else is asked of the Dataset."""
    plan, wanted = _plan(tuple(tags))
    raw: dict[int, tuple] = {}
    implicit = None
    for tag, element in ds.items():
        if isinstance(element, RawDataElement):
            if not element.is_little_endian or (implicit is not None and element.is_implicit_VR != implicit) \
                    or tag >> 16 == 0x0002:
                return [reference_value(ds, t) for t in wanted]
            implicit = element.is_implicit_VR
            raw[int(tag)] = (element.VR.encode() if element.VR else None, element.value or b"", element.value_tell)
        elif tag == SPECIFIC_CHARACTER_SET and element.VR == "CS":  # pydicom reads it at once
            value = element.value
            text = "\\".join(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else value or ""
            if not isinstance(text, str) or not text.isascii():
                return [reference_value(ds, t) for t in wanted]
            raw[SPECIFIC_CHARACTER_SET] = (b"CS", text.encode("ascii"), 0)
        elif tag in plan.keep:  # converted already: pydicom's value is the one to format
            return [reference_value(ds, t) for t in wanted]
    try:
        values = dict(zip(plan.data_tags, _values(raw, plan.data_tags, plan.data_index, bool(implicit),
                                                  plan.implicit_vrs)))
    except _Fallback:
        return [reference_value(ds, t) for t in wanted]
    return [values.get(t, "") for t in wanted]


def _convert(raw: dict[int, tuple], tags: list[int], implicit: bool) -> list[str]:
    """Values of `tags` from raw elements, through pydicom's own conversion (charset, VR rules)."""
    ds = Dataset({BaseTag(t): RawDataElement(BaseTag(t), vr.decode() if vr else None, len(value), value, offset,
                                             implicit, True)
                  for t, (vr, value, offset) in raw.items()})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on invalid values; the full read would too
            if SPECIFIC_CHARACTER_SET in raw:
                encoding = pydicom.charset.convert_encodings(ds.get(SPECIFIC_CHARACTER_SET).value)
            else:
                encoding = pydicom.charset.default_encoding
            ds.set_original_encoding(implicit, True, encoding)
            return [reference_value(ds, t) if t in raw else "" for t in tags]
    except Exception as exc:  # noqa: BLE001 - any pydicom failure here means: let the full read decide
        raise _Fallback(f"character set: {type(exc).__name__}: {exc}") from exc


def _open_stat(path: str) -> tuple[int, int, int]:
    # O_NONBLOCK: a FIFO met in a folder walk must not block the scan (no effect on regular files)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IsADirectoryError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.EINVAL,
                                    "not a regular file", path)
    except OSError:
        os.close(fd)
        raise
    return fd, st.st_size, st.st_mtime_ns


def _walk(f: _File, pos: int, implicit: bool, plan: _TagPlan) -> tuple[dict[int, tuple], int | None, int | None]:
    """The data set walk from `pos`: (raw elements kept, pixel data offset, its length).

    The reference for nativewalk's C walk (the same rules); raises _Fallback or _Broken."""
    size = f.size
    keep = plan.keep
    last_tag = plan.last_tag
    private_groups = plan.private_groups
    raw: dict[int, tuple] = {}  # tag -> (VR bytes or None, value bytes, value offset)
    pixel_offset = pixel_length = None
    buf, base = f.buf, f.base
    blen = len(buf)
    # The hot loop: element headers parsed inline (no call per element), values sliced only
    # for the requested tags, everything else skipped by its length.
    while pos < size:
        rel = pos - base
        # Past the pixel data, bytes that do not make an element (padding some writers leave,
        # a cut in trailing private data) end the data set, as for pydicom: the image is whole.
        if rel < 0 or rel + 12 > blen:
            if pos + 8 > size:
                if pixel_offset is not None:
                    break
                raise _Broken(f"truncated element header at offset {pos}")
            buf, rel = f.window(pos, 12 if pos + 12 <= size else 8)
            base, blen = f.base, len(buf)
        if implicit:
            group, elem, length = _unpack_tag_len(buf, rel)
            vr = None
            hlen = 8
        else:
            group, elem, vr, length = _unpack_tag_vr_short(buf, rel)
            if vr in SHORT_VRS:
                hlen = 8
            elif vr in LONG_VRS:
                if rel + 12 > blen:
                    if pixel_offset is not None:
                        break
                    raise _Broken(f"truncated element header at offset {pos}")
                length = _unpack_long_len(buf, rel + 8)[0]
                hlen = 12
            elif pixel_offset is not None:
                break
            elif group == 0xFFFE:
                raise _Fallback(f"item tag at top level at offset {pos}")
            else:
                raise _Fallback(f"invalid VR {vr!r} at offset {pos}")
        tag = (group << 16) | elem
        value_pos = pos + hlen
        if group == 0x7FE0 and tag in PIXEL_TAGS:
            if length == UNDEFINED:
                pixel_offset, pixel_length = value_pos, _encapsulated_length(f, value_pos)
                pos = value_pos + pixel_length + 8
            else:
                pixel_offset, pixel_length = value_pos, length
                if value_pos + length > size:
                    raise _Broken(f"pixel data truncated: {length} bytes at offset {value_pos}, file has {size}")
                pos = value_pos + length
            if tag >= last_tag:
                break
            buf, base, blen = f.buf, f.base, len(f.buf)
            continue
        if group == 0xFFFE:
            raise _Fallback(f"item tag at top level at offset {pos}")
        if length == UNDEFINED:
            if implicit or vr == b"SQ" or vr == b"UN":
                # a sequence; if requested, its value is '' (format_value caches no sequences)
                pos = _skip_sequence(f, value_pos, implicit or vr == b"UN")
                buf, base, blen = f.buf, f.base, len(f.buf)
                continue
            raise _Fallback(f"undefined length for VR {vr!r} at offset {pos}")
        end = value_pos + length
        if end > size:
            if pixel_offset is not None:
                break
            raise _Broken(f"element ({group:04x},{elem:04x}) at offset {pos} has length {length}, "
                          f"past the end of the file ({size} bytes)")
        if (tag in keep and vr != b"SQ") or (group in private_groups and 0x10 <= elem <= 0xFF):
            vrel = value_pos - base
            if vrel + length <= blen:
                raw[tag] = (vr, buf[vrel:vrel + length], value_pos)
            else:
                vbuf, i = f.window(value_pos, length)
                raw[tag] = (vr, vbuf[i:i + length], value_pos)
                buf, base, blen = f.buf, f.base, len(f.buf)
        pos = end
    return raw, pixel_offset, pixel_length


def _scan_fast(path: str, plan: _TagPlan) -> tuple:
    """The walker; returns the compact result tuple (see _to_result) or raises _Fallback/_Broken."""
    fd, size, mtime = _open_stat(path)
    try:
        if plan.native is not None and not plan.meta_tags:
            # the usual file, from its first read to its values, in one call; None: read it here
            try:
                scanned = plan.native.scan(fd, size)
            except nativewalk.WalkFailure as exc:
                raise (_Broken if exc.broken else _Fallback)(str(exc)) from None
            if scanned is not None:
                values, pending, pixel_offset, pixel_length, ts, media_class, media_instance, implicit = scanned
                if pending:
                    _pending_values(values, pending, plan.native.last_raw, plan.data_tags, implicit)
                return (path, size, mtime, True, None, values, ts, pixel_offset, pixel_length, media_class,
                        media_instance, True)
        f = _File(fd, size)
        buf = f.buf
        if len(buf) >= 132 and buf[128:132] == b"DICM":
            pos = 132
            preamble = True
        else:
            pos = 0
            preamble = False
            if not _looks_like_dicom(buf):
                return (path, size, mtime, False, None, None, "", None, None, "", "", True)
        meta, pos = _read_meta(f, pos)
        if preamble and not meta:
            raise _Broken("no file meta information after the DICM prefix")
        ts = _uid(meta.get(0x00020010))
        if ts in (DEFLATED, EXPLICIT_BIG):
            raise _Fallback(f"transfer syntax {ts}")
        implicit = ts == IMPLICIT_LITTLE
        if pos + 6 <= size:
            buf, i = f.window(pos, 6)
            found_implicit = not _valid_vr(buf[i + 4:i + 6])
            if not ts:
                if not found_implicit and struct.unpack_from("<H", buf, i)[0] >= 1024:  # pydicom's rule
                    raise _Fallback("big endian data set without file meta")
                implicit = found_implicit
            elif found_implicit != implicit:
                implicit = found_implicit  # as pydicom does (with a warning): trust the data over the meta
        if plan.native is not None:
            try:
                values, pending, pixel_offset, pixel_length = plan.native.walk_values(
                    fd, size, f.buf, f.base, pos, implicit)
            except nativewalk.WalkFailure as exc:
                raise (_Broken if exc.broken else _Fallback)(str(exc)) from None
            if pending:
                _pending_values(values, pending, plan.native.last_raw, plan.data_tags, implicit)
        else:
            raw, pixel_offset, pixel_length = _walk(f, pos, implicit, plan)
            values = _values(raw, plan.data_tags, plan.data_index, implicit, plan.implicit_vrs) if plan.data_tags \
                else []
        if plan.meta_tags:  # they sort first (group 0002): meta values + data set values is plan.tags order
            values = _values(meta, plan.meta_tags, plan.meta_index, False, {}) + values
        return (path, size, mtime, True, None, values, ts, pixel_offset, pixel_length,
                _uid(meta.get(0x00020002)), _uid(meta.get(0x00020003)), True)
    finally:
        os.close(fd)


def _looks_like_dicom(buf: bytes) -> bool:
    """A file without the DICM prefix is read as DICOM only if it starts like a data set.

    Why so strict: pydicom's force=True "reads" any file, so a text or image file would otherwise
    be an error instead of being skipped silently. We accept a first element of group 0002
    (meta without preamble) or 0008 (ACR-NEMA style data set), little endian.
    """
    if len(buf) < 8:
        return False
    group, elem = struct.unpack_from("<HH", buf, 0)
    if group in (0x0200, 0x0800) and _valid_vr(buf[4:6]):  # big endian, read by the fallback
        return True
    if group not in (0x0002, 0x0008) or elem > 0x0100:
        return False
    if _valid_vr(buf[4:6]):
        return buf[4:6] in SHORT_VRS or buf[4:6] in LONG_VRS
    length = struct.unpack_from("<L", buf, 4)[0]
    return length < 0x10000


def _scan_pydicom(path: str, plan: _TagPlan, reason: str) -> tuple:
    """Full pydicom read for the files the walker leaves; the reference behaviour."""
    with warnings.catch_warnings():
        # pydicom warns on every invalid value it meets; the scan reports files, not values
        warnings.simplefilter("ignore")
        return _read_with_pydicom(path, plan, reason)


def _read_with_pydicom(path: str, plan: _TagPlan, reason: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError as exc:
        return (path, 0, 0, False, f"cannot stat: {exc.strerror}", None, "", None, None, "", "", False)
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=1024)
        meta = ds.file_meta if hasattr(ds, "file_meta") else Dataset()
        ts = str(meta.get("TransferSyntaxUID", "") or "")
        offset = length = None
        raw_pixels = None
        for tag in PIXEL_TAGS:
            if tag in ds._dict:
                raw_pixels = ds._dict[tag]
        if raw_pixels is not None and ts != DEFLATED:
            offset = raw_pixels.value_tell
            if raw_pixels.value is not None:
                length = len(raw_pixels.value)
            elif raw_pixels.length == UNDEFINED:
                length = _file_encapsulated_length(path, offset)
            else:
                length = raw_pixels.length
            if offset + length > st.st_size:
                raise _Broken(f"pixel data truncated: {length} bytes at offset {offset}, file has {st.st_size}")
        # pixel data is binary ('' in the cache): never load it just to format it
        values = ["" if t in PIXEL_TAGS else reference_value(ds, t) for t in plan.tags]
        media_class, media_instance = reference_value(ds, 0x00020002), reference_value(ds, 0x00020003)
    except _Broken as exc:
        return (path, st.st_size, st.st_mtime_ns, True, str(exc), None, "", None, None, "", "", False)
    except Exception as exc:  # noqa: BLE001 - pydicom on corrupt input raises many types; one file must not stop a scan
        return (path, st.st_size, st.st_mtime_ns, True, f"{reason}; pydicom: {type(exc).__name__}: {exc}",
                None, "", None, None, "", "", False)
    return (path, st.st_size, st.st_mtime_ns, True, None, values, ts, offset, length, media_class, media_instance,
            False)


def _file_encapsulated_length(path: str, offset: int) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _encapsulated_length(_File(fd, os.fstat(fd).st_size), offset)
    finally:
        os.close(fd)


def _scan_one(path: str, plan: _TagPlan) -> tuple:
    try:
        return _scan_fast(path, plan)
    except _Fallback as exc:
        logger.debug("%s: full pydicom read (%s)", path, exc)
        return _scan_pydicom(path, plan, str(exc))
    except _Broken as exc:
        # Stricter than pydicom, which reads a truncated file with a warning: an index must not
        # accept a file whose header or pixel data ends early, so this is an error, not a fallback.
        try:
            st = os.stat(path)
        except OSError:
            return (path, 0, 0, True, str(exc), None, "", None, None, "", "", True)
        return (path, st.st_size, st.st_mtime_ns, True, str(exc), None, "", None, None, "", "", True)
    except struct.error as exc:
        return _scan_pydicom(path, plan, f"bad element header: {exc}")
    except OSError as exc:
        return (path, 0, 0, False, f"cannot read: {exc.strerror or exc}", None, "", None, None, "", "", False)
    except Exception as exc:  # noqa: BLE001 - a walker bug on odd input must cost one file, not the import
        logger.exception("Header walker failed on %s; reading it with pydicom", path)
        return _scan_pydicom(path, plan, f"walker: {type(exc).__name__}: {exc}")


def _to_result(t: tuple, keys: list[str]) -> ScanResult:
    values = t[5]
    if values is None:
        values = dict.fromkeys(keys, "")
    elif type(values) is list:
        values = dict(zip(keys, values))
    return ScanResult(t[0], t[1], t[2], t[3], t[4], values, t[6], t[7], t[8], t[9], t[10], t[11])


def scan_file(path: str | Path, tags: Iterable[str | int]) -> ScanResult:
    """Scan one file in this process (the listener's and the tests' entry point)."""
    plan = _TagPlan(tags)
    return _to_result(_scan_one(os.fspath(path), plan), plan.keys)


# --- parallel part -------------------------------------------------------------------------------
_worker_plan: _TagPlan | None = None
_worker_dicts = True


def _init_worker(tags: list[int], values_as_dicts: bool = True) -> None:
    global _worker_plan, _worker_dicts
    _worker_plan = _TagPlan(tags)
    _worker_dicts = values_as_dicts


def _scan_chunk(paths: list[str]) -> list[tuple]:
    """A worker's task. Values go back as dicts for scan_files: pickle writes each key string once
    per chunk (memo), and unpickling a dict is cheaper for the main process, the import's
    bottleneck, than building it there; as lists for scan_rows."""
    plan = _worker_plan
    assert plan is not None, "worker not initialised"
    if not _worker_dicts:
        return [_scan_one(path, plan) for path in paths]
    keys = plan.keys
    results = []
    for path in paths:
        t = _scan_one(path, plan)
        if t[5] is not None:
            t = t[:5] + (dict(zip(keys, t[5])),) + t[6:]
        results.append(t)
    return results


def default_workers() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start_method() -> str:
    """How worker processes start: fork (cheap: nothing to import, the tag plan inherited) from a
    single-threaded caller, a fork server from a caller with threads of its own (GUI, listener);
    $DICOMBROWSER_SCAN_START_METHOD overrides; "spawn" where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    # Forking a process that runs other threads (the GUI, the listener) can copy a lock some
    # other thread holds; a fork server is started clean, at the cost of ~0.3 s once.
    default = "fork" if threading.active_count() == 1 else "forkserver"
    wanted = os.environ.get("DICOMBROWSER_SCAN_START_METHOD", default)
    if wanted in methods:
        return wanted
    logger.warning("Start method %r not available here; using %s", wanted, methods[0])
    return "fork" if "fork" in methods else methods[0]


def _chunks(paths: Iterator[str], size: int) -> Iterator[list[str]]:
    while True:
        chunk = list(itertools.islice(paths, size))
        if not chunk:
            return
        yield chunk


def scan_files(paths: Iterable[str | Path], tags: Iterable[str | int], workers: int | None = None,
               chunk_size: int = CHUNK_FILES) -> Iterator[ScanResult]:
    """Scan files for `tags`, in parallel; results come in input order, never raise per file.

    Non-DICOM files come back with is_dicom False (the caller skips them); broken DICOM files with
    `error` set. `workers=None` uses every core available; 1 runs in this process. Small inputs
    (fewer than two chunks) are always scanned in-process: forking costs more than it saves; so
    is a list whose first PROBE_FILES files say the rest would take under POOL_WORTH_S here.
    `paths` may be a lazy iterator (a folder walk): it is consumed as workers ask for more.
    """
    plan = _TagPlan(tags)
    keys = plan.keys
    tuples = _scan_tuples(paths, plan, workers, chunk_size, True)
    try:
        for t in tuples:
            yield _to_result(t, keys)
    finally:
        tuples.close()  # stops the workers when the caller stops early


def scan_rows(paths: Iterable[str | Path], tags: Iterable[str | int], workers: int | None = None,
              chunk_size: int = CHUNK_FILES) -> tuple[list[str], Iterator[ScanRow]]:
    """As scan_files, but (keys, rows): each row's values is a list in the order of keys
    ("gggg,eeee" of `tags`, sorted), or None for a file that is not DICOM or has an error."""
    plan = _TagPlan(tags)

    def rows() -> Iterator[ScanRow]:
        tuples = _scan_tuples(paths, plan, workers, chunk_size, False)
        try:
            for t in tuples:
                yield ScanRow._make(t)
        finally:
            tuples.close()

    return list(plan.keys), rows()


def _scan_tuples(paths: Iterable[str | Path], plan: _TagPlan, workers: int | None, chunk_size: int,
                 values_as_dicts: bool) -> Iterator[tuple]:
    """The compact result tuples of scan_files (see _to_result), in input order; the pool's
    workers send values as dicts or lists."""
    workers = default_workers() if workers is None else max(1, int(workers))
    total = len(paths) if isinstance(paths, (list, tuple)) else None
    iterator = (os.fspath(p) for p in paths)
    if workers > 1 and total is not None and total >= 2 * chunk_size:
        # a few files in-process tell what the rest would cost here: cheap headers stay in-process
        spent = 0.0
        probed = 0
        for path in itertools.islice(iterator, PROBE_FILES):
            started = time.perf_counter()
            result = _scan_one(path, plan)
            spent += time.perf_counter() - started
            probed += 1
            yield result
        if spent / max(1, probed) * (total - probed) < POOL_WORTH_S:
            workers = 1
    head = list(itertools.islice(iterator, 2 * chunk_size))
    pool = None
    if workers > 1 and len(head) >= 2 * chunk_size:
        if multiprocessing.current_process().daemon:
            logger.info("Scanning in-process: a daemonic process cannot start workers")
        else:
            try:
                context = multiprocessing.get_context(start_method())
                pool = context.Pool(workers, initializer=_init_worker, initargs=(plan.tags, values_as_dicts))
            except OSError as exc:  # e.g. no /dev/shm for the pool's semaphores in a container
                logger.warning("Cannot start %d scan workers (%s); scanning in-process", workers, exc)
    if pool is None:
        for path in itertools.chain(head, iterator):
            yield _scan_one(path, plan)
        return
    try:
        for chunk_results in pool.imap(_scan_chunk, _chunks(itertools.chain(head, iterator), chunk_size)):
            for t in chunk_results:
                yield t
        pool.close()
    finally:
        pool.terminate()
        pool.join()

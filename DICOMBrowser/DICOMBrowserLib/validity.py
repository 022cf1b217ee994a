"""Which of several files claiming one SOP Instance UID is the sound copy.

Why: an import that finds two files with one SOP Instance UID indexes one. A bit flip, a cut or
a few overwritten bytes often leave a file that the header scanner still reads, so "the one
indexed first" (sort order) kept damaged copies over their originals. Here each candidate is
checked against facts that a reader can verify in the file alone, cheaply enough to run on every
duplicate (never on every file: duplicates are rare), and the candidates are ranked by how many
facts fail, then by how many flaws (invalid values, pydicom's warnings) reading them shows.

The facts (`FileValidity.problems` names each one that fails):

1. the whole data set parses with pydicom, every element's value included (not only the header),
   every value lies inside the file and the last one ends where the file ends (pydicom itself
   stops silently at an end of file between elements and reads a cut value as a shorter one);
2. the file meta's Media Storage SOP Instance UID (0002,0003) equals the data set's (0008,0018);
3. group lengths agree with the bytes: (0002,0000) with the file meta group as encoded, and any
   (gggg,0000) of the data set with its group, where the group has no undefined lengths;
4. an image (Rows and Columns present, or an "Image Storage" SOP class) has its Pixel Data, lying inside the file; for native
   (uncompressed) transfer syntaxes of the length Rows x Columns x frames x samples x
   BitsAllocated / 8 (bits rounded up to whole bytes; one padding byte allowed);
5. encapsulated (compressed) Pixel Data splits into as many frames as Number of Frames says, and
   its first frame decodes with pydicom's decoders (when none is installed for the transfer
   syntax, the fact is not counted);
6. the top-level elements are stored in ascending tag order (a flipped bit in a tag breaks it);
7. and, to break ties, the flaws found reading it: values that break their VR's rules (a UI, DS,
   IS, DA, TM, AS or CS value with characters those VRs do not allow; control characters in
   text) and pydicom's warnings. Fewer is better: damage adds flaws, a writer's own sloppiness
   is the same in every copy.

Candidates that tie keep the copy indexed first. A tie between different files is reported as
such: no fact tells which of them is the original.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import warnings
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
# values above this are not read into memory to check the header; pixel data is read only when
# it must be decoded (compressed syntaxes)
_DEFER_SIZE = 1 << 16


@dataclass
class FileValidity:
    """The facts one file fails (`problems`, one reason each) and its flaws (invalid values, warnings)."""

    path: str
    problems: list[str] = field(default_factory=list)
    flaws: list[str] = field(default_factory=list)

    @property
    def rank(self) -> tuple[int, int]:
        """Lower is sounder: failed facts first, then flaws."""
        return len(self.problems), len(self.flaws)

    def describe(self) -> str:
        """The reasons as one phrase, for a report ('passes every check' when there are none)."""
        if not self.problems and not self.flaws:
            return "passes every check"
        parts = list(self.problems)
        if self.flaws:
            parts.append(f"{len(self.flaws)} flaw(s) (first: {self.flaws[0]})")
        return "; ".join(parts)


class _WarningRecorder(logging.Handler):
    """pydicom reports some problems through its logger rather than the warnings module."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_file(path: str) -> FileValidity:
    """Check one file against the facts in the module docstring; never raises for a bad file."""
    import pydicom

    result = FileValidity(path)
    try:
        size = os.path.getsize(path)
    except OSError as error:
        result.problems.append(f"cannot be read: {error.strerror or error}")
        return result
    recorder = _WarningRecorder()
    pydicom_logger = logging.getLogger("pydicom")
    pydicom_logger.addHandler(recorder)
    propagate, pydicom_logger.propagate = pydicom_logger.propagate, False  # findings, not log lines
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                dataset = pydicom.dcmread(path, defer_size=_DEFER_SIZE)
            except Exception as error:  # noqa: BLE001 - any failure to parse is the finding itself
                result.problems.append(f"does not parse: {type(error).__name__}: {error}")
                return result
            raw_positions = _raw_positions(dataset)
            try:
                ascii_only = not dataset.get("SpecificCharacterSet")
                for element in dataset.iterall():  # converts every raw value (pydicom reads lazily)
                    if element.tag not in _PIXEL_TAGS:
                        _check_value(element, result, ascii_only)
            except Exception as error:  # noqa: BLE001
                result.problems.append(f"does not parse to the end: {type(error).__name__}: {error}")
            _check_extent(raw_positions, size, result)
            _check_order(raw_positions, result)
            _check_meta_uid(dataset, result)
            _check_group_lengths(path, raw_positions, [int(t) for t in dataset.keys()], result)
            _check_pixel_data(dataset, raw_positions, size, result)
        result.flaws += [str(w.message) for w in caught] + recorder.messages
    finally:
        pydicom_logger.removeHandler(recorder)
        pydicom_logger.propagate = propagate
    return result


def _raw_positions(dataset) -> dict[int, tuple[int, int]]:
    """tag -> (value offset in the file, value length) of the top-level elements still raw."""
    positions = {}
    for tag in list(dataset.keys()):
        element = dataset.get_item(tag, keep_deferred=True)
        tell = getattr(element, "value_tell", None)
        if tell is not None:
            positions[int(tag)] = (tell, element.length)
    return positions


_VALUE_RULES = {
    "UI": re.compile(r"[0-9]+(\.[0-9]+)*"),
    "DS": re.compile(r" *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)? *"),
    "IS": re.compile(r" *[+-]?[0-9]+ *"),
    "DA": re.compile(r"[0-9]{8}|[0-9]{4}\.[0-9]{2}\.[0-9]{2}"),
    "TM": re.compile(r"[0-9]{2}(:?[0-9]{2}(:?[0-9]{2}(\.[0-9]{1,6})?)?)? *"),
    "AS": re.compile(r"[0-9]{3}[DWMY]"),
    "CS": re.compile(r"[A-Z0-9 _]*"),
}
_TEXT_VRS = {"SH", "LO", "ST", "LT", "UT", "UC", "PN", "AE"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")  # all but TAB LF FF CR ESC


def _check_value(element, result: FileValidity, ascii_only: bool) -> None:
    """A flaw for each value that breaks its VR's character rules (PS3.5 6.2); `ascii_only`: the
    data set names no Specific Character Set, so text is the default repertoire (ASCII)."""
    rule = _VALUE_RULES.get(element.VR)
    if rule is None and element.VR not in _TEXT_VRS:
        return
    value = element.value
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    for item in values:
        text = str(item).rstrip("\0 ") if item is not None else ""
        if not text:
            continue
        if rule is not None and not rule.fullmatch(text):
            result.flaws.append(f"({element.tag.group:04X},{element.tag.element:04X}) {element.VR} value "
                                f"{text[:24]!r} breaks its VR's rules")
        elif rule is None and (_CONTROL.search(text) or (ascii_only and not text.isascii())):
            result.flaws.append(f"({element.tag.group:04X},{element.tag.element:04X}) {element.VR} value "
                                f"{text[:24]!r} holds characters outside its repertoire")


def _check_order(positions: dict[int, tuple[int, int]], result: FileValidity) -> None:
    """Top-level elements in ascending tag order as stored (PS3.5 7.1); pydicom sorts them silently."""
    in_file = [tag for tag, _ in sorted(positions.items(), key=lambda item: item[1][0])]
    for before, after in zip(in_file, in_file[1:]):
        if after <= before:
            result.problems.append(f"element ({after >> 16:04X},{after & 0xFFFF:04X}) follows "
                                   f"({before >> 16:04X},{before & 0xFFFF:04X}): tags out of order")
            return


def _check_extent(positions: dict[int, tuple[int, int]], size: int, result: FileValidity) -> None:
    """Every value lies inside the file and the last one ends where the file ends: pydicom stops
    without a word at an end of file inside an element's header, and reads a value cut short by
    the end of the file as a shorter value, so a truncated file otherwise parses "cleanly"."""
    if not positions:
        return
    beyond = [(tag, tell, length) for tag, (tell, length) in positions.items()
              if length != _UNDEFINED and tell + length > size]
    if beyond:
        tag, tell, length = beyond[0]
        result.problems.append(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) of {length} bytes at offset {tell} runs "
                               f"past the end of the file ({size} bytes)")
        return
    tell, length = positions[max(positions)]
    if length != _UNDEFINED and tell + length != size:
        result.problems.append(f"{size - tell - length} bytes follow the last element, "
                               f"({max(positions) >> 16:04X},{max(positions) & 0xFFFF:04X}), of the data set: "
                               f"cut or shifted")


def _check_meta_uid(dataset, result: FileValidity) -> None:
    meta = getattr(dataset, "file_meta", None)
    meta_uid = str(meta.get("MediaStorageSOPInstanceUID", "") or "") if meta is not None else ""
    try:
        data_set_uid = str(dataset.get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - already reported as a parse problem
        data_set_uid = ""
    if not meta_uid:
        result.problems.append("no file meta SOP Instance UID (0002,0003)")
    elif meta_uid.rstrip("\0 ") != data_set_uid.rstrip("\0 "):
        result.problems.append(f"file meta SOP Instance UID {meta_uid!r} differs from the data set's "
                               f"{data_set_uid!r}")


def _check_group_lengths(path: str, positions: dict[int, tuple[int, int]], all_tags: list[int],
                         result: FileValidity) -> None:
    meta_problem = _meta_group_length_problem(path)
    if meta_problem:
        result.problems.append(meta_problem)
    # data set groups: (gggg,0000) against the span from its end to the end of the group's last element
    ordered = sorted(positions.items())
    for index, (tag, (tell, length)) in enumerate(ordered):
        if tag & 0xFFFF or tag >> 16 == 0x0002 or length != 4:
            continue
        group = tag >> 16
        members = [(t, p) for t, p in ordered[index + 1:] if t >> 16 == group]
        in_group = sum(1 for t in all_tags if t >> 16 == group) - 1
        if not members or len(members) != in_group or any(p[1] == _UNDEFINED for _, p in members):
            continue  # a member already converted (no file position) or of undefined length: not checkable
        try:
            with open(path, "rb") as handle:
                handle.seek(tell)
                stated = handle.read(4)
        except OSError:
            continue
        if len(stated) != 4:
            continue
        stated_length = struct.unpack("<I", stated)[0]
        end = members[-1][1][0] + members[-1][1][1]
        actual = end - (tell + 4)  # every byte after the group length's value, element headers included
        if stated_length != actual:
            result.problems.append(f"group length ({group:04X},0000) says {stated_length} bytes, the group has "
                                   f"{actual}")


def _meta_group_length_problem(path: str) -> str:
    """'' when (0002,0000) equals the length of the file meta elements after it, else the reason.
    File meta is explicit VR little endian (PS3.10 7.1); files without a preamble are not checked."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    if len(head) < 144 or head[128:132] != b"DICM":
        return ""
    offset = 132
    group, element, vr = struct.unpack_from("<HH2s", head, offset)
    if (group, element) != (2, 0) or vr != b"UL":
        return "no file meta group length (0002,0000)"
    stated = struct.unpack_from("<I", head, offset + 8)[0]
    start = offset = offset + 12
    while offset + 8 <= len(head):
        group, element, vr = struct.unpack_from("<HH2s", head, offset)
        if group != 2:
            break
        if vr in _LONG_VRS:
            if offset + 12 > len(head):
                break
            length = struct.unpack_from("<I", head, offset + 8)[0]
            offset += 12 + length
        else:
            length = struct.unpack_from("<H", head, offset + 6)[0]
            offset += 8 + length
    if offset - start != stated:
        return f"file meta group length (0002,0000) says {stated} bytes, the group has {offset - start}"
    return ""


def _expected_native_length(dataset) -> int | None:
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        bits = int(dataset.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (rows * columns * samples * frames * bits + 7) // 8


def _check_pixel_data(dataset, positions: dict[int, tuple[int, int]], size: int, result: FileValidity) -> None:
    if ("Rows" not in dataset or "Columns" not in dataset) and not _image_sop_class(dataset):
        return
    tag = next((t for t in _PIXEL_TAGS if t in positions), None)
    if tag is None:
        if not any(t in dataset for t in _PIXEL_TAGS):
            result.problems.append("an image (Rows, Columns or an image SOP class) without Pixel Data")
        return
    tell, length = positions[tag]
    syntax = str(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2")
    if length == _UNDEFINED:  # encapsulated
        if syntax in _NATIVE_SYNTAXES:
            result.problems.append(f"encapsulated Pixel Data in the native transfer syntax {syntax}")
            return
        _check_encapsulated(dataset, result)
        return
    if tell + length > size:
        result.problems.append(f"Pixel Data of {length} bytes at offset {tell} runs past the end of the file "
                               f"({size} bytes)")
        return
    if syntax in _NATIVE_SYNTAXES:
        expected = _expected_native_length(dataset)
        if expected is None:
            result.problems.append("Rows, Columns or Bits Allocated unreadable: the Pixel Data length cannot "
                                   "be checked")
        elif length not in (expected, expected + 1):
            result.problems.append(f"Pixel Data has {length} bytes; Rows x Columns x frames x samples x bits "
                                   f"says {expected}")
    else:
        result.problems.append(f"Pixel Data not encapsulated in the compressed transfer syntax {syntax}")


def _image_sop_class(dataset) -> bool:
    from pydicom.uid import UID

    try:
        return "Image Storage" in UID(str(dataset.get("SOPClassUID", "") or "")).name
    except Exception:  # noqa: BLE001 - an unreadable class is reported elsewhere
        return False


def _check_encapsulated(dataset, result: FileValidity) -> None:
    """Frames as Number of Frames says, and the first one decodes (when a decoder is installed)."""
    from pydicom.encaps import generate_frames
    from pydicom.pixels import get_decoder

    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        data = dataset.PixelData
        found = sum(1 for _ in generate_frames(data, number_of_frames=frames))
    except Exception as error:  # noqa: BLE001 - malformed items are the finding
        result.problems.append(f"encapsulated Pixel Data is malformed: {type(error).__name__}: {error}")
        return
    if found != frames:
        result.problems.append(f"encapsulated Pixel Data holds {found} frame(s), Number of Frames says {frames}")
        return
    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return
    if not decoder.is_available:
        return
    with contextlib.suppress(MemoryError):
        try:
            decoder.as_array(dataset, index=0)
        except Exception as error:  # noqa: BLE001 - a frame that does not decode is the finding
            result.problems.append(f"the first frame does not decode: {type(error).__name__}: {error}")


def best_copy(paths: list[str]) -> tuple[str, dict[str, FileValidity]]:
    """The sounder of several files claiming one SOP Instance UID, and every candidate's findings.

    `paths[0]` is the copy already indexed: it stays unless another ranks strictly better."""
    checked = {path: check_file(path) for path in paths}
    best = paths[0]
    for path in paths[1:]:
        if checked[path].rank < checked[best].rank:
            best = path
    return best, checked

"""Header of one DICOM file as a pydicom ``Dataset``, read ~3x faster than ``pydicom.dcmread``.

Why: enhanced multi-frame headers (Siemens XA "one file per volume", Philips/Canon/GE enhanced
MR) hold hundreds of nested items, and pydicom's pure-Python element generator is most of the
cost of converting such series. `read_header(path)` returns a data set equal to
``pydicom.dcmread(path, stop_before_pixels=True, force=True)``: the same `FileDataset`,
`file_meta`, `preamble`, `filename`, the same ``RawDataElement`` tuples (converted lazily by
pydicom on access, with the same character sets, VRs, private creators and offsets), the same
`Sequence` items and flags (undefined lengths, implicit-VR items inside explicit sequences,
``seq_item_tell``/``file_tell``), and the original encodings pydicom records.

How: the header bytes are read from the start of the file into one buffer grown as needed (never
the pixel data), and one loop with an explicit stack walks the elements with ``struct``. The
rules are those of pydicom 3.0's ``filereader`` (``read_partial``, ``read_dataset``,
``data_element_generator``, ``read_sequence``); they are restated where they are applied.

One deliberate difference in timing, not in result: a defined-length sequence is kept raw by
dcmread and parsed by pydicom when first accessed; here it is parsed at read time, and put in the
data set through the same steps pydicom's ``Dataset.__getitem__`` takes (``__setitem__``,
``_set_pixel_representation``, parents before children), so what a caller sees is the same.

Anything unusual (big endian, deflate, a command set, a VR pydicom would guess at, undefined
lengths other than sequences, lengths that overrun their item or the file, delimiters out of
place, nesting deeper than `MAX_DEPTH`, non-default pydicom configuration or hooks, a pydicom
other than 3.0) falls back to exactly ``pydicom.dcmread(path, stop_before_pixels=True,
force=True)``, so that errors, warnings and odd results stay pydicom's. Every loop advances
through a buffer bounded by the file size, so corrupt input cannot hang it. See docs/fastheader.md.
"""
from __future__ import annotations

import gc
import logging
import os
import struct
from typing import Any, BinaryIO

import pydicom
import pydicom.hooks
from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import DicomDictionary, _dictionary_vr_fast
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.hooks import hooks
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR as VR_
from pydicom.values import convert_string

logger = logging.getLogger(__name__)

#: deepest nesting of sequences handled here; deeper files go to pydicom
MAX_DEPTH = 32
#: first read; the buffer then doubles until it holds the element being parsed
FIRST_READ = 64 * 1024

_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00009, 0x7FE00008))
_UNDEFINED = 0xFFFFFFFF
_CHARSET = 0x00080005
_ITEM_BYTES = b"\xfe\xff\x00\xe0"

#: the 2-byte VRs pydicom accepts in explicit VR (its ENCODED_VR), as the str it decodes them to
_VRS: dict[bytes, str] = {vr.value.encode(default_encoding): str(vr.value) for vr in VR_ if len(vr.value) == 2}
_LONG_VRS = frozenset(str(vr.value) if isinstance(vr, VR_) else str(vr) for vr in EXPLICIT_VR_LENGTH_32)

_explicit_short = struct.Struct("<HH2sH").unpack_from
_implicit_header = struct.Struct("<HHL").unpack_from
_tag_only = struct.Struct("<HH").unpack_from
_long_length = struct.Struct("<L").unpack_from

#: BaseTag objects reused across files (tags repeat); bounded so corrupt input cannot grow it
_TAG_CACHE: dict[int, BaseTag] = {}
_TAG_CACHE_LIMIT = 1 << 16

#: public tags whose dictionary VR is SQ (implicit VR elements pydicom converts to sequences)
_SQ_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")

_DEFAULT_VR_HOOK = pydicom.hooks.raw_element_vr
_DEFAULT_VALUE_HOOK = pydicom.hooks.raw_element_value


def _dataset_template() -> dict[str, Any] | None:
    """The instance attributes of a new `Dataset`, when they are plain values and containers that
    can be copied per item; None when this pydicom's Dataset needs its own __init__."""
    template = dict(Dataset().__dict__)
    for name, value in template.items():
        if not (value is None or isinstance(value, (str, bool, int, dict, list))):
            return None
    if _has_slots(Dataset):
        return None
    return template


def _has_slots(klass: type) -> bool:
    """True when some class of `klass`'s MRO keeps instance state in slots (not in __dict__)."""
    return any(getattr(base, "__slots__", ()) for base in klass.__mro__)


#: Dataset.__init__ sets ~12 attributes through Dataset.__setattr__, which looks every name up
#: as a possible DICOM keyword: ~10 us an item, a third of the whole read of a Siemens XA header.
#: Items are made from this template instead (the same attributes, fresh containers).
_DATASET_TEMPLATE = _dataset_template()
_DATASET_CONTAINERS = tuple(
    name for name, value in (_DATASET_TEMPLATE or {}).items() if isinstance(value, (dict, list)) and name != "_dict"
)
_USE_FUTURE = config._use_future


def _new_item(elements: dict, parent_encoding: Any, implicit: bool, encoding: Any, undefined: bool,
              tell: int) -> Dataset:
    """A sequence item as read_sequence_item leaves it (the attributes its __init__ and reader set)."""
    if _DATASET_TEMPLATE is None:
        item = Dataset(elements, parent_encoding=parent_encoding)
        item.set_original_encoding(implicit, True, encoding)
        item.is_undefined_length_sequence_item = undefined
        item.seq_item_tell = tell
        item.file_tell = tell
        return item
    item = _new_dataset(Dataset)
    state = item.__dict__
    state.update(_DATASET_TEMPLATE)
    for name in _DATASET_CONTAINERS:
        state[name] = _DATASET_TEMPLATE[name].copy()
    state["_dict"] = elements
    state["_parent_encoding"] = parent_encoding
    state["_read_implicit"] = implicit
    state["_read_little"] = True
    state["_read_charset"] = encoding
    state["is_undefined_length_sequence_item"] = undefined
    state["seq_item_tell"] = tell
    state["file_tell"] = tell
    return item


_new_dataset = Dataset.__new__


def _sequence_state_plain() -> bool:
    """True when a Sequence holds nothing but its list (so items can be given to it unchecked)."""
    sequence = Sequence([Dataset()])
    sequence.is_undefined_length = True
    return set(sequence.__dict__) == {"_list", "is_undefined_length"} and not _has_slots(Sequence)


def _element_state_plain() -> bool:
    """True when a DataElement made from a Sequence holds exactly the attributes set below."""
    element = DataElement(BaseTag(0x00081140), "SQ", Sequence(), 0, is_undefined_length=True)
    return set(element.__dict__) == {
        "tag", "VR", "validation_mode", "_value", "file_tell", "is_undefined_length", "private_creator"
    } and not _has_slots(DataElement)


_PLAIN_SEQUENCE = _sequence_state_plain()
#: RawDataElement(...) without the namedtuple's keyword-argument __new__ (31 % of the walk)
_PLAIN_RAW = RawDataElement._fields == (
    "tag", "VR", "length", "value", "value_tell", "is_implicit_VR", "is_little_endian", "is_raw", "is_buffered"
) and RawDataElement._field_defaults == {"is_raw": True, "is_buffered": False}
_PLAIN_ELEMENT = _element_state_plain()


def _new_sequence(items: list, undefined: bool) -> Sequence:
    """Sequence(items) with its is_undefined_length flag, the items known to be Datasets."""
    if not _PLAIN_SEQUENCE:
        sequence = Sequence(items)
    else:
        sequence = Sequence.__new__(Sequence)
        sequence.__dict__["_list"] = items
    sequence.is_undefined_length = undefined
    return sequence


def _new_sequence_element(tag: BaseTag, vr: str, sequence: Sequence, value_tell: int) -> DataElement:
    """DataElement(tag, vr, sequence, value_tell, is_undefined_length=True), as the reader makes it."""
    if not _PLAIN_ELEMENT:
        return DataElement(tag, vr, sequence, value_tell, is_undefined_length=True)
    element = DataElement.__new__(DataElement)
    element.__dict__.update(
        tag=tag, VR=vr, validation_mode=config.settings.reading_validation_mode, _value=sequence,
        file_tell=value_tell, is_undefined_length=True, private_creator=None,
    )
    return element


class _Unhandled(Exception):
    """The file needs pydicom's own reader; the message says why (logged at debug level)."""


def pydicom_read(path: str | os.PathLike) -> FileDataset:
    """The reference: pydicom's reader with the arguments `read_header` reproduces."""
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def read_header(path: str | os.PathLike) -> FileDataset:
    """The file's header without pixel data, equal to `pydicom_read(path)` (see the module doc)."""
    dataset = read_header_or_none(path)
    return pydicom_read(path) if dataset is None else dataset


def read_header_or_none(path: str | os.PathLike) -> FileDataset | None:
    """The fast reader alone: the header, or None when the file needs pydicom (reason logged)."""
    reason = _unsupported_configuration()
    if reason:
        logger.debug("%s: pydicom reads it: %s", path, reason)
        return None
    # The read makes ~10 objects an element, none of them garbage: the cyclic collector would
    # walk them again and again (a 3000-frame header: 1.0-1.5 s with it, 0.4 s without).
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        with open(os.fspath(path), "rb") as file:
            return _Reader(file).read()
    except _Unhandled as why:
        logger.debug("%s: pydicom reads it: %s", path, why)
    except Exception as error:  # noqa: BLE001 - anything odd is pydicom's to read and to report
        logger.debug("%s: pydicom reads it: %s: %s", path, type(error).__name__, error)
    finally:
        if collecting:
            gc.enable()
    return None


def _unsupported_configuration() -> str:
    """Why pydicom's own reader must run in this process, or '' when this one matches it."""
    if not pydicom.__version__.startswith("3.0."):
        return f"written against pydicom 3.0, found {pydicom.__version__}"
    if (
        config.debugging
        or not config.assume_implicit_vr_switch
        or not config.settings.infer_sq_for_un_vr
        or not config.replace_un_with_known_vr
        or config.data_element_callback is not None
    ):
        return "non-default pydicom reading configuration"
    if config._use_future != _USE_FUTURE:
        return "pydicom's future API switched on after import"
    if hooks.raw_element_vr is not _DEFAULT_VR_HOOK or hooks.raw_element_value is not _DEFAULT_VALUE_HOOK:
        return "pydicom conversion hooks replaced"
    if hooks.raw_element_kwargs:
        return "pydicom conversion hooks with arguments"
    return ""


def _tag(value: int) -> BaseTag:
    tag = _TAG_CACHE.get(value)
    if tag is None:
        tag = BaseTag(value)
        if len(_TAG_CACHE) < _TAG_CACHE_LIMIT:
            _TAG_CACHE[value] = tag
    return tag


def _dataset_encoding(elements: dict, parent_encoding: Any) -> Any:
    """The encoding read_dataset records: its own Specific Character Set, else the parent's."""
    raw = elements.get(_CHARSET)
    if raw is None:
        return parent_encoding
    return convert_encodings(convert_raw_data_element(raw).value)


class _Reader:
    """One file: a buffer from its start, grown on demand, and the walk over it."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.buf = file.read(min(self.size, FIRST_READ))
        if len(self.buf) != min(self.size, FIRST_READ):
            raise _Unhandled("file changed while read")
        #: (dataset, [(raw element, value start, value end)]) of defined-length sequences to parse
        self.pending: list[tuple[Dataset, list]] = []

    def grow(self, needed: int) -> bytes:
        """The buffer extended to at least `needed` bytes (the caller checked the file size)."""
        have = len(self.buf)
        target = min(self.size, max(needed, 2 * have))
        more = self.file.read(target - have)
        if len(more) != target - have:
            raise _Unhandled("file changed while read")
        self.buf += more
        return self.buf

    # -- file meta, transfer syntax -------------------------------------------------------------

    def read(self) -> FileDataset:
        size = self.size
        buf = self.buf if len(self.buf) >= min(size, 144) else self.grow(144)
        # read_preamble(force=True): 'DICM' at 128, else no preamble and the data set at 0
        if size >= 132 and buf[128:132] == b"DICM":
            preamble, pos = buf[:128], 132
        else:
            preamble, pos = None, 0
        file_meta, pos = self.read_file_meta(pos)
        buf = self.buf if pos + 16 <= len(self.buf) else self.grow(pos + 16)
        if size - pos < 8:
            raise _Unhandled("nothing or a fragment after the file meta")
        if _tag_only(buf, pos)[0] == 0:
            raise _Unhandled("command set elements")

        implicit = True
        transfer_syntax = file_meta.get("TransferSyntaxUID")
        if transfer_syntax is None:
            # read_partial's guess: a known VR after the first tag means explicit VR
            from pydicom.values import converters

            group, _, vr = struct.unpack_from("<HH2s", buf, pos)
            if vr.decode(default_encoding) in converters.keys():
                implicit = False
                if group >= 1024:
                    raise _Unhandled("big endian without a transfer syntax")
        elif transfer_syntax == pydicom.uid.ImplicitVRLittleEndian:
            pass
        elif transfer_syntax == pydicom.uid.ExplicitVRLittleEndian:
            implicit = False
        elif transfer_syntax == pydicom.uid.ExplicitVRBigEndian:
            raise _Unhandled("explicit VR big endian")
        elif transfer_syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
            raise _Unhandled("deflated")
        elif transfer_syntax in pydicom.uid.PrivateTransferSyntaxes:
            raise _Unhandled("private transfer syntax")
        else:
            implicit = False  # every other (encapsulated) syntax is explicit VR little endian

        # read_dataset's check of the first element: a VR where none is expected, or the reverse
        vr0, vr1 = buf[pos + 4], buf[pos + 5]
        if (not (0x40 < vr0 < 0x5B and 0x40 < vr1 < 0x5B)) != implicit:
            raise _Unhandled("VR encoding of the first element differs from the transfer syntax")

        elements = self.walk(pos, size, 0, implicit, top_level=True)
        dataset = Dataset(elements, parent_encoding=default_encoding)
        dataset.set_original_encoding(implicit, True, _dataset_encoding(elements, default_encoding))
        result = FileDataset(self.file, dataset, preamble, file_meta, implicit, True)
        result.set_original_encoding(implicit, True, dataset._character_set)
        self.top = result
        self.expand_pending()
        return result

    def read_file_meta(self, start: int) -> tuple[FileMetaDataset, int]:
        """Group 0002 in explicit VR little endian, as pydicom's _read_file_meta_info."""
        buf, size = self.buf, self.size
        elements: dict[BaseTag, RawDataElement] = {}
        pos = start
        if size - pos >= 6 and not (0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B):
            # no VR where the file meta has one: pydicom reads no file meta unless group 0002 follows
            if _tag_only(buf, pos)[0] == 2:
                raise _Unhandled("implicit VR file meta")
        else:
            while size - pos >= 8:
                if pos + 12 > len(buf):
                    buf = self.grow(pos + 12)
                group, element, vr_bytes, length = _explicit_short(buf, pos)
                vr = _VRS.get(vr_bytes)
                if group != 2:
                    if vr is not None and vr in _LONG_VRS and size - pos < 12:
                        raise _Unhandled("truncated element after the file meta")
                    break
                if vr is None:
                    raise _Unhandled("unknown VR in the file meta")
                if vr in _LONG_VRS:
                    if size - pos < 12:
                        raise _Unhandled("truncated file meta")
                    length = _long_length(buf, pos + 8)[0]
                    value_start = pos + 12
                else:
                    value_start = pos + 8
                if length == _UNDEFINED:
                    raise _Unhandled("undefined length in the file meta")
                value_end = value_start + length
                if value_end > size:
                    raise _Unhandled("truncated file meta")
                if value_end > len(buf):
                    buf = self.grow(value_end)
                tag = _tag(group << 16 | element)
                value = buf[value_start:value_end] if length else empty_value_for_VR(vr, raw=True)
                elements[tag] = RawDataElement(tag, vr, length, value, value_start, False, True)
                pos = value_end
        meta_dataset = Dataset(elements, parent_encoding=default_encoding)
        meta_dataset.set_original_encoding(False, True, _dataset_encoding(elements, default_encoding))
        file_meta = FileMetaDataset(meta_dataset)
        file_meta.set_original_encoding(False, True, default_encoding)
        if not file_meta._dict:
            return file_meta, pos
        try:
            # pydicom's check; listing the elements converts those with no value (get_item)
            file_meta[list(file_meta.elements())[0].tag]
        except NotImplementedError as error:
            raise _Unhandled(f"file meta to be re-read as implicit VR: {error}") from error
        if "FileMetaInformationGroupLength" in file_meta:
            actual = pos - (start + 12)
            declared = file_meta.FileMetaInformationGroupLength
            if declared != actual:
                config.logger.info(
                    "_read_file_meta_info: (0002,0000) 'File Meta Information Group Length' value doesn't "
                    f"match the actual File Meta Information length ({declared} vs {actual} bytes)"
                )
        return file_meta, pos

    # -- the walk ---------------------------------------------------------------------------------

    def walk(self, start: int, limit: int, base: int, implicit: bool, *, top_level: bool = False,
             sequence_encoding: Any = None, sequence_offset: int = 0) -> Any:
        """Parse [start, limit): the top-level data set (stops at pixel data, returns its element
        dict) or, for a defined-length sequence converted like pydicom's convert_SQ, the
        sequence's items (returns the `Sequence`). Positions recorded are relative to `base`.

        The stack holds one list per open data set or sequence:
        data set: [True, elements, end or -1, implicit, encoding, parent encoding, pending,
                   undefined, item tell]
        sequence: [False, items, end or -1, implicit, encoding, tag, value tell, VR, offset]
        """
        buf = self.buf
        buflen = len(buf)
        size = self.size
        vrs = _VRS
        long_vrs = _LONG_VRS
        tags = _TAG_CACHE
        make_tag = _tag
        Raw = RawDataElement
        explicit_short = _explicit_short
        implicit_header = _implicit_header
        long_length = _long_length
        item_bytes = _ITEM_BYTES
        plain_raw = _PLAIN_RAW
        new_tuple = tuple.__new__

        if top_level:
            root: list = [True, {}, -1, implicit, default_encoding, default_encoding, [], False, 0]
        else:
            root = [False, [], limit, implicit, sequence_encoding, None, 0, None, sequence_offset]
        stack = [root]
        pos = start

        while True:
            context = stack[-1]
            if context[0]:
                # ---- a data set: its elements, until it ends or a sequence opens
                elements = context[1]
                end = context[2]
                ds_implicit = context[3]
                encoding = context[4]
                pending = context[6]
                at_top = top_level and len(stack) == 1
                while True:
                    if end >= 0 and pos >= end:
                        if pos != end:
                            raise _Unhandled("element runs past the end of its item")
                        self.finish_item(stack)
                        break
                    if pos + 8 > limit:
                        if at_top:
                            # pydicom stops quietly at the end of the file (0-7 bytes left)
                            self.finish_top(root)
                            return elements
                        raise _Unhandled("file ends inside a sequence")
                    if pos + 12 > buflen and buflen < size:
                        buf = self.grow(pos + 12)
                        buflen = len(buf)
                    if ds_implicit:
                        group, element, length = implicit_header(buf, pos)
                        vr = None
                        value_start = pos + 8
                    else:
                        group, element, vr_bytes, length = explicit_short(buf, pos)
                        vr = vrs.get(vr_bytes)
                        if vr in long_vrs:
                            if pos + 12 > limit:
                                raise _Unhandled("file ends in an element header")
                            length = long_length(buf, pos + 8)[0]
                            value_start = pos + 12
                        else:
                            value_start = pos + 8
                    if group == 0xFFFE:
                        if element == 0xE00D and end < 0 and len(stack) > 1:
                            pos += 8
                            self.finish_item(stack)
                            break
                        raise _Unhandled(f"delimiter (FFFE,{element:04X}) out of place")
                    tag_value = group << 16 | element
                    if at_top and tag_value in _PIXEL_TAGS:
                        self.finish_top(root)
                        return elements
                    if vr is None and not ds_implicit:
                        raise _Unhandled(f"unknown VR {vr_bytes!r} in ({group:04X},{element:04X})")
                    tag = tags.get(tag_value) or make_tag(tag_value)
                    if length != 0xFFFFFFFF:
                        value_end = value_start + length
                        if value_end > limit:
                            raise _Unhandled(f"({group:04X},{element:04X}) runs past the end of the data")
                        if value_end > buflen:
                            buf = self.grow(value_end)
                            buflen = len(buf)
                        if length:
                            value = buf[value_start:value_end]
                        else:
                            value = empty_value_for_VR(vr, raw=True)
                        if plain_raw:
                            raw = new_tuple(Raw, (tag, vr, length, value, value_start - base, ds_implicit, True,
                                                  True, False))
                        else:
                            raw = Raw(tag, vr, length, value, value_start - base, ds_implicit, True)
                        elements[tag] = raw
                        if tag_value == 0x00080005:
                            encoding = context[4] = convert_encodings(convert_string(value or b"", True))
                        elif (vr is None or vr == "SQ" or vr == "UN") and length >= 8 and buf.startswith(
                            item_bytes, value_start
                        ):
                            # kept raw by dcmread; parsed after the data set (expand_pending)
                            pending.append((raw, value_start, value_end))
                        pos = value_end
                        continue
                    # undefined length: a sequence, as data_element_generator decides it
                    if vr == "UN":
                        vr = VR_.SQ
                    elif vr is None:
                        try:
                            vr = _dictionary_vr_fast(tag_value)
                        except KeyError:
                            if value_start + 4 > limit:
                                raise _Unhandled("file ends after an undefined length") from None
                            if value_start + 4 > buflen:
                                buf = self.grow(value_start + 4)
                                buflen = len(buf)
                            if buf.startswith(item_bytes, value_start):
                                vr = VR_.SQ
                    if vr != "SQ":
                        raise _Unhandled(f"undefined length ({group:04X},{element:04X}) {vr} is not a sequence")
                    if len(stack) >= 2 * MAX_DEPTH:
                        raise _Unhandled("nesting deeper than MAX_DEPTH")
                    stack.append([False, [], -1, ds_implicit, encoding, tag, value_start - base, vr, 0])
                    pos = value_start
                    break
                continue

            # ---- a sequence: the next item
            end = context[2]
            if end >= 0 and pos >= end:
                if pos != end or len(stack) != 1:
                    raise _Unhandled("item runs past the end of its sequence")
                return _new_sequence(context[1], False)
            if pos + 8 > limit:
                raise _Unhandled("file ends inside a sequence")
            if pos + 14 > buflen and buflen < size:
                buf = self.grow(pos + 14)
                buflen = len(buf)
            group, element, length = implicit_header(buf, pos)
            if group != 0xFFFE:
                raise _Unhandled(f"({group:04X},{element:04X}) where an item was expected")
            if element == 0xE0DD:
                if end >= 0:
                    raise _Unhandled("sequence delimiter in a defined-length sequence")
                pos += 8
                stack.pop()
                stack[-1][1][context[5]] = _new_sequence_element(
                    context[5], context[7], _new_sequence(context[1], True), context[6]
                )
                continue
            if element != 0xE000:
                raise _Unhandled(f"(FFFE,{element:04X}) where an item was expected")
            item_tell = pos - base + context[8]
            pos += 8
            item_implicit = context[3]
            if not item_implicit and pos + 6 <= limit:
                # read_dataset's check for items: implicit VR inside an explicit sequence is allowed
                item_implicit = not (0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B)
            if length == 0xFFFFFFFF:
                item_end = -1
            else:
                item_end = pos + length
                if item_end > limit or (end >= 0 and item_end > end):
                    raise _Unhandled("item runs past the end of its sequence")
            if len(stack) >= 2 * MAX_DEPTH:
                raise _Unhandled("nesting deeper than MAX_DEPTH")
            encoding = context[4]
            stack.append([True, {}, item_end, item_implicit, encoding, encoding, [],
                          length == 0xFFFFFFFF, item_tell])

    def finish_top(self, root: list) -> None:
        if root[6]:
            self.pending.append((None, root[6]))

    def finish_item(self, stack: list) -> None:
        """Close the data set on top of `stack` as read_sequence_item does; add it to its sequence."""
        context = stack.pop()
        elements = context[1]
        parent_encoding = context[5]
        encoding = parent_encoding if _CHARSET not in elements else _dataset_encoding(elements, parent_encoding)
        item = _new_item(elements, parent_encoding, context[3], encoding, context[7], context[8])
        stack[-1][1].append(item)
        if context[6]:
            self.pending.append((item, context[6]))

    def expand_pending(self) -> None:
        """Parse the defined-length sequences kept raw, parents before children, and put each
        in its data set as pydicom's Dataset.__getitem__ does on first access."""
        index = 0
        pending = self.pending
        while index < len(pending):
            dataset, candidates = pending[index]
            index += 1
            if dataset is None:
                dataset = self.top
            for raw, value_start, value_end in candidates:
                vr = _sequence_vr(raw, dataset)
                if vr is None:
                    continue
                encoding = dataset.original_character_set or dataset._character_set
                encodings = encoding or [default_encoding]
                if isinstance(encodings, str):
                    encodings = [encodings]
                sequence = self.walk(value_start, value_end, value_start, raw.is_implicit_VR,
                                     sequence_encoding=encodings, sequence_offset=raw.value_tell)
                element = DataElement(raw.tag, vr, sequence, raw.value_tell, False, already_converted=True)
                dataset[raw.tag] = element
                dataset._set_pixel_representation(dataset[raw.tag])


def _sequence_vr(raw: RawDataElement, dataset: Dataset) -> str | None:
    """The VR pydicom's raw_element_vr hook gives `raw` when it is 'SQ', else None (left raw)."""
    if raw.VR == "SQ":
        return raw.VR
    if raw.VR is None and not raw.tag.is_private and raw.tag not in _SQ_TAGS:
        return None  # not a sequence, and the hook would warn about tags it does not know
    data: dict[str, Any] = {}
    hooks.raw_element_vr(raw, data, ds=dataset)
    return data["VR"] if data["VR"] == "SQ" else None

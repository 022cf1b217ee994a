"""Siemens CSA headers (0029,xx10 image, 0029,xx20 series): our own reader of the SV10 ("CSA2")
layout, plus the ASCCONV text block of the series header's MrPhoenixProtocol.

The older CSA1 layout (no "SV10" signature) is delegated to nibabel.nicom.csareader.
"""
from __future__ import annotations

import functools
import logging
import re
import struct
from typing import Any

import pydicom

from ..errors import DICOMFileError

logger = logging.getLogger(__name__)

_FLOAT_VRS = {"FD", "FL", "DS"}
_INT_VRS = {"IS", "SL", "SS", "UL", "US"}


def parse_csa(data: bytes, source: str = "<bytes>") -> dict[str, list[Any]]:
    """CSA header bytes -> {tag name: list of values} (floats/ints converted by VR, strings kept)."""
    if not data:
        return {}
    if data[:4] != b"SV10":
        return _parse_csa1(data, source)
    try:
        n_tags, _unused = struct.unpack_from("<2I", data, 8)
        if not 0 < n_tags <= 1000:
            raise DICOMFileError(source, f"CSA header claims {n_tags} tags")
        offset = 16
        result: dict[str, list[Any]] = {}
        for _ in range(n_tags):
            name = data[offset:offset + 64].split(b"\0", 1)[0].decode("latin-1")
            _vm, vr, _syngodt, n_items, _xx = struct.unpack_from("<i4s3i", data, offset + 64)
            vr = vr.split(b"\0", 1)[0].decode("latin-1")
            offset += 84
            values: list[Any] = []
            for _item in range(n_items):
                item_len = struct.unpack_from("<4i", data, offset)[1]
                offset += 16
                raw = data[offset:offset + item_len]
                offset += (item_len + 3) // 4 * 4
                text = raw.split(b"\0", 1)[0].decode("latin-1").strip()
                if not text:
                    continue
                values.append(_convert(text, vr))
            result[name] = values
        return result
    except struct.error as error:
        raise DICOMFileError(source, f"truncated CSA header: {error}") from error


def _convert(text: str, vr: str) -> Any:
    try:
        if vr in _FLOAT_VRS:
            return float(text)
        if vr in _INT_VRS:
            return int(float(text))
    except ValueError:
        pass
    return text


def _parse_csa1(data: bytes, source: str) -> dict[str, list[Any]]:
    """The pre-VB13 layout: nibabel's reader handles its item-length quirk."""
    from nibabel.nicom import csareader

    try:
        header = csareader.read(data)
    except csareader.CSAReadError as error:
        raise DICOMFileError(source, f"unreadable CSA header: {error}") from error
    return {name: [v for v in tag["items"] if v != ""] for name, tag in header["tags"].items()}


def _private_block(ds: pydicom.Dataset, element: int) -> bytes | None:
    """Bytes of (0029,xxEE) of the SIEMENS CSA HEADER creator (or 0029,10EE without a creator)."""
    for group_element in range(0x10, 0x100):
        creator = ds.get((0x0029, group_element))
        if creator is None:
            continue
        if isinstance(creator.value, str) and "SIEMENS CSA HEADER" in creator.value.upper():
            value = ds.get((0x0029, (group_element << 8) | element))
            return bytes(value.value) if value is not None and value.value else None
    value = ds.get((0x0029, 0x1000 | element))
    return bytes(value.value) if value is not None and isinstance(value.value, bytes) and value.value else None


def image_header(ds: pydicom.Dataset, source: str = "") -> dict[str, list[Any]]:
    """The CSA image header (0029,xx10) as a dict; {} when absent."""
    data = _private_block(ds, 0x10)
    return _parsed_csa(bytes(data), source) if data else {}


def series_header(ds: pydicom.Dataset, source: str = "") -> dict[str, list[Any]]:
    """The CSA series header (0029,xx20) as a dict; {} when absent."""
    data = _private_block(ds, 0x20)
    return _parsed_csa(bytes(data), source) if data else {}


#: parsed CSA headers by content: a series' files share their series header, and one examination
#: parses each file's image header in several places (mosaic layout, diffusion encoding). Callers
#: only read the dicts.
_CSA_CACHE: "dict[bytes, dict[str, list[Any]]]" = {}


def _parsed_csa(data: bytes, source: str) -> dict[str, list[Any]]:
    found = _CSA_CACHE.get(data)
    if found is None:
        found = parse_csa(data, source)
        if len(_CSA_CACHE) >= 512:
            _CSA_CACHE.clear()
        _CSA_CACHE[data] = found
    return found


_ASCCONV = re.compile(rb"### ASCCONV BEGIN[^\n]*\n(.*?)### ASCCONV END", re.S)


def ascconv(ds: pydicom.Dataset, source: str = "") -> dict[str, str]:
    """The MrPhoenixProtocol ASCCONV block ("key = value" lines) as raw strings; {} when absent."""
    data = _private_block(ds, 0x20)
    if not data:
        return {}
    return _parsed_ascconv(bytes(data))


@functools.lru_cache(maxsize=64)  # one protocol per series: every file of it carries the same block
def _parsed_ascconv(data: bytes) -> dict[str, str]:
    match = _ASCCONV.search(data)
    if match is None:
        return {}
    result: dict[str, str] = {}
    for line in match.group(1).decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.split("#", 1)[0].strip().strip('"')
    return result


def first(header: dict[str, list[Any]], name: str, default: Any = None) -> Any:
    values = header.get(name) or []
    return values[0] if values else default

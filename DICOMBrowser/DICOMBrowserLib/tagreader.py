"""Reading tag values as strings, the way CTK's tag cache stores them.

One formatting rule for everyone (database tag cache, plugins, CLI): multi-valued elements are
joined with a backslash, person names are their DICOM string form, absent elements are ''.
"""
from __future__ import annotations

import functools
from typing import Any

import pydicom
from pydicom.dataelem import DataElement
from pydicom.tag import Tag


def parse_tag(tag: str | int) -> int:
    """'0020,000d', '0020000D', '(0020,000D)' or a keyword such as 'SeriesInstanceUID' -> int tag."""
    if isinstance(tag, int):
        return tag
    text = tag.strip().strip("()")
    if "," in text:
        group, element = text.split(",")
        return (int(group, 16) << 16) | int(element, 16)
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return int(text, 16)
    return int(Tag(text))


@functools.lru_cache(maxsize=8192)
def tag_string(tag: str | int) -> str:
    """The canonical cache key of a tag: 'gggg,eeee' in lower case (cached: plugins ask for the
    same few tags once per file, tens of thousands of times in a batch conversion)."""
    value = parse_tag(tag)
    return f"{value >> 16:04x},{value & 0xFFFF:04x}"


def format_value(element: DataElement | None) -> str:
    if element is None or element.value is None:
        return ""
    value: Any = element.value
    if element.VR == "SQ":
        return ""  # sequences are not cached as strings
    if isinstance(value, bytes):
        return ""  # binary values are not cached as strings
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


@functools.lru_cache(maxsize=4096)
def _header(path: str) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def file_value(path: str, tag: str | int) -> str:
    """Value of one tag of a file without a database (cached per process)."""
    return format_value(_header(str(path)).get(parse_tag(tag)))

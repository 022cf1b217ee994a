"""The study an export goes into: its patient and study modules, frames of reference, series numbers.

Which attributes belong to the Patient and Study information entities is read from the
standard's module tables as highdicom ships them (`highdicom._standard`, generated from PS3.3),
not from a list of our own, so an export copies exactly what PS3.3 puts at those levels.
"""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from ..errors import ExportError, NotFoundError

logger = logging.getLogger(__name__)

#: the IOD (highdicom's key) whose Patient and Study modules are copied: CT's list is the same
#: as every image IOD's (patient, clinical trial subject, general study, patient study, clinical trial study)
_REFERENCE_IOD = "ct-image"


@lru_cache(maxsize=1)
def _patient_study_attributes() -> tuple[tuple[str, str, str], ...]:
    """(keyword, type, module usage) of the top-level attributes of the Patient and Study IE
    modules of an image IOD (PS3.3, via highdicom)."""
    from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map

    modules = get_module_attribute_map()
    attributes: dict[str, tuple[str, str, str]] = {}
    for entry in get_iod_module_map()[_REFERENCE_IOD]:
        if entry["ie"] not in ("Patient", "Study"):
            continue
        for attribute in modules[entry["key"]]:
            if not attribute["path"] and attribute["keyword"] not in attributes:
                attributes[attribute["keyword"]] = (attribute["keyword"], attribute["type"], entry["usage"])
    return tuple(attributes.values())


def patient_study_keywords() -> tuple[str, ...]:
    """Top-level keywords of the Patient and Study IE modules of an image IOD (PS3.3, via highdicom)."""
    return tuple(keyword for keyword, _, _ in _patient_study_attributes())


@dataclass
class StudyContext:
    """What an export takes from the study it writes into."""

    study_uid: str
    header: Dataset  # patient and study attributes (+ SpecificCharacterSet) copied into every new object
    frames_of_reference: list[str] = field(default_factory=list)
    series_numbers: list[int] = field(default_factory=list)
    series_files: dict[str, list[str]] = field(default_factory=dict)  # series UID -> files (for references)
    reference: Dataset | None = None  # the header it was read from (series-level defaults such as PatientPosition)

    def next_series_number(self) -> int:
        """One past the highest series number of the study (1000 + n is what scanners leave free)."""
        return max(self.series_numbers, default=0) + 1

    @property
    def patient_id(self) -> str:
        return str(self.header.get("PatientID", ""))


def study_context(database: Any, study_uid: str) -> StudyContext:
    """Read the study's identity from the database (one header per series; no pixel data)."""
    level = database.level_of(study_uid)
    if level != "study":
        where = f"a {level} UID" if level else "not in the database"
        raise NotFoundError(f"--study {study_uid} is {where} ({database.folder}); give a StudyInstanceUID")
    series_rows = database.series(study_uid)
    series_files = {row["SeriesInstanceUID"]: database.files_for_series(row["SeriesInstanceUID"])
                    for row in series_rows}
    first_files = [files[0] for files in series_files.values() if files]
    if not first_files:
        raise ExportError(f"study {study_uid} has no files in the database to copy its patient and study from")
    try:
        source = pydicom.dcmread(first_files[0], stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        raise ExportError(f"{first_files[0]}: cannot read the study's header: {error}") from error
    header = header_from(source)
    frames: list[str] = []
    for path, values in database.file_values(first_files, ["0020,0052"]).items():
        uid = values.get("0020,0052", "")
        if uid and uid not in frames:
            frames.append(uid)
    numbers = []
    for row in series_rows:
        try:
            numbers.append(int(str(row.get("SeriesNumber") or "").strip()))
        except ValueError:
            pass
    return StudyContext(study_uid, header, frames, numbers, series_files, source)


def header_from(source: Dataset) -> Dataset:
    """The patient and study attributes of `source` (plus its character set), as a new data set."""
    from pydicom.valuerep import validate_value

    header = Dataset()
    if "SpecificCharacterSet" in source:
        header.SpecificCharacterSet = source.SpecificCharacterSet
    for keyword, attribute_type, usage in _patient_study_attributes():
        if keyword in source:
            element = source[keyword]
            if element.VR != "SQ" and not _valid(element, validate_value):
                # a value the source got wrong (e.g. PatientAge "0Y"): not copied into a new object
                logger.warning("study %s: %s %r is not a valid %s; left %s in the export",
                               source.get("StudyInstanceUID", "?"), keyword, element.value, element.VR,
                               "empty" if attribute_type == "2" else "out")
                if attribute_type == "2":
                    header[keyword] = pydicom.DataElement(element.tag, element.VR, "")
                continue
            header.add(element)
        elif attribute_type == "2" and usage == "M":  # type 2 of a mandatory module: present, maybe empty
            from pydicom.datadict import dictionary_VR, tag_for_keyword

            header[keyword] = pydicom.DataElement(tag_for_keyword(keyword), dictionary_VR(keyword), "")
    if "StudyInstanceUID" not in header:
        raise ExportError("the study's header has no StudyInstanceUID")
    return header


def _valid(element: Any, validate_value: Any) -> bool:
    values = element.value if isinstance(element.value, (list, pydicom.multival.MultiValue)) else [element.value]
    try:
        for value in values:
            validate_value(element.VR, value, pydicom.config.RAISE)
    except ValueError:
        return False
    return True


def now_date_time() -> tuple[str, str]:
    """(DA, TM) of this moment, for content, series and instance creation dates."""
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")[:13]

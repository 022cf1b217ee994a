"""The PS3.15 Annex E profile and the options we implement, by name and code (DCM, CID 7050).

Apart from `deidentify` so that the command line and the export dialog can list the options
without importing pydicom (most commands never de-identify, and that import is most of the CLI's
start-up time).
"""
from __future__ import annotations

#: option name -> code value (DCM, CID 7050) of the options we implement
PROFILE_OPTIONS = {
    "dates": "113107",  # Retain Longitudinal Temporal Information with Modified Dates
    "full-dates": "113106",  # Retain Longitudinal Temporal Information with Full Dates
    "patient-characteristics": "113108",
    "device-identity": "113109",
    "institution-identity": "113112",
    "uids": "113110",
    "descriptors": "113105",  # Clean Descriptors
}
#: option name -> its column of PS3.15 Table E.1-1 (deidtable.COLUMNS)
OPTION_COLUMNS = {
    "dates": "retain_longitudinal_modified_dates",
    "full-dates": "retain_longitudinal_full_dates",
    "patient-characteristics": "retain_patient_characteristics",
    "device-identity": "retain_device_identity",
    "institution-identity": "retain_institution_identity",
    "uids": "retain_uids",
    "descriptors": "clean_descriptors",
}
#: option name -> what the export dialog shows (the standard's option names, shortened)
OPTION_LABELS = {
    "dates": "Retain dates, shifted",
    "full-dates": "Retain full dates",
    "patient-characteristics": "Retain patient characteristics",
    "device-identity": "Retain device identity",
    "institution-identity": "Retain institution identity",
    "uids": "Retain UIDs",
    "descriptors": "Clean descriptors (kept, identifying values blanked)",
}
#: options that cannot be combined (the two ways of retaining dates)
EXCLUSIVE_OPTIONS = ({"dates", "full-dates"},)
#: Basic Application Level Confidentiality Profile
BASIC_PROFILE_CODE = "113100"

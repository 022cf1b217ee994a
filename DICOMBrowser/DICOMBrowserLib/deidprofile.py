"""The PS3.15 Annex E profile and the options we implement, by name and code (DCM, CID 7050).

Apart from `deidentify` so that the command line and the export dialog can list the options
without importing pydicom (most commands never de-identify, and that import is most of the CLI's
start-up time).
"""
from __future__ import annotations

#: option name -> code value (DCM, CID 7050) of the options we implement
PROFILE_OPTIONS = {
    "dates": "113107",
    "patient-characteristics": "113108",
    "device-identity": "113109",
    "descriptors": "113105",
}
#: Basic Application Level Confidentiality Profile
BASIC_PROFILE_CODE = "113100"

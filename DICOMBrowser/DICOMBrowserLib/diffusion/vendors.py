"""Diffusion b-value and gradient direction of one image (or one frame), for every vendor.

Every gradient returned here is a unit vector in the DICOM patient frame (LPS), whatever frame
the vendor stored it in. Sources, in order of trust:

1. Standard tags: Diffusion b-value (0018,9087), Diffusion Gradient Orientation (0018,9089, at
   top level or inside 0018,9076), Diffusion Directionality (0018,9075); also inside the MR
   Diffusion Sequence (0018,9117) at top level, per frame, or shared (5200,9229): how enhanced
   multi-frame, Canon/Toshiba and Hitachi store them. Vectors are in the patient frame (LPS).
2. Siemens: CSA image header B_value / DiffusionGradientDirection (LPS), else the "SIEMENS MR
   HEADER" private tags (0019,xx0c) b-value and (0019,xx0e) direction (LPS).
3. GE: b-value = first value of (0043,1039) modulo 100000 (GE adds 1e9 as a flag in some
   releases); direction in (0019,10bb/bc/bd) along the logical axes (frequency, phase, slice),
   converted with the in-plane phase encoding direction (0018,1312): see `ge_gradient_lps`.
4. Philips: (2001,1003) b-value, (2005,10b0/b1/b2) direction (LPS); (2001,1004) 'I' marks the
   isotropic (trace) image. Volume order from (2005,1596), else (2005,1412)/(2005,1413).
5. UIH ("Image Private Header" block of group 0065): (0065,1009) actual b-value, (0065,100a) the
   b-value the user chose, (0065,1037) direction along the image axes (row, column, row x
   column), not the patient's: see `uih_gradient_lps`.

Derived images (trace, ADC, isotropic, FA, exponential ADC) are flagged `derived`, never loaded
as diffusion volumes.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom

from . import csa

logger = logging.getLogger(__name__)

DERIVED_IMAGE_TYPES = {"ADC", "TRACEW", "TRACE", "ISOTROPIC", "FA", "EADC", "EXP", "CALC_BVALUE", "COLFA",
                       "DIFFUSION_ISOTROPIC", "ISO"}
#: tags the examine step reads (declared by the plugin so the indexer caches them)
EXAMINE_TAGS = {
    "0008,0008": "ImageType",
    "0008,0016": "SOPClassUID",
    "0008,0060": "Modality",
    "0008,0070": "Manufacturer",
    "0018,9087": "DiffusionBValue",
    "0018,9075": "DiffusionDirectionality",
    "0019,100c": "SiemensBValue",
    "0043,1039": "GEBValue",
    "2001,1003": "PhilipsBValue",
    "0028,0008": "NumberOfFrames",
}


@dataclass
class FrameDiffusion:
    """Diffusion encoding of one 2D frame (or one mosaic), gradient in LPS (None when not given)."""

    bvalue: float | None = None
    gradient_lps: np.ndarray | None = None
    directionality: str = ""
    derived: bool = False
    source: str = ""  # which tags it came from, for tooltips and debugging
    order_key: tuple = field(default_factory=tuple)  # vendor volume order (Philips), () if none

    @property
    def has_diffusion(self) -> bool:
        return self.bvalue is not None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, (bytes, bytearray)):
        return None
    try:
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _vector(values: Any) -> np.ndarray | None:
    if values is None or isinstance(values, (bytes, bytearray)):
        return None
    try:
        vector = np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None
    return vector if vector.shape == (3,) else None


def _unit(vector: np.ndarray | None) -> np.ndarray | None:
    if vector is None:
        return None
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 1e-6 else np.zeros(3)


def _image_type(ds: pydicom.Dataset) -> set[str]:
    return {str(v).upper() for v in (ds.get("ImageType") or [])}


def manufacturer(ds: pydicom.Dataset) -> str:
    text = str(ds.get("Manufacturer", "")).upper()
    for key, name in (("SIEMENS", "Siemens"), ("GE", "GE"), ("PHILIPS", "Philips"), ("TOSHIBA", "Canon"),
                      ("CANON", "Canon"), ("HITACHI", "Hitachi"), ("FUJIFILM", "Hitachi"), ("UIH", "UIH")):
        if key in text:
            return name
    return text.title() or "Unknown"


def from_diffusion_item(item: pydicom.Dataset) -> FrameDiffusion | None:
    """A MR Diffusion Sequence item, or a dataset holding the standard diffusion attributes."""
    bvalue = _float(item.get("DiffusionBValue")) if "DiffusionBValue" in item else None
    directionality = str(item.get("DiffusionDirectionality", "") or "").upper()
    vector = _vector(item.get("DiffusionGradientOrientation"))
    if vector is None and item.get("DiffusionGradientDirectionSequence"):
        vector = _vector(item.DiffusionGradientDirectionSequence[0].get("DiffusionGradientOrientation"))
    if bvalue is None and vector is None and not directionality:
        return None
    return FrameDiffusion(bvalue=bvalue, gradient_lps=_unit(vector), directionality=directionality,
                          derived=directionality == "ISOTROPIC", source="standard")


def _standard(ds: pydicom.Dataset) -> FrameDiffusion | None:
    found = from_diffusion_item(ds)
    if found is not None:
        return found
    for container in (ds, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        sequence = container.get("MRDiffusionSequence")
        if sequence:
            found = from_diffusion_item(sequence[0])
            if found is not None:
                return found
    return None


def _orientation(ds: pydicom.Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    values = float_array(ds.get("ImageOrientationPatient"))
    if values is None or len(values) != 6:
        return None
    return values[:3], values[3:]


def float_array(values: Any) -> np.ndarray | None:
    """A DICOM multi-value as floats, or None when absent or not numeric."""
    if values is None:
        return None
    try:
        return np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        return None


def _siemens(ds: pydicom.Dataset, source: str) -> FrameDiffusion | None:
    header = csa.image_header(ds, source)
    bvalue = _float(csa.first(header, "B_value"))
    vector = _vector(header.get("DiffusionGradientDirection")) if header.get("DiffusionGradientDirection") else None
    origin = "Siemens CSA"
    if bvalue is None:
        element = ds.get((0x0019, 0x100C))
        bvalue = _float(element.value) if element is not None else None
        element = ds.get((0x0019, 0x100E))
        vector = _vector(element.value) if element is not None else None
        origin = "Siemens (0019,100c/100e)"
    if bvalue is None:
        return None
    if vector is None and bvalue and bvalue > 0 and len(header.get("B_matrix", [])) == 6:
        vector = bmatrix_direction(header["B_matrix"])
        origin += " (direction from B_matrix)"
    directionality = str(csa.first(header, "DiffusionDirectionality", "") or "").upper()
    derived = bool(_image_type(ds) & DERIVED_IMAGE_TYPES) or (bvalue > 0 and vector is None and
                                                                directionality not in ("", "DIRECTIONAL"))
    return FrameDiffusion(bvalue=bvalue, gradient_lps=_unit(vector), directionality=directionality,
                          derived=derived, source=origin)


def bmatrix_direction(bmatrix: list[float]) -> np.ndarray:
    """Unit principal axis (LPS) of a Siemens B_matrix (bxx, bxy, bxz, byy, byz, bzz); its sign is
    arbitrary, as for any diffusion direction."""
    bxx, bxy, bxz, byy, byz, bzz = (float(v) for v in bmatrix)
    _values, vectors = np.linalg.eigh(np.array([[bxx, bxy, bxz], [bxy, byy, byz], [bxz, byz, bzz]]))
    return vectors[:, -1]


def ge_bvalue(raw: float) -> float:
    """GE (0043,1039)[0]: values above 100000 carry a flag in the high digits (e.g. 1000000900 = 900)."""
    return float(raw % 100000) if raw >= 100000 else float(raw)


def ge_gradient_lps(logical: tuple[float, float, float], orientation: tuple[np.ndarray, np.ndarray],
                    phase_direction: str) -> np.ndarray:
    """GE (0019,10bb/bc/bd) are along the logical axes (frequency, phase, slice), not the patient's.

    COL phase encoding (frequency along the rows): LPS = -gx*row - gy*column + gz*normal, which
    reproduces dcm2niix's corrected vectors. ROW phase encoding swaps frequency and phase (as
    dcm2niix does; it calls this case untested). Without (0018,1312) dcm2niix applies no
    correction, i.e. LPS = gx*row - gy*column + gz*normal; we do the same, so both agree.
    """
    gx, gy, gz = logical
    row_direction, column_direction = orientation
    normal = np.cross(row_direction, column_direction)
    phase = phase_direction.strip().upper()
    if phase == "COL":
        return -gx * row_direction - gy * column_direction + gz * normal
    if phase == "ROW":
        return -gy * row_direction - gx * column_direction + gz * normal
    return gx * row_direction - gy * column_direction + gz * normal


def _ge(ds: pydicom.Dataset) -> FrameDiffusion | None:
    element = ds.get((0x0043, 0x1039))
    if element is None or isinstance(element.value, (bytes, bytearray)):
        return None
    bvalue = ge_bvalue(_float(element.value) or 0.0)
    components = [ds.get((0x0019, e)) for e in (0x10BB, 0x10BC, 0x10BD)]
    vector = None
    orientation = _orientation(ds)
    if all(c is not None for c in components) and orientation is not None:
        gx, gy, gz = (_float(c.value) or 0.0 for c in components)
        vector = ge_gradient_lps((gx, gy, gz), orientation, str(ds.get("InPlanePhaseEncodingDirection", "") or ""))
    derived = bool(_image_type(ds) & DERIVED_IMAGE_TYPES)
    if bvalue > 0 and vector is not None and np.linalg.norm(vector) < 1e-6:
        derived = True  # GE writes the combined (trace) image with a zero vector
    return FrameDiffusion(bvalue=bvalue, gradient_lps=_unit(vector), derived=derived, source="GE (0043,1039)/(0019,10bb)")


def uih_gradient_lps(image_frame: np.ndarray, orientation: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """UIH (0065,1037) holds the direction along the image axes: row, column and row x column.

    The UIH DTI of the corpus (rotated in plane by 25 degrees, tilted by 1.7) has dcm2niix's
    bvecs equal to these numbers with the column component negated (its j axis runs against
    the column direction): 5e-7 apart over 16 directions, while reading them as LPS vectors
    puts them up to 0.43 apart.
    """
    row_direction, column_direction = orientation
    normal = np.cross(row_direction, column_direction)
    a, b, c = (float(v) for v in image_frame)
    return a * row_direction + b * column_direction + c * normal


def uih_private(ds: pydicom.Dataset) -> bool:
    """Whether group 0065's block 10 is UIH's "Image Private Header" (where 0065,1009 ... live)."""
    element = ds.get((0x0065, 0x0010))
    return element is not None and str(element.value).strip().upper() == "IMAGE PRIVATE HEADER"


def _uih(ds: pydicom.Dataset) -> FrameDiffusion | None:
    element = ds.get((0x0065, 0x1009))
    if element is None or not uih_private(ds):
        return None
    bvalue = _float(element.value)
    if bvalue is None:
        return None
    vector = None
    direction = ds.get((0x0065, 0x1037))
    orientation = _orientation(ds)
    if direction is not None and orientation is not None:
        image_frame = _vector(direction.value)
        if image_frame is not None:
            vector = uih_gradient_lps(image_frame, orientation)
    chosen = ds.get((0x0065, 0x100A))
    nominal = _float(chosen.value) if chosen is not None else None
    # the b = 0 image reports the small b of the imaging gradients (1.25 in the corpus) with a
    # zero vector; the b-value the user chose (0) says it is not a trace image
    derived = bool(_image_type(ds) & DERIVED_IMAGE_TYPES) or (
        bvalue > 0 and (vector is None or not np.any(vector)) and nominal != 0.0)
    return FrameDiffusion(bvalue=bvalue, gradient_lps=_unit(vector), derived=derived,
                          directionality="NONE" if nominal == 0.0 else "", source="UIH (0065,1009)/(0065,1037)")


def _philips(ds: pydicom.Dataset) -> FrameDiffusion | None:
    bvalue = _float(ds[0x2001, 0x1003].value) if (0x2001, 0x1003) in ds else None
    if bvalue is None:
        return None
    components = [ds.get((0x2005, e)) for e in (0x10B0, 0x10B1, 0x10B2)]
    vector = None
    if all(c is not None for c in components):
        vector = np.array([_float(c.value) or 0.0 for c in components])
    direction = str(ds[0x2001, 0x1004].value).strip().upper() if (0x2001, 0x1004) in ds else ""
    return FrameDiffusion(bvalue=bvalue, gradient_lps=_unit(vector), directionality=direction,
                          derived=direction == "I" and bvalue > 0, source="Philips (2001,1003)/(2005,10b0)")


def philips_order_key(ds: pydicom.Dataset) -> tuple:
    """Philips volume order: (2005,1596) when present (acquisition order), else (2005,1412), (2005,1413)."""
    def number(tag: tuple[int, int]) -> float | None:
        element = ds.get(tag)
        return _float(element.value) if element is not None else None

    order = number((0x2005, 0x1596))
    if order is not None:
        return (order,)
    b_number, g_number = number((0x2005, 0x1412)), number((0x2005, 0x1413))
    if b_number is not None and g_number is not None:
        return (b_number, g_number)
    return ()


def file_diffusion(ds: pydicom.Dataset, source: str = "") -> FrameDiffusion:
    """The diffusion encoding of a classic (single-frame or mosaic) image, any vendor.

    The standard tags win for the b-value; a vendor's private gradient fills in when the
    standard one is absent (GE writes 0018,9087 but no 0018,9089).
    """
    vendor = manufacturer(ds)
    standard = _standard(ds)
    private: FrameDiffusion | None = None
    if vendor == "Siemens":
        private = _siemens(ds, source)
    elif vendor == "GE":
        private = _ge(ds)
    elif vendor == "Philips":
        private = _philips(ds)
    elif vendor == "UIH":
        private = _uih(ds)
    result = standard or private or FrameDiffusion()
    if standard is not None and private is not None:
        if result.bvalue is None:
            result.bvalue = private.bvalue
        if result.gradient_lps is None:
            result.gradient_lps = private.gradient_lps
            result.source = f"{standard.source} + {private.source}"
        result.derived = result.derived or private.derived
        result.directionality = result.directionality or private.directionality
    if _image_type(ds) & DERIVED_IMAGE_TYPES:
        result.derived = True
    if vendor == "Philips":
        result.order_key = philips_order_key(ds)
        if result.directionality == "I" and (result.bvalue or 0) > 0:
            result.derived = True
    if (result.bvalue or 0) > 0 and result.gradient_lps is not None and not np.any(result.gradient_lps) \
            and result.directionality not in ("BMATRIX", "NONE"):
        result.derived = True  # a weighted image without a direction is a trace image
    return result


def frame_diffusion(ds: pydicom.Dataset, frame_item: pydicom.Dataset) -> FrameDiffusion:
    """The diffusion encoding of one frame of an enhanced multi-frame image."""
    result: FrameDiffusion | None = None
    for container in (frame_item, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        sequence = container.get("MRDiffusionSequence")
        if sequence:
            result = from_diffusion_item(sequence[0])
            if result is not None:
                break
    result = result or FrameDiffusion()
    frame_types: set[str] = set()
    for container in (frame_item, *(ds.get("SharedFunctionalGroupsSequence") or [])):
        for item in container.get("MRImageFrameTypeSequence") or []:
            frame_types |= {str(v).upper() for v in (item.get("FrameType") or [])}
    if frame_types & DERIVED_IMAGE_TYPES:
        result.derived = True
    if (result.bvalue or 0) > 0 and (result.gradient_lps is None or not np.any(result.gradient_lps)) \
            and result.directionality not in ("BMATRIX",):
        result.derived = True
    return result

"""PET standardized uptake values (SUV): the factor that turns a PET image into SUV.

SUV = activity concentration (Bq/ml) x normaliser / injected activity decayed to the scan start.
The steps follow the QIBA/UW vendor-neutral SUV pseudo-code (Kinahan et al., "PET/CT
Standardized Uptake Values (SUVs) in Clinical Practice and Assessing Response to Therapy",
Semin Ultrasound CT MR 2010, and QIBA's "Vendor-neutral pseudo-code for SUV calculation"):

- Units (0054,1001): BQML -> the formula below; CNTS (Philips) -> the private SUV Scale Factor
  (7053,1000) times the rescaled value; GML -> values already SUVbw (g/ml). Anything else is
  refused.
- Decay correction (0054,1102): START (images decay-corrected to the scan start) -> the injected
  activity is decayed from the injection time to the scan start; ADMIN (corrected to the
  injection time) -> no decay; NONE -> refused (each frame would need its own factor).
- Scan start: SeriesDate/SeriesTime, unless the series was made after acquisition (series
  time later than the earliest acquisition time: a reprocessed series), then GE's private
  scan date/time (0009,100D) when present, else the earliest AcquisitionDate/Time of the series.
- Injection time: RadiopharmaceuticalStartDateTime (0018,1078) when present, else the scan date
  with RadiopharmaceuticalStartTime (0018,1072); a time-only difference that comes out negative
  crossed midnight and gets 24 h added.
- decayed dose (Bq) = RadionuclideTotalDose x 2^(-(scan start - injection) / RadionuclideHalfLife).
- A Real World Value Mapping in the image whose units are an SUV (e.g. {SUVbw}g/ml, as Siemens
  and GE write them) is the scanner's own SUV: it replaces the computed factor of that kind
  (its slope applies to stored values; divided by RescaleSlope it applies to rescaled ones).

Normalisers (W weight kg, H height, sex from PatientSex):
- bw: W x 1000 (g); SUVbw in g/ml.
- lbm, James (Hallynck et al. 1981, after James 1976): male 1.10 W - 128 (W/H_cm)^2, female
  1.07 W - 148 (W/H_cm)^2 (kg, x 1000 g); SUVlbm in g/ml.
- lbm, Janmahasatian et al. (Clin Pharmacokinet 2005): male 9270 W / (6680 + 216 BMI), female
  9270 W / (8780 + 244 BMI), BMI = W / H_m^2 (kg, x 1000 g); SUVlbm in g/ml.
- bsa, DuBois & DuBois (1916): 0.007184 x W^0.425 x H_cm^0.725 m^2 (x 10^4 cm^2); SUVbsa in cm^2/ml.
- ibw, Devine (1974): male 50 + 2.3 (H_in - 60), female 45.5 + 2.3 (H_in - 60) kg (x 1000 g);
  SUVibw in g/ml.

Every refusal (`SUVError`) names the attribute that is missing and the file it is missing from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from .errors import DICOMBrowserError

#: kinds of SUV offered, in the order a user sees them (bw is the default)
KINDS = ("bw", "lbm", "lbmJanma", "bsa", "ibw")
UNITS = {"bw": "g/ml", "lbm": "g/ml", "lbmJanma": "g/ml", "bsa": "cm2/ml", "ibw": "g/ml"}
LABELS = {"bw": "SUVbw", "lbm": "SUVlbm (James)", "lbmJanma": "SUVlbm (Janmahasatian)", "bsa": "SUVbsa",
          "ibw": "SUVibw"}
#: private tags: Philips SUV scale factor, Philips activity concentration scale factor, GE scan date/time
PHILIPS_SUV_SCALE = (0x7053, 0x1000)
PHILIPS_ACTIVITY_SCALE = (0x7053, 0x1009)
GE_SCAN_DATETIME = (0x0009, 0x100D)


class SUVError(DICOMBrowserError):
    """SUV cannot be computed; the message names the missing or unusable attribute and the file."""


@dataclass
class SUVFactors:
    """Multiply the rescaled PET value (Units as stored) by `factors[kind]` to get SUV of that kind.

    `refused[kind]` says why a kind is not available (the missing attribute and file)."""

    factors: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    units: str = ""  # the image's Units (BQML, CNTS, GML)
    decay_time_s: float | None = None
    decayed_dose_bq: float | None = None
    scan_start: str = ""
    injection: str = ""
    notes: list[str] = field(default_factory=list)


def _value(dataset: Any, keyword: str) -> Any:
    value = dataset.get(keyword, None)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _need(dataset: Any, keyword: str, path: str, why: str) -> Any:
    value = _value(dataset, keyword)
    if value is None:
        raise SUVError(f"{path}: {keyword} is missing ({why}); SUV cannot be computed")
    return value


def parse_datetime(date: str | None, time: str | None) -> datetime | None:
    """DICOM DA + TM (or a DT in `date` with `time` None) as a naive datetime; None if absent."""
    if date is None and time is None:
        return None
    text = (str(date or "").strip() + (str(time).strip() if time is not None else "")).split("+")[0].split("-")[0]
    if not text:
        return None
    if date is None or not str(date).strip():  # time only: on an arbitrary day, for differences
        text = "19000101" + text
    whole, _, fraction = text.partition(".")
    whole = whole.ljust(14, "0")[:14]
    try:
        parsed = datetime.strptime(whole, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if fraction:
        parsed += timedelta(microseconds=int((fraction + "000000")[:6]))
    return parsed


def _time_only(value: str | None) -> datetime | None:
    return parse_datetime(None, value) if value else None


def scan_start(first: Any, path: str, notes: list[str],
               acquisitions: Sequence[datetime] = ()) -> datetime:
    """The scan start time (see module docstring) from the first file's header and the series'
    acquisition date/times (the first file's own when none are given)."""
    series = parse_datetime(_value(first, "SeriesDate"), _value(first, "SeriesTime"))
    if not acquisitions and _value(first, "AcquisitionTime") is not None:
        own = parse_datetime(_value(first, "AcquisitionDate") or _value(first, "SeriesDate"), _value(first, "AcquisitionTime"))
        acquisitions = [own] if own is not None else []
    earliest = min(acquisitions) if acquisitions else None
    if series is not None and (earliest is None or series <= earliest):
        return series
    private = first.get(GE_SCAN_DATETIME)
    if private is not None and private.value:
        ge = parse_datetime(str(private.value), None)
        if ge is not None:
            notes.append("scan start from GE's private scan date/time (0009,100D): the series was made after acquisition")
            return ge
    if earliest is not None:
        if series is not None:
            notes.append("scan start from the earliest AcquisitionTime: SeriesTime is after acquisition")
        return earliest
    _need(first, "SeriesTime", path, "the scan start time for decay correction")
    raise SUVError(f"{path}: SeriesDate is missing (the scan start date); SUV cannot be computed")


def injection_time(dataset: Any, scan: datetime, path: str) -> datetime:
    """Radiopharmaceutical start: its DateTime, else the scan date with its Time (midnight handled)."""
    info = _need(dataset, "RadiopharmaceuticalInformationSequence", path, "the injected activity and its time")[0]
    full = _value(info, "RadiopharmaceuticalStartDateTime")
    if full is not None:
        parsed = parse_datetime(str(full), None)
        if parsed is not None:
            return parsed
    start = _value(info, "RadiopharmaceuticalStartTime")
    if start is None:
        raise SUVError(f"{path}: RadiopharmaceuticalStartTime is missing (the injection time, in "
                       "RadiopharmaceuticalInformationSequence); SUV cannot be computed")
    time = _time_only(str(start))
    if time is None:
        raise SUVError(f"{path}: RadiopharmaceuticalStartTime {start!r} is not a DICOM time")
    injected = datetime.combine(scan.date(), time.time())
    if injected > scan:  # injected the evening before a scan after midnight
        injected -= timedelta(days=1)
    return injected


def body_normalisers(dataset: Any, path: str) -> tuple[dict[str, float], dict[str, str]]:
    """Normaliser of each SUV kind (g, or cm^2 for bsa) and why any kind is not available."""
    found: dict[str, float] = {}
    refused: dict[str, str] = {}
    weight = _value(dataset, "PatientWeight")
    if weight is None or float(weight) <= 0:
        reason = f"{path}: PatientWeight (0010,1030) is missing or zero; SUV cannot be computed"
        return {}, {kind: reason for kind in KINDS}
    weight = float(weight)
    found["bw"] = weight * 1000.0
    size = _value(dataset, "PatientSize")
    sex = str(_value(dataset, "PatientSex") or "").upper()
    if size is None or float(size) <= 0:
        reason = f"{path}: PatientSize (0010,1020, height in m) is missing; needed for SUVlbm, SUVbsa, SUVibw"
        refused.update({kind: reason for kind in ("lbm", "lbmJanma", "bsa", "ibw")})
        return found, refused
    height_m = float(size)
    height_cm = height_m * 100.0
    found["bsa"] = 0.007184 * weight ** 0.425 * height_cm ** 0.725 * 1e4
    if sex not in ("M", "F"):
        reason = f"{path}: PatientSex (0010,0040) is {sex or 'missing'}, not M or F; needed for SUVlbm and SUVibw"
        refused.update({kind: reason for kind in ("lbm", "lbmJanma", "ibw")})
        return found, refused
    bmi = weight / height_m ** 2
    if sex == "M":
        found["lbm"] = (1.10 * weight - 128.0 * (weight / height_cm) ** 2) * 1000.0
        found["lbmJanma"] = 9270.0 * weight / (6680.0 + 216.0 * bmi) * 1000.0
        found["ibw"] = (50.0 + 2.3 * (height_cm / 2.54 - 60.0)) * 1000.0
    else:
        found["lbm"] = (1.07 * weight - 148.0 * (weight / height_cm) ** 2) * 1000.0
        found["lbmJanma"] = 9270.0 * weight / (8780.0 + 244.0 * bmi) * 1000.0
        found["ibw"] = (45.5 + 2.3 * (height_cm / 2.54 - 60.0)) * 1000.0
    for kind in ("lbm", "ibw"):
        if found[kind] <= 0:
            refused[kind] = f"{path}: {LABELS[kind]} formula gives {found.pop(kind) / 1000:.1f} kg for this height and weight"
    return found, refused


#: SUV units of a Real World Value Mapping (UCUM code value) -> SUV kind
RWVM_UNITS = {"{SUVbw}g/ml": "bw", "{SUVlbm}g/ml": "lbm", "{SUVbsa}cm2/ml": "bsa", "{SUVibw}g/ml": "ibw"}


def mapped_suv_factors(first: Any) -> dict[str, float]:
    """SUV kind -> factor on rescaled values, from the image's own Real World Value Mappings in SUV
    units (linear ones with intercept 0, the only kind a single factor can express)."""
    items = list(first.get("RealWorldValueMappingSequence", []) or [])
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (first.get(groups, []) or [])[:1]:
            items.extend(group.get("RealWorldValueMappingSequence", []) or [])
    slope = float(first.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(first.get("RescaleIntercept", 0.0) or 0.0)
    found: dict[str, float] = {}
    for item in items:
        units = item.get("MeasurementUnitsCodeSequence")
        kind = RWVM_UNITS.get(str(units[0].get("CodeValue", ""))) if units else None
        mapped_slope, mapped_intercept = item.get("RealWorldValueSlope"), item.get("RealWorldValueIntercept", 0.0)
        if kind and mapped_slope is not None and float(mapped_intercept or 0.0) == 0.0 and intercept == 0.0 and slope:
            found.setdefault(kind, float(mapped_slope) / slope)
    return found


def suv_factors(first: Any, path: str, acquisitions: Sequence[datetime] = ()) -> SUVFactors:
    """SUV factors for a PET series: `first` is a representative header (pydicom Dataset) read from
    `path`, `acquisitions` the AcquisitionDate/Time of every image of the series.

    Raises SUVError when no SUV at all can be computed; kinds that need more (height, sex) are
    listed in `refused`."""
    units = str(_need(first, "Units", path, "whether values are Bq/ml, counts or SUV")).upper()
    result = SUVFactors(units=units)
    normalisers, result.refused = body_normalisers(first, path)
    if "bw" not in normalisers:
        raise SUVError(result.refused["bw"])
    if units == "GML":
        result.factors = {"bw": 1.0}
        result.notes.append("Units GML: values are already SUVbw; other kinds need the activity, which GML hides")
        for kind in KINDS[1:]:
            result.refused.setdefault(kind, f"{path}: Units GML (already SUVbw): {LABELS[kind]} cannot be derived")
        return result
    if units == "CNTS":
        scale = first.get(PHILIPS_SUV_SCALE)
        if scale is None or not scale.value or float(scale.value) == 0:
            raise SUVError(f"{path}: Units CNTS and no Philips SUV Scale Factor (7053,1000); SUV cannot be computed")
        result.factors = {"bw": float(scale.value)}
        result.notes.append("Units CNTS: Philips SUV Scale Factor (7053,1000) x rescaled counts")
        for kind in KINDS[1:]:
            if kind in normalisers:  # the Philips factor is bw-normalised: rescale to the other normaliser
                result.factors[kind] = float(scale.value) * normalisers[kind] / normalisers["bw"]
        return result
    if units != "BQML":
        raise SUVError(f"{path}: Units {units!r} is not BQML, CNTS or GML; SUV cannot be computed")
    correction = str(_need(first, "DecayCorrection", path, "how the images were decay corrected")).upper()
    info = _need(first, "RadiopharmaceuticalInformationSequence", path, "the injected activity and its time")[0]
    dose = _value(info, "RadionuclideTotalDose")
    if dose is None or float(dose) <= 0:
        raise SUVError(f"{path}: RadionuclideTotalDose (0018,1074, in RadiopharmaceuticalInformationSequence) "
                       "is missing or zero; SUV cannot be computed")
    dose = float(dose)
    if correction == "ADMIN":
        decayed = dose
        result.notes.append("DecayCorrection ADMIN: images already corrected to the injection time")
    elif correction == "START":
        half_life = _value(info, "RadionuclideHalfLife")
        if half_life is None or float(half_life) <= 0:
            raise SUVError(f"{path}: RadionuclideHalfLife (0018,1075, in RadiopharmaceuticalInformationSequence) "
                           "is missing; SUV cannot be computed")
        start = scan_start(first, path, result.notes, acquisitions)
        injected = injection_time(first, start, path)
        decay_time = (start - injected).total_seconds()
        if decay_time < 0:
            raise SUVError(f"{path}: injection ({injected}) after the scan start ({start}); SUV cannot be computed")
        decayed = dose * math.pow(2.0, -decay_time / float(half_life))
        result.decay_time_s, result.scan_start, result.injection = decay_time, start.isoformat(), injected.isoformat()
    else:
        raise SUVError(f"{path}: DecayCorrection {correction!r}: only START and ADMIN are supported "
                       "(uncorrected frames would each need their own factor); SUV cannot be computed")
    result.decayed_dose_bq = decayed
    result.factors = {kind: normalisers[kind] / decayed for kind in KINDS if kind in normalisers}
    for kind, factor in mapped_suv_factors(first).items():
        result.notes.append(f"{LABELS[kind]} from the image's Real World Value Mapping ({factor:.6g}; computed "
                            f"{result.factors.get(kind, float('nan')):.6g})")
        result.factors[kind] = factor
        result.refused.pop(kind, None)
    return result
